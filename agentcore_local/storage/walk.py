"""Walks of a session's storage that nothing a session writes can break.

A session's shell controls what its storage holds: a 1,100-level directory chain, a path far
past PATH_MAX, FIFOs, symlinks into the host, directories without read permission. Every walk
here is iterative (no recursion limit), works relative to directory file descriptors (no path
is ever longer than one name, so no PATH_MAX), opens only directories (with O_NOFOLLOW, so a
symlink is never followed and a FIFO is never opened, which could block), and stays on the
storage's filesystem. At most `MAX_OPEN` directory descriptors are held at once: deeper levels
are closed on the way down and reopened through ".." on the way up, checked by inode.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .limits import Unsupported, kind_of

MAX_OPEN = 64
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class WalkError(OSError):
    """The tree changed under a walk in a way it cannot follow (a directory moved mid-walk)."""


@dataclass(frozen=True)
class Usage:
    """What a tree holds: bytes (a regular file at its apparent size when that is more than its
    blocks: a sparse file becomes real in a backup and its restore) and entries by kind."""

    bytes: int = 0
    files: int = 0  # every entry that is not a directory: files, symlinks, FIFOs, ...
    dirs: int = 0  # directories below the root


@dataclass
class _Frame:
    name: str  # the name in its parent ("" for the root)
    ident: tuple[int, int]  # (st_dev, st_ino), to check a reopen through ".."
    fd: int | None
    subdirs: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Entry:
    """One entry met by `walk`: its directory's fd (valid during the visit), name, lstat, path parts."""

    dir_fd: int
    name: str
    info: os.stat_result
    parents: tuple[str, ...]  # names from the root down to the entry's directory

    @property
    def relpath(self) -> str:
        return "/".join((*self.parents, self.name))


def _open_dir(name: str, dir_fd: int | None, force: bool = False) -> int:
    """Open a directory, never through a symlink. `force`: one the session made unreadable is
    made readable first (only when removing it: a measure must not change the session's files)."""
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except PermissionError:
        if not force:
            raise
        # chmod through an O_PATH descriptor of the very inode: a symlink swapped in is not followed.
        handle = os.open(name, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        try:
            os.chmod(f"/proc/self/fd/{handle}", 0o700)
        finally:
            os.close(handle)
        return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)


def _ident(fd: int) -> tuple[int, int]:
    info = os.fstat(fd)
    return info.st_dev, info.st_ino


def walk(root: Path, *, remove: bool = False) -> Iterator[Entry]:
    """Yield every entry under `root` (not `root` itself), parents before children.

    With `remove`, each non-directory is unlinked after it is yielded and each directory is
    removed once it is empty, so the tree is gone when the walk ends (`root` stays).
    """
    root_fd = _open_dir(str(root), None, force=remove)
    device = os.fstat(root_fd).st_dev
    stack = [_Frame("", _ident(root_fd), root_fd)]
    try:
        yield from _entries_of(stack, device, remove)
        while len(stack) > 1 or stack[0].subdirs:
            top = stack[-1]
            if top.subdirs:
                name = top.subdirs.pop()
                assert top.fd is not None
                try:
                    fd = _open_dir(name, top.fd, force=remove)
                except FileNotFoundError:
                    continue  # gone since it was listed
                except PermissionError:
                    continue  # unreadable to a measure: its entries are not counted
                stack.append(_Frame(name, _ident(fd), fd))
                if len(stack) > MAX_OPEN:  # keep the open descriptors bounded on deep chains
                    deep = stack[-MAX_OPEN - 1]
                    if deep.fd is not None:
                        os.close(deep.fd)
                        deep.fd = None
                yield from _entries_of(stack, device, remove)
                continue
            # Done with `top`: back up to its parent, reopening the parent through ".." if it was closed.
            stack.pop()
            parent = stack[-1]
            assert top.fd is not None
            if parent.fd is None:
                fd = os.open("..", _DIR_FLAGS, dir_fd=top.fd)
                if _ident(fd) != parent.ident:
                    os.close(fd)
                    raise WalkError(errno.ESTALE, f"a directory moved during the walk of {root}")
                parent.fd = fd
            os.close(top.fd)
            if remove:
                os.rmdir(top.name, dir_fd=parent.fd)
    finally:
        for frame in stack:
            if frame.fd is not None:
                os.close(frame.fd)


def _entries_of(stack: list[_Frame], device: int, remove: bool) -> Iterator[Entry]:
    """Visit the entries of the directory on top of the stack; remember its subdirectories."""
    frame = stack[-1]
    assert frame.fd is not None
    parents = tuple(f.name for f in stack[1:])
    with os.scandir(frame.fd) as listing:
        names = [entry.name for entry in listing]
    for name in names:
        try:
            info = os.lstat(name, dir_fd=frame.fd)
        except FileNotFoundError:
            continue
        yield Entry(frame.fd, name, info, parents)
        if stat.S_ISDIR(info.st_mode):
            if info.st_dev == device:
                frame.subdirs.append(name)
            elif remove:  # a mount inside the storage: never delete into another filesystem
                raise WalkError(errno.EXDEV, f"{'/'.join((*parents, name))} is another filesystem")
        elif remove:
            os.unlink(name, dir_fd=frame.fd)


def _counted(info: os.stat_result) -> int:
    if stat.S_ISREG(info.st_mode):
        return max(info.st_size, info.st_blocks * 512)
    return info.st_blocks * 512


def usage(root: Path) -> Usage:
    """Bytes and entries under `root` (0 when it does not exist)."""
    if not root.is_dir():
        return Usage()
    size = os.lstat(root).st_blocks * 512
    files = dirs = 0
    for entry in walk(root):
        size += _counted(entry.info)
        if stat.S_ISDIR(entry.info.st_mode):
            dirs += 1
        else:
            files += 1
    return Usage(size, files, dirs)


def scan_unsupported(root: Path, limit: int = 1000) -> list[Unsupported]:
    """What AgentCore Session Storage would not keep (storage_limits.KINDS), at most `limit` entries."""
    found: list[Unsupported] = []
    if not root.is_dir():
        return found
    for entry in walk(root):
        if kind := kind_of(entry.info.st_mode, entry.info.st_nlink):
            found.append(Unsupported(entry.relpath, kind))
            if len(found) >= limit:
                break
    return found


def clear_tree(path: Path) -> None:
    """Empty the directory `path` and keep it; no-op when it does not exist."""
    if not os.path.lexists(path):
        return
    if not stat.S_ISDIR(os.lstat(path).st_mode):
        raise NotADirectoryError(errno.ENOTDIR, "not a directory", str(path))
    for _ in walk(path, remove=True):
        pass


def remove_tree(path: Path) -> None:
    """Remove `path` and everything under it, never following a symlink; no-op when it is missing."""
    if not os.path.lexists(path):
        return
    if stat.S_ISDIR(os.lstat(path).st_mode):
        clear_tree(path)
        os.rmdir(path)
    else:
        os.unlink(path)
