"""No room for a checkpoint: the filesystem is full (ENOSPC) or a new content would pass the
quota (EDQUOT, agent/checkpoints/objects.py). The store then stays as it was (docs/disk.md)."""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

FULL = (errno.ENOSPC, errno.EDQUOT)


class StorageFull(OSError):
    """A checkpoint not written for lack of room; the store is as it was. Its text says what to do."""

    def __init__(self, reason: str) -> None:
        super().__init__(errno.ENOSPC, reason)

    def __str__(self) -> str:
        return str(self.strerror)


class Rollback(Protocol):
    failed: str | None

    def roll_back(self) -> None: ...


@contextmanager
def all_or_nothing(store: Rollback) -> Iterator[None]:
    """Around a store write: any failure rolls the store back (`roll_back`); no room becomes
    StorageFull, whose reason the store keeps in `failed` until a checkpoint is written."""
    try:
        yield
    except Exception as error:
        store.roll_back()
        if isinstance(error, StorageFull) or not (isinstance(error, OSError) and error.errno in FULL):
            raise
        why = "the filesystem is full" if error.errno == errno.ENOSPC else error.strerror
        store.failed = (
            f"a checkpoint could not be written: {why}; nothing was changed and the checkpoints are "
            "as they were. Delete files (an exec of rm) and ask again"
        )
        raise StorageFull(store.failed) from error
