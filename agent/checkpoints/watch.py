"""What changed in the workspace since the last checkpoint, from Linux inotify (inotify_simple).

A watch on every directory of the project (never `.sessions/`); the walk adds a directory's
watch before it lists it, so nothing created in it meanwhile is missed. Events are kernel-side,
so they include what the shell tool's child processes write; writes through a shared mmap are
not reported (inotify's own limit). Whenever the tracker cannot vouch for the list (the queue
overflowed, a directory was moved, a watch could not be added, no inotify at all, or it was not
started yet) `take()` says None and the caller walks the whole workspace, which restarts it.
"""

from __future__ import annotations

import errno
import logging
import os
from contextlib import suppress
from typing import NamedTuple

from inotify_simple import INotify, flags

log = logging.getLogger(__name__)

# Plain ints, read once: each event is tested against several of them.
IN_MOVED_FROM, IN_MOVED_TO, IN_CREATE = int(flags.MOVED_FROM), int(flags.MOVED_TO), int(flags.CREATE)
IN_DELETE_SELF, IN_MOVE_SELF, IN_UNMOUNT = int(flags.DELETE_SELF), int(flags.MOVE_SELF), int(flags.UNMOUNT)
IN_Q_OVERFLOW, IN_IGNORED, IN_ISDIR = int(flags.Q_OVERFLOW), int(flags.IGNORED), int(flags.ISDIR)
MASK = int(
    flags.MODIFY | flags.ATTRIB | flags.CLOSE_WRITE | flags.MOVED_FROM | flags.MOVED_TO | flags.CREATE
    | flags.DELETE | flags.DELETE_SELF | flags.MOVE_SELF | flags.ONLYDIR | flags.DONT_FOLLOW
    | flags.EXCL_UNLINK
)  # fmt: skip
UNAVAILABLE = "inotify is unavailable"


def load_inotify() -> None:
    """What the first restart() in a process also does: find libc (inotify_simple asks ldconfig, 2-10 ms)."""
    with suppress(AttributeError, OSError):
        INotify().close()


class Changes(NamedTuple):
    paths: set[str]  # may have changed (created, written, chmod-ed, moved or deleted)
    dirs: set[str]  # directories created: to be watched, then walked (a new one may reuse an old name)


class Tracker:
    """Changed paths (relative, "/"-separated) under one root, between two `take()` calls."""

    def __init__(self, skip: str, what: str = "checkpoints") -> None:
        self.skip = skip  # a top-level name never watched (the service's own `.sessions/`)
        self.what = what  # whose tracker, in the log
        self.inotify: INotify | None = None
        self.dirs: dict[int, str] = {}  # watch descriptor -> its directory's relpath + "/" ("" = root)
        self.changed: set[str] = set()
        self.created: set[str] = set()
        self.doubt: str | None = "not started"  # why the next take() cannot vouch for its list
        self.warned = False  # about inotify missing: once
        self.disabled: str | None = None  # watches refused for want of room: not tried again
        self.full_walks = self.tracked = 0  # how often take() said None, or a list (for the bench)

    def restart(self) -> bool:
        """A fresh inotify instance with no watches (a full walk then adds them). False: unavailable."""
        self.close()
        if self.disabled:
            self.doubt = self.disabled
            return False
        try:
            self.inotify = INotify(nonblocking=True)  # close-on-exec too
        except (AttributeError, OSError) as error:  # no inotify_init1 in this libc, or no instance left
            code = getattr(error, "errno", None)
            if isinstance(error, AttributeError) or code == errno.ENOSYS:
                if not self.warned:
                    log.warning("%s | %s: every turn walks the whole tree", self.what, UNAVAILABLE)
                    self.warned = True
                self.doubt = UNAVAILABLE
            else:  # EMFILE (max_user_instances), ENFILE, ENOMEM: the next full walk tries again
                self.doubt = f"inotify_init1: {os.strerror(code or 0)}"
            return False
        self.doubt = None
        return True

    def watch(self, prefix: str, path: str) -> None:
        """Watch one directory (`prefix` = its relpath + "/", or "" for the root) before it is listed."""
        if self.inotify is None or self.doubt:
            return
        try:
            self.dirs[self.inotify.add_watch(path, MASK)] = prefix
            return
        except OSError as error:
            code = error.errno
        if prefix and code in (errno.ENOENT, errno.ENOTDIR):  # gone or replaced: its parent reports it
            return
        self.doubt = f"inotify_add_watch {prefix or './'}: {os.strerror(code or 0)}"
        if code == errno.ENOSPC:  # more directories than fs.inotify.max_user_watches allows
            self.disabled = self.doubt
            self.close()  # give back the watches it holds
            log.warning("%s | %s (fs.inotify.max_user_watches); every turn walks", self.what, self.disabled)

    @property
    def watching(self) -> int:
        """How many directories are watched now (0 when it is closed or never started)."""
        return len(self.dirs)

    def take(self) -> Changes | None:
        """What may have changed since the last take(), or None: walk everything."""
        self._drain()
        changes = Changes(self.changed, self.created)
        self.changed, self.created = set(), set()
        if self.doubt:
            self.full_walks += 1
            return None
        self.tracked += 1
        return changes

    def peek(self) -> Changes | None:
        """What take() would say now, left for it: a look that records nothing (status)."""
        self._drain()
        return None if self.doubt else Changes(set(self.changed), set(self.created))

    def _drain(self) -> None:
        while self.inotify is not None and not self.doubt:
            try:
                events = self.inotify.read(timeout=0)  # what is queued now, never waiting
            except OSError as error:
                self.doubt = f"reading inotify: {error.strerror}"
                return
            if not events:
                return
            for wd, mask, _cookie, name in events:
                self._event(wd, mask, name)

    def _event(self, wd: int, mask: int, name: str) -> None:
        if mask & IN_Q_OVERFLOW:
            self.doubt = "the inotify queue overflowed"
        elif mask & IN_IGNORED:
            self.dirs.pop(wd, None)  # its directory is gone: the parent's event names it
        elif mask & (IN_MOVE_SELF | IN_UNMOUNT) or (mask & IN_ISDIR and mask & (IN_MOVED_FROM | IN_MOVED_TO)):
            self.doubt = "a directory was moved"  # the watches' paths below it are stale now
        elif mask & IN_DELETE_SELF:
            if self.dirs.get(wd) == "":
                self.doubt = "the workspace itself was deleted"
        elif (prefix := self.dirs.get(wd)) is not None and name and not (prefix == "" and name == self.skip):
            self.changed.add(prefix + name)
            if mask & IN_ISDIR and mask & IN_CREATE:
                self.created.add(prefix + name)

    def __del__(self) -> None:  # an inotify instance is a per-user resource (max_user_instances)
        self.close()

    def close(self) -> None:
        if self.inotify is not None:
            with suppress(OSError):
                self.inotify.close()
        self.inotify, self.dirs, self.changed, self.created = None, {}, set(), set()
        self.doubt = self.disabled or "not started"
