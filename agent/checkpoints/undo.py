"""Undo: put the workspace and the conversation back as they were before the last N turns.

Which state that is comes from the chain of checkpoints: a turn's manifest names the state it
started from (`parent`), an undo's names the state it went back to (`target`), so undoing twice
goes further back instead of undoing the undo. Files come back from the store's objects,
added ones go, modes are restored; messages written after the target are moved aside into
`.sessions/.undone/` (nothing is deleted), so FileSessionManager restores the shorter history.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
import time
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import durable
from agent import session_files as layout
from agent.checkpoints.no_room import StorageFull
from agent.checkpoints.store import CheckpointStore
from agent.checkpoints.walk import Entry

_temps = itertools.count()


class UndoError(ValueError):
    """An undo that cannot be done (too few turns kept, an object missing); nothing was changed."""


@dataclass
class UndoPlan:
    target: dict[str, Any]  # the manifest whose state comes back
    turns: list[dict[str, Any]]  # the turn manifests taken back, newest first
    keep_messages: dict[str, int] = field(default_factory=dict)  # conversation id -> messages kept


def turns_on_line(store: CheckpointStore, limit: int) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """Up to `limit` turns that led to the current state (newest first), and the state before them
    (None when fewer than `limit` turns are kept)."""
    turns: list[dict[str, Any]] = []
    manifest = store.latest()
    while manifest is not None:
        step = manifest.get("target") if manifest.get("kind") == "undo" else manifest.get("parent")
        before = store.read(step) if isinstance(step, int) else None
        if manifest.get("kind") == "turn":
            turns.append(manifest)
            if len(turns) == limit:
                return turns, before
        manifest = before
    return turns, None


def plan(store: CheckpointStore, count: int) -> UndoPlan:
    """What undoing the last `count` turns means, or UndoError saying why it cannot be done."""
    turns, target = turns_on_line(store, count)
    if target is None:
        kept = len(turns) if len(turns) < count else count - 1
        raise UndoError(
            f"cannot undo {count} turn(s): {kept} can be taken back with the checkpoints kept "
            "(older ones were pruned or there were no more turns); list them with client.py checkpoints"
        )
    keep: dict[str, int] = {}
    for turn in turns:  # newest first, so the oldest undone turn of each conversation wins
        if turn.get("conversation_id") is not None:
            keep[turn["conversation_id"]] = int(turn.get("messages_before", 0))
    return UndoPlan(target=target, turns=turns, keep_messages=keep)


def restore(
    root: Path, store: CheckpointStore, target: dict[str, Entry], now: dict[str, Entry]
) -> dict[str, list[str]]:
    """Make the workspace hold `target` again; `now` is a fresh walk. Returns what it changed.

    Deletes first (so no symlink the turns made can redirect a write), then directories,
    then files (each written beside its place and renamed in), then modes. Checks first that
    every content it needs is in the store, so a damaged store changes nothing."""
    unsafe = [
        p
        for p in target
        if p.startswith("/")
        or any(part in ("", ".", "..") for part in p.split("/"))  # one spelling per path
        or ("/" in p and target.get(p.rpartition("/")[0], {}).get("type") != "dir")
    ]
    if unsafe:  # only a forged manifest names these: a walk never goes above or through a symlink
        raise UndoError(
            f"the checkpoint names a path outside the workspace or under a non-directory: {unsafe[0]!r}"
        )
    gone = {p for p, e in now.items() if p not in target or target[p]["type"] != e["type"]}
    mkdirs, writes, modes = [], [], []
    for path, entry in target.items():
        here = None if path in gone else now.get(path)
        if entry["type"] == "dir":
            if here is None:
                mkdirs.append(path)
            elif here.get("mode") != entry.get("mode"):
                modes.append(path)
        elif (
            here is None
            or here.get("sha256") != entry.get("sha256")
            or here.get("target") != entry.get("target")
        ):
            writes.append(path)
        elif entry["type"] != "symlink" and here.get("mode") != entry.get("mode"):
            modes.append(path)
    lacking = [p for p in writes if "sha256" in target[p] and not store.has_object(target[p]["sha256"])]
    if lacking:
        raise UndoError(f"the checkpoint lacks the contents of {len(lacking)} file(s), e.g. {lacking[0]}")
    # Every stored copy checked before anything is deleted: a refused undo changes nothing.
    damaged = [p for p in writes if "sha256" in target[p] and not _intact(store, target[p]["sha256"])]
    if damaged:
        raise UndoError(
            f"the stored copy of {damaged[0]} is damaged (its hash does not match); nothing was changed"
        )
    _check_room(root, [target[p] for p in writes], [now[p] for p in gone])
    for path in sorted(gone, key=_depth, reverse=True):
        if now[path]["type"] == "dir":
            shutil.rmtree(root / path, ignore_errors=True)  # rmtree never follows symlinks
        else:
            with suppress(FileNotFoundError):
                (root / path).unlink()
    for path in sorted(mkdirs, key=_depth):
        (root / path).mkdir(mode=0o700, exist_ok=True)
    for path in writes:
        _put(root / path, target[path], store)
    for path in sorted(mkdirs + writes + modes, key=_depth, reverse=True):  # a read-only dir last
        if target[path]["type"] != "symlink":
            os.chmod(root / path, target[path]["mode"], follow_symlinks=False)
    return {"restored": mkdirs + writes, "deleted": sorted(p for p in gone if p not in target), "mode": modes}


def _check_room(root: Path, written: list[Entry], deleted: list[Entry]) -> None:
    """StorageFull, before anything changes, when the files to write back cannot fit in the free
    space and what the deletes free (deletes go first), counting a block more for each written."""
    fs = os.statvfs(root)
    need = sum(e.get("size", 0) + fs.f_frsize for e in written if e["type"] == "file")
    free = fs.f_bavail * fs.f_frsize + sum(e.get("size", 0) for e in deleted if e["type"] == "file")
    if need > free:
        raise StorageFull(
            f"undo refused: the files it writes back take {need / 2**20:.1f} MiB and {free / 2**20:.1f} "
            "MiB is free; nothing was changed. Delete files (an exec of rm) and undo again"
        )


def _intact(store: CheckpointStore, sha256: str) -> bool:
    try:
        with open(store.object_path(sha256), "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest() == sha256
    except OSError:
        return False


def _depth(path: str) -> int:
    return path.count("/")


def _put(path: Path, entry: Entry, store: CheckpointStore) -> None:
    tmp = path.with_name(f".undo-{os.getpid()}-{next(_temps)}")  # short: any name fits beside it
    with suppress(FileNotFoundError):
        tmp.unlink()
    try:
        if entry["type"] == "symlink":
            os.symlink(entry["target"], tmp)
        elif entry["type"] == "fifo":
            os.mkfifo(tmp, entry["mode"])
        else:
            digest = hashlib.sha256()
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            with (
                open(store.object_path(entry["sha256"]), "rb") as src,
                os.fdopen(os.open(tmp, flags, 0o600), "wb") as dst,
            ):
                while chunk := src.read(1 << 20):
                    digest.update(chunk)
                    dst.write(chunk)
            if digest.hexdigest() != entry["sha256"]:
                raise UndoError(f"the stored copy of {path.name} is damaged (its hash does not match)")
            os.chmod(tmp, entry["mode"])
            os.utime(tmp, ns=(time.time_ns(), int(entry["mtime"] * 1e9)))
        os.replace(tmp, path)
    except BaseException:
        with suppress(OSError):
            tmp.unlink()
        raise


_counted: dict[Path, int] = {}  # messages folder -> its last count: the next call probes from there


def stored_messages(sessions: Path, conversation_id: str) -> int:
    """How many messages FileSessionManager has written for a conversation (the next index).

    A turn asks twice, and listing a long history costs ~1 ms per 1,000 names, so this probes
    on from the last count instead: Strands numbers each new message one past the highest, so
    while the last one counted is still there, the files after it are the new ones. Anything
    else (an undo, a quarantine, a restored history) lists the folder again."""
    folder = layout.agent_dir(sessions, conversation_id) / layout.MESSAGES
    count = _counted.get(folder, 0)
    if count and os.path.lexists(folder / layout.message_name(count - 1)):
        while os.path.lexists(folder / layout.message_name(count)):
            count += 1
    else:
        try:
            numbers = [int(m.group(1)) for n in os.listdir(folder) if (m := layout.MESSAGE_FILE.fullmatch(n))]
        except FileNotFoundError:
            numbers = []
        count = max(numbers, default=-1) + 1
    _counted[folder] = count
    return count


def truncate_history(sessions: Path, conversation_id: str, keep: int) -> int:
    """Move the messages from index `keep` on into .sessions/.undone/; returns how many moved."""
    agent_dir = layout.agent_dir(sessions, conversation_id)
    folder = agent_dir / layout.MESSAGES
    later = sorted(
        (int(m.group(1)), folder / n)
        for n in (os.listdir(folder) if folder.is_dir() else [])
        if (m := layout.MESSAGE_FILE.fullmatch(n)) and int(m.group(1)) >= keep
    )
    if not later:
        return 0
    aside = sessions / ".undone" / f"{conversation_id}-{time.strftime('%Y%m%dT%H%M%S')}-{time.time_ns()}"
    aside.mkdir(parents=True)
    for _, path in reversed(later):  # newest first: a kill midway leaves a clean prefix
        os.replace(path, aside / path.name)
    state_file = agent_dir / layout.AGENT_FILE
    with suppress(OSError, ValueError):
        state = json.loads(state_file.read_text())
        manager = state.get("conversation_manager_state") or {}
        if manager.get("removed_message_count", 0) > keep:
            # The restore offset must stay inside the kept messages, or the history loads empty.
            manager["removed_message_count"] = 0
            durable.write_bytes(state_file, json.dumps(state, indent=2).encode(), fsync=False)
    return len(later)
