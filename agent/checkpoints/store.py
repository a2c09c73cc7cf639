"""Checkpoints: what each turn left in the workspace, kept inside session storage.

A small content-addressed store under `.sessions/.checkpoints/` (the layout is shared with
agent/backup/s3.py; docs/checkpoints.md):

    objects/<sha256[:2]>/<sha256>   one regular file's bytes, written once (agent/checkpoints/objects.py)
    manifests/<seq>.json            one checkpoint, written last: every entry of the workspace
                                    ("files"), or what differs from an earlier one ("base": its
                                    seq, "delta": {path: entry, or null if gone})
    HEAD                            the latest seq (a hint: the manifests directory is the truth)

Cost follows what changed: a file is read only when its size, mtime, ctime, inode or mode
differ from the previous manifest, and a manifest is a delta unless FULL_EVERY deltas chain
up (or the delta is most of the tree), so `read` materialises any checkpoint from at most
that many. Symlinks are recorded, never followed; non-regular files are never opened. Objects
go in before the manifest that names them, so a kill -9 mid-checkpoint leaves at most
unreferenced objects behind (pruned later). A write that fails (no room: agent/checkpoints/no_room.py)
rolls back: the store is as it was, and the next walk is a full one, so no change is missed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import durable
from agent.checkpoints.manifest_checks import MAX_MANIFEST_BYTES, malformed, set_aside
from agent.checkpoints.no_room import all_or_nothing
from agent.checkpoints.objects import Objects
from agent.checkpoints.walk import Walk, diff
from agent.session_files import CHECKPOINTS, SESSIONS

log = logging.getLogger(__name__)

FULL_EVERY = 16  # a delta chain is never longer: reading a checkpoint parses one full manifest at most
OBJECTS, MANIFESTS = "objects", "manifests"  # the store's two folders (docs/CONTRACT.md §6)
CACHED = 8  # materialised manifests kept in memory (the chain an undo or a listing walks)


class CheckpointStore:
    """The store API agent/backup/s3.py reads and writes. Thread-safe; one per workspace."""

    def __init__(self, workspace: Path) -> None:
        self.workspace = workspace
        self.root = workspace / SESSIONS / CHECKPOINTS
        self.objects = self.root / OBJECTS
        self.manifests = self.root / MANIFESTS
        self.lock = threading.RLock()
        self._latest: dict[str, Any] | None = None  # parsed once: the next walk compares with it
        self._bytes: int | None = None  # objects + manifests, counted once, then kept up to date
        self.files = Objects(workspace, self.objects, self._count)
        self.full_every = FULL_EVERY  # 1: every manifest whole (the bench's "before" design)
        self.last_walk: Walk | None = None  # the last walk, hashes included: the next one starts from it
        # Paths where last_walk may differ from the latest manifest (None: unknown, compare all).
        self._dirty: set[str] | None = None
        self.recheck: set[str] = set()  # written while hashed: the next update looks again
        self._cache: dict[int, tuple[tuple[int, ...], dict[str, Any]]] = {}  # seq -> (stamp, manifest)
        self.limit: Callable[[Walk], int] | None = None  # bytes new objects may take, given a walk (quota)
        self.failed: str | None = None  # why the last checkpoint was not written; None once one is

    # --- the contract's API --------------------------------------------------------------------

    def list(self) -> list[dict[str, Any]]:
        """Every manifest, oldest first (damaged ones skipped)."""
        return [m for seq in self.seqs() if (m := self.read(seq)) is not None]

    def latest(self) -> dict[str, Any] | None:
        with self.lock:
            seqs = self.seqs()
            if self._latest is not None and seqs and self._latest["seq"] == seqs[-1]:
                return self._latest
            for seq in reversed(seqs):
                if (manifest := self.read(seq)) is not None:
                    self._latest, self._dirty = manifest, None  # not the one last_walk was compared with
                    return manifest
            return None

    def object_path(self, sha256: str) -> Path:
        return self.files.path(sha256)

    def has_object(self, sha256: str) -> bool:
        return self.files.has(sha256)

    def put_object_from(self, sha256: str, source: Path | bytes) -> None:
        """Store bytes (or a file's bytes) under their hash; refuses bytes that do not match it."""
        data = source if isinstance(source, bytes) else Path(source).read_bytes()
        if hashlib.sha256(data).hexdigest() != sha256:
            raise ValueError(f"object {sha256[:12]}: the bytes do not match their hash")
        with self.lock:
            self.files.put(sha256, data)

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        """Write one manifest atomically (after its objects); it becomes the latest if its seq is highest."""
        with self.lock, all_or_nothing(self):
            self._write(manifest, None)
            self._dirty = None
            self.files.added = []

    def _write(self, manifest: dict[str, Any], stored: dict[str, Any] | None) -> None:
        """Write `manifest` (materialised) as `stored` (its delta form) or, if None, whole."""
        self.manifests.mkdir(parents=True, exist_ok=True)
        body = stored if stored is not None else {k: v for k, v in manifest.items() if k != "depth"}
        data = json.dumps(body, separators=(",", ":")).encode()
        path = self.manifests / f"{manifest['seq']:06d}.json"
        try:
            replaced = path.stat().st_size  # a prune making a delta whole again
        except OSError:
            replaced = None
        durable.write_bytes(path, data, fsync=False)
        try:
            durable.write_bytes(self.root / "HEAD", f"{self.seqs()[-1]:06d}\n".encode(), fsync=False)
        except OSError:
            if replaced is None:  # a new checkpoint goes whole or not at all: HEAD stays as it was
                path.unlink(missing_ok=True)
            raise
        if self._bytes is not None:
            self._bytes += len(data) - (replaced or 0)
        manifest["depth"] = 0 if stored is None else manifest.get("depth", 1)
        self._cache.pop(manifest["seq"], None)
        if self._latest is None or manifest["seq"] >= self._latest["seq"]:
            self._latest = manifest

    # --- beyond the contract -------------------------------------------------------------------

    def seqs(self) -> list[int]:
        try:
            names = os.listdir(self.manifests)
        except FileNotFoundError:
            return []
        except OSError as error:  # not a directory, a symlink loop: set it aside, start again
            set_aside(self.manifests, f"unreadable ({error.strerror})")
            return []
        return sorted(int(n[:-5]) for n in names if n.endswith(".json") and n[:-5].isdigit())

    def read(self, seq: int) -> dict[str, Any] | None:
        """One checkpoint with its full file list ("files"), stored whole or as a delta; None if
        it, or a manifest its delta builds on, is damaged or gone. Callers must not modify it."""
        with self.lock:
            return self._read(seq, 2 * FULL_EVERY)

    def _read(self, seq: int, hops: int) -> dict[str, Any] | None:
        if self._latest is not None and self._latest["seq"] == seq:
            return self._latest
        path = self.manifests / f"{seq:06d}.json"
        try:
            # Never a link, never a FIFO (O_NONBLOCK: opening one cannot wait), never unbounded.
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        except OSError as error:
            return set_aside(path, f"unreadable ({error.strerror})")
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_MANIFEST_BYTES:
                return set_aside(path, f"not a regular file of at most {MAX_MANIFEST_BYTES} bytes")
            stamp = (st.st_ino, st.st_mtime_ns, st.st_size)  # another writer (a restore) may replace it
            if (hit := self._cache.get(seq)) is not None and hit[0] == stamp:
                return hit[1]
            try:
                manifest = json.loads(f.read(MAX_MANIFEST_BYTES + 1))
            except (OSError, ValueError, RecursionError):  # RecursionError: nested past the parser's limit
                return set_aside(path, "not JSON, or nested past the parser's limit")
        if problem := malformed(manifest, seq):
            return set_aside(path, problem)
        delta, base = manifest.pop("delta", None), manifest.get("base")
        if isinstance(delta, dict) and isinstance(base, int) and base < seq:
            earlier = self._read(base, hops - 1) if hops > 0 else None  # a forged chain ends here
            if earlier is None:
                return None
            files = dict(earlier["files"])
            for name, entry in delta.items():
                if entry is None:
                    files.pop(name, None)
                else:
                    files[name] = entry
            manifest["files"], manifest["depth"] = files, earlier.get("depth", 0) + 1
        elif isinstance(manifest.get("files"), dict):
            manifest["depth"] = 0
        else:
            return None
        self._cache[seq] = (stamp, manifest)
        while len(self._cache) > CACHED:
            del self._cache[next(iter(self._cache))]
        return manifest

    def hash_missing(self, found: Walk, touched: set[str] | None = None) -> None:
        """Hash the files the walk could not match by stat, storing new contents as objects.
        `touched`: the paths the walk changed (agent/checkpoints/walk.py update); None: it may be any.
        New contents are refused past `limit` (StorageFull), as they are on a full filesystem."""
        with self.lock, all_or_nothing(self):
            self._dirty = None if touched is None or self._dirty is None else self._dirty | touched
            paths = list(found.files) if touched is None else [p for p in touched if p in found.files]
            self.files.room = self.limit(found) if self.limit is not None and paths else None
            try:
                for relpath in paths:
                    item = found.files[relpath]
                    unhashed = item["type"] == "file" and "sha256" not in item
                    if unhashed and not self.files.hash_in(relpath, item):
                        del found.files[relpath]  # no longer a regular file: the next walk sees what it is
                        found.keys.pop(relpath, None)
                        self.recheck.add(relpath)
                    elif item.get("ctime") == -1.0:
                        found.keys.pop(relpath, None)  # written while we read it: hash it again next time
                        self.recheck.add(relpath)
            finally:
                self.files.room = None
            self.last_walk, self.failed = found, None  # every content it names is stored now

    def differing(self, found: Walk) -> set[str]:
        """The paths whose entries differ between the latest manifest and `found` (hashed)."""
        with self.lock:
            latest = self.latest()
            before, after = (latest["files"] if latest else {}), found.files
            if self._dirty is None:
                paths = {p for p, e in after.items() if (old := before.get(p)) is not e and old != e}
                return paths | {p for p in before if p not in after}
            return {p for p in self._dirty if before.get(p) != after.get(p)}

    def checkpoint(self, found: Walk, touched: set[str] | None = None, **fields: Any) -> dict[str, Any]:
        """Store what changed since the latest manifest, then write the manifest (objects first).
        `touched` as for hash_missing. `fields` are the manifest's own: kind, outcome,
        conversation_id, messages, prompt, ..."""
        with self.lock, all_or_nothing(self):
            previous = self.latest()
            self.hash_missing(found, touched)
            before, after = (previous["files"] if previous else {}), found.files
            paths = self.differing(found)
            seq = (self.seqs() or [0])[-1] + 1
            manifest = {
                "id": f"{seq:06d}",
                "seq": seq,
                "time": time.time(),
                "prompt": None,
                **fields,
                "files": after,
                "changed": diff(before, after, paths),
            }
            delta = {p: after.get(p) for p in paths if before.get(p) != after.get(p)}
            stored = None
            depth = previous.get("depth", 0) + 1 if previous is not None else self.full_every
            if depth < self.full_every and 2 * len(delta) < len(after):
                stored = {k: v for k, v in manifest.items() if k != "files"}
                stored.update(base=previous["seq"], delta=delta)
                manifest["depth"] = depth
            self._write(manifest, stored)
            self._dirty, self.files.added = set(), []
            return manifest

    def roll_back(self) -> None:
        """After a failed write: delete the objects no manifest names yet, walk everything next time."""
        self.files.forget_added()
        self.last_walk, self._dirty, self.recheck = None, None, set()

    def _count(self, change: int) -> None:
        if self._bytes is not None:
            self._bytes += change

    def bytes(self) -> int:
        """What the store takes on disk: objects and manifests (counted once per process)."""
        with self.lock:
            if self._bytes is None:
                total = 0
                for top in (self.objects, self.manifests):
                    for base, _dirs, names in os.walk(top):
                        total += sum(os.lstat(os.path.join(base, n)).st_size for n in names)
                self._bytes = total
            return self._bytes

    def over(self, keep: int, max_bytes: int) -> bool:
        """True when more than `keep` manifests or `max_bytes` are kept (and there is something to drop)."""
        with self.lock:
            count = len(self.seqs())
            return count > 2 and (count > keep or self.bytes() > max_bytes)

    def prune(self, keep: int, max_bytes: int) -> list[int]:
        """Drop the oldest manifests past the last `keep` or past `max_bytes` (always keeping two:
        the latest and the one an undo of one turn goes back to), then every object none names.
        The oldest one kept is made whole first if it is a delta, so every kept one stays readable."""
        with self.lock:
            seqs = self.seqs()
            if not self.over(keep, max_bytes):
                return []
            kept = {seq: m for seq in seqs if (m := self.read(seq)) is not None}
            named: set[str] = set()
            dropped = []
            while len(seqs) > 2 and (len(seqs) > keep or self.bytes() > max_bytes):
                seq, oldest = seqs.pop(0), seqs[0]
                if kept.get(oldest, {}).get("depth", 0) > 0:  # stored as a delta on what goes now
                    whole = {k: v for k, v in kept[oldest].items() if k not in ("base", "depth")}
                    self._write(whole, None)  # atomic: a kill leaves the delta, still readable
                    kept[oldest] = whole
                path = self.manifests / f"{seq:06d}.json"
                self._bytes = self.bytes() - path.stat().st_size
                path.unlink()
                self._cache.pop(seq, None)
                gone = kept.pop(seq, None)
                named = set().union(*(_shas(m) for m in kept.values()))  # O(kept x files), after the answer
                for sha in _shas(gone or {}) - named:
                    self.files.remove(sha)
                dropped.append(seq)
            self.files.collect_strays(named)
            log.info("checkpoints=<%s> | pruned; %d bytes kept", dropped, self.bytes())
            return dropped


def _shas(manifest: dict[str, Any]) -> set[str]:
    return {e["sha256"] for e in manifest.get("files", {}).values() if e.get("sha256")}


def missing_paths(store: CheckpointStore, found: Walk) -> list[str]:
    """The hook for a restore from backup: files the latest manifest has and the workspace lacks.

    A restorer fills only these (never a path that exists: nothing newer is overwritten)."""
    latest = store.latest()
    if latest is None:
        return []
    return [p for p, e in latest["files"].items() if p not in found.files and e["type"] != "dir"]
