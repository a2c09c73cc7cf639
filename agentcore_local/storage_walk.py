"""PLACEHOLDER walks of a session's storage (the lead replaces this module with iterative,
fd-relative ones that never follow symlinks nor open FIFOs; same names and types).

These are the simple os.walk/shutil versions: no symlink is followed, but very deep trees and
paths over PATH_MAX can still fail here. storage.py catches and reports any failure.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from .storage_limits import Unsupported, kind_of


@dataclass(frozen=True)
class Usage:
    bytes: int  # allocated on disk (st_blocks), directories included
    files: int  # entries other than directories


def usage(root: Path) -> Usage:
    total = files = 0
    for top, dirs, names in os.walk(root):
        for name in names + dirs:
            try:
                info = os.lstat(os.path.join(top, name))
            except FileNotFoundError:
                continue
            total += info.st_blocks * 512
            files += name in names
    return Usage(total, files)


def scan_unsupported(root: Path, limit: int = 1000) -> list[Unsupported]:
    found: list[Unsupported] = []
    for top, dirs, names in os.walk(root):
        for name in names + dirs:
            path = os.path.join(top, name)
            try:
                info = os.lstat(path)
            except FileNotFoundError:
                continue
            if kind := kind_of(info.st_mode, info.st_nlink):
                found.append(Unsupported(os.path.relpath(path, root), kind))
                if len(found) >= limit:
                    return found
    return found


def remove_tree(path: Path) -> None:
    if path.is_symlink() or not path.is_dir():
        path.unlink(missing_ok=True)
    elif path.exists():
        shutil.rmtree(path)


def clear_tree(path: Path) -> None:
    for entry in os.scandir(path):
        remove_tree(Path(entry.path))
