"""The project's documentation as the tests read it: README.md and docs/*.md, and the `--help`
blocks they show. `python -m tests.support.docs` rewrites every help block with what its command
prints today (what to run when tests/unit/cloud/test_readme_help.py fails)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

from tests.support import REPO

# A help block: ```text, then "$ python ARGS --help", then the output, then ```.
HELP_BLOCK = re.compile(r"```text\n\$ python ([^\n]*--help)\n(.*?)```", re.S)


def doc_files() -> list[Path]:
    """README.md first, then every page under docs/."""
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def help_blocks() -> list[tuple[Path, str, str]]:
    """(file, command, the text shown) for every help block in the docs."""
    return [(path, *block) for path in doc_files() for block in HELP_BLOCK.findall(path.read_text())]


def printed_help(command: str) -> str:
    """What `python COMMAND` prints, at the 80 columns the docs use (argparse wraps to the terminal)."""
    return subprocess.run(
        [sys.executable, *shlex.split(command)],
        cwd=REPO,
        env={**os.environ, "COLUMNS": "80"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def regenerate() -> list[Path]:
    """Rewrite every help block with its command's output; the files that changed."""
    changed = []
    for path in doc_files():
        text = path.read_text()
        new = HELP_BLOCK.sub(lambda m: f"```text\n$ python {m[1]}\n{printed_help(m[1])}```", text)
        if new != text:
            path.write_text(new)
            changed.append(path)
    return changed


if __name__ == "__main__":
    for path in regenerate():
        print(f"rewrote the help blocks of {path.relative_to(REPO)}")
