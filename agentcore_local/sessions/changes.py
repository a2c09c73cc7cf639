"""What time and the control plane do to sessions: when a session's storage resets, the reaper
(idle timeout, max lifetime), and the registry's changes (a new version, a deleted runtime or
endpoint). SessionChanges is handed the sessions, the pool and the stop; it decides which compute
stops and which storage goes.

Each session is judged by the version of its own endpoint (the qualifier of its latest
invocation): a session on a named endpoint pinned to version 1 keeps its compute and its storage
when DEFAULT moves to version 2, and its compute stops for the idle timeout and max lifetime of
version 1.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any

from ..control import Change, Runtime, RuntimeRegistry
from ..sandbox import s3_client
from ..services import delete_scope, scope_of
from .lifecycle import LifecyclePolicy, State, StopReason
from .pool import WarmPool
from .session import Session
from .table import SessionTable

log = logging.getLogger("agentcore_local.sessions")
Stop = Callable[[Session, str], Awaitable[None]]
Spawn = Callable[[Coroutine[Any, Any, Any]], None]


def reset_reason(session: Session, runtime: Runtime, now: float) -> str | None:
    """Why AWS would hand this session empty storage at its next compute, or None."""
    if session.storage_version is not None and session.storage_version != runtime.version:
        return f"the runtime changed from version {session.storage_version} to {runtime.version}"
    if session.lifecycle.storage_expired(now, LifecyclePolicy.of(runtime.lifecycle())):
        return "14 days passed without an invocation"
    if runtime.session_storage_mount() is None:
        return "the runtime has no sessionStorage filesystem configuration"
    return None


def delete_backups(s3_url: str | None, bucket: str | None, runtime: Runtime) -> None:
    """Delete every backup of the runtime's sessions (all its versions' scopes)."""
    if not bucket or s3_url is None:  # backups off, or serve's S3 not started (tests)
        return
    scopes = {scope_of(runtime.id, v["config"].get("environmentVariables") or {}) for v in runtime.versions}
    s3 = s3_client(s3_url)
    for scope in sorted(scopes):
        gone = delete_scope(s3, bucket, scope)
        log.info("runtime_id=<%s>, scope=<%s> | %d backup objects deleted", runtime.id, scope, gone)


class SessionChanges:
    def __init__(
        self,
        table: SessionTable,
        registry: RuntimeRegistry,
        pool: WarmPool,
        clock: Callable[[], float],
        stop: Stop,
        spawn: Spawn,
        delete_backups: Callable[[Runtime], None],
    ) -> None:
        self.table = table
        self.registry = registry
        self.pool = pool
        self.clock = clock
        self._stop, self._spawn, self._delete_backups = stop, spawn, delete_backups
        self.passes = 0  # reaper passes completed: what a test waits on instead of the time

    # --- time ----------------------------------------------------------------------------

    async def reap(self) -> None:
        """Stop compute past its idle timeout or max lifetime (the agent's HealthyBusy counts as activity)."""
        now = self.clock()
        for session in list(self.table.sessions.values()):
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
                self._spawn(self._stop(session, reason))
        self.passes += 1

    # --- change --------------------------------------------------------------------------

    def on_runtime_change(self, change: Change, runtime: Runtime, endpoint: str | None) -> None:
        """A new version stops the compute of the sessions whose endpoint now serves another version
        (their storage resets at their next start); a deleted runtime or endpoint takes its sessions,
        storage and all."""
        if change is not Change.ENDPOINT_DELETED:
            self.pool.retire(runtime, deleted=change is Change.DELETED)
        if change is Change.VERSION:
            affected: Iterable[Session] = self.table.loaded(runtime.id)
        else:  # the sessions on disk too: a restart of serve loads only those invoked since
            every = self.table.all_of(runtime.id)
            affected = [s for s in every if endpoint is None or s.endpoint == endpoint]
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
            await self._stop(session, reason)
        if gone:
            self.table.forget(session)
            await asyncio.to_thread(self.table.storage.delete, session.root)
            log.info("session_id=<%s> | storage deleted (%s)", session.session_id, change)
