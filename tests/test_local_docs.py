"""The --help blocks shown for client.py and agentcore_local are what they print today."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md"]
HELP_BLOCK = re.compile(r"```text\n\$ python ((?:client\.py|-m agentcore_local)[^\n]*--help)\n(.*?)```", re.S)


def help_blocks() -> list[tuple[Path, str, str]]:
    return [
        (path, command, shown) for path in DOCS for command, shown in HELP_BLOCK.findall(path.read_text())
    ]


def test_the_docs_show_the_help_of_client_py() -> None:
    assert "client.py --help" in {command for _, command, _ in help_blocks()}


@pytest.mark.parametrize(("path", "command", "shown"), help_blocks(), ids=lambda v: str(v)[:40])
def test_help_shown_in_the_docs_is_what_the_command_prints(path: Path, command: str, shown: str) -> None:
    env = {**os.environ, "COLUMNS": "80"}  # argparse wraps to the terminal width; the docs use 80
    printed = subprocess.run(
        [sys.executable, *shlex.split(command)], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    ).stdout
    assert shown == printed, f"{path.name}: regenerate the `{command}` block"
