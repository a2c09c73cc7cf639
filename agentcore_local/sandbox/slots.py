"""The mount at the first invocation: a per-compute "slot" the sandbox sees read-only at the
mount path's parent, whose one entry (the mount path) the host bind-mounts the session's storage
onto when the first call arrives. Until then the agent sees an empty directory it cannot write,
as on AWS, where the session storage appears only at the first invocation.

How the mount reaches a running sandbox: the slot is a shared mount point on the host; bwrap's
copy of it (in a less privileged mount namespace) is its slave, so a mount the host makes on the
slot's entry propagates in, read-write and locked (the sandbox has no capability to unmount it).
It needs the host's mount privilege (serve as root, as CI); without it, `slots_work()` is False
and the storage is bound from the start, as before.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import shutil
import tempfile
from pathlib import Path

MS_BIND, MS_REC, MS_SHARED = 0x1000, 0x4000, 0x100000  # linux/mount.h
MNT_DETACH = 2
_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)


def _mount(source: Path | None, target: Path, flags: int) -> None:
    src = str(source).encode() if source is not None else None
    if _libc.mount(src, str(target).encode(), None, flags, None) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"mount {source} on {target}: {os.strerror(error)}")


def _unmount(target: Path) -> None:
    _libc.umount2(str(target).encode(), MNT_DETACH)  # lazy: never blocks on a busy mount


class Slot:
    """One compute's slot: `root` (bound read-only at the mount path's parent) and `entry` in it."""

    def __init__(self, root: Path, entry: Path) -> None:
        self.root, self.entry = root, entry
        self.attached: Path | None = None

    @classmethod
    def create(cls, root: Path, entry_name: str) -> Slot:
        if root.exists():  # a slot left by a serve that was killed: its mounts first
            release_tree(root)
        (root / entry_name).mkdir(parents=True)
        slot = cls(root, root / entry_name)
        try:
            _mount(root, root, MS_BIND)  # a mount point of its own, so it can be shared
            _mount(None, root, MS_SHARED)
        except OSError:
            slot.release()
            raise
        return slot

    def attach(self, storage: Path) -> None:
        """The session's storage appears at the mount path inside the (running) sandbox."""
        _mount(storage, self.entry, MS_BIND)
        self.attached = storage

    def release(self) -> None:
        release_tree(self.root)


def release_tree(root: Path) -> None:
    """Unmount everything at or under `root` (deepest first), then delete it."""
    prefix = str(root)
    with open("/proc/self/mountinfo") as mounts:
        points = [line.split()[4] for line in mounts]
    for point in sorted((p for p in points if p == prefix or p.startswith(prefix + "/")), reverse=True):
        _unmount(Path(point))
    shutil.rmtree(root, ignore_errors=True)


@functools.cache
def slots_work() -> bool:
    """This process may make shared bind mounts (root with CAP_SYS_ADMIN on the host's namespace)."""
    if os.geteuid() != 0:
        return False
    probe = Path(tempfile.mkdtemp(prefix="agentcore-slot-probe-"))
    try:
        Slot.create(probe / "slot", "workspace").release()
        return True
    except OSError:
        return False
    finally:
        shutil.rmtree(probe, ignore_errors=True)
