"""The checkpoint walk: every entry of the workspace by lstat, and how two walks differ.

Iterative (any depth), never follows a symlink (it is recorded with its target), never opens
anything: reading a file's bytes is the store's job, and only for regular files. `.sessions/`
is not part of the project (history is captured by message count), so the walk never enters
it; its bytes are counted for usage by agent/checkpoints/history_bytes.py, the store's by the store.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.session_files import SESSIONS

Watch = Callable[[str, str], None]  # (relpath + "/" or "" for the root, absolute path) before a listing
Entry = dict[str, Any]


@dataclass
class Walk:
    """One lstat walk of the workspace: its manifest entries and what the storage holds."""

    files: dict[str, Entry] = field(default_factory=dict)
    keys: dict[str, tuple[int, ...]] = field(default_factory=dict)  # a file's stat, to spot a change
    bytes: int = 0  # apparent size of the project's files and symlinks (like du --apparent-size)
    count: int = 0  # files, symlinks and FIFOs (directories not counted)
    skipped: list[str] = field(default_factory=list)  # unreadable directories, sockets, devices


def _unchanged(old: Entry, st: os.stat_result) -> bool:
    """A manifest entry (read from disk, no stat key in memory) against a file's stat."""
    return (
        old.get("type") == "file"
        and "sha256" in old
        and old.get("size") == st.st_size
        and old.get("mtime") == st.st_mtime_ns / 1e9
        and old.get("ctime") == st.st_ctime_ns / 1e9
        and old.get("ino") == st.st_ino
        and old.get("mode") == stat.S_IMODE(st.st_mode)
    )


def walk(
    root: Path,
    previous: dict[str, Entry] | None = None,
    before: Walk | None = None,
    watch: Watch | None = None,
) -> Walk:
    """Walk `root` without following symlinks, iteratively (any depth). A file whose stat matches
    the last walk (`before`) or a manifest (`previous`) keeps its entry: the same object, hash
    included, so diff and JSON skip it. The others are left for the store to hash. `watch` is
    called for each project directory before it is listed (agent/checkpoints/watch.py's Tracker.watch)."""
    if before is not None:
        previous, known = before.files, before.keys
    else:
        previous, known = previous or {}, {}
    out = Walk()
    out.count, out.bytes = _scan(out, [("", str(root))], previous, known, watch)
    return out


def _scan(
    out: Walk,
    stack: list[tuple[str, str]],
    previous: dict[str, Entry],
    known: dict[str, tuple[int, ...]],
    watch: Watch | None,
) -> tuple[int, int]:
    """The walk's loop, from the directories on `stack`: the (count, bytes) it found."""
    files, keys = out.files, out.keys
    count = size = 0  # locals: attribute updates cost a third of the loop
    while stack:
        prefix, path = stack.pop()
        if watch is not None:
            watch(prefix, path)
        try:
            # By descriptor: each stat then resolves one name, not the whole path, and a
            # directory swapped for a symlink since it was listed is refused, not followed.
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as error:  # vanished, unreadable, or a path too long: note it, go on
            out.skipped.append(f"{prefix or './'}: {error.strerror}")
            continue
        with _closing(fd), os.scandir(fd) as entries:
            for entry in entries:
                if not prefix and entry.name == SESSIONS:
                    continue
                relpath = prefix + entry.name
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue  # removed while we walked
                mode = st.st_mode
                kind = mode & 0o170000
                if kind == stat.S_IFREG:
                    count += 1
                    size += st.st_size
                    key = keys[relpath] = (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, mode)
                    old = previous.get(relpath)
                    if old is not None and (known.get(relpath) == key if known else _unchanged(old, st)):
                        files[relpath] = old
                        continue
                elif kind == stat.S_IFDIR:
                    stack.append((relpath + "/", f"{path}/{entry.name}"))
                else:
                    count += 1
                item = _entry(entry.name, st, fd)
                if item is None:
                    out.skipped.append(f"{relpath}: not a file, directory, symlink or FIFO")
                    continue
                if item["type"] == "symlink":
                    size += st.st_size
                old = previous.get(relpath)
                files[relpath] = old if old == item else item
    return count, size


def _weight(entry: Entry) -> tuple[int, int]:
    """What an entry adds to a walk's (count, bytes)."""
    kind = entry["type"]
    if kind == "dir":
        return 0, 0
    if kind == "symlink":
        return 1, len(os.fsencode(entry["target"]))
    return 1, entry.get("size", 0)


def update(
    root: Path, before: Walk, paths: Iterable[str], watch: Watch | None, created: Iterable[str] = ()
) -> tuple[Walk, set[str]]:
    """The walk of `root` from the last one and the paths that may have changed since (from
    agent/checkpoints/watch.py): only those are lstat-ed; a directory `created` since is watched and then
    walked. Returns the walk and the paths whose entries it replaced, added or removed."""
    created = set(created)
    out = Walk(files=dict(before.files), keys=dict(before.keys), skipped=[])
    files, keys, touched = out.files, out.keys, set()
    count, size = before.count, before.bytes

    def drop(path: str, subtree: bool) -> None:
        nonlocal count, size
        doomed = [path]
        if subtree and files.get(path, {}).get("type") == "dir":
            doomed += [p for p in files if p.startswith(path + "/")]  # O(files): only when a dir goes
        for p in doomed:
            if (old := files.pop(p, None)) is not None:
                keys.pop(p, None)
                touched.add(p)
                c, s = _weight(old)
                count, size = count - c, size - s

    for path in sorted(set(paths), key=lambda p: p.count("/")):  # parents first
        parent = path.rpartition("/")[0]
        if path.split("/", 1)[0] == SESSIONS or (parent and files.get(parent, {}).get("type") != "dir"):
            drop(path, True)  # under a directory that is gone or no directory now
            continue
        full = f"{root}/{path}"
        try:
            st = os.lstat(full)
        except OSError:
            drop(path, True)
            continue
        old = files.get(path)
        is_dir = stat.S_ISDIR(st.st_mode)
        if old is not None and old["type"] == "dir" and (not is_dir or path in created):
            drop(path, True)  # gone, or made anew (its old watch went with the old one)
            old = None
        if stat.S_ISREG(st.st_mode):
            key = (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_mode)
            if old is not None and keys.get(path) == key:
                continue
            keys[path] = key
        item = _entry(full, st)
        if item is None:
            drop(path, False)
            out.skipped.append(f"{path}: not a file, directory, symlink or FIFO")
            continue
        if old == item:
            continue
        if old is not None:
            drop(path, False)
        files[path] = item
        touched.add(path)
        if is_dir and old is None:  # new: watch it, then list it (what is made meanwhile is seen)
            sub = Walk()
            c, s = _scan(sub, [(path + "/", full)], before.files, before.keys, watch)
            files.update(sub.files)
            keys.update(sub.keys)
            touched.update(sub.files)
            out.skipped += sub.skipped
            count, size = count + c, size + s
        else:
            c, s = _weight(item)
            count, size = count + c, size + s
    out.count, out.bytes = count, size
    return out, touched


def after_restore(root: Path, state: dict[str, Entry], before: Walk, touched: list[str]) -> Walk:
    """The walk of a workspace just restored to `state`, without walking it: paths the restore
    wrote or chmod-ed are lstat-ed afresh (their hashes come from `state`), the rest is `before`."""
    out = Walk()
    again = set(touched)
    for path, entry in state.items():
        item = None if path in again else before.files.get(path)
        if item is None:
            st = os.lstat(root / path)
            item = _entry(str(root / path), st)
            if item is None:
                continue
            if item["type"] == "file":
                item["sha256"] = entry["sha256"]
                out.keys[path] = (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_mode)
        elif path in before.keys:
            out.keys[path] = before.keys[path]
        out.files[path] = item
        if item["type"] != "dir":
            out.count += 1
            out.bytes += item.get("size", len(item.get("target", "")))
    return out


class _closing:
    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __enter__(self) -> int:
        return self.fd

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)


def _entry(path: str, st: os.stat_result, dir_fd: int | None = None) -> Entry | None:
    mode = stat.S_IMODE(st.st_mode)
    if stat.S_ISREG(st.st_mode):
        return {
            "type": "file",
            "size": st.st_size,
            "mode": mode,
            "mtime": st.st_mtime_ns / 1e9,
            "ctime": st.st_ctime_ns / 1e9,  # changes with any write or chmod, even a faked mtime
            "ino": st.st_ino,
        }
    if stat.S_ISDIR(st.st_mode):
        return {"type": "dir", "mode": mode}
    if stat.S_ISLNK(st.st_mode):
        try:
            return {"type": "symlink", "target": os.readlink(path, dir_fd=dir_fd)}
        except OSError:
            return None
    if stat.S_ISFIFO(st.st_mode):
        return {"type": "fifo", "mode": mode}
    return None  # sockets and devices: nothing to keep, and session storage refuses them anyway


def content(entry: Entry) -> tuple[Any, ...]:
    """What an entry holds, mode aside: two entries with equal content need no restore."""
    return (entry["type"], entry.get("sha256"), entry.get("target"))


def diff(
    before: dict[str, Entry], after: dict[str, Entry], paths: Iterable[str] | None = None
) -> dict[str, list[str]]:
    """Added, modified (content or type), deleted, and mode-only changes from `before` to `after`;
    with `paths`, only among those (the others are known to be the same)."""
    changed: dict[str, list[str]] = {"added": [], "modified": [], "deleted": [], "mode": []}
    for path in after if paths is None else sorted(paths):
        entry, old = after.get(path), before.get(path)
        if old is entry:
            continue
        if entry is None:
            changed["deleted"].append(path)
        elif old is None:
            changed["added"].append(path)
        elif content(old) != content(entry):
            changed["modified"].append(path)
        elif old.get("mode") != entry.get("mode"):
            changed["mode"].append(path)
    if paths is None:
        changed["deleted"] = [path for path in before if path not in after]
    return changed


def verify(manifest: dict[str, Entry], now: dict[str, Entry]) -> dict[str, list[str]]:
    """What is missing from the workspace, or differs, against a manifest (size, mode, mtime, hash)."""
    missing, changed = [], []
    for path, entry in manifest.items():
        found = now.get(path)
        if found is None:
            missing.append(path)
        elif content(found) != content(entry) or any(
            found.get(k) != entry.get(k) for k in ("size", "mode", "mtime")
        ):
            changed.append(path)
    return {"missing": missing, "changed": changed}
