"""SessionChanges on its own: handed the sessions, the registry, a clock and a stop, it decides
which compute stops (the reaper) and which storage goes (a deleted runtime), with no sandbox,
no HTTP and no real time."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from agentcore_local.control import RuntimeRegistry
from agentcore_local.sessions.changes import SessionChanges
from agentcore_local.sessions.lifecycle import Event, State, StopReason
from agentcore_local.sessions.session import Session
from agentcore_local.sessions.table import SessionTable
from agentcore_local.storage import SessionStorage

ACCOUNT = "123456789012"
SESSION_ID = "reaped-session-0123456789abcdef0123456789"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class NoPool:
    """What SessionChanges asks of the warm pool: that a changed runtime's members retire."""

    def __init__(self) -> None:
        self.retired: list[tuple[str, bool]] = []

    def retire(self, runtime: Any, deleted: bool) -> None:
        self.retired.append((runtime.id, deleted))


def runtime_request(name: str) -> dict[str, Any]:
    return {
        "agentRuntimeName": name,
        "agentRuntimeArtifact": {
            "containerConfiguration": {"containerUri": f"{ACCOUNT}.dkr.ecr.us-west-2.amazonaws.com/a:latest"}
        },
        "roleArn": f"arn:aws:iam::{ACCOUNT}:role/AgentCoreRuntimeRole",
        "networkConfiguration": {"networkMode": "PUBLIC"},
        "filesystemConfigurations": [{"sessionStorage": {"mountPath": "/mnt/workspace"}}],
        "lifecycleConfiguration": {"idleRuntimeSessionTimeout": 60, "maxLifetime": 600},
    }


class World:
    def __init__(self, tmp_path: Path) -> None:
        self.clock = Clock()
        self.registry = RuntimeRegistry("us-west-2", ACCOUNT, self.clock, 0.0, tmp_path / "runtimes.json")
        self.runtime = self.registry.create(runtime_request("changes_unit"), ready_now=True)
        self.table = SessionTable(SessionStorage(tmp_path, 1 << 30))
        self.pool = NoPool()
        self.stops: list[tuple[str, str]] = []
        self.spawned: list[Coroutine[Any, Any, Any]] = []
        self.changes = SessionChanges(
            self.table, self.registry, self.pool, self.clock, self.stop, self.spawned.append, lambda _: None
        )
        self.registry.listeners.append(self.changes.on_runtime_change)

    async def stop(self, session: Session, reason: str) -> None:
        self.stops.append((session.session_id, reason))
        session.lifecycle.fire(Event.STOP, self.clock())
        session.lifecycle.fire(Event.STOPPED, self.clock())

    def ready_session(self) -> Session:
        session = self.table.get(self.runtime.id, SESSION_ID)
        assert session is not None
        session.lifecycle.fire(Event.START, self.clock())
        session.lifecycle.fire(Event.STARTED, self.clock())
        session.lifecycle.begin_call(self.clock())
        session.lifecycle.end_call(self.clock())
        return session

    def run_spawned(self) -> None:
        async def drain() -> None:
            while self.spawned:
                await self.spawned.pop(0)

        asyncio.run(drain())


def test_the_reaper_stops_compute_idle_past_the_runtimes_timeout_by_the_clock_it_is_handed(
    tmp_path: Path,
) -> None:
    world = World(tmp_path)
    session = world.ready_session()
    world.clock.now += 59
    asyncio.run(world.changes.reap())
    world.run_spawned()
    assert world.stops == [] and session.lifecycle.state is State.READY
    world.clock.now += 2
    asyncio.run(world.changes.reap())
    world.run_spawned()
    assert world.stops == [(SESSION_ID, StopReason.IDLE_TIMEOUT)]
    assert session.lifecycle.state is State.STOPPED and world.changes.passes == 2


def test_a_deleted_runtime_takes_its_sessions_storage_even_those_only_on_disk(tmp_path: Path) -> None:
    world = World(tmp_path)
    session = world.table.get(world.runtime.id, SESSION_ID)
    assert session is not None
    session.storage.mkdir(parents=True)
    world.table.save(session)
    world.table.forget(session)  # as after a restart of serve: only meta.json remembers it
    world.registry.delete(world.runtime.id, None)
    world.run_spawned()
    assert world.pool.retired == [(world.runtime.id, True)]
    assert not session.root.exists() and world.table.sessions == {}
