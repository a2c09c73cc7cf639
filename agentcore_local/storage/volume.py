"""A filesystem of the quota's size for each session, so the kernel enforces the quota.

Where serve may mount (root, loop devices, mkfs.ext4), a session's storage directory is the
mount point of `storage.img` beside it: a sparse image file of exactly the quota's size, ext4
without a journal, no reserved blocks, root-owned root, one inode per 4 KiB (node_modules holds
many small files). A write past the cap fails inside the session with ENOSPC, as on a full 1 GB
volume on AWS, and deleting, undo and status keep working; the host's disk holds at most the
quota per session. The image is made once, at the session's first compute (~10 ms), mounted at
each start and unmounted at each stop (lazily when still busy), and made afresh at a reset.
What the kernel counts is allocated blocks: a sparse file costs only what was written to it.

A serve killed with SIGKILL leaves its mounts behind: `unmount_under` unmounts them at the next
start. Mounts go through util-linux's `mount -o loop`, whose loop device is released with its
last unmount (autoclear).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

log = logging.getLogger("agentcore_local.storage")

IMAGE = "storage.img"
MOUNT_OPTIONS = "loop,nosuid,nodev,noatime"
MNT_DETACH = 2
_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)


class VolumeError(OSError):
    """A session's filesystem could not be made or mounted (its message says why)."""


def _tool(name: str) -> str | None:
    return shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin:/usr/bin:/bin")


def _run(argv: list[str], fine: tuple[int, ...] = (0,)) -> None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise VolumeError(f"{argv[0]}: {error}") from error
    if done.returncode not in fine:
        detail = (done.stderr or done.stdout).strip().splitlines()
        raise VolumeError(f"{Path(argv[0]).name} failed: {detail[-1] if detail else done.returncode}")


def mounts_under(top: Path) -> list[Path]:
    """Mount points at or below `top` in this mount namespace, deepest first."""
    prefix = str(top)
    with open("/proc/self/mountinfo") as info:
        points = [line.split()[4].replace("\\040", " ") for line in info]
    inside = {p for p in points if p == prefix or p.startswith(prefix + "/")}
    return [Path(p) for p in sorted(inside, reverse=True)]


def unmount(target: Path) -> None:
    """Unmount `target`; a busy mount (a process still inside) is detached now, freed when idle."""
    if _libc.umount2(str(target).encode(), 0) == 0:
        return
    if _libc.umount2(str(target).encode(), MNT_DETACH) != 0:
        error = ctypes.get_errno()
        if error not in (22,):  # EINVAL: not a mount point (any more)
            raise VolumeError(error, f"umount {target}: {os.strerror(error)}")


class Volumes:
    """The per-session filesystems of one serve: every image is `size` bytes."""

    def __init__(self, size: int, mkfs: str, mount: str) -> None:
        self.size, self.mkfs, self.mount_tool = size, mkfs, mount

    @classmethod
    def probe(cls, size: int, scratch: Path) -> tuple[Volumes | None, str]:
        """Volumes when this host can make and mount them (else None), and a line that says so."""
        if os.geteuid() != 0:
            return None, "serve is not root, so it may not mount"
        mkfs, mount = _tool("mkfs.ext4"), _tool("mount")
        if not mkfs or not mount:
            return None, "mkfs.ext4 (e2fsprogs) or mount (util-linux) is missing: run make sandbox-tools"
        if not Path("/dev/loop-control").exists():
            return None, "no loop devices (/dev/loop-control is missing; try: modprobe loop)"
        volumes = cls(size, mkfs, mount)
        scratch.mkdir(parents=True, exist_ok=True)
        probe = Path(tempfile.mkdtemp(prefix="volume-probe-", dir=scratch))
        try:
            started = time.perf_counter()
            volumes.mount(probe, probe / "storage", size=4 * 2**20)
            volumes.detach(probe / "storage")
            cost = (time.perf_counter() - started) * 1000
        except OSError as error:
            return None, f"a loop-mounted filesystem could not be made here ({error})"
        finally:
            for point in mounts_under(probe):
                with contextlib.suppress(OSError):
                    unmount(point)
            shutil.rmtree(probe, ignore_errors=True)
            with contextlib.suppress(OSError):
                scratch.rmdir()
        return volumes, f"each session gets an ext4 filesystem of its quota (mkfs + mount {cost:.0f} ms)"

    def make(self, image: Path, size: int | None = None) -> None:
        """A fresh, sparse, formatted image (replacing any there)."""
        partial = image.with_name(image.name + ".new")
        with open(partial, "wb") as file:
            file.truncate(size or self.size)
        try:
            _run(
                [
                    self.mkfs, "-q", "-F", "-O", "^has_journal", "-m", "0", "-i", "4096",
                    "-E", "root_owner=0:0,nodiscard", str(partial),
                ]
            )  # fmt: skip
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        os.replace(partial, image)

    def mount(self, root: Path, files: Path, size: int | None = None) -> bool:
        """`files` (a directory in `root`) becomes the mount point of root's image, made if missing.
        False, with nothing mounted, when `files` already holds files of its own (storage from
        before volumes: it keeps the measured quota rather than being hidden under a mount)."""
        if os.path.ismount(files):
            return True
        files.mkdir(parents=True, exist_ok=True)
        image, fresh = root / IMAGE, not (root / IMAGE).exists()
        if fresh:
            with os.scandir(files) as entries:
                if next(entries, None) is not None:
                    return False
            self.make(image, size)
        elif image.stat().st_size != (size or self.size):
            self.resize(image, size or self.size)
        _run([self.mount_tool, "-t", "ext4", "-o", MOUNT_OPTIONS, str(image), str(files)])
        if fresh:  # mkfs's lost+found is no file of the session's (e2fsck makes one if ever needed)
            with contextlib.suppress(OSError):
                (files / "lost+found").rmdir()
        return True

    def resize(self, image: Path, size: int) -> None:
        """An image made under another --storage-quota, grown or shrunk to `size` (unmounted). A
        shrink below what the session holds fails: the image keeps its size (logged)."""
        e2fsck, resize2fs = _tool("e2fsck"), _tool("resize2fs")
        if not e2fsck or not resize2fs:
            log.warning("image=<%s> | kept at its size: e2fsck or resize2fs is missing", image)
            return
        old = image.stat().st_size
        try:
            if size > old:
                os.truncate(image, size)
            _run([e2fsck, "-f", "-p", str(image)], fine=(0, 1))  # 1: errors found and corrected
            _run([resize2fs, str(image), f"{size // 1024}K"])
            if size < old:
                os.truncate(image, size)
        except OSError as error:
            if size > old:
                os.truncate(image, old)
            log.warning("image=<%s> | kept at %d bytes, not resized to %d: %s", image, old, size, error)

    def detach(self, files: Path) -> None:
        """Unmount a session's filesystem (nothing when it is not mounted)."""
        for point in mounts_under(files):
            unmount(point)

    def discard(self, root: Path, files: Path) -> None:
        """The reset AWS makes: unmount, then delete the image (the next mount makes a fresh one)."""
        self.detach(files)
        (root / IMAGE).unlink(missing_ok=True)

    @staticmethod
    def holds_image(root: Path) -> bool:
        return (root / IMAGE).exists()


def unmount_under(sessions_dir: Path) -> int:
    """Unmount every session filesystem under `sessions_dir` (a killed serve's, or at exit); how many."""
    found = mounts_under(sessions_dir.resolve()) if sessions_dir.exists() else []
    for point in found:
        try:
            unmount(point)
        except OSError as error:
            log.warning("mount=<%s> | not unmounted: %s", point, error)
    return len(found)
