"""The checkpoint walk: every entry of the workspace by lstat, and how two walks differ.

Iterative (any depth), never follows a symlink (it is recorded with its target), never opens
anything: reading a file's bytes is the store's job, and only for regular files. `.sessions/`
is not part of the project (history is captured by message count) but is counted for usage;
the checkpoint store inside it is counted by the store itself.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HIDDEN = ".sessions"  # conversation history: captured by message count, not copied
STORE = ".checkpoints"  # under HIDDEN
Entry = dict[str, Any]


@dataclass
class Walk:
    """One lstat walk of the workspace: its manifest entries and what the storage holds."""

    files: dict[str, Entry] = field(default_factory=dict)
    keys: dict[str, tuple[int, ...]] = field(default_factory=dict)  # a file's stat, to spot a change
    bytes: int = 0  # apparent size of the project's files and symlinks (like du --apparent-size)
    hidden_bytes: int = 0  # conversation history under .sessions/ (the checkpoint store not included)
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


def walk(root: Path, previous: dict[str, Entry] | None = None, before: Walk | None = None) -> Walk:
    """Walk `root` without following symlinks, iteratively (any depth). A file whose stat matches
    the last walk (`before`) or a manifest (`previous`) keeps its entry: the same object, hash
    included, so diff and JSON skip it. The others are left for the store to hash."""
    if before is not None:
        previous, known = before.files, before.keys
    else:
        previous, known = previous or {}, {}
    out = Walk()
    files, keys = out.files, out.keys
    count = size = hidden_size = 0  # locals: attribute updates cost a third of the loop
    skip = f"{HIDDEN}/{STORE}"
    stack: list[tuple[str, str, bool]] = [("", str(root), False)]
    while stack:
        prefix, path, hidden = stack.pop()
        try:
            # By descriptor: each stat then resolves one name, not the whole path, and a
            # directory swapped for a symlink since it was listed is refused, not followed.
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as error:  # vanished, unreadable, or a path too long: note it, go on
            out.skipped.append(f"{prefix or './'}: {error.strerror}")
            continue
        with _closing(fd), os.scandir(fd) as entries:
            for entry in entries:
                relpath = prefix + entry.name
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue  # removed while we walked
                mode = st.st_mode
                kind = mode & 0o170000
                if hidden or (not prefix and entry.name == HIDDEN):
                    if kind == stat.S_IFDIR:
                        if relpath != skip:
                            stack.append((relpath + "/", f"{path}/{entry.name}", True))
                    else:
                        hidden_size += st.st_size
                    continue
                if kind == stat.S_IFREG:
                    count += 1
                    size += st.st_size
                    key = keys[relpath] = (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, mode)
                    old = previous.get(relpath)
                    if old is not None and (known.get(relpath) == key if known else _unchanged(old, st)):
                        files[relpath] = old
                        continue
                elif kind == stat.S_IFDIR:
                    stack.append((relpath + "/", f"{path}/{entry.name}", False))
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
    out.count, out.bytes, out.hidden_bytes = count, size, hidden_size
    return out


def after_restore(root: Path, state: dict[str, Entry], before: Walk, touched: list[str]) -> Walk:
    """The walk of a workspace just restored to `state`, without walking it: paths the restore
    wrote or chmod-ed are lstat-ed afresh (their hashes come from `state`), the rest is `before`."""
    out = Walk(hidden_bytes=before.hidden_bytes)
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


def diff(before: dict[str, Entry], after: dict[str, Entry]) -> dict[str, list[str]]:
    """Added, modified (content or type), deleted, and mode-only changes from `before` to `after`."""
    changed: dict[str, list[str]] = {"added": [], "modified": [], "deleted": [], "mode": []}
    for path, entry in after.items():
        old = before.get(path)
        if old is entry:
            continue
        if old is None:
            changed["added"].append(path)
        elif content(old) != content(entry):
            changed["modified"].append(path)
        elif old.get("mode") != entry.get("mode"):
            changed["mode"].append(path)
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
