"""Writes that survive a kill: the whole new file or the whole old one, never half of either.

The project's one atomic write (the agent's history repair, the emulator's state files,
deploy.py's runtime record all use it). It imports nothing of the project, so every layer
may import it. The shape is Strands' own FileSessionManager._write_file: a temporary file
in the same directory (os.replace is atomic only within one file system), flushed and
fsynced before the rename, and removed on any failure.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

__all__ = ["write_json", "write_text"]


def _write(path: Path, fill: Callable[[IO[str]], None], sync_dir: bool) -> None:
    # "." prefix: directory listings that look for real entries (message_*.json, *.json) skip it.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            fill(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:  # KeyboardInterrupt too: no temporary file is left behind
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if sync_dir:  # make the rename itself durable (the directory entry), not only the file's bytes
        dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def write_text(path: Path, text: str, *, sync_dir: bool = False) -> None:
    """Replace `path` with `text` (UTF-8) atomically. The directory must exist."""
    _write(Path(path), lambda f: f.write(text), sync_dir)


def write_json(path: Path, data: Any, *, indent: int | None = None, sync_dir: bool = False) -> None:
    """Replace `path` with `data` as JSON atomically; data that fails to serialise leaves the old file."""
    _write(Path(path), lambda f: json.dump(data, f, indent=indent), sync_dir)
