"""The local side of backups: the checkpoint store's layout on disk, and files written back from it.

The layout is the contract in docs/CONTRACT.md §6 (agent/checkpoints/store.py owns the store and is
the one reader of manifests, which may be deltas on earlier ones); this module reads objects
and checks what a restore would bring back (agent/backup/placement.py writes it).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import shutil
import stat
import threading
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path, PurePosixPath
from typing import Any

import durable
from agent.checkpoints.store import MANIFESTS, OBJECTS, CheckpointStore
from agent.session_files import CHECKPOINTS, SESSION_PREFIX, SESSIONS, is_temp_file

STORE = Path(SESSIONS) / CHECKPOINTS
STAGING = "backup-tmp"  # temp files of a restore; emptied at the start of the next one
SHA256 = re.compile(r"[0-9a-f]{64}")


class DamagedBackup(ValueError):
    """A manifest names a path or object that no honest checkpoint could hold."""


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (durable: a temporary file in the same directory, then a rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    durable.write_bytes(path, json_bytes(data), fsync=False)  # json_bytes: the C encoder, 10 x faster


def read_log(path: Path) -> tuple[dict[str, Any], int]:
    """A JSON-lines map (`[key, value]` a line, the last one for a key wins) and its line count;
    a line a kill cut short is skipped."""
    found: dict[str, Any] = {}
    lines = 0
    with suppress(FileNotFoundError), path.open("rb") as log:
        for line in log:
            lines += 1
            with suppress(ValueError, TypeError):
                key, value = json.loads(line)
                found[key] = value
    return found, lines


def append_log(path: Path, entries: dict[str, Any], rewrite: bool = False) -> None:
    """Add entries to a JSON-lines map, or (rewrite) replace it with them atomically."""
    body = b"".join(json_bytes([k, v]) + b"\n" for k, v in entries.items())
    if rewrite:
        path.parent.mkdir(parents=True, exist_ok=True)
        durable.write_bytes(path, body, fsync=False)
    elif body:
        with path.open("ab") as out:  # a kill mid-line leaves one bad line, skipped on reading
            out.write(b"\n" + body)


def json_bytes(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()


def parse_json(raw: bytes | str) -> dict | None:
    """A JSON object, or None for anything else (damaged, truncated, not an object)."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: nested past the parser's limit
        return None
    return data if isinstance(data, dict) else None


MAX_JSON_BYTES = 64 * 2**20  # a manifest of MAX_ENTRIES entries is ~40 MB


def read_json(path: Path) -> dict | None:
    """A JSON object from a regular file (never a link, a FIFO, or more than MAX_JSON_BYTES), or None."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_JSON_BYTES:
            return None
        return parse_json(f.read(MAX_JSON_BYTES + 1))


_readers: dict[Path, CheckpointStore] = {}  # one per workspace: what it read stays cached between pushes
_readers_guard = threading.Lock()


def _reader(workspace: Path) -> CheckpointStore:
    with _readers_guard:
        if workspace not in _readers:
            _readers[workspace] = CheckpointStore(workspace)
        return _readers[workspace]


class Store:
    """The checkpoint store as laid out on disk: manifests/<seq>.json and objects/<sha[:2]>/<sha>."""

    def __init__(self, workspace: Path) -> None:
        self.workspace = workspace
        self.root = workspace / STORE
        self._names = itertools.count()
        self._staged = False
        self._reader = _reader(workspace)

    def seqs(self) -> list[int]:
        """The checkpoints' seqs from the manifests' names (`<seq>.json`), oldest first; nothing is parsed."""
        try:
            names = os.listdir(self.root / MANIFESTS)
        except FileNotFoundError:
            return []
        return sorted(int(n[:-5]) for n in names if n.endswith(".json") and n[:-5].isdigit())

    def manifests(self, after: int = -1) -> list[dict]:
        """Readable manifests with seq > `after`, oldest first, each with its full file list
        (materialised by agent/checkpoints/store.py; damaged ones skipped). Never modify them."""
        found = [self._reader.read(seq) for seq in self.seqs() if seq > after]
        return [m for m in found if m and isinstance(m.get("seq"), int)]

    def read(self, seq: int) -> dict | None:
        """One manifest with its full file list (None if damaged or gone). Never modify it."""
        return self._reader.read(seq)

    def object_path(self, sha256: str) -> Path:
        return self.root / OBJECTS / sha256[:2] / sha256

    def write_manifest(self, manifest: dict) -> None:
        write_json(self.root / MANIFESTS / f"{manifest['seq']:06d}.json", manifest)

    def staging(self, clear: bool = False) -> Path:
        folder = self.root / STAGING
        if clear:
            shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True, exist_ok=True)
        self._staged = True
        return folder

    def temp_path(self) -> Path:
        """A fresh unused name in the staging directory (on the workspace's file system: rename is atomic)."""
        folder = self.root / STAGING if self._staged else self.staging()
        return folder / f"{os.getpid()}-{threading.get_ident()}-{next(self._names)}"


def storage_empty(workspace: Path) -> bool:
    """True when session storage holds no file at all: nothing but (empty) `.sessions/` directories."""
    try:
        entries = os.listdir(workspace)
    except FileNotFoundError:
        return True
    if any(name != SESSIONS for name in entries):
        return False
    return not any(files for _, _, files in os.walk(workspace / SESSIONS))


def file_sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def history_files(
    workspace: Path, known: dict[str, list], uploaded: Callable[[str], bool]
) -> tuple[dict[str, dict], dict[str, list], dict[str, bytes]]:
    """The conversation's files under `.sessions/session_*/` (checkpoints do not copy them).

    Returns the manifest's `history` map {path under .sessions: {sha256, size, mode}}, the
    stat cache to remember ({path: [size, mtime_ns, sha256]}), and {sha256: bytes} of every
    file that had to be read: changed since `known`, or its content not `uploaded` yet.
    """
    sessions = workspace / SESSIONS
    entries: dict[str, dict] = {}
    cache: dict[str, list] = {}
    blobs: dict[str, bytes] = {}
    tops = (
        sorted(n for n in os.listdir(sessions) if n.startswith(SESSION_PREFIX)) if sessions.is_dir() else []
    )
    for top in tops:
        for folder, _, names in os.walk(sessions / top):
            rel_dir = Path(folder).relative_to(sessions).as_posix()
            entries[rel_dir] = {"type": "dir"}  # Strands expects its (possibly empty) folders
            for name in names:
                if is_temp_file(name):  # a write in flight (FileSessionManager's temp file)
                    continue
                path = Path(folder, name)
                try:
                    st = os.lstat(path)
                    if not stat.S_ISREG(st.st_mode):
                        continue
                    rel = path.relative_to(sessions).as_posix()
                    hit = known.get(rel)
                    if hit and hit[:2] == [st.st_size, st.st_mtime_ns] and uploaded(hit[2]):
                        sha = hit[2]
                    else:
                        blob = path.read_bytes()
                        sha = hashlib.sha256(blob).hexdigest()
                        blobs[sha] = blob
                except FileNotFoundError:  # removed while we walked
                    continue
                entries[rel] = {
                    "type": "file",
                    "sha256": sha,
                    "size": st.st_size,
                    "mode": stat.S_IMODE(st.st_mode),
                }
                cache[rel] = [st.st_size, st.st_mtime_ns, sha]
    return entries, cache, blobs


# What a backup may hold, as AWS bounds session storage: ~100,000-200,000 files of metadata.
MAX_ENTRIES = 200_000
MAX_LINK_TARGET = 4095  # bytes; AWS's symlink target limit
ENTRY_TYPES = ("file", "dir", "symlink")


def _safe(rel: Any, under_sessions: bool = False) -> PurePosixPath:
    """A manifest path in its one canonical spelling ("a/b": no "./", "//", trailing "/" or ".."), in
    the right half of storage. Any other spelling could name an entry the link check never sees."""
    if not isinstance(rel, str) or not rel or "\0" in rel:
        raise DamagedBackup(f"backup names the unsafe path {rel!r}")
    path = PurePosixPath(rel)
    if path.is_absolute() or str(path) != rel or any(part in (".", "..") for part in rel.split("/")):
        raise DamagedBackup(f"backup names the unsafe path {rel!r}")
    wrong = not path.parts[0].startswith(SESSION_PREFIX) if under_sessions else path.parts[0] == SESSIONS
    if wrong:
        raise DamagedBackup(f"backup names {rel!r} in the wrong place")
    return path


def _check_entry(rel: str, entry: Any) -> None:
    if not isinstance(entry, dict) or entry.get("type") not in ENTRY_TYPES:
        raise DamagedBackup(f"backup has an entry of unknown type at {rel!r}")
    if not isinstance(entry.get("mode", 0), int) or not isinstance(entry.get("mtime", 0), int | float):
        raise DamagedBackup(f"backup gives {rel!r} a mode or time that is not a number")
    if entry["type"] == "symlink":
        target = entry.get("target")
        if (
            not isinstance(target, str)
            or not target
            or len(target.encode(errors="replace")) > MAX_LINK_TARGET
        ):
            raise DamagedBackup(f"backup gives the link {rel!r} an unusable target")


def check_manifest(files: Any, history: Any) -> set[str]:
    """Refuse, before anything is written, every entry a restore could not place safely: paths
    that climb out, run through a restored symlink or are spelled two ways, unknown types, bad
    hashes, more entries than session storage holds. Returns every object sha needed."""
    if not isinstance(files, dict) or not isinstance(history, dict):
        raise DamagedBackup("backup's file list is not a JSON object")
    if len(files) + len(history) > MAX_ENTRIES:
        raise DamagedBackup(f"backup lists {len(files) + len(history)} entries; at most {MAX_ENTRIES}")
    links = {p for p, e in files.items() if isinstance(e, dict) and e.get("type") == "symlink"}
    shas: set[str] = set()
    for rel, entry in files.items():
        path = _safe(rel)
        _check_entry(rel, entry)
        if any(str(parent) in links for parent in path.parents):
            raise DamagedBackup(f"backup puts {rel!r} under a symlink")
        if entry["type"] == "file":
            shas.add(entry.get("sha256"))
    for rel, entry in history.items():
        _safe(rel, under_sessions=True)
        if not isinstance(entry, dict) or entry.get("type") not in ("file", "dir"):
            raise DamagedBackup(f"backup has a history entry of unknown type at {rel!r}")
        if entry["type"] == "file":
            shas.add(entry.get("sha256"))
    if bad := [s for s in shas if not isinstance(s, str) or not SHA256.fullmatch(s)]:
        raise DamagedBackup(f"backup names {len(bad)} objects without a sha256 name")
    return shas
