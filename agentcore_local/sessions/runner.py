"""When a session's compute starts and stops. A call acquires READY compute (started on first
use, after the storage is reset when AWS would and measured) and releases it; a stop, or the
compute ending by itself, leaves the session STOPPED with its storage consistent.

Rules, as AWS documents them: a session id starts compute on first use; the storage survives
the compute; StopRuntimeSession returns once the storage is consistent; an invocation that races
a stop is refused with RetryableConflictException before it starts anything.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from ..control import Runtime
from ..errors import (
    ResourceNotFoundException,
    RetryableConflictException,
    RuntimeClientError,
    ServiceQuotaExceededException,
)
from ..sandbox import Compute
from ..settings import Settings
from .background import Background
from .changes import reset_reason
from .computes import Computes
from .lifecycle import Action, Event, State, StopReason
from .session import Session
from .table import SessionTable

log = logging.getLogger("agentcore_local.sessions")
Clock = Callable[[], float]

# meta.json's lastInvocationAt only matters in days (the 14-day storage reset), and a write costs ~1 ms:
# a call rewrites it when it starts compute or when the saved time is this old, not on every call.
META_SAVE_INTERVAL = 60.0


class SessionRunner:
    def __init__(
        self,
        settings: Settings,
        table: SessionTable,
        computes: Computes,
        background: Background,
        clock: Clock,
    ) -> None:
        self.settings = settings
        self.table = table
        self.storage = table.storage
        self.computes = computes
        self.background = background
        self.clock = clock

    # --- a call --------------------------------------------------------------------------

    async def acquire(self, runtime: Runtime, session_id: str, frees: bool = False) -> Session:
        """Begin an invocation: a READY compute for the session (started if need be), counted in flight.
        `runtime` is the version its endpoint serves (RuntimeRegistry.resolve); `frees`: a call that
        reads or frees storage (exec, undo, status), never refused by the measured quota."""
        if runtime.status(self.clock()) == "CREATING":
            raise RetryableConflictException(
                f"Agent runtime {runtime.id} is still CREATING; retry when READY"
            )
        session = self.table.get(runtime.id, session_id)
        assert session is not None
        if session.lifecycle.state is State.STARTING:  # as AWS: no queueing behind a provisioning session
            raise RetryableConflictException(
                f"Runtime session {session_id} is still starting (provisioning); retry in a moment"
            )
        if session.lifecycle.state is State.READY and session.compute_version != runtime.version:
            # Its endpoint serves another version now (moved, or another qualifier): new compute, and
            # the storage resets at its start, as after any version change.
            await self.request_stop(session, StopReason.RUNTIME_UPDATED)
        moved, session.endpoint = session.endpoint != runtime.served_through, runtime.served_through
        async with session.lock:
            now = self.clock()
            if session.compute is not None and not session.compute.running:
                self._settle_exit(session, session.compute)  # died since the last call: start afresh
            if session.lost is not None:  # the kernel ended it: this call says why, the next starts afresh
                reason, session.lost = session.lost, None
                raise RuntimeClientError(
                    f"The session's compute was stopped: {reason}. The next call starts new compute "
                    "on the same storage"
                )
            if session.lifecycle.state is State.STOPPED:
                self._check_capacity(session)
                # Off the event loop: a reset may delete, and the quota walks, a whole node_modules.
                await asyncio.to_thread(self._prepare_storage, session, runtime, now)
            if not self.storage.enforced(session.root):  # the kernel enforces it, or the last measure
                self.storage.check_quota(session.usage, frees)  # a walk per call costs ~6 us a file
            self._check_capacity(session)  # again: others may have started while the storage was walked
            action = session.lifecycle.begin_call(now)  # RetryableConflictException while STOPPING
            if action is Action.START:
                session.lifecycle.fire(Event.START, now)
                try:
                    await self.computes.start(session, runtime, self._on_compute_exit(session))
                except BaseException:
                    session.lifecycle.fire(Event.START_FAILED, self.clock())
                    raise
                session.lifecycle.fire(Event.STARTED, self.clock())
            if action is Action.START or moved or now - session.saved_at >= META_SAVE_INTERVAL:
                self.table.save(session)
                session.saved_at = now
        return session

    def release(self, session: Session, compute: Compute | None) -> None:
        """End an invocation (only on the compute it began on: a late stream of an old compute is ignored)."""
        if session.compute is compute:
            session.lifecycle.end_call(self.clock())
        if compute is not None:
            self.computes.report_limits(session, compute)
        if not session.measuring:  # re-measure off the request path; the next call is checked against it
            session.measuring = True
            self.background.spawn(self._measure(session))

    def _check_capacity(self, session: Session) -> None:
        if session.lifecycle.state is State.STOPPED and self.table.active() >= self.settings.max_sessions:
            raise ServiceQuotaExceededException(
                f"agentcore_local runs at most {self.settings.max_sessions} sessions at once "
                "(serve --max-sessions): stop a session (StopRuntimeSession), or retry later"
            )

    def _prepare_storage(self, session: Session, runtime: Runtime, now: float) -> None:
        """Before new compute: reset the storage when AWS would, and measure what it holds."""
        self.storage.prepare(session.root, reset_reason(session, runtime, now))
        session.storage_version = runtime.version
        self.table.save(session)
        used = self.storage.measure(session.root)
        session.usage = session.usage if used is None else used

    async def _measure(self, session: Session) -> None:
        try:
            used = await asyncio.to_thread(self.storage.measure, session.root)
            session.usage = session.usage if used is None else used
        finally:
            session.measuring = False

    # --- a stop --------------------------------------------------------------------------

    async def request_stop(self, session: Session, reason: str, missing_ok: bool = True) -> None:
        """Stop the session's compute; return once its storage is consistent (one stop at a time)."""
        async with session.lock:
            if session.lifecycle.state is State.STOPPED:
                if missing_ok:
                    return
                raise ResourceNotFoundException(
                    f"Runtime session {session.session_id} not found or already terminated"
                )
            if session.stop_task is None:
                session.lifecycle.fire(
                    Event.STOP, self.clock()
                )  # from here on, invocations get RetryableConflict
                session.stop_task = asyncio.get_running_loop().create_task(self._stop(session, reason))
            task = session.stop_task
        await asyncio.shield(task)

    async def _stop(self, session: Session, reason: str) -> None:
        try:
            if session.compute is not None:
                await session.compute.stop(self.settings.stop_grace)
            await asyncio.to_thread(self._flush, session)  # never raises: what a session wrote is reported
        finally:
            async with session.lock:
                session.compute = None
                session.stop_task = None
                session.lifecycle.fire(Event.STOPPED, self.clock())
                self.table.save(session)
                # Flushed above; off the loop all the same (an unmount writes what is still dirty).
                await asyncio.to_thread(self.storage.detach, session.root)
            log.info("session_id=<%s> | stopped (%s)", session.session_id, reason)

    def _flush(self, session: Session) -> None:
        session.storage_warning = self.storage.settle(session.root)
        if session.storage_warning:
            log.warning("session_id=<%s> | storage holds %s", session.session_id, session.storage_warning)

    # --- the compute ending by itself ----------------------------------------------------

    def _on_compute_exit(self, session: Session) -> Callable[[Compute], None]:
        def exited(compute: Compute) -> None:
            async def settle() -> None:
                async with session.lock:
                    self._settle_exit(session, compute)

            self.background.spawn(settle())

        return exited

    def _settle_exit(self, session: Session, compute: Compute) -> None:
        """The compute ended by itself (a crash, kill -9): the session is STOPPED, its storage kept."""
        if session.compute is compute and session.lifecycle.state is State.READY:
            why = f": {compute.lost}" if compute.lost else ""
            log.warning("session_id=<%s> | compute exited by itself%s", session.session_id, why)
            self.computes.report_limits(session, compute)
            session.compute, session.lost = None, compute.lost
            session.lifecycle.fire(Event.EXITED, self.clock())
            self.background.spawn(self._flush_and_detach(session))

    async def _flush_and_detach(self, session: Session) -> None:
        await asyncio.to_thread(self._flush, session)
        async with session.lock:  # unless a new call has started new compute on it meanwhile
            if session.lifecycle.state is State.STOPPED and session.compute is None:
                await asyncio.to_thread(self.storage.detach, session.root)
