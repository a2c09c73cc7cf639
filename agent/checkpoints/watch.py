"""What changed in the workspace since the last checkpoint, from Linux inotify (ctypes on libc).

A watch on every directory of the project (never `.sessions/`); the walk adds a directory's
watch before it lists it, so nothing created in it meanwhile is missed. Events are kernel-side,
so they include what the shell tool's child processes write; writes through a shared mmap are
not reported (inotify's own limit). Whenever the tracker cannot vouch for the list (the queue
overflowed, a directory was moved, a watch could not be added, no inotify at all, or it was not
started yet) `take()` says None and the caller walks the whole workspace, which restarts it.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import struct
from contextlib import suppress
from typing import NamedTuple

log = logging.getLogger(__name__)

IN_MODIFY, IN_ATTRIB, IN_CLOSE_WRITE = 0x2, 0x4, 0x8
IN_MOVED_FROM, IN_MOVED_TO, IN_CREATE, IN_DELETE = 0x40, 0x80, 0x100, 0x200
IN_DELETE_SELF, IN_MOVE_SELF, IN_UNMOUNT, IN_Q_OVERFLOW, IN_IGNORED = 0x400, 0x800, 0x2000, 0x4000, 0x8000
IN_ONLYDIR, IN_DONT_FOLLOW, IN_EXCL_UNLINK, IN_ISDIR = 0x1000000, 0x2000000, 0x4000000, 0x40000000
MASK = (
    IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE
    | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR | IN_DONT_FOLLOW | IN_EXCL_UNLINK
)  # fmt: skip
_EVENT = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len; then the name
_libc: ctypes.CDLL | None = None


def _lib() -> ctypes.CDLL | None:
    global _libc
    if _libc is None:
        with suppress(OSError, AttributeError):
            lib = ctypes.CDLL(None, use_errno=True)
            lib.inotify_init1.argtypes, lib.inotify_init1.restype = [ctypes.c_int], ctypes.c_int
            lib.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
            lib.inotify_add_watch.restype = ctypes.c_int
            _libc = lib
    return _libc


class Changes(NamedTuple):
    paths: set[str]  # may have changed (created, written, chmod-ed, moved or deleted)
    dirs: set[str]  # directories created: to be watched, then walked (a new one may reuse an old name)


class Tracker:
    """Changed paths (relative, "/"-separated) under one root, between two `take()` calls."""

    def __init__(self, skip: str, what: str = "checkpoints") -> None:
        self.skip = skip  # a top-level name never watched (the service's own `.sessions/`)
        self.what = what  # whose tracker, in the log
        self.fd = -1
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
        lib = _lib()
        if self.disabled:
            self.doubt = self.disabled
            return False
        if lib is None:
            if not self.warned:
                log.warning("%s | inotify is unavailable: every turn walks the whole tree", self.what)
                self.warned = True
            self.doubt = "inotify is unavailable"
            return False
        fd = lib.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            self.doubt = f"inotify_init1: {os.strerror(ctypes.get_errno())}"
            return False
        self.fd, self.doubt = fd, None
        return True

    def watch(self, prefix: str, path: str) -> None:
        """Watch one directory (`prefix` = its relpath + "/", or "" for the root) before it is listed."""
        lib = _lib()
        if self.fd < 0 or lib is None or self.doubt:
            return
        wd = lib.inotify_add_watch(self.fd, os.fsencode(path), MASK)
        if wd >= 0:
            self.dirs[wd] = prefix
            return
        code = ctypes.get_errno()
        if prefix and code in (errno.ENOENT, errno.ENOTDIR):  # gone or replaced: its parent reports it
            return
        self.doubt = f"inotify_add_watch {prefix or './'}: {os.strerror(code)}"
        if code == errno.ENOSPC:  # more directories than fs.inotify.max_user_watches allows
            self.disabled = self.doubt
            self.close()  # give back the watches it holds
            log.warning("%s | %s (fs.inotify.max_user_watches); every turn walks", self.what, self.disabled)

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
        while self.fd >= 0 and not self.doubt:
            try:
                data = os.read(self.fd, 1 << 16)
            except BlockingIOError:
                return
            except OSError as error:
                self.doubt = f"reading inotify: {error.strerror}"
                return
            offset = 0
            while offset < len(data):
                wd, mask, _cookie, size = _EVENT.unpack_from(data, offset)
                name = data[offset + _EVENT.size : offset + _EVENT.size + size].rstrip(b"\0")
                offset += _EVENT.size + size
                self._event(wd, mask, os.fsdecode(name))

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
        if self.fd >= 0:
            with suppress(OSError):
                os.close(self.fd)
        self.fd, self.dirs, self.changed, self.created = -1, {}, set(), set()
        self.doubt = self.disabled or "not started"
