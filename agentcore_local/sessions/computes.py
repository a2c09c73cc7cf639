"""Where a session's compute comes from: the LaunchSpec every compute of a runtime gets, a warm
pool member or a fresh start, the storage attached at the first call; and the kernel limits a
compute hit, reported under its session's id. When compute starts and stops is runner.py's."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Mapping
from pathlib import Path

from ..control import Runtime
from ..sandbox import CodeArtifacts, Compute, Launcher, LaunchSpec, free_port, protocol_of
from ..services import SCOPE_VARIABLE, Forwarder, scope_of, session_prefix
from ..settings import DEFAULT_MOUNT_PATH, Settings
from .lifecycle import LifecyclePolicy
from .pool import WarmPool
from .session import Session

log = logging.getLogger("agentcore_local.sessions")
OnExit = Callable[[Compute], None]


class Computes:
    def __init__(self, settings: Settings, launcher: Launcher, artifacts: CodeArtifacts) -> None:
        self.settings = settings
        self.launcher = launcher
        self.artifacts = artifacts
        # Starts beyond this wait their turn: thirty agents importing at once starve the API.
        self.starting = asyncio.Semaphore(max(1, settings.max_starts))
        self.forwarder: Forwarder | None = None  # set by connect() once serve's listener runs
        self.shared_socket: Path | None = None
        self._members = 0
        size = settings.pool if launcher.attaches_later() else 0
        if settings.pool and not size:
            log.info("no warm pool: the %s sandbox binds the storage at start", launcher.name)
        self.pool = WarmPool(size, self._build_member, self._pool_key, self.starting, settings.start_timeout)

    def connect(
        self,
        forwarder: Forwarder,
        shared_socket: Path,
        agent_env: Mapping[str, str],
        forwards: tuple[tuple[int, Path], ...],
    ) -> None:
        """serve's agent services: every compute from now on reaches them (and gets this env)."""
        self.forwarder, self.shared_socket = forwarder, shared_socket
        self.settings = dataclasses.replace(self.settings, agent_env=agent_env, forwards=forwards)

    def spec(self, runtime: Runtime, name: str, storage: Path, scratch: Path, slot: Path) -> LaunchSpec:
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

    def _compute(self, spec: LaunchSpec, log_file: Path, on_exit: OnExit) -> Compute:
        return Compute(
            self.launcher,
            spec,
            log_file,
            on_exit,
            self.settings.stop_grace,
            # What a compute needs to give its sandbox a listener socket of its own (forwarder.py).
            forwarder=self.forwarder,
            shared_socket=self.shared_socket,
        )

    def _pool_key(self, runtime: Runtime) -> tuple:
        """What a pool member must share with a session to serve it: the agent's whole start-up."""
        spec = self.spec(runtime, "key", Path(), Path(), Path())
        return (runtime.id, runtime.version, spec.mount_path, tuple(sorted(spec.env.items())), spec.agent)

    def _build_member(self, runtime: Runtime) -> tuple[tuple, Compute]:
        self._members += 1
        name = f"pool-{runtime.id}-{self._members}"
        root = self.settings.state_dir / "pool"
        spec = self.spec(runtime, name, root / "no-storage", root / f"{name}-scratch", root / f"{name}.slot")
        return self._pool_key(runtime), self._compute(spec, root / f"{name}.log", self.pool.lost)

    async def start(self, session: Session, runtime: Runtime, on_exit: OnExit) -> None:
        """The session's compute: a pool member or a fresh start, its storage attached, READY."""
        compute = self.pool.take(runtime)
        session.from_pool = compute is not None
        if compute is not None:
            compute.hand_over(on_exit, session.root / "agent.log")
        else:
            name = f"{runtime.id}-{session.root.name[:12]}"
            slot = session.root / "storage.slot"
            spec = self.spec(runtime, name, session.storage, session.root / "scratch", slot)
            compute = self._compute(spec, session.root / "agent.log", on_exit)
            async with self.starting:
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

    def report_limits(self, session: Session, compute: Compute) -> None:
        """Each kernel limit the compute hit since the last look: logged with the session id and
        counted in /_local/sessions (limitsHit, lastRefusal)."""
        if compute.confinement is None:
            return
        for reason in compute.confinement.limit_hits():
            if self.forwarder is not None:
                self.forwarder.limits.refuse(session.session_id, reason, limit=True)
            else:
                log.warning("session_id=<%s> | limit hit: %s", session.session_id, reason)
