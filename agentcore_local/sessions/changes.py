"""What time and the control plane do to sessions: when a session's storage resets, the reaper
(idle timeout, max lifetime), and the registry's changes (a new version, a deleted runtime or
endpoint). SessionBackend (sessions.py) supplies the sessions and the stop; this module decides
which compute stops and which storage goes.

Each session is judged by the version of its own endpoint (the qualifier of its latest
invocation): a session on a named endpoint pinned to version 1 keeps its compute and its storage
when DEFAULT moves to version 2, and its compute stops for the idle timeout and max lifetime of
version 1.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

from ..control import Change, Runtime, RuntimeRegistry
from ..storage import SessionStorage
from .lifecycle import LifecyclePolicy, State, StopReason
from .pool import WarmPool
from .session import Session

log = logging.getLogger("agentcore_local.sessions")


class SessionChanges(ABC):
    """SessionBackend's reaper and its answers to the registry's changes."""

    sessions: dict[tuple[str, str], Session]
    registry: RuntimeRegistry
    storage: SessionStorage
    pool: WarmPool
    clock: Callable[[], float]

    @abstractmethod
    def session(self, runtime_id: str, session_id: str, create: bool = True) -> Session | None:
        """The session, loaded from disk after a restart, or a new one (None if not `create`)."""

    @abstractmethod
    async def _request_stop(self, session: Session, reason: str, missing_ok: bool = True) -> None:
        """Stop the session's compute; return once its storage is consistent."""

    @abstractmethod
    def _spawn(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        """Run `coroutine` in the background, kept until it ends."""

    @abstractmethod
    def _delete_backups(self, runtime: Runtime) -> None:
        """Delete every backup of the runtime's sessions (all its versions' scopes)."""

    # --- time ----------------------------------------------------------------------------

    def _reset_reason(self, session: Session, runtime: Runtime, now: float) -> str | None:
        """Why AWS would hand this session empty storage at its next compute, or None."""
        if session.storage_version is not None and session.storage_version != runtime.version:
            return f"the runtime changed from version {session.storage_version} to {runtime.version}"
        if session.lifecycle.storage_expired(now, LifecyclePolicy.of(runtime.lifecycle())):
            return "14 days passed without an invocation"
        if runtime.session_storage_mount() is None:
            return "the runtime has no sessionStorage filesystem configuration"
        return None

    async def reap(self) -> None:
        """Stop compute past its idle timeout or max lifetime (the agent's HealthyBusy counts as activity)."""
        now = self.clock()
        for session in list(self.sessions.values()):
            runtime = self.registry.runtimes.get(session.runtime_id)
            if runtime is None:
                continue
            # The lifecycleConfiguration of the version the compute runs, not of the latest one.
            policy = session.policy or LifecyclePolicy.of(runtime.lifecycle())
            reason = session.lifecycle.stop_reason(now, policy)
            if (
                reason is StopReason.IDLE_TIMEOUT
                and session.compute
                and await session.compute.ping() == "HealthyBusy"
            ):
                session.lifecycle.touch(now)
                continue
            if reason:
                self._spawn(self._request_stop(session, reason))

    # --- change --------------------------------------------------------------------------

    def _on_runtime_change(self, change: Change, runtime: Runtime, endpoint: str | None) -> None:
        """A new version stops the compute of the sessions whose endpoint now serves another version
        (their storage resets at their next start); a deleted runtime or endpoint takes its sessions,
        storage and all."""
        if change is not Change.ENDPOINT_DELETED:
            self.pool.retire(runtime, deleted=change is Change.DELETED)
        if change is Change.VERSION:
            affected: Iterable[Session] = [s for s in self.sessions.values() if s.runtime_id == runtime.id]
        else:  # the sessions on disk too: a restart of serve loads only those invoked since
            affected = [
                s for s in self._all_sessions_of(runtime.id) if endpoint is None or s.endpoint == endpoint
            ]
        retiring = [self._retire(session, runtime, change) for session in affected]
        if change is Change.DELETED:  # once every compute has stopped (a stop pushes a last backup)
            self._spawn(self._forget(runtime, retiring))
            return
        for retire in retiring:
            self._spawn(retire)

    async def _forget(self, runtime: Runtime, retiring: list[Coroutine[Any, Any, None]]) -> None:
        """A deleted runtime: its sessions stopped and their storage deleted, then its backups."""
        await asyncio.gather(*retiring)
        try:
            await asyncio.to_thread(self._delete_backups, runtime)
        except Exception:  # the bucket's expiry rule (cloud/backup_bucket.py) still ends them
            log.exception("runtime_id=<%s> | its backups could not all be deleted", runtime.id)

    def _all_sessions_of(self, runtime_id: str) -> list[Session]:
        """Every session of the runtime: those in memory and those only meta.json remembers."""
        for meta_file in (self.storage.state_dir / "sessions" / runtime_id).glob("*/meta.json"):
            meta = self.storage.read_meta(meta_file.parent) or {}
            if isinstance(meta.get("runtimeSessionId"), str):
                self.session(runtime_id, meta["runtimeSessionId"], create=False)
        return [s for s in self.sessions.values() if s.runtime_id == runtime_id]

    def _served_version(self, session: Session, runtime: Runtime) -> int | None:
        endpoint = runtime.endpoints.get(session.endpoint)
        return endpoint.served_version(self.clock(), runtime.version) if endpoint else None

    async def _retire(self, session: Session, runtime: Runtime, change: Change) -> None:
        gone = change is not Change.VERSION
        async with session.lock:
            needs_stop = session.lifecycle.state is State.READY and (
                gone or session.compute_version != self._served_version(session, runtime)
            )
        if needs_stop:
            reason = {
                Change.VERSION: StopReason.RUNTIME_UPDATED,
                Change.DELETED: StopReason.RUNTIME_DELETED,
                Change.ENDPOINT_DELETED: StopReason.ENDPOINT_DELETED,
            }[change]
            await self._request_stop(session, reason)
        if gone:
            self.sessions.pop((session.runtime_id, session.session_id), None)
            await asyncio.to_thread(self.storage.delete, session.root)
            log.info("session_id=<%s> | storage deleted (%s)", session.session_id, change)
