"""The checkpoint store's objects: one regular file's bytes under its sha256, written once.

`objects/<sha256[:2]>/<sha256>` inside the store (docs/CONTRACT.md §6), each written to a temp
name and renamed in, so a kill -9 leaves at most a temp file or an object no manifest names
(both collected by the next prune). Small files are read whole, larger ones streamed.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import tempfile
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path

import durable
from agent.checkpoints.walk import Entry

SMALL = 1 << 20  # files up to this size are read whole, so a known object costs no temp file


class Objects:
    """The objects folder of one store. `counted(n)` hears of every byte added or freed."""

    def __init__(self, workspace: Path, folder: Path, counted: Callable[[int], None]) -> None:
        self.workspace, self.folder, self.counted = workspace, folder, counted
        self._dirs: set[str] = set()
        self.room: int | None = None  # bytes new objects may still take (None: as the filesystem allows)
        self.added: list[str] = []  # written since the store last named them in a manifest (or gave up)

    def path(self, sha256: str) -> Path:
        return self.folder / sha256[:2] / sha256

    def has(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def hash_in(self, relpath: str, item: Entry) -> bool:
        """Hash one workspace file and store its bytes if new. False if it is not a regular file now."""
        try:
            fd = os.open(self.workspace / relpath, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            return False
        try:
            before = os.fstat(fd)
            if not stat.S_ISREG(before.st_mode):
                return False
            if before.st_size <= SMALL:
                data = read_all(fd)
                sha = hashlib.sha256(data).hexdigest()
                if not self.has(sha):
                    self.put(sha, data)
            else:
                sha = self._put_stream(fd, before.st_size)
            after = os.fstat(fd)
        finally:
            os.close(fd)
        item["sha256"] = sha
        if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
            item["ctime"] = -1.0  # written while we read it: hash it again next time
        return True

    def _folder(self, sha: str) -> Path:
        folder = self.folder / sha[:2]
        if sha[:2] not in self._dirs:
            folder.mkdir(parents=True, exist_ok=True)
            self._dirs.add(sha[:2])
        return folder

    def put(self, sha: str, data: bytes) -> None:
        if self.has(sha):
            return
        self._admit(len(data))
        durable.write_bytes(self._folder(sha) / sha, data, fsync=False)
        self._added(sha, len(data))

    def _admit(self, size: int) -> None:
        """Refuse an object past `room` as a quota'd filesystem would (EDQUOT), before writing it."""
        if self.room is not None and size > self.room:
            raise OSError(
                errno.EDQUOT,
                f"{size / 2**20:.1f} MiB more would take session storage past its quota "
                f"({max(self.room, 0) / 2**20:.1f} MiB left)",
            )

    def _added(self, sha: str, size: int) -> None:
        self.added.append(sha)
        self.counted(size)
        if self.room is not None:
            self.room -= size

    def _put_stream(self, fd: int, length: int) -> str:
        """Copy a large file into a temp object while hashing it, then name it by its hash."""
        if self.room is not None and length > self.room:  # no room for a copy: enough if it is known
            digest = hashlib.sha256()
            while chunk := os.read(fd, SMALL):
                digest.update(chunk)
            if self.has(sha := digest.hexdigest()):
                return sha
            self._admit(length)
        self.folder.mkdir(parents=True, exist_ok=True)
        out, tmp = tempfile.mkstemp(dir=self.folder, prefix=".tmp-")
        digest, size = hashlib.sha256(), 0
        try:
            while chunk := os.read(fd, SMALL):
                digest.update(chunk)
                view = memoryview(chunk)
                while view:  # a write near a full disk may be short: never a truncated object
                    view = view[os.write(out, view) :]
                size += len(chunk)
            os.close(out)
            sha = digest.hexdigest()
            if self.has(sha):
                os.unlink(tmp)
            else:
                os.replace(tmp, self._folder(sha) / sha)
                self._added(sha, size)
            return sha
        except BaseException:
            with suppress(OSError):
                os.close(out)
            with suppress(OSError):
                os.unlink(tmp)
            raise

    def forget_added(self) -> None:
        """Delete the objects written since the last manifest (a checkpoint that could not be written)."""
        for sha in self.added:
            self.remove(sha)
        self.added = []

    def remove(self, sha: str) -> None:
        path = self.path(sha)
        with suppress(OSError):
            size = path.stat().st_size
            path.unlink()
            self.counted(-size)

    def collect_strays(self, refs: set[str]) -> None:
        """Temp files and unnamed objects a killed checkpoint left behind."""
        for base, _dirs, names in os.walk(self.folder):
            for name in names:
                if name.startswith(".tmp-") or name not in refs:
                    path = Path(base, name)
                    with suppress(OSError):
                        size = path.stat().st_size
                        path.unlink()
                        self.counted(-size)


def read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, SMALL + 1):
        chunks.append(chunk)
    return b"".join(chunks)
