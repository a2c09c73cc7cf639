"""Docs that cannot go stale: every `--help` block in README.md and docs/*.md is what the command
prints today (`python -m tests.support.docs` rewrites them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import REPO
from tests.support.docs import help_blocks, printed_help

BLOCKS = help_blocks()


def test_the_docs_show_the_help_of_every_command():
    assert {command for _, command, _ in BLOCKS} >= {
        "deploy.py --help",
        "deploy.py ensure --help",
        "client.py --help",
        "client.py demo --help",
        "client.py undo --help",
        "-m agentcore_local serve --help",
    }


@pytest.mark.parametrize(
    ("path", "command", "shown"),
    BLOCKS,
    ids=[f"{path.relative_to(REPO)}: {command}" for path, command, _ in BLOCKS],
)
def test_help_shown_in_the_docs_is_what_the_command_prints(path: Path, command: str, shown: str) -> None:
    assert shown == printed_help(command), (
        f"{path.relative_to(REPO)}: the `{command}` block is out of date; run python -m tests.support.docs"
    )
