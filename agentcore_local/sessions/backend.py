"""The data plane: runtime sessions, composed of one object per concern. table.py knows the
sessions, computes.py makes their compute, runner.py starts and stops it, changes.py holds the
reaper and what a new version or a deletion does; agent_proxy.py talks HTTP to the agent. This
module wires them and carries the three data-plane operations through them.

Rules, as AWS documents them: a session id starts compute on first use; the storage survives
the compute and is reset after 14 days without an invocation and when the runtime's version
changes; StopRuntimeSession returns once the storage is consistent; an invocation that races a
stop is refused with RetryableConflictException before it starts anything.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

import httpx

from ..control import Runtime, RuntimeRegistry
from ..errors import ResourceNotFoundException, RuntimeClientError
from ..sandbox import CodeArtifacts, Compute, Launcher, protocol_of
from ..services import Forwarder
from ..settings import Settings
from ..storage import SessionStorage, Volumes, frees_or_reads
from . import agent_proxy
from .agent_proxy import SESSION_HEADER
from .background import Background
from .changes import SessionChanges, delete_backups
from .computes import Computes
from .pool import WarmPool
from .runner import SessionRunner
from .session import Session, validate_session_id
from .table import SessionTable

__all__ = ["SESSION_HEADER", "Session", "SessionBackend", "validate_session_id"]

RESTORE_WAIT_S = 60.0  # a new compute's first command waits this long at most for the agent's restore
RESTORE_POLL_S = 0.01

log = logging.getLogger("agentcore_local.sessions")
Clock = Callable[[], float]


class SessionBackend:
    """The rules of runtime sessions, behind InvokeAgentRuntime, InvokeAgentRuntimeCommand,
    GetAgentCard and StopRuntimeSession."""

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
        self.s3_url: str | None = None  # the moto server's URL once serve has started it (connect)
        self.table = SessionTable(self.storage)
        self.computes = Computes(settings, launcher, self.artifacts)
        background = Background()
        self.runner = SessionRunner(settings, self.table, self.computes, background, clock)
        self.changes = SessionChanges(
            self.table,
            registry,
            self.computes.pool,
            clock,
            self.runner.request_stop,
            background.spawn,
            lambda runtime: delete_backups(self.s3_url, settings.backup_bucket, runtime),
        )
        registry.listeners.append(self.changes.on_runtime_change)

    def connect(
        self,
        s3_url: str,
        forwarder: Forwarder,
        shared_socket: Path,
        agent_env: Mapping[str, str],
        forwards: tuple[tuple[int, Path], ...],
    ) -> None:
        """serve's agent services, once started: where code zips and backups are (`s3_url`), the
        listener every compute reaches, and the environment and forwards each compute gets."""
        self.s3_url = s3_url
        self.computes.connect(forwarder, shared_socket, agent_env, forwards)

    @property
    def sessions(self) -> dict[tuple[str, str], Session]:
        return self.table.sessions

    @property
    def pool(self) -> WarmPool:
        return self.computes.pool

    @property
    def forwarder(self) -> Forwarder | None:
        return self.computes.forwarder

    def session(self, runtime_id: str, session_id: str, create: bool = True) -> Session | None:
        """The session, loaded from disk after a restart, or a new one (None if not `create`)."""
        return self.table.get(runtime_id, session_id, create)

    def active(self) -> int:
        """Sessions holding compute (starting, running or stopping): what --max-sessions caps."""
        return self.table.active()

    async def acquire(self, runtime: Runtime, session_id: str, frees: bool = False) -> Session:
        """Begin an invocation: a READY compute for the session (runner.py)."""
        return await self.runner.acquire(runtime, session_id, frees)

    def release(self, session: Session, compute: Compute | None) -> None:
        """End an invocation begun on `compute`."""
        self.runner.release(session, compute)

    async def reap(self) -> None:
        """Stop compute past its idle timeout or max lifetime (changes.py)."""
        await self.changes.reap()

    # --- the data-plane operations -------------------------------------------------------

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
        await self.runner.request_stop(session, "StopRuntimeSession", missing_ok=False)

    async def shutdown(self) -> None:
        """Stop every compute and pool member (serve is exiting)."""
        await self.pool.shutdown()
        stops = (self.runner.request_stop(s, "shutdown") for s in self.table.holding_compute())
        await asyncio.gather(*stops, return_exceptions=True)
