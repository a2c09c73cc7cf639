"""Placing a backup's entries into the workspace: every path resolved race-free below it.

check_manifest (agent/backup/files.py) refuses what no honest checkpoint holds before anything is
written; here every parent directory is opened one component at a time with O_NOFOLLOW from the
workspace's own descriptor (agent.workspace's resolver), so a symlink, whether the backup's own or
one an exec made or swapped in meanwhile, refuses its entry rather than redirecting it: nothing
lands in `.sessions/` but the history, nothing outside the workspace. Each file is written to a
temp name in the store's staging directory and renamed in, so a kill -9 leaves the old entry or
the new one, and a rerun finishes.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from pathlib import Path

from agent.backup.files import DamagedBackup, Store
from agent.session_files import SESSIONS
from agent.tools.workspace import OutsideWorkspace, Workspace

PLACERS = 8  # threads writing files into the workspace


@contextmanager
def _parent_of(workspace: Path, parts: list[str], made: bool) -> Iterator[int]:
    """A descriptor of the directory holding `parts[-1]`, every component opened with O_NOFOLLOW
    from the workspace's own descriptor (agent.workspace's resolver): a symlink already there or
    swapped in mid-restore, its own entries' or an exec's, refuses the entry instead of redirecting it."""
    rel = "/".join(parts)
    try:
        with Workspace(workspace).directory(rel, parts[:-1], create=made) as parent:
            yield parent
    except OutsideWorkspace as refused:
        raise DamagedBackup(f"restore of {rel!r} refused: {refused}") from None


def _place_file(store: Store, source: Path, parent: int, name: str, entry: dict, replace: bool) -> bool:
    """Copy `source` beside nothing (the store's staging), then rename it in under `parent`; with
    replace=False never overwrite (False if something is there)."""
    tmp = store.temp_path()
    try:
        shutil.copyfile(source, tmp)
        os.chmod(tmp, entry.get("mode", 0o644))
        if "mtime" in entry:
            os.utime(tmp, (entry["mtime"], entry["mtime"]))
        if replace:
            os.replace(tmp, name, dst_dir_fd=parent)
            return True
        try:
            os.link(tmp, name, dst_dir_fd=parent, follow_symlinks=False)  # the no-clobber rename
        except FileExistsError:
            return False
        except OSError as e:  # a file system without hard links
            if e.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK):
                raise
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            with open(os.open(name, flags, entry.get("mode", 0o644), dir_fd=parent), "wb") as out:
                with open(tmp, "rb") as src:
                    shutil.copyfileobj(src, out)
                os.fchmod(out.fileno(), entry.get("mode", 0o644))
        return True
    finally:
        tmp.unlink(missing_ok=True)


def _place_symlink(store: Store, target_text: str, parent: int, name: str, replace: bool) -> bool:
    if not replace:
        try:
            os.symlink(target_text, name, dir_fd=parent)
        except FileExistsError:
            return False
        return True
    tmp = store.temp_path()  # in the staging directory, on the workspace's file system
    os.symlink(target_text, tmp)
    os.replace(tmp, name, dst_dir_fd=parent)
    return True


def _make_dir(workspace: Path, rel: str, mode: int | None) -> bool:
    """Make `rel` (and its parents) without following a link; set its mode through its own
    descriptor. Returns whether something was already there."""
    parts = rel.split("/")
    with _parent_of(workspace, parts, made=True) as parent:
        try:
            os.stat(parts[-1], dir_fd=parent, follow_symlinks=False)
            existed = True
        except FileNotFoundError:
            existed = False
        with suppress(FileExistsError):
            os.mkdir(parts[-1], 0o700, dir_fd=parent)
        if mode is not None:
            _chmod_dir(parent, parts[-1], mode, rel)
    return existed


def _chmod_dir(parent: int, name: str, mode: int, rel: str) -> None:
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(name, flags, dir_fd=parent)
    except OSError as e:
        raise DamagedBackup(f"restore of {rel!r} refused: it is not a directory here") from e
    try:
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


def materialize(
    store: Store, files: dict[str, dict], only: list[str] | None = None, dir_modes: bool = False
) -> tuple[list, list]:
    """Write manifest entries into the workspace from the store's objects (check_manifest first).

    only=None: every entry, replacing what is there (a restore into empty storage, or its rerun).
    only=[paths]: just those, never replacing anything that exists. Returns (written, kept).
    dir_modes: every directory listed gets its mode, also one already there (a rerun's own).
    """
    replace = only is None
    chosen = sorted(files) if only is None else sorted(p for p in only if p in files)
    written, kept = [], []
    dirs = [p for p in chosen if files[p]["type"] == "dir"]
    for rel in dirs:
        existed = _make_dir(store.workspace, rel, None)
        (kept if existed and not replace else written).append(rel)

    def place(rel: str) -> bool:
        entry, parts = files[rel], rel.split("/")
        with _parent_of(store.workspace, parts, made=True) as parent:
            if entry["type"] == "file":
                source = store.object_path(entry["sha256"])
                return _place_file(store, source, parent, parts[-1], entry, replace)
            return _place_symlink(store, entry["target"], parent, parts[-1], replace)

    leaves = [p for p in chosen if files[p]["type"] != "dir"]  # never under a symlink: check_manifest
    with ThreadPoolExecutor(PLACERS) as pool:  # file creation waits on the disk, not the CPU
        for rel, done in zip(leaves, pool.map(place, leaves), strict=True):
            (written if done else kept).append(rel)
    new_dirs = set(written)
    for rel in reversed(dirs):  # modes last and deepest first: a read-only dir must not block its children
        if rel in new_dirs or dir_modes:
            parts = rel.split("/")
            with _parent_of(store.workspace, parts, made=False) as parent:
                _chmod_dir(parent, parts[-1], files[rel].get("mode", 0o755), rel)
    return written, kept


def materialize_history(store: Store, history: dict[str, dict]) -> None:
    """Put the conversation's files back under `.sessions/` (directories private, as Strands makes them)."""
    for rel, entry in sorted(history.items()):
        parts = [SESSIONS, *rel.split("/")]
        if entry.get("type") == "dir":
            _make_dir(store.workspace, "/".join(parts), 0o700)
            continue
        with _parent_of(store.workspace, parts, made=True) as parent:
            mode = {"mode": entry.get("mode", 0o600)}
            _place_file(store, store.object_path(entry["sha256"]), parent, parts[-1], mode, True)
