"""The data plane's backend: runtime sessions, their compute and their storage (no HTTP routing here).

Rules, as AWS documents them: a session id starts compute on first use; the storage survives
the compute and is reset after 14 days without an invocation and when the runtime's version
changes; StopRuntimeSession returns once the storage is consistent; an invocation that races a
stop is refused with RetryableConflictException before it starts anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from .compute import Compute, free_port
from .exceptions import (
    ResourceNotFoundException,
    RetryableConflictException,
    RuntimeClientError,
    ServiceQuotaExceededException,
    ValidationException,
)
from .lifecycle import Action, Event, SessionLifecycle, State
from .runtimes import Runtime, RuntimeRegistry
from .sandbox import Launcher, LaunchSpec
from .settings import DEFAULT_MOUNT_PATH, Settings
from .storage_limits import describe as describe_unsupported
from .storage_limits import scan as scan_unsupported

log = logging.getLogger("agentcore_local.sessions")
Clock = Callable[[], float]

SESSION_HEADER = "X-Amzn-Bedrock-AgentCore-Runtime-Session-Id"
SESSION_ID_MIN, SESSION_ID_MAX = 33, 256
# meta.json's lastInvocationAt only matters in days (the 14-day storage reset), and a write costs ~1 ms:
# a call rewrites it when it starts compute or when the saved time is this old, not on every call.
META_SAVE_INTERVAL = 60.0
# The alphabet of the SessionId shape in AgentCore's answers: an id outside it (a slash, a dot, a
# space) could never be echoed back by AWS, so it is refused here rather than accepted locally only.
SESSION_ID_CHARS = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_-]*")
# Request headers the agent sees, as AgentCore forwards them.
FORWARDED = {
    "content-type",
    "accept",
    "x-amzn-bedrock-agentcore-runtime-user-id",
    "traceparent",
    "tracestate",
    "baggage",
}
FORWARDED_PREFIX = "x-amzn-bedrock-agentcore-runtime-custom-"


def validate_session_id(session_id: str | None) -> str:
    """AWS's rule for runtimeSessionId (33 to 256 characters), checked here as the service does."""
    if not session_id:
        raise ValidationException(f"{SESSION_HEADER} header is required", "runtimeSessionId")
    if not SESSION_ID_MIN <= len(session_id) <= SESSION_ID_MAX:
        raise ValidationException(
            f"runtimeSessionId has {len(session_id)} characters; "
            f"it must have {SESSION_ID_MIN} to {SESSION_ID_MAX}",
            "runtimeSessionId",
        )
    if not SESSION_ID_CHARS.fullmatch(session_id):
        raise ValidationException(
            "runtimeSessionId may hold only letters, digits, '-' and '_', starting with a letter or digit "
            "(no '/', '.', spaces or control characters); make one with: python client.py new-session-id",
            "runtimeSessionId",
        )
    return session_id


def agent_error_message(body: bytes, limit: int = 2000) -> str:
    """The agent's own words from an error answer: the `error` of its JSON body, else the body as text."""
    text = body.decode(errors="replace")
    with contextlib.suppress(ValueError):
        parsed = json.loads(text)
        if isinstance(parsed, dict) and isinstance(parsed.get("error"), str):
            text = parsed["error"]
    return text[:limit]


def syncfs(path: Path) -> None:
    """Flush the filesystem holding `path` (syncfs(2); os.sync() where that is missing)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        os.sync()
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if getattr(libc, "syncfs", None) is None or libc.syncfs(fd) != 0:
            os.sync()
    finally:
        os.close(fd)


def disk_usage(path: Path) -> int:
    total = 0
    for root, dirs, files in os.walk(path):
        for name in files + dirs:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
    return total


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".meta-")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f)
    os.replace(tmp, path)


@dataclass
class Session:
    """A session's lifecycle, its paths, and its compute while it has one."""

    runtime_id: str
    lifecycle: SessionLifecycle
    root: Path  # state_dir/sessions/RUNTIME_ID/KEY: storage/, meta.json, agent.log
    storage_version: int | None = None
    compute: Compute | None = None
    compute_version: int | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    stop_task: asyncio.Task | None = None
    saved_at: float = float("-inf")  # clock time of the last acquire that wrote meta.json
    storage_warning: str | None = None  # what AWS's session storage would not keep, found at the last stop
    usage: int = 0  # bytes in storage at the last measure: at compute start, then after each call
    measuring: bool = False

    @property
    def session_id(self) -> str:
        return self.lifecycle.session_id

    @property
    def storage(self) -> Path:
        return self.root / "storage"

    def save(self) -> None:
        _write_json(
            self.root / "meta.json",
            {
                "runtimeSessionId": self.session_id,
                "storageVersion": self.storage_version,
                "lastInvocationAt": self.lifecycle.last_invocation_at,
            },
        )

    def describe(self) -> dict[str, Any]:
        return {
            "agentRuntimeId": self.runtime_id,
            "runtimeSessionId": self.session_id,
            "state": self.lifecycle.state.value,
            "inFlight": self.lifecycle.in_flight,
            "startedAt": self.lifecycle.started_at,
            "lastInvocationAt": self.lifecycle.last_invocation_at,
            "storageVersion": self.storage_version,
            "pid": self.compute.pid if self.compute else None,
            "storageWarning": self.storage_warning,
        }


class SessionBackend:
    """Every session of every runtime; the async half of the lifecycle (launching and stopping)."""

    def __init__(
        self, settings: Settings, registry: RuntimeRegistry, launcher: Launcher, clock: Clock
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.launcher = launcher
        self.clock = clock
        self.sessions: dict[tuple[str, str], Session] = {}
        self.http = httpx.AsyncClient(timeout=httpx.Timeout(connect=10.0, read=None, write=60.0, pool=10.0))
        self._tasks: set[asyncio.Task] = set()
        registry.listeners.append(self._on_runtime_change)

    # --- bookkeeping ---------------------------------------------------------------------

    def _root(self, runtime_id: str, session_id: str) -> Path:
        key = hashlib.sha256(session_id.encode()).hexdigest()[:32]  # any id is a safe directory name
        return self.settings.state_dir / "sessions" / runtime_id / key

    def session(self, runtime_id: str, session_id: str, create: bool = True) -> Session | None:
        """The session, loaded from disk after a restart, or a new one (None if not `create`)."""
        key = (runtime_id, session_id)
        if key in self.sessions:
            return self.sessions[key]
        root = self._root(runtime_id, session_id)
        meta_path = root / "meta.json"
        if not create and not meta_path.exists():
            return None
        session = Session(runtime_id, SessionLifecycle(session_id), root)
        if meta_path.exists():
            meta = json.loads(meta_path.read_text())
            session.storage_version = meta.get("storageVersion")
            session.lifecycle.last_invocation_at = meta.get("lastInvocationAt")
        self.sessions[key] = session
        return session

    def _spawn(self, coroutine) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- starting ------------------------------------------------------------------------

    def _prepare_storage(self, session: Session, runtime: Runtime, now: float) -> None:
        """Before new compute: reset the storage when AWS would."""
        reason = None
        if session.storage_version is not None and session.storage_version != runtime.version:
            reason = f"the runtime changed from version {session.storage_version} to {runtime.version}"
        elif session.lifecycle.storage_expired(now, runtime.policy()):
            reason = "14 days passed without an invocation"
        elif runtime.session_storage_mount() is None:
            reason = "the runtime has no sessionStorage filesystem configuration"
        if reason and session.storage.exists():
            log.info("session_id=<%s> | storage reset: %s", session.session_id, reason)
            shutil.rmtree(session.storage)
        session.storage.mkdir(parents=True, exist_ok=True)
        session.storage_version = runtime.version
        session.save()

    def _check_quota(self, session: Session) -> None:
        used = session.usage
        if used > self.settings.storage_quota_bytes:
            raise ServiceQuotaExceededException(
                f"Session storage holds {used / 2**20:.0f} MiB, over its quota of "
                f"{self.settings.storage_quota_bytes / 2**20:.0f} MiB: delete files, or start a new session"
            )

    async def _start(self, session: Session, runtime: Runtime) -> None:
        mount = runtime.session_storage_mount() or DEFAULT_MOUNT_PATH
        env = {**self.settings.agent_env, **runtime.environment()}
        spec = LaunchSpec(
            name=f"{runtime.id}-{session.root.name[:12]}",
            storage_dir=session.storage,
            mount_path=mount,
            port=self.launcher.agent_port() or free_port(),
            env=env,
            scratch_dir=session.root / "scratch",
            forwards=self.settings.forwards,
        )
        compute = Compute(
            self.launcher,
            spec,
            session.root / "agent.log",
            self._on_compute_exit(session),
            self.settings.stop_grace,
        )
        await compute.start(self.settings.start_timeout)
        session.compute, session.compute_version = compute, runtime.version
        log.info("session_id=<%s>, sandbox=<%s> | compute started", session.session_id, self.launcher.name)

    def _settle_exit(self, session: Session, compute: Compute) -> None:
        """The compute ended by itself (a crash, kill -9): the session is STOPPED, its storage kept."""
        if session.compute is compute and session.lifecycle.state is State.READY:
            log.warning("session_id=<%s> | compute exited by itself", session.session_id)
            session.compute = None
            syncfs(session.storage)
            session.lifecycle.fire(Event.EXITED, self.clock())

    def _on_compute_exit(self, session: Session) -> Callable[[Compute], None]:
        def exited(compute: Compute) -> None:
            async def settle() -> None:
                async with session.lock:
                    self._settle_exit(session, compute)

            self._spawn(settle())

        return exited

    async def acquire(self, runtime: Runtime, session_id: str) -> Session:
        """Begin an invocation: a READY compute for the session (started if need be), counted in flight."""
        if runtime.status(self.clock()) == "CREATING":
            raise RetryableConflictException(
                f"Agent runtime {runtime.id} is still CREATING; retry when READY"
            )
        session = self.session(runtime.id, session_id)
        assert session is not None
        async with session.lock:
            now = self.clock()
            if session.compute is not None and not session.compute.running:
                self._settle_exit(session, session.compute)  # died since the last call: start afresh
            if session.lifecycle.state is State.STOPPED:
                # Off the event loop: a reset may delete, and the quota walks, a whole node_modules.
                await asyncio.to_thread(self._prepare_storage, session, runtime, now)
                session.usage = await asyncio.to_thread(disk_usage, session.storage)
            self._check_quota(session)  # the last measure: a walk per call costs ~6 us a file
            action = session.lifecycle.begin_call(now)  # RetryableConflictException while STOPPING
            if action is Action.START:
                session.lifecycle.fire(Event.START, now)
                try:
                    await self._start(session, runtime)
                except BaseException:
                    session.lifecycle.fire(Event.START_FAILED, self.clock())
                    raise
                session.lifecycle.fire(Event.STARTED, self.clock())
            if action is Action.START or now - session.saved_at >= META_SAVE_INTERVAL:
                session.save()
                session.saved_at = now
        return session

    def release(self, session: Session, compute: Compute | None) -> None:
        """End an invocation (only on the compute it began on: a late stream of an old compute is ignored)."""
        if session.compute is compute:
            session.lifecycle.end_call(self.clock())
        if not session.measuring:  # re-measure off the request path; the next call is checked against it
            session.measuring = True
            self._spawn(self._measure(session))

    async def _measure(self, session: Session) -> None:
        try:
            session.usage = await asyncio.to_thread(disk_usage, session.storage)
        finally:
            session.measuring = False

    # --- the three data-plane operations -------------------------------------------------

    async def invoke(
        self, runtime: Runtime, session_id: str, payload: bytes, headers: dict[str, str]
    ) -> tuple[str, AsyncIterator[bytes]]:
        """Forward one invocation to the session's agent; the answer streams through as it comes."""
        session = await self.acquire(runtime, session_id)
        compute = session.compute
        assert compute is not None
        forwarded = {
            k: v
            for k, v in headers.items()
            if k.lower() in FORWARDED or k.lower().startswith(FORWARDED_PREFIX)
        }
        forwarded[SESSION_HEADER] = session_id
        for attempt in (1, 2):
            try:
                request = compute.http.build_request(
                    "POST", f"{compute.url}/invocations", content=payload, headers=forwarded
                )
                answer = await compute.http.send(request, stream=True)
                break
            except httpx.HTTPError as error:
                self.release(session, compute)
                # The compute died under this request (kill -9, a crash): no agent is left to answer it,
                # so send it once more, to new compute on the same storage.
                if (
                    attempt == 1
                    and isinstance(error, httpx.TransportError)
                    and await compute.wait_exited(5.0)
                ):
                    session = await self.acquire(runtime, session_id)
                    compute = session.compute
                    assert compute is not None
                    continue
                raise RuntimeClientError(f"The agent did not answer: {error}") from error
        if answer.status_code >= 400:
            body = agent_error_message(await answer.aread())
            await answer.aclose()
            self.release(session, compute)
            raise RuntimeClientError(f"Received error ({answer.status_code}) from runtime: {body}")

        async def body() -> AsyncIterator[bytes]:
            try:
                async for chunk in answer.aiter_raw():
                    yield chunk
            except httpx.HTTPError as error:  # the compute was stopped mid-answer
                log.info("session_id=<%s> | answer cut short: %s", session_id, error)
            finally:
                await answer.aclose()
                self.release(session, compute)

        return answer.headers.get("content-type", "application/json"), body()

    async def run_command(
        self, runtime: Runtime, session_id: str, command: str, timeout: float
    ) -> AsyncIterator[dict[str, Any]]:
        """InvokeAgentRuntimeCommand: start compute if needed, then stream the command's output."""
        session = await self.acquire(runtime, session_id)
        compute = session.compute
        assert compute is not None

        async def events() -> AsyncIterator[dict[str, Any]]:
            try:
                async for message in compute.exec(command, timeout):
                    yield message
            finally:
                self.release(session, compute)

        return events()

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
            await asyncio.to_thread(syncfs, session.storage)
            await asyncio.to_thread(self._warn_unsupported, session)
        finally:
            async with session.lock:
                session.compute = None
                session.stop_task = None
                session.lifecycle.fire(Event.STOPPED, self.clock())
                session.save()
            log.info("session_id=<%s> | stopped (%s)", session.session_id, reason)

    def _warn_unsupported(self, session: Session) -> None:
        """Log what the storage holds that AgentCore Session Storage would not keep: learn it here."""
        found = scan_unsupported(session.storage) if session.storage.is_dir() else []
        session.storage_warning = describe_unsupported(found) if found else None
        if found:
            log.warning("session_id=<%s> | storage holds %s", session.session_id, session.storage_warning)

    # --- time and change -----------------------------------------------------------------

    async def reap(self) -> None:
        """Stop compute past its idle timeout or max lifetime (the agent's HealthyBusy counts as activity)."""
        now = self.clock()
        for session in list(self.sessions.values()):
            runtime = self.registry.runtimes.get(session.runtime_id)
            if runtime is None:
                continue
            reason = session.lifecycle.stop_reason(now, runtime.policy())
            if reason == "idle_timeout" and session.compute and await session.compute.ping() == "HealthyBusy":
                session.lifecycle.touch(now)
                continue
            if reason:
                self._spawn(self._request_stop(session, reason))

    def _on_runtime_change(self, change: str, runtime: Runtime) -> None:
        """A new version resets every session's storage (at its next start); deletion removes them."""
        for session in [s for s in self.sessions.values() if s.runtime_id == runtime.id]:
            self._spawn(self._retire(session, runtime, deleted=change == "deleted"))

    async def _retire(self, session: Session, runtime: Runtime, deleted: bool) -> None:
        async with session.lock:
            needs_stop = session.lifecycle.state is State.READY and (
                deleted or session.compute_version != runtime.version
            )
        if needs_stop:
            await self._request_stop(
                session, "runtime deleted" if deleted else f"runtime version {runtime.version}"
            )
        if deleted:
            self.sessions.pop((session.runtime_id, session.session_id), None)
            shutil.rmtree(session.root, ignore_errors=True)

    async def shutdown(self) -> None:
        """Stop every compute (serve is exiting)."""
        running = [s for s in self.sessions.values() if s.lifecycle.state is not State.STOPPED]
        await asyncio.gather(*(self._request_stop(s, "shutdown") for s in running), return_exceptions=True)
        await self.http.aclose()
