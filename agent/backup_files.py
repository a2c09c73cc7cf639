"""The local side of backups: the checkpoint store's layout on disk, and files written back from it.

The layout is the contract in docs/CONTRACT.md §6 (agent/checkpoints.py owns the store and is
the one reader of manifests, which may be deltas on earlier ones); this module reads objects
and adds what a restore brings back. Everything a
restore writes goes to a temp name in the store's staging directory first and is renamed
into place, so a kill -9 leaves either the old entry or the new one, and a rerun finishes.
"""

from __future__ import annotations

import errno
import hashlib
import itertools
import json
import os
import re
import shutil
import stat
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from pathlib import Path, PurePosixPath
from typing import Any

from agent.checkpoints import CheckpointStore

SESSIONS = ".sessions"
STORE = Path(SESSIONS) / ".checkpoints"
PLACERS = 8  # threads writing files into the workspace
STAGING = "backup-tmp"  # temp files of a restore; emptied at the start of the next one
SHA256 = re.compile(r"[0-9a-f]{64}")


class DamagedBackup(ValueError):
    """A manifest names a path or object that no honest checkpoint could hold."""


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (temp file in the same directory + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(json_bytes(data))  # json.dump would run the pure-Python encoder: 10 x slower
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".jsonl")
        with os.fdopen(fd, "wb") as out:
            out.write(body)
        os.replace(tmp, path)
    elif body:
        with path.open("ab") as out:  # a kill mid-line leaves one bad line, skipped on reading
            out.write(b"\n" + body)


def json_bytes(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()


def parse_json(raw: bytes | str) -> dict | None:
    """A JSON object, or None for anything else (damaged, truncated, not an object)."""
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def read_json(path: Path) -> dict | None:
    try:
        return parse_json(path.read_bytes())
    except OSError:
        return None


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
            names = os.listdir(self.root / "manifests")
        except FileNotFoundError:
            return []
        return sorted(int(n[:-5]) for n in names if n.endswith(".json") and n[:-5].isdigit())

    def manifests(self, after: int = -1) -> list[dict]:
        """Readable manifests with seq > `after`, oldest first, each with its full file list
        (materialised by agent/checkpoints.py; damaged ones skipped). Never modify them."""
        found = [self._reader.read(seq) for seq in self.seqs() if seq > after]
        return [m for m in found if m and isinstance(m.get("seq"), int)]

    def read(self, seq: int) -> dict | None:
        """One manifest with its full file list (None if damaged or gone). Never modify it."""
        return self._reader.read(seq)

    def object_path(self, sha256: str) -> Path:
        return self.root / "objects" / sha256[:2] / sha256

    def write_manifest(self, manifest: dict) -> None:
        write_json(self.root / "manifests" / f"{manifest['seq']:06d}.json", manifest)

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
    tops = sorted(n for n in os.listdir(sessions) if n.startswith("session_")) if sessions.is_dir() else []
    for top in tops:
        for folder, _, names in os.walk(sessions / top):
            rel_dir = Path(folder).relative_to(sessions).as_posix()
            entries[rel_dir] = {"type": "dir"}  # Strands expects its (possibly empty) folders
            for name in names:
                if name.startswith(".strands_"):  # a write in flight (FileSessionManager's temp file)
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


def _safe(rel: str, under_sessions: bool = False) -> PurePosixPath:
    path = PurePosixPath(rel)
    if not rel or path.is_absolute() or ".." in path.parts:
        raise DamagedBackup(f"backup names the unsafe path {rel!r}")
    wrong = not path.parts[0].startswith("session_") if under_sessions else path.parts[0] == SESSIONS
    if wrong:
        raise DamagedBackup(f"backup names {rel!r} in the wrong place")
    return path


def check_manifest(files: dict[str, dict], history: dict[str, dict]) -> set[str]:
    """Refuse paths that climb out or run through a restored symlink; return every object sha needed."""
    links = {p for p, e in files.items() if e.get("type") == "symlink"}
    shas: set[str] = set()
    for rel, entry in files.items():
        path = _safe(rel)
        if any(str(parent) in links for parent in path.parents):
            raise DamagedBackup(f"backup puts {rel!r} under a symlink")
        if entry.get("type") not in ("file", "dir", "symlink"):
            raise DamagedBackup(f"backup has an entry of unknown type at {rel!r}")
        if entry["type"] == "file":
            shas.add(entry["sha256"])
    for rel, entry in history.items():
        _safe(rel, under_sessions=True)
        if entry.get("type") == "file":
            shas.add(entry["sha256"])
    if bad := [s for s in shas if not isinstance(s, str) or not SHA256.fullmatch(s)]:
        raise DamagedBackup(f"backup names {len(bad)} objects without a sha256 name")
    return shas


def _parent(target: Path, made: set[Path]) -> None:
    if target.parent not in made:
        target.parent.mkdir(parents=True, exist_ok=True)
        made.add(target.parent)


def _place_file(
    store: Store, source: Path, target: Path, entry: dict, replace: bool, made: set[Path]
) -> bool:
    """Copy `source` to `target` via a temp name; with replace=False never overwrite (False if it exists)."""
    tmp = store.temp_path()
    try:
        shutil.copyfile(source, tmp)
        os.chmod(tmp, entry.get("mode", 0o644))
        if "mtime" in entry:
            os.utime(tmp, (entry["mtime"], entry["mtime"]))
        _parent(target, made)
        if replace:
            os.replace(tmp, target)
            return True
        try:
            os.link(tmp, target)  # fails if anything is there: the no-clobber rename
        except FileExistsError:
            return False
        except OSError as e:  # a file system without hard links
            if e.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK):
                raise
            with open(target, "xb") as out, open(tmp, "rb") as src:
                shutil.copyfileobj(src, out)
            os.chmod(target, entry.get("mode", 0o644))
        return True
    finally:
        tmp.unlink(missing_ok=True)


def _place_symlink(store: Store, target_text: str, target: Path, replace: bool, made: set[Path]) -> bool:
    _parent(target, made)
    if not replace:
        try:
            os.symlink(target_text, target)
        except FileExistsError:
            return False
        return True
    tmp = store.temp_path()
    os.symlink(target_text, tmp)
    os.replace(tmp, target)
    return True


def materialize(store: Store, files: dict[str, dict], only: list[str] | None = None) -> tuple[list, list]:
    """Write manifest entries into the workspace from the store's objects.

    only=None: every entry, replacing what is there (a restore into empty storage, or its rerun).
    only=[paths]: just those, never replacing anything that exists. Returns (written, kept).
    """
    replace = only is None
    chosen = sorted(files) if only is None else sorted(p for p in only if p in files)
    written, kept, made = [], [], {store.workspace}
    dirs = [p for p in chosen if files[p]["type"] == "dir"]
    for rel in dirs:
        target = store.workspace / rel
        existed = os.path.lexists(target)
        target.mkdir(parents=True, exist_ok=True)
        made.add(target)
        (kept if existed and not replace else written).append(rel)

    def place(rel: str) -> bool:
        entry, target = files[rel], store.workspace / rel
        if entry["type"] == "file":
            return _place_file(store, store.object_path(entry["sha256"]), target, entry, replace, made)
        return _place_symlink(store, entry["target"], target, replace, made)

    leaves = [p for p in chosen if files[p]["type"] != "dir"]  # never under a symlink: check_manifest
    with ThreadPoolExecutor(PLACERS) as pool:  # file creation waits on the disk, not the CPU
        for rel, done in zip(leaves, pool.map(place, leaves), strict=True):
            (written if done else kept).append(rel)
    new_dirs = set(written)
    for rel in reversed(dirs):  # modes last and deepest first: a read-only dir must not block its children
        if rel in new_dirs:
            os.chmod(store.workspace / rel, files[rel].get("mode", 0o755))
    return written, kept


def materialize_history(store: Store, history: dict[str, dict]) -> None:
    """Put the conversation's files back under `.sessions/` (directories private, as Strands makes them)."""
    sessions = store.workspace / SESSIONS
    for rel, entry in sorted(history.items()):
        target = sessions / rel
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if entry.get("type") == "dir":
            target.mkdir(mode=0o700, exist_ok=True)
            continue
        mode = {"mode": entry.get("mode", 0o600)}
        _place_file(store, store.object_path(entry["sha256"]), target, mode, True, {target.parent})
