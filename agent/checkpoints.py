"""Checkpoints: what each turn left in the workspace, kept inside session storage.

A small content-addressed store under `.sessions/.checkpoints/` (the layout is shared with
agent/backup.py; README "Checkpoints, undo and storage"):

    objects/<sha256[:2]>/<sha256>   one regular file's bytes, written once (temp file + rename)
    manifests/<seq>.json            every entry of the workspace at one checkpoint, written last
    HEAD                            the latest seq (a hint: the manifests directory is the truth)

Cost follows what changed: the walk is lstat only, and a file is read only when its size,
mtime, ctime, inode or mode differ from the previous manifest. Symlinks are recorded, never
followed; non-regular files are never opened. Objects go in before the manifest that names
them, so a kill -9 mid-checkpoint leaves at most unreferenced objects behind (pruned later).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import stat
import tempfile
import threading
import time
from collections import Counter
from contextlib import suppress
from pathlib import Path
from typing import Any

from agent.walk import HIDDEN, STORE, Entry, Walk, diff

log = logging.getLogger(__name__)

SMALL = 1 << 20  # files up to this size are read whole, so a known object costs no temp file


class CheckpointStore:
    """The store API agent/backup.py reads and writes. Thread-safe; one per workspace."""

    def __init__(self, workspace: Path) -> None:
        self.workspace = workspace
        self.root = workspace / HIDDEN / STORE
        self.objects = self.root / "objects"
        self.manifests = self.root / "manifests"
        self.lock = threading.RLock()
        self._latest: dict[str, Any] | None = None  # parsed once: the next walk compares with it
        self._bytes: int | None = None  # objects + manifests, counted once, then kept up to date
        self._refs: Counter[str] | None = None  # how many manifests name each object
        self._dirs: set[str] = set()
        self.last_walk: Walk | None = None  # the last walk, hashes included: the next one starts from it
        self._fragments: dict[str, tuple[Entry, str]] = {}  # path -> (entry, its JSON text)

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
                    self._latest = manifest
                    return manifest
            return None

    def object_path(self, sha256: str) -> Path:
        return self.objects / sha256[:2] / sha256

    def has_object(self, sha256: str) -> bool:
        return self.object_path(sha256).is_file()

    def put_object_from(self, sha256: str, source: Path | bytes) -> None:
        """Store bytes (or a file's bytes) under their hash; refuses bytes that do not match it."""
        data = source if isinstance(source, bytes) else Path(source).read_bytes()
        if hashlib.sha256(data).hexdigest() != sha256:
            raise ValueError(f"object {sha256[:12]}: the bytes do not match their hash")
        with self.lock:
            self._put(sha256, data)

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        """Write one manifest atomically (after its objects); it becomes the latest if its seq is highest."""
        with self.lock:
            self.manifests.mkdir(parents=True, exist_ok=True)
            data = self._encode(manifest)
            _atomic_write(self.manifests / f"{manifest['seq']:06d}.json", data)
            _atomic_write(self.root / "HEAD", f"{self.seqs()[-1]:06d}\n".encode())
            if self._bytes is not None:
                self._bytes += len(data)
            if self._refs is not None:
                self._refs.update(_shas(manifest))
            if self._latest is None or manifest["seq"] >= self._latest["seq"]:
                self._latest = manifest

    def _encode(self, manifest: dict[str, Any]) -> bytes:
        """The manifest's JSON, reusing the text of every entry the walk carried over unchanged."""
        cache, fresh, parts = self._fragments, {}, []
        for path, entry in manifest["files"].items():
            hit = cache.get(path)
            if hit is None or hit[0] is not entry:
                hit = (entry, f"{json.dumps(path)}:{json.dumps(entry, separators=(',', ':'))}")
            fresh[path] = hit
            parts.append(hit[1])
        self._fragments = fresh
        head = json.dumps({k: v for k, v in manifest.items() if k != "files"}, separators=(",", ":"))
        return (head[:-1] + ',"files":{' + ",".join(parts) + "}}").encode()

    # --- beyond the contract -------------------------------------------------------------------

    def seqs(self) -> list[int]:
        try:
            names = os.listdir(self.manifests)
        except FileNotFoundError:
            return []
        return sorted(int(n[:-5]) for n in names if n.endswith(".json") and n[:-5].isdigit())

    def read(self, seq: int) -> dict[str, Any] | None:
        if self._latest is not None and self._latest["seq"] == seq:
            return self._latest
        try:
            manifest = json.loads((self.manifests / f"{seq:06d}.json").read_bytes())
        except (OSError, ValueError):
            return None
        return manifest if isinstance(manifest, dict) and isinstance(manifest.get("files"), dict) else None

    def hash_missing(self, found: Walk) -> None:
        """Hash the files the walk could not match by stat, storing new contents as objects."""
        with self.lock:
            for relpath, item in list(found.files.items()):
                if item["type"] == "file" and "sha256" not in item and not self._hash_in(relpath, item):
                    del found.files[relpath]  # no longer a regular file: the next walk sees what it is
                    found.keys.pop(relpath, None)
                elif item.get("ctime") == -1.0:
                    found.keys.pop(relpath, None)  # written while we read it: hash it again next time
            self.last_walk = found

    def checkpoint(self, found: Walk, **fields: Any) -> dict[str, Any]:
        """Store what changed since the latest manifest, then write the manifest (objects first).
        `fields` are the manifest's own: kind, outcome, conversation_id, messages, prompt, ..."""
        with self.lock:
            previous = self.latest()
            self.hash_missing(found)
            seq = (self.seqs() or [0])[-1] + 1
            manifest = {
                "id": f"{seq:06d}",
                "seq": seq,
                "time": time.time(),
                "prompt": None,
                **fields,
                "files": found.files,
                "changed": diff(previous["files"] if previous else {}, found.files),
            }
            self.write_manifest(manifest)
            return manifest

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
        the latest and the one an undo of one turn goes back to), then every object none names."""
        with self.lock:
            seqs = self.seqs()
            if not self.over(keep, max_bytes):
                return []
            if self._refs is None:
                self._refs = Counter()
                for seq in seqs:
                    self._refs.update(_shas(self.read(seq) or {}))
            dropped = []
            while len(seqs) > 2 and (len(seqs) > keep or self.bytes() > max_bytes):
                seq = seqs.pop(0)
                manifest = self.read(seq) or {}
                path = self.manifests / f"{seq:06d}.json"
                self._bytes = self.bytes() - path.stat().st_size
                path.unlink()
                self._refs.subtract(_shas(manifest))
                for sha in [s for s in _shas(manifest) if self._refs[s] <= 0]:
                    del self._refs[sha]
                    self._remove_object(sha)
                dropped.append(seq)
            self._collect_strays()
            log.info("checkpoints=<%s> | pruned; %d bytes kept", dropped, self.bytes())
            return dropped

    # --- objects -------------------------------------------------------------------------------

    def _hash_in(self, relpath: str, item: Entry) -> bool:
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
                data = _read_all(fd)
                sha = hashlib.sha256(data).hexdigest()
                if not self.has_object(sha):
                    self._put(sha, data)
            else:
                sha = self._put_stream(fd)
            after = os.fstat(fd)
        finally:
            os.close(fd)
        item["sha256"] = sha
        if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
            item["ctime"] = -1.0  # written while we read it: hash it again next time
        return True

    def _object_dir(self, sha: str) -> Path:
        folder = self.objects / sha[:2]
        if sha[:2] not in self._dirs:
            folder.mkdir(parents=True, exist_ok=True)
            self._dirs.add(sha[:2])
        return folder

    def _put(self, sha: str, data: bytes) -> None:
        if self.has_object(sha):
            return
        _atomic_write(self._object_dir(sha) / sha, data)
        if self._bytes is not None:
            self._bytes += len(data)

    def _put_stream(self, fd: int) -> str:
        """Copy a large file into a temp object while hashing it, then name it by its hash."""
        self.objects.mkdir(parents=True, exist_ok=True)
        out, tmp = tempfile.mkstemp(dir=self.objects, prefix=".tmp-")
        digest, size = hashlib.sha256(), 0
        try:
            while chunk := os.read(fd, SMALL):
                digest.update(chunk)
                os.write(out, chunk)
                size += len(chunk)
            os.close(out)
            sha = digest.hexdigest()
            if self.has_object(sha):
                os.unlink(tmp)
            else:
                os.replace(tmp, self._object_dir(sha) / sha)
                if self._bytes is not None:
                    self._bytes += size
            return sha
        except BaseException:
            with suppress(OSError):
                os.close(out)
            with suppress(OSError):
                os.unlink(tmp)
            raise

    def _remove_object(self, sha: str) -> None:
        path = self.object_path(sha)
        with suppress(OSError):
            size = path.stat().st_size
            path.unlink()
            self._bytes = self.bytes() - size

    def _collect_strays(self) -> None:
        """Temp files and unnamed objects a killed checkpoint left behind."""
        refs = self._refs or Counter()
        for base, _dirs, names in os.walk(self.objects):
            for name in names:
                if name.startswith(".tmp-") or name not in refs:
                    path = Path(base, name)
                    with suppress(OSError):
                        size = path.stat().st_size
                        path.unlink()
                        self._bytes = self.bytes() - size


def _shas(manifest: dict[str, Any]) -> set[str]:
    return {e["sha256"] for e in manifest.get("files", {}).values() if e.get("sha256")}


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, SMALL + 1):
        chunks.append(chunk)
    return b"".join(chunks)


_temps = itertools.count()


def _atomic_write(path: Path, data: bytes) -> None:
    """Temp file in the same directory, then rename: a reader sees the old file or the new one."""
    tmp = f"{path.parent}/.tmp-{os.getpid()}-{next(_temps)}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp)
        raise


def missing_paths(store: CheckpointStore, found: Walk) -> list[str]:
    """The hook for a restore from backup: files the latest manifest has and the workspace lacks.

    A restorer fills only these (never a path that exists: nothing newer is overwritten)."""
    latest = store.latest()
    if latest is None:
        return []
    return [p for p, e in latest["files"].items() if p not in found.files and e["type"] != "dir"]
