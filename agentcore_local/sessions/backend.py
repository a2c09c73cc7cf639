"""The data plane's rules: runtime sessions, when their compute starts and stops (session.py holds
a session's record, session_changes.py the reaper and what versions and deletions do; compute.py
runs a sandbox, storage.py keeps the files, agent_proxy.py talks HTTP).

Rules, as AWS documents them: a session id starts compute on first use; the storage survives
the compute and is reset after 14 days without an invocation and when the runtime's version
changes; StopRuntimeSession returns once the storage is consistent; an invocation that races a
stop is refused with RetryableConflictException before it starts anything.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx

from ..control import Runtime, RuntimeRegistry
from ..errors import (
    ResourceNotFoundException,
    RetryableConflictException,
    RuntimeClientError,
    ServiceQuotaExceededException,
)
from ..sandbox import CodeArtifacts, Compute, Launcher, LaunchSpec, free_port, protocol_of, s3_client
from ..services import SCOPE_VARIABLE, Forwarder, delete_scope, scope_of, session_prefix
from ..settings import DEFAULT_MOUNT_PATH, Settings
from ..storage import SessionStorage, Volumes, frees_or_reads
from . import agent_proxy
from .agent_proxy import SESSION_HEADER
from .changes import SessionChanges
from .lifecycle import Action, Event, LifecyclePolicy, State, StopReason
from .pool import WarmPool
from .session import Session, validate_session_id

__all__ = ["SESSION_HEADER", "Session", "SessionBackend", "validate_session_id"]

log = logging.getLogger("agentcore_local.sessions")
Clock = Callable[[], float]

# meta.json's lastInvocationAt only matters in days (the 14-day storage reset), and a write costs ~1 ms:
# a call rewrites it when it starts compute or when the saved time is this old, not on every call.
META_SAVE_INTERVAL = 60.0
RESTORE_WAIT_S = 60.0  # a new compute's first command waits this long at most for the agent's restore
RESTORE_POLL_S = 0.01


class SessionBackend(SessionChanges):
    """The rules of runtime sessions; compute.py runs the sandboxes, storage.py keeps the files,
    agent_proxy.py carries invocations to the agent, session_changes.py holds the reaper and
    what a new version or a deletion does."""

    def __init__(
        self,
        settings: Settings,
        registry: RuntimeRegistry,
        launcher: Launcher,
        clock: Clock,
        volumes: Volumes | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.launcher = launcher
        self.clock = clock
        # With `volumes` the kernel enforces the quota (a filesystem per session); else it is measured.
        self.storage = SessionStorage(settings.state_dir, settings.storage_quota_bytes, volumes)
        self.artifacts = CodeArtifacts(settings.state_dir / "code", lambda: self.s3_url, launcher.find_image)
        self.s3_url: str | None = None  # the moto server's URL once serve has started it (server.py)
        self.sessions: dict[tuple[str, str], Session] = {}
        # Starts beyond this wait their turn: thirty agents importing at once starve the API.
        self._starting = asyncio.Semaphore(max(1, settings.max_starts))
        self._tasks: set[asyncio.Task] = set()
        self._members = 0
        size = settings.pool if launcher.attaches_later() else 0
        if settings.pool and not size:
            log.info("no warm pool: the %s sandbox binds the storage at start", launcher.name)
        self.forwarder: Forwarder | None = None  # set by server.py once the listener runs
        self.shared_socket: Path | None = None
        self.pool = WarmPool(size, self._build_member, self._pool_key, self._starting, settings.start_timeout)
        registry.listeners.append(self._on_runtime_change)  # session_changes.py

    # --- bookkeeping ---------------------------------------------------------------------

    def session(self, runtime_id: str, session_id: str, create: bool = True) -> Session | None:
        """The session, loaded from disk after a restart, or a new one (None if not `create`)."""
        key = (runtime_id, session_id)
        if key in self.sessions:
            return self.sessions[key]
        root = self.storage.root(runtime_id, session_id)
        meta = self.storage.read_meta(root)
        if not create and meta is None:
            return None
        self.sessions[key] = session = Session.load(runtime_id, session_id, root, meta)
        return session

    def _save(self, session: Session) -> None:
        self.storage.write_meta(session.root, session.meta())

    def _spawn(self, coroutine) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _delete_backups(self, runtime: Runtime) -> None:
        bucket = self.settings.backup_bucket
        if not bucket or self.s3_url is None:  # backups off, or serve's S3 not started (tests)
            return
        scopes = {
            scope_of(runtime.id, v["config"].get("environmentVariables") or {}) for v in runtime.versions
        }
        s3 = s3_client(self.s3_url)
        for scope in sorted(scopes):
            gone = delete_scope(s3, bucket, scope)
            log.info("runtime_id=<%s>, scope=<%s> | %d backup objects deleted", runtime.id, scope, gone)

    def active(self) -> int:
        """Sessions holding compute (starting, running or stopping): what --max-sessions caps."""
        return sum(1 for s in self.sessions.values() if s.lifecycle.state is not State.STOPPED)

    # --- starting ------------------------------------------------------------------------

    def _prepare_storage(self, session: Session, runtime: Runtime, now: float) -> None:
        """Before new compute: reset the storage when AWS would, and measure what it holds."""
        self.storage.prepare(session.root, self._reset_reason(session, runtime, now))
        session.storage_version = runtime.version
        self._save(session)
        used = self.storage.measure(session.root)
        session.usage = session.usage if used is None else used

    def _spec(self, runtime: Runtime, name: str, storage: Path, scratch: Path, slot: Path) -> LaunchSpec:
        """A compute of `runtime`, as every session and pool member gets it; `slot`: where the
        storage is mounted at the first call (next to the session's storage, or the pool's)."""
        later = self.launcher.attaches_later()
        protocol = protocol_of(runtime.config)
        return LaunchSpec(
            name=name,
            storage_dir=storage,
            mount_path=runtime.session_storage_mount() or DEFAULT_MOUNT_PATH,
            # Its own network: the protocol's port, as on AWS; a shared one: any free port (PORT says which).
            port=protocol.port if self.launcher.agent_port() else free_port(),
            # BACKUP_SCOPE: the runtime's, or its id when its create set none (services/backups.py);
            # STORAGE_QUOTA_BYTES: the quota serve holds the session to (a runtime may set its own).
            env={
                "STORAGE_QUOTA_BYTES": str(self.settings.storage_quota_bytes),
                **self.settings.agent_env,
                **runtime.environment(),
                SCOPE_VARIABLE: scope_of(runtime.id, runtime.environment()),
            },
            scratch_dir=scratch,
            forwards=self.settings.forwards,
            tmp_bytes=self.settings.tmp_size_bytes,
            slot_dir=slot if later else None,
            agent=self.artifacts.command(runtime.config),
            readiness=protocol.readiness,
            protocol_port=protocol.port,
            image=self.artifacts.image(runtime.config),
        )

    def _forward(self) -> dict:
        """What a compute needs to give its sandbox a listener socket of its own (forwarder.py)."""
        return {"forwarder": self.forwarder, "shared_socket": self.shared_socket}

    def _pool_key(self, runtime: Runtime) -> tuple:
        """What a pool member must share with a session to serve it: the agent's whole start-up."""
        spec = self._spec(runtime, "key", Path(), Path(), Path())
        return (runtime.id, runtime.version, spec.mount_path, tuple(sorted(spec.env.items())), spec.agent)

    def _build_member(self, runtime: Runtime) -> tuple[tuple, Compute]:
        self._members += 1
        name = f"pool-{runtime.id}-{self._members}"
        root = self.settings.state_dir / "pool"
        spec = self._spec(runtime, name, root / "no-storage", root / f"{name}-scratch", root / f"{name}.slot")
        compute = Compute(
            self.launcher,
            spec,
            root / f"{name}.log",
            self.pool.lost,
            self.settings.stop_grace,
            **self._forward(),
        )
        return self._pool_key(runtime), compute

    async def _start(self, session: Session, runtime: Runtime) -> None:
        compute = self.pool.take(runtime)
        session.from_pool = compute is not None
        if compute is not None:
            compute.hand_over(self._on_compute_exit(session), session.root / "agent.log")
        else:
            name = f"{runtime.id}-{session.root.name[:12]}"
            slot = session.root / "storage.slot"
            spec = self._spec(runtime, name, session.storage, session.root / "scratch", slot)
            compute = Compute(
                self.launcher,
                spec,
                session.root / "agent.log",
                self._on_compute_exit(session),
                self.settings.stop_grace,
                **self._forward(),
            )
            async with self._starting:
                await compute.start(self.settings.start_timeout)
        try:
            compute.attach(session.storage)  # the mount appears at the first invocation, as on AWS
        except BaseException:
            await compute.stop(grace=1.0)
            raise
        if self.forwarder is not None:  # its connections are this session's from now on
            backups = session_prefix(compute.spec.env[SCOPE_VARIABLE], session.session_id)
            self.forwarder.limits.attribute(compute.spec.name, session.session_id, backups)
        session.compute, session.compute_version = compute, runtime.version
        # The reaper holds the compute to its own version's limits.
        session.policy = LifecyclePolicy.of(runtime.lifecycle())
        log.info(
            "session_id=<%s>, sandbox=<%s>, pool=<%s> | compute started",
            session.session_id,
            self.launcher.name,
            session.from_pool,
        )

    def _settle_exit(self, session: Session, compute: Compute) -> None:
        """The compute ended by itself (a crash, kill -9): the session is STOPPED, its storage kept."""
        if session.compute is compute and session.lifecycle.state is State.READY:
            why = f": {compute.lost}" if compute.lost else ""
            log.warning("session_id=<%s> | compute exited by itself%s", session.session_id, why)
            self._report_limits(session, compute)
            session.compute, session.lost = None, compute.lost
            session.lifecycle.fire(Event.EXITED, self.clock())
            self._spawn(self._flush_and_detach(session))

    def _report_limits(self, session: Session, compute: Compute) -> None:
        """Each kernel limit the compute hit since the last look: logged with the session id and
        counted in /_local/sessions (limitsHit, lastRefusal)."""
        if compute.confinement is None:
            return
        for reason in compute.confinement.limit_hits():
            if self.forwarder is not None:
                self.forwarder.limits.refuse(session.session_id, reason, limit=True)
            else:
                log.warning("session_id=<%s> | limit hit: %s", session.session_id, reason)

    def _flush(self, session: Session) -> None:
        session.storage_warning = self.storage.settle(session.root)
        if session.storage_warning:
            log.warning("session_id=<%s> | storage holds %s", session.session_id, session.storage_warning)

    async def _flush_and_detach(self, session: Session) -> None:
        await asyncio.to_thread(self._flush, session)
        async with session.lock:  # unless a new call has started new compute on it meanwhile
            if session.lifecycle.state is State.STOPPED and session.compute is None:
                await asyncio.to_thread(self.storage.detach, session.root)

    def _on_compute_exit(self, session: Session) -> Callable[[Compute], None]:
        def exited(compute: Compute) -> None:
            async def settle() -> None:
                async with session.lock:
                    self._settle_exit(session, compute)

            self._spawn(settle())

        return exited

    def _check_capacity(self, session: Session) -> None:
        if session.lifecycle.state is State.STOPPED and self.active() >= self.settings.max_sessions:
            raise ServiceQuotaExceededException(
                f"agentcore_local runs at most {self.settings.max_sessions} sessions at once "
                "(serve --max-sessions): stop a session (StopRuntimeSession), or retry later"
            )

    async def acquire(self, runtime: Runtime, session_id: str, frees: bool = False) -> Session:
        """Begin an invocation: a READY compute for the session (started if need be), counted in flight.
        `runtime` is the version its endpoint serves (RuntimeRegistry.resolve); `frees`: a call that
        reads or frees storage (exec, undo, status), never refused by the measured quota."""
        if runtime.status(self.clock()) == "CREATING":
            raise RetryableConflictException(
                f"Agent runtime {runtime.id} is still CREATING; retry when READY"
            )
        session = self.session(runtime.id, session_id)
        assert session is not None
        if session.lifecycle.state is State.STARTING:  # as AWS: no queueing behind a provisioning session
            raise RetryableConflictException(
                f"Runtime session {session_id} is still starting (provisioning); retry in a moment"
            )
        if session.lifecycle.state is State.READY and session.compute_version != runtime.version:
            # Its endpoint serves another version now (moved, or another qualifier): new compute, and
            # the storage resets at its start, as after any version change.
            await self._request_stop(session, StopReason.RUNTIME_UPDATED)
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
                    await self._start(session, runtime)
                except BaseException:
                    session.lifecycle.fire(Event.START_FAILED, self.clock())
                    raise
                session.lifecycle.fire(Event.STARTED, self.clock())
            if action is Action.START or moved or now - session.saved_at >= META_SAVE_INTERVAL:
                self._save(session)
                session.saved_at = now
        return session

    def release(self, session: Session, compute: Compute | None) -> None:
        """End an invocation (only on the compute it began on: a late stream of an old compute is ignored)."""
        if session.compute is compute:
            session.lifecycle.end_call(self.clock())
        if compute is not None:
            self._report_limits(session, compute)
        if not session.measuring:  # re-measure off the request path; the next call is checked against it
            session.measuring = True
            self._spawn(self._measure(session))

    async def _measure(self, session: Session) -> None:
        try:
            used = await asyncio.to_thread(self.storage.measure, session.root)
            session.usage = session.usage if used is None else used
        finally:
            session.measuring = False

    # --- the three data-plane operations -------------------------------------------------

    async def invoke(
        self, runtime: Runtime, session_id: str, payload: bytes, headers: dict[str, str]
    ) -> tuple[httpx.Response, AsyncIterator[bytes]]:
        """Forward one invocation to the session's agent; the answer streams through as it comes."""
        frees = frees_or_reads(payload)
        session = await self.acquire(runtime, session_id, frees)
        compute = session.compute
        assert compute is not None
        for attempt in (1, 2):
            try:
                path = protocol_of(runtime.config).path
                answer = await agent_proxy.send_invocation(compute, session_id, payload, headers, path)
                break
            except RuntimeClientError:
                self.release(session, compute)
                raise
            except httpx.HTTPError as error:
                self.release(session, compute)
                # The compute died under this request (kill -9, a crash): no agent is left to answer it,
                # so send it once more, to new compute on the same storage.
                if (
                    attempt == 1
                    and isinstance(error, httpx.TransportError)
                    and await compute.wait_exited(5.0)
                    and compute.lost is None  # ended by its memory limit: it would only end again
                ):
                    session = await self.acquire(runtime, session_id, frees)
                    compute = session.compute
                    assert compute is not None
                    continue
                raise RuntimeClientError(f"The agent did not answer: {compute.lost or error}") from error
        done_with = compute
        body = agent_proxy.relay(answer, session_id, lambda: self.release(session, done_with))
        return answer, body

    async def agent_card(self, runtime: Runtime, session_id: str) -> Any:
        """GetAgentCard: the A2A card the session's agent serves (its compute started if needed)."""
        session = await self.acquire(runtime, session_id)
        compute = session.compute
        assert compute is not None
        try:
            return await agent_proxy.fetch_json(compute, session_id, "/.well-known/agent-card.json")
        finally:
            self.release(session, compute)

    async def run_command(
        self, runtime: Runtime, session_id: str, command: str, timeout: float
    ) -> AsyncIterator[dict[str, Any]]:
        """InvokeAgentRuntimeCommand: start compute if needed, then stream the command's output; never
        refused by the measured quota (a command is how files are deleted)."""
        session = await self.acquire(runtime, session_id, frees=True)
        compute = session.compute
        assert compute is not None
        if session.announced is not compute:
            session.announced = compute
            await self._await_restore(compute, session_id)

        async def events() -> AsyncIterator[dict[str, Any]]:
            try:
                async for message in compute.exec(command, timeout):
                    yield message
            finally:
                self.release(session, compute)

        return events()

    async def _await_restore(self, compute: Compute, session_id: str) -> None:
        """Before a new compute's first command: a /ping that names the session (the agent learns
        whose backup to restore from it: docs/backups.md), then, while the agent says HealthyBusy
        (restoring), more of them, at most RESTORE_WAIT_S. Not AWS's (its exec never reaches the
        agent): the local stand-in that lets an exec find a reset storage restored."""
        headers = {SESSION_HEADER: session_id}
        deadline = time.monotonic() + RESTORE_WAIT_S
        while await compute.ping(headers) == "HealthyBusy" and time.monotonic() < deadline:
            await asyncio.sleep(RESTORE_POLL_S)

    async def stop(self, runtime: Runtime, session_id: str) -> None:
        """StopRuntimeSession: return once the storage is consistent; ResourceNotFound if nothing runs."""
        session = self.session(runtime.id, session_id, create=False)
        if session is None:
            raise ResourceNotFoundException(f"Runtime session {session_id} not found or already terminated")
        await self._request_stop(session, "StopRuntimeSession", missing_ok=False)

    async def _request_stop(self, session: Session, reason: str, missing_ok: bool = True) -> None:
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
                self._save(session)
                # Flushed above; off the loop all the same (an unmount writes what is still dirty).
                await asyncio.to_thread(self.storage.detach, session.root)
            log.info("session_id=<%s> | stopped (%s)", session.session_id, reason)

    async def shutdown(self) -> None:
        """Stop every compute and pool member (serve is exiting)."""
        await self.pool.shutdown()
        running = [s for s in self.sessions.values() if s.lifecycle.state is not State.STOPPED]
        await asyncio.gather(*(self._request_stop(s, "shutdown") for s in running), return_exceptions=True)
