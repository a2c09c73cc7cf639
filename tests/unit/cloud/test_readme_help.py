"""Docs that cannot go stale: every `--help` block in the README is what the command prints today."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys

import pytest

from tests.support import REPO

README = REPO / "README.md"
HELP_BLOCK = re.compile(r"```text\n\$ python ([^\n]*--help)\n(.*?)```", re.S)
BLOCKS = HELP_BLOCK.findall(README.read_text())


def test_the_readme_shows_the_help_of_every_command():
    assert {command for command, _ in BLOCKS} >= {
        "deploy.py --help",
        "deploy.py ensure --help",
        "client.py --help",
        "client.py demo --help",
        "-m agentcore_local serve --help",
    }


@pytest.mark.parametrize(("command", "shown"), BLOCKS, ids=[command for command, _ in BLOCKS])
def test_help_shown_in_the_readme_is_what_the_command_prints(command: str, shown: str) -> None:
    env = {**os.environ, "COLUMNS": "80"}  # argparse wraps to the terminal width; the README uses 80
    printed = subprocess.run(
        [sys.executable, *shlex.split(command)],
        cwd=README.parent,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert shown == printed, f"regenerate the README's `{command}` block"
