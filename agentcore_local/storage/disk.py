"""Session storage on disk: where each session's files live, its meta.json, reset, quota, usage,
the scan for what AWS would not keep, and the flush before a stop returns.

Layout: STATE_DIR/sessions/RUNTIME_ID/KEY/ holding storage/ (the files the agent sees at its mount
path), meta.json (session id, storage version, last invocation) and agent.log. KEY is a hash of
the session id, so any id is a safe directory name.

A session writes whatever it likes into its storage (deep trees, long paths, FIFOs), so no walk
failure here may become an error of the API: each is logged and reported in words instead.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import durable

from ..errors import RuntimeClientError, ServiceQuotaExceededException
from .limits import describe
from .volume import Volumes
from .walk import clear_tree, remove_tree, scan_unsupported, usage

log = logging.getLogger("agentcore_local.storage")


# The agent's requests that run no turn (docs/CONTRACT.md §1): they read or free storage, so the
# measured quota never refuses them. Bodies longer than this are turns and are not parsed.
QUOTA_EXEMPT_ACTIONS = ("undo", "status", "checkpoints")
_ACTION_BODY_MAX = 4096


def frees_or_reads(payload: bytes) -> bool:
    """True for an invocation the measured quota lets through: undo, status, checkpoints."""
    if len(payload) > _ACTION_BODY_MAX:
        return False
    try:
        body = json.loads(payload)
    except (ValueError, RecursionError):
        return False
    return isinstance(body, dict) and body.get("action") in QUOTA_EXEMPT_ACTIONS


def syncfs(path: Path) -> None:
    """Flush the filesystem holding `path` (syncfs(2); os.sync() where that is missing)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        os.sync()
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if getattr(libc, "syncfs", None) is None or libc.syncfs(fd) != 0:
            os.sync()
    finally:
        os.close(fd)


class SessionStorage:
    """The storage of every session under one state directory."""

    def __init__(self, state_dir: Path, quota_bytes: int, volumes: Volumes | None = None) -> None:
        self.state_dir = state_dir
        self.quota_bytes = quota_bytes
        self.volumes = volumes  # None: no filesystem per session here, the quota is measured (volume.py)

    def root(self, runtime_id: str, session_id: str) -> Path:
        key = hashlib.sha256(session_id.encode()).hexdigest()[:32]
        return self.state_dir / "sessions" / runtime_id / key

    @staticmethod
    def files(root: Path) -> Path:
        return root / "storage"

    # --- meta.json -----------------------------------------------------------------------------

    def read_meta(self, root: Path) -> dict[str, Any] | None:
        """The saved meta.json of a session, or None when it has none (or it is unreadable)."""
        try:
            meta = json.loads((root / "meta.json").read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as error:
            log.warning("root=<%s> | meta.json unreadable, starting afresh: %s", root, error)
            return {}
        return meta if isinstance(meta, dict) else {}

    def write_meta(self, root: Path, meta: dict[str, Any]) -> None:
        """Atomically: a kill mid-write leaves the old file."""
        root.mkdir(parents=True, exist_ok=True)
        durable.write_json(root / "meta.json", meta)

    # --- before new compute --------------------------------------------------------------------

    def prepare(self, root: Path, reset_reason: str | None) -> None:
        """The storage directory, emptied first when AWS would reset it (`reset_reason`)."""
        files = self.files(root)
        if self.volumes is not None and self.volumes.holds_image(root):
            self._attach(root, reset_reason)
            return
        if reset_reason and files.exists():
            log.info("root=<%s> | storage reset: %s", root, reset_reason)
            try:
                clear_tree(files)
            except (OSError, RecursionError) as error:
                # Whatever the session left that the walk cannot take, it must not survive the reset:
                # set the whole directory aside (a rename always works) and start from an empty one.
                aside = root / f"discarded-{os.urandom(4).hex()}"
                log.warning(
                    "root=<%s> | reset could not empty the storage (%s): moved to %s", root, error, aside
                )
                files.rename(aside)
        files.mkdir(parents=True, exist_ok=True)
        if self.volumes is not None:  # a new session's first compute: its filesystem is made now
            self._attach(root, None)

    def _attach(self, root: Path, reset_reason: str | None) -> bool:
        """Mount the session's own filesystem (a fresh one at a reset); a call fails rather than
        writing beside an unmounted volume, where the files would later be hidden under it."""
        assert self.volumes is not None
        files = self.files(root)
        try:
            if reset_reason:
                log.info("root=<%s> | storage reset: %s", root, reset_reason)
                self.volumes.discard(root, files)
            root.mkdir(parents=True, exist_ok=True)
            return self.volumes.mount(root, files)
        except OSError as error:
            log.warning("root=<%s> | session filesystem not mounted: %s", root, error)
            raise RuntimeClientError(f"The session's storage could not be mounted: {error}") from error

    def enforced(self, root: Path) -> bool:
        """True when the kernel holds this session to its quota (its filesystem is mounted)."""
        return self.volumes is not None and os.path.ismount(self.files(root))

    def detach(self, root: Path) -> None:
        """After a stop: unmount the session's filesystem (lazily if busy); logged, never raised."""
        if self.volumes is None:
            return
        try:
            self.volumes.detach(self.files(root))
        except OSError as error:
            log.warning("root=<%s> | session filesystem not unmounted: %s", root, error)

    def measure(self, root: Path) -> int | None:
        """Bytes the storage uses, or None when it cannot be walked (logged). On its own filesystem,
        the blocks in use (statvfs: no walk); else a walk, sparse files at their apparent size."""
        try:
            if self.enforced(root):
                fs = os.statvfs(self.files(root))
                return (fs.f_blocks - fs.f_bfree) * fs.f_frsize
            return usage(self.files(root)).bytes
        except (OSError, RecursionError) as error:
            log.warning("root=<%s> | storage usage not measured: %s", root, error)
            return None

    def check_quota(self, used: int, exempt: bool = False) -> None:
        """The measured quota (where no filesystem enforces it): an `exempt` call (exec, undo,
        status: how space is freed) is never refused."""
        if used > self.quota_bytes and not exempt:
            raise ServiceQuotaExceededException(
                f"Session storage holds {used / 2**20:.0f} MiB, over its quota of "
                f"{self.quota_bytes / 2**20:.0f} MiB: delete files (InvokeAgentRuntimeCommand, or undo), "
                "or start a new session"
            )

    # --- after a stop -------------------------------------------------------------------------

    def settle(self, root: Path) -> str | None:
        """Flush the storage; what it holds that AgentCore Session Storage would not keep, in words."""
        files = self.files(root)
        syncfs(files)
        if not files.is_dir():
            return None
        try:
            found = scan_unsupported(files)
        except (OSError, RecursionError) as error:
            log.warning("root=<%s> | storage scan failed: %s", root, error)
            return (
                f"The storage could not be scanned for what AgentCore Session Storage does not keep: {error}"
            )
        return describe(found) if found else None

    def delete(self, root: Path) -> None:
        """Every file of a session (its runtime was deleted); failures are logged, never raised."""
        self.detach(root)
        try:
            remove_tree(root)
        except (OSError, RecursionError) as error:
            log.warning("root=<%s> | session storage not fully deleted: %s", root, error)
            with contextlib.suppress(OSError):
                root.rename(root.with_name(f".deleted-{root.name}-{os.urandom(4).hex()}"))
