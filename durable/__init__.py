"""Writes that survive a kill: the whole new file or the whole old one, never half of either.

The project's one atomic write (the agent's history repair, the emulator's state files,
deploy.py's runtime record all use it). It imports nothing of the project, so every layer
may import it. The shape is Strands' own FileSessionManager._write_file: a temporary file
in the same directory (os.replace is atomic only within one file system), fsynced before
the rename (unless the caller says a lost write is harmless), and removed on any failure.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
from pathlib import Path
from typing import Any

__all__ = ["write_bytes", "write_json", "write_text"]


_temps = itertools.count()  # with the pid, a temporary name no other writer picks (O_EXCL checks it)


def write_bytes(path: Path, data: bytes, *, fsync: bool = True, sync_dir: bool = False) -> None:
    """Replace `path` with `data` atomically. The directory must exist. `fsync=False` where a kill
    may lose the new file but never tear it (a checkpoint's objects: the manifest naming them is
    written after them, and a torn store is pruned, not trusted)."""
    path = Path(path)
    # "." prefix: directory listings that look for real entries (message_*.json, *.json) skip it.
    tmp = f"{path.parent}/.{path.name}.{os.getpid()}-{next(_temps)}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
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
    write_bytes(path, text.encode("utf-8"), sync_dir=sync_dir)


def write_json(path: Path, data: Any, *, indent: int | None = None, sync_dir: bool = False) -> None:
    """Replace `path` with `data` as JSON atomically; data that fails to serialise leaves the old file."""
    write_bytes(path, json.dumps(data, indent=indent).encode("utf-8"), sync_dir=sync_dir)
