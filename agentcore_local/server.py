"""The application: backends wired together, a reaper for idle sessions, clean shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import signal
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import IO

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware

import durable

from . import state_lock
from .announcement import announce, remove_endpoint
from .api import OwnHostOnly, RenderUnexpected, render_error, routes, unknown_operation
from .connection_limits import raise_open_files_limit
from .control import RuntimeRegistry, agent_request
from .errors import AgentCoreError
from .sandbox import Launcher, choose, ecr_uri, s3_client
from .services import backend_from_spec, start_agent_services
from .sessions import SessionBackend
from .settings import DEFAULT_MOUNT_PATH, Settings
from .state_lock import ENDPOINT_FILE  # noqa: F401 (its spelling for __main__ and bench)
from .storage import Volumes, unmount_under

log = logging.getLogger("agentcore_local")
logging.getLogger("httpx").setLevel(logging.WARNING)
Clock = Callable[[], float]
RUNTIME_FILE = "runtime.json"


def write_runtime_record(arn: str, runtime_id: str, region: str, path: Path) -> None:
    """runtime.json in the format deploy.py writes and client.py reads (cloud/runtime_record.py),
    so `client.py --runtime-file` finds the default runtime; atomic, as a kill must not tear it."""
    body = json.dumps({"agentRuntimeArn": arn, "agentRuntimeId": runtime_id, "region": region}, indent=2)
    durable.write_text(path, body + "\n")


def default_runtime_request(settings: Settings, name: str) -> dict:
    """The runtime `serve` registers: the local coding_agent.py with session storage at /mnt/workspace."""
    return {
        "agentRuntimeName": name,
        "agentRuntimeArtifact": {
            "containerConfiguration": {
                # --docker-image's (images.py): what --sandbox docker runs for this runtime
                "containerUri": ecr_uri(settings.docker_image, settings.account, settings.region)
            }
        },
        "roleArn": f"arn:aws:iam::{settings.account}:role/AgentCoreRuntimeRole",
        "networkConfiguration": {"networkMode": "PUBLIC"},
        "protocolConfiguration": {"serverProtocol": "HTTP"},
        "filesystemConfigurations": [{"sessionStorage": {"mountPath": DEFAULT_MOUNT_PATH}}],
        "description": "coding_agent.py from this checkout, served by agentcore_local",
    }


def register_own_agent(settings: Settings, sessions: SessionBackend, registry: RuntimeRegistry):
    """serve --agent: the directory zipped into serve's S3 and registered (updated when it exists)."""
    assert sessions.s3_url is not None
    request = agent_request(
        settings.agent_dir, s3_client(sessions.s3_url), settings.account, DEFAULT_MOUNT_PATH
    )
    sessions.artifacts.check(request)
    known = registry.find_by_name(request["agentRuntimeName"])
    if known is None:
        return registry.create(request, ready_now=True)
    return registry.update(known.id, request)


# Where serve mounts under its state dir: session filesystems and slots, the warm pool's slots.
MOUNTED_PARTS = ("sessions", "pool")


def storage_volumes(settings: Settings) -> Volumes | None:
    """A filesystem per session where serve may mount, after unmounting what a killed serve left."""
    if stale := sum(unmount_under(settings.state_dir / part) for part in MOUNTED_PARTS):
        log.warning("unmounted %d filesystem(s) and slot(s) a previous serve left mounted", stale)
    if not settings.storage_volume:
        log.info("session storage: no filesystem per session (--no-storage-volume); the quota is measured")
        return None
    volumes, why = Volumes.probe(settings.storage_quota_bytes, settings.state_dir / "volume-probe")
    if volumes is None:
        log.warning(
            "session storage: no filesystem per session (%s): the quota is measured after each call, so "
            "a session can write past it during one call",
            why,
        )
    else:
        log.info("session storage: %s", why)
    return volumes


def create_app(settings: Settings, clock: Clock = time.time, launcher: Launcher | None = None) -> Starlette:
    """The ASGI app. Tests pass their own clock; `launcher` defaults to the --sandbox choice."""
    state_dir = settings.state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    if launcher is None:
        # The user's secrets, every session's storage, and the checkout's own local state
        # (deploy's runtime.json, other servers' state dirs) stay out of every sandbox.
        hidden = (Path.home(), state_dir, settings.agent_script.resolve().parent / ".agentcore")
        launcher = choose(
            settings.sandbox,
            settings.python,
            settings.agent_script,
            hidden,
            settings.docker_image,
            settings.session_limits,
        )
    settings_abs = dataclasses.replace(settings, state_dir=state_dir)
    registry = RuntimeRegistry(
        settings.region, settings.account, clock, settings.provision_seconds, state_dir / "runtimes.json"
    )
    registry.load()
    sessions = SessionBackend(settings_abs, registry, launcher, clock, storage_volumes(settings_abs))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        backend = backend_from_spec(
            settings.model_backend, settings.scripted_plan, settings.backend_model, settings.openai_api_key
        )
        raise_open_files_limit()  # every session's connections are descriptors of this process
        services = await asyncio.to_thread(
            start_agent_services,
            state_dir,
            backend,
            settings.region,
            backup_bucket=settings.backup_bucket,
            caps=settings.connection_caps,
        )
        app.state.agent_services = services
        # A sandbox with its own network reaches the services through its forward, the rest over TCP.
        # serve's environment and the runtime's come after: MODEL_PROVIDER=scripted there keeps the
        # in-process test double.
        private, reaches = sessions.launcher.private_network, sessions.launcher.reaches_host_loopback
        defaults = services.agent_env(in_sandbox=private) if private or reaches else {}
        sessions.connect(
            services.s3_url,  # where a code zip is fetched from (artifacts.py)
            services.forwarder,
            services.socket_path,
            agent_env={**defaults, **settings_abs.agent_env},
            forwards=(*settings_abs.forwards, services.forward) if private else settings_abs.forwards,
        )
        if settings.default_runtime:
            runtime = registry.find_by_name(settings.default_runtime) or registry.create(
                default_runtime_request(settings, settings.default_runtime), ready_now=True
            )
            app.state.default_runtime = runtime
            write_runtime_record(runtime.arn, runtime.id, settings.region, state_dir / RUNTIME_FILE)
            sessions.pool.fill(runtime)  # warm members for the first sessions, off the request path
        if settings.agent_dir is not None:
            app.state.own_agent = await asyncio.to_thread(register_own_agent, settings, sessions, registry)
        reaper = asyncio.create_task(reap_forever(sessions, settings.reaper_interval))
        if app.state.url is not None:  # the socket listens already (bind): connections queue until served
            announce(app.state, app.state.url)
        try:
            yield
        finally:
            if app.state.url is not None:
                remove_endpoint(state_dir)
            reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reaper
            await sessions.shutdown()
            sessions.launcher.close()  # the computes' cgroups' parent
            for part in MOUNTED_PARTS:  # whatever a failed stop left: nothing stays mounted
                unmount_under(state_dir / part)
            services.close()
            log.info("all sessions stopped")

    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[Middleware(OwnHostOnly, extra=settings.allowed_hosts), Middleware(RenderUnexpected)],
        exception_handlers={AgentCoreError: render_error, HTTPException: unknown_operation},
    )
    app.state.registry = registry
    app.state.sessions = sessions
    app.state.settings = settings_abs
    app.state.default_runtime = None
    app.state.own_agent = None
    app.state.url = None  # serve's, set once bound: it announces the endpoint (announcement.py)
    return app


async def reap_forever(sessions: SessionBackend, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            await sessions.reap()
        except Exception:  # one bad session must not end the reaper
            log.exception("reaper failed")


def bind(host: str, port: int) -> socket.socket:
    """Bind before serving, so --port 0 picks a free port with no race."""
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on accepted sockets whose proto says TCP.
    # Without it a streamed answer's last chunk waited ~40 ms for the client's delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


@contextlib.contextmanager
def exit_zero_on_signal(server: uvicorn.Server) -> Iterator[None]:
    """SIGINT/SIGTERM end serve cleanly with exit 0. uvicorn's own handlers start the clean shutdown;
    after it, uvicorn re-raises the signal under the handlers it found at its start, these: they
    only ask it to exit (a signal before uvicorn's handlers are in place does the same)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(sig: int, frame: FrameType | None) -> None:
        server.should_exit = True

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def serve(settings: Settings, held: IO[str] | None = None) -> None:
    """Run until SIGINT/SIGTERM; then stop every session's compute cleanly. `held`: the state dir's
    lock, taken by the caller; else taken here, and StateDirInUse (before touching anything) when
    another serve holds the state dir."""
    held = held or state_lock.hold(settings.state_dir)  # held until serve returns
    app = create_app(settings)
    sock = bind(settings.host, settings.port)
    app.state.url = f"http://{settings.host}:{sock.getsockname()[1]}"  # announced once serving (lifespan)
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=3, lifespan="on")
    server = uvicorn.Server(config)
    try:
        with exit_zero_on_signal(server):
            server.run(sockets=[sock])
    finally:  # a second Ctrl-C skips the lifespan's end: the file goes all the same
        remove_endpoint(app.state.settings.state_dir)
