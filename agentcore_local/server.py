"""The application: backends wired together, a reaper for idle sessions, clean shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import IO

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import durable

from . import state_lock
from .api import OwnHostOnly, render_error, routes, unknown_operation
from .connection_limits import raise_open_files_limit
from .control import RuntimeRegistry, agent_request
from .errors import AgentCoreError
from .sandbox import Launcher, choose, ecr_uri, s3_client
from .services import backend_from_spec, start_agent_services
from .sessions import SessionBackend
from .settings import DEFAULT_MOUNT_PATH, Settings
from .state_lock import ENDPOINT_FILE
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


class RenderUnexpected:
    """An unexpected exception becomes AWS's InternalServerException here, and is not re-raised.

    Starlette's ServerErrorMiddleware (where an `Exception` handler would run) always re-raises
    after answering, and uvicorn then closes the keep-alive connection: the client's next call on
    it failed with ConnectionClosedError. Once an answer has started only closing can tell the
    client, so then the exception goes on.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception as error:
            if started:
                raise
            await render_error(Request(scope), error)(scope, receive, send)


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
        try:
            yield
        finally:
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


def write_endpoint(state_dir: Path, url: str, arn: str | None, aws_url: str | None = None) -> None:
    """What `agentcore_local env --state-dir` reads: the URL, the default runtime's ARN, and the
    moto server's (S3, IAM, STS for the host side: uploading a code zip, the toolkit's role)."""
    body = {"url": url, "agentRuntimeArn": arn, "awsUrl": aws_url, "pid": os.getpid()}
    durable.write_json(state_dir / ENDPOINT_FILE, body)


class Server(uvicorn.Server):
    """uvicorn, announcing the endpoint once it listens and removing the file when it stops."""

    def __init__(self, config: uvicorn.Config, app: Starlette, url: str) -> None:
        super().__init__(config)
        self._app, self._url = app, url

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            state = self._app.state
            arn = state.default_runtime.arn if state.default_runtime else None
            write_endpoint(state.settings.state_dir, self._url, arn, state.agent_services.s3_url)
            launcher = state.sessions.launcher
            if not launcher.isolated:
                isolation = "NOT isolated: sessions can see each other's files"
            elif launcher.private_network:
                isolation = "isolated, each session on its own network"
            else:
                isolation = "isolated files and processes, but sessions SHARE the network"
            print(
                f"agentcore_local listening on {self._url} (sandbox: {launcher.name}, {isolation})",
                flush=True,
            )
            if launcher.limits is not None and (launcher.cgroups or not launcher.own_cgroups):
                kernel = launcher.cgroups.describe() if launcher.cgroups else launcher.name
                print(f"each session's compute: {launcher.limits.describe()} ({kernel})", flush=True)
            if arn:
                print(f"default runtime {state.default_runtime.name}: {arn}", flush=True)
                print(f"export AGENT_ARN={arn}", flush=True)
            if state.own_agent is not None:
                print(f"your agent {state.own_agent.name}: {state.own_agent.arn}", flush=True)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """SIGINT/SIGTERM start the clean shutdown; unlike uvicorn's, not re-raised after it: exit 0."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        endpoint = self._app.state.settings.state_dir / ENDPOINT_FILE
        with contextlib.suppress(OSError, ValueError, KeyError):
            if json.loads(endpoint.read_text())["pid"] == os.getpid():  # only the file this serve wrote
                endpoint.unlink()
        await super().shutdown(sockets)


def serve(settings: Settings, held: IO[str] | None = None) -> None:
    """Run until SIGINT/SIGTERM; then stop every session's compute cleanly. `held`: the state dir's
    lock, taken by the caller; else taken here, and StateDirInUse (before touching anything) when
    another serve holds the state dir."""
    held = held or state_lock.hold(settings.state_dir)  # held until serve returns
    app = create_app(settings)
    sock = bind(settings.host, settings.port)
    url = f"http://{settings.host}:{sock.getsockname()[1]}"
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=3, lifespan="on")
    Server(config, app, url).run(sockets=[sock])
