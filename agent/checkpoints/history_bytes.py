"""The conversation history's bytes for each answer's usage figure, kept from inotify events.

A long conversation is thousands of files under `.sessions/`; listing them all on every answer
made a turn's cost grow with the history. This keeps each file's size and looks again only at
what agent/checkpoints/watch.py reports, and lists everything whenever the tracker cannot vouch for its list
(the first answer, an overflow, a directory moved, no inotify). The checkpoint store under
`.sessions/` is not history: the store counts it itself.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from agent.checkpoints.watch import Tracker
from agent.session_files import CHECKPOINTS, SESSIONS


class HistoryBytes:
    """`bytes()`: the apparent size of every file under `<workspace>/.sessions/` but the store."""

    def __init__(self, workspace: Path) -> None:
        self.root = str(workspace / SESSIONS)
        self.tracker = Tracker(CHECKPOINTS, what="history usage")
        self.sizes: dict[str, int] = {}  # relpath -> size, files and symlinks
        self.dirs: set[str] = set()  # relpaths of the directories scanned
        self.total = 0

    def bytes(self) -> int:
        changes = self.tracker.take()
        if changes is None:
            self.tracker.restart()
            self.sizes, self.dirs, self.total = {}, set(), 0
            self._scan("")
            return self.total
        for path in changes.paths - changes.dirs:
            self._look(path)
        for path in changes.dirs:
            self._forget(path)
            self.dirs.add(path)
            self._scan(path + "/")
        return self.total

    def _look(self, path: str) -> None:
        """One name the tracker reported: a file's new size, or gone (with all below it)."""
        self._forget(path)
        try:
            st = os.lstat(f"{self.root}/{path}")
        except OSError:
            return
        if stat.S_ISDIR(st.st_mode):  # a directory chmod-ed, or made and reported by its parent
            self.dirs.add(path)
            self._scan(path + "/")
        else:
            self._add(path, st.st_size)

    def _forget(self, path: str) -> None:
        self.total -= self.sizes.pop(path, 0)
        if path in self.dirs:  # a directory deleted or replaced: everything that was below it
            below = path + "/"
            self.dirs = {name for name in self.dirs if name != path and not name.startswith(below)}
            for name in [name for name in self.sizes if name.startswith(below)]:
                self.total -= self.sizes.pop(name)

    def _add(self, path: str, size: int) -> None:
        self.sizes[path] = size
        self.total += size

    def _scan(self, prefix: str) -> None:
        """Every file below `prefix` (relpath + "/", "" = the root), watching each directory first."""
        stack = [prefix]
        while stack:
            prefix = stack.pop()
            path = f"{self.root}/{prefix}".rstrip("/")
            self.tracker.watch(prefix, path)
            try:  # O_NOFOLLOW: a directory swapped for a symlink since its lstat is not followed
                fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
            except OSError:  # gone, unreadable, or not there yet: reported again when it appears
                continue
            try:
                with os.scandir(fd) as listing:  # each stat is relative to fd, so it stays open
                    for entry in listing:
                        relpath = prefix + entry.name
                        if relpath == CHECKPOINTS:
                            continue
                        try:
                            st = entry.stat(follow_symlinks=False)
                        except OSError:
                            continue
                        if stat.S_ISDIR(st.st_mode):
                            self.dirs.add(relpath)
                            stack.append(relpath + "/")
                        else:
                            self._add(relpath, st.st_size)
            finally:
                os.close(fd)
