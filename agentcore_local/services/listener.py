"""The agent-facing listener: the AWS endpoints a session's agent calls, apart from the emulator's API.

One ASGI app serves bedrock-runtime (bedrock_runtime.py: /model/{id}/converse[-stream]) and,
for everything else, S3: a reverse proxy to moto in server mode, started here on a free
loopback port and reachable only through this listener. Only object requests of the backup
bucket that the execution role allows are forwarded (s3_gate.py), rebuilt from the parts checked, with the
listener's own Host and signature; anything else is refused, so a session reaches its objects
and the model and nothing else of moto.

The app listens on a unix socket in the state directory (sandboxes with their own network
namespace forward 127.0.0.1:IN_SANDBOX_PORT inside to it) and on a loopback TCP port (for
--sandbox process and docker; listener_sockets.py). `start_agent_services` runs both in a thread of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from ..connection_limits import UNATTRIBUTED, ConnectionCaps, ConnectionLimits
from ..host_names import loopback_hosts
from .backups import KEY_VERSION
from .bedrock_runtime import BedrockRuntime, ModelBackend, ScriptedBackend
from .forwarder import Forwarder
from .listener_attribution import AttributedRequests
from .listener_sockets import socket_path_for, tcp_socket, unix_socket
from .openai_backend import OpenAIBackend
from .s3_gate import Refused, authorise_s3, signed_service

log = logging.getLogger("agentcore_local.agent_services")
IN_SANDBOX_PORT = 8788  # where a sandbox with its own network sees the listener (next to serve's 8787)
DUMMY_KEY = "agentcore-local"  # credentials the listener accepts; botocore insists on some
S3_METHODS = ["GET", "HEAD", "PUT", "POST", "DELETE"]
# Hop-by-hop headers (RFC 9110 7.6.1) stay on their own side of the proxy.
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}
# What every forwarded request carries instead of the caller's: moto reads the service from the
# scope (it checks no signature), so a caller cannot pick another moto service by a header.
UPSTREAM_AUTHORIZATION = (
    f"AWS4-HMAC-SHA256 Credential={DUMMY_KEY}/20260101/us-east-1/s3/aws4_request, "
    "SignedHeaders=host, Signature=0"
)


class AgentServicesError(RuntimeError):
    """The listener could not start."""


def backend_from_spec(
    spec: str, scripted_plan: Path, model: str | None = None, api_key: str = "none"
) -> ModelBackend | None:
    """`serve --model-backend`: scripted[=PLAN] | openai=URL | ollama=URL | none (no bedrock-runtime)."""
    kind, _, value = spec.partition("=")
    kind = kind.strip().lower()
    if kind == "none" and not value:
        return None
    if kind == "scripted":
        return ScriptedBackend(Path(value) if value else scripted_plan)  # PlanError says what is wrong
    if kind in ("openai", "ollama") and value.startswith(("http://", "https://")):
        # Ollama serves the OpenAI chat-completions API under /v1, tool calls included.
        base = value if kind == "openai" else value.rstrip("/") + "/v1"
        return OpenAIBackend(base, model, api_key, name=kind)
    raise ValueError(
        f"--model-backend {spec!r}: use scripted, scripted=PLAN.json, openai=http://HOST:PORT/v1, "
        "ollama=http://HOST:11434 or none"
    )


def _denied(message: str) -> Response:
    body = f"<Error><Code>AccessDenied</Code><Message>{message}</Message></Error>"
    return Response(body, 403, media_type="application/xml", headers={"x-amzn-ErrorType": "AccessDenied"})


def create_app(
    s3_url: str,
    backend: ModelBackend | None,
    backup_bucket: str | None = None,
    limits: ConnectionLimits | None = None,
) -> Starlette:
    """The listener's ASGI app: bedrock-runtime when a backend is given, and S3 (proxied to `s3_url`)
    for `backup_bucket` only, as a session's execution role may use it (`authorise_s3`); `limits`
    says which session a forwarded request is from, so it reaches that session's backups only."""
    state: dict[str, httpx.AsyncClient] = {}

    async def s3(request: Request) -> Response:
        service = signed_service(request)
        if service != "s3":
            what = f"signed for {service}" if service else "unsigned"
            return _denied(f"this listener serves S3 and bedrock-runtime only; the request is {what}")
        if not backup_bucket:
            return _denied("backups are off (serve --backup-bucket ''): this listener serves no S3")
        compute = limits.compute_at(request.scope.get("client")) if limits else UNATTRIBUTED
        allowed = limits.backup_prefix(compute) if limits and compute != UNATTRIBUTED else None
        if compute != UNATTRIBUTED and allowed is None:
            return _denied("this sandbox serves no session yet: it has no backups to reach")
        try:
            wanted = authorise_s3(
                backup_bucket,
                request.method,
                request.scope["raw_path"],
                request.scope["query_string"],
                allowed,
            )
        except Refused as refused:
            return _denied(
                f"{refused}: the execution role allows only s3:GetObject and s3:PutObject on "
                f"{backup_bucket}/{KEY_VERSION}/* (iam/backup-policy-statement.json)"
            )
        # Only what S3 reads of an object request goes on; the Host and the signature are the
        # listener's own, so moto routes by nothing the caller chose (it dispatches on both).
        headers = [
            (k, v)
            for k, v in request.headers.raw
            if k.decode("latin-1").lower() not in HOP_BY_HOP | {"host", "authorization"}
        ]
        headers.append((b"authorization", UPSTREAM_AUTHORIZATION.encode()))
        upstream = state["client"].build_request(
            wanted.method, s3_url + wanted.target(), headers=headers, content=request.stream()
        )
        answer = await state["client"].send(upstream, stream=True)
        kept = {k: v for k, v in answer.headers.items() if k.lower() not in HOP_BY_HOP}
        return StreamingResponse(answer.aiter_raw(), answer.status_code, kept, background=None)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        # No retries, no proxies from the environment: the upstream is moto on loopback. No pool cap:
        # each session has its own share (listener_attribution.py), so none can starve the others.
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=32)
        async with httpx.AsyncClient(timeout=300, trust_env=False, limits=limits) as client:
            state["client"] = client
            yield

    routes = BedrockRuntime(backend).routes()
    routes.append(Route("/{path:path}", s3, methods=S3_METHODS))
    return Starlette(routes=routes, lifespan=lifespan)


@dataclass
class AgentServices:
    """A running listener: where it is, what the agent needs to reach it, and how to stop it."""

    socket_path: Path
    tcp_url: str
    s3_url: str  # moto itself, for the host side (tests, the emulator); sessions go through the listener
    region: str
    serves_model: bool
    backup_bucket: str | None  # made in moto at start; the agent gets it as BACKUP_BUCKET
    _server: uvicorn.Server = field(repr=False)
    _thread: threading.Thread = field(repr=False)
    _moto: object = field(repr=False)
    forwarder: Forwarder | None = field(default=None, repr=False)  # a socket per compute (forwarder.py)

    @property
    def forward(self) -> tuple[int, Path]:
        """(port inside a sandbox, host unix socket): what LaunchSpec.forwards takes."""
        return IN_SANDBOX_PORT, self.socket_path

    def agent_env(self, in_sandbox: bool = False) -> dict[str, str]:
        """Variables that send the agent's AWS calls here: forward port inside a sandbox network, else TCP."""
        url = f"http://127.0.0.1:{IN_SANDBOX_PORT}" if in_sandbox else self.tcp_url
        env = {
            "AWS_ENDPOINT_URL_S3": url,
            "AWS_ACCESS_KEY_ID": DUMMY_KEY,
            "AWS_SECRET_ACCESS_KEY": DUMMY_KEY,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
        }
        if self.serves_model:
            env |= {"MODEL_PROVIDER": "bedrock", "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": url}
        if self.backup_bucket:
            env["BACKUP_BUCKET"] = self.backup_bucket
        return env

    def close(self) -> None:
        """Stop serving, stop moto, remove the socket."""
        self._server.should_exit = True
        self._thread.join(10)
        self._moto.stop()  # type: ignore[attr-defined]
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        if self.socket_path.parent.name.startswith("agentcore-local-"):  # the short directory made for it
            with contextlib.suppress(OSError):
                self.socket_path.parent.rmdir()


def start_agent_services(
    state_dir: Path,
    backend: ModelBackend | None,
    region: str,
    host: str = "127.0.0.1",
    port: int = 0,
    start_timeout: float = 10.0,
    backup_bucket: str | None = None,
    caps: ConnectionCaps | None = None,
) -> AgentServices:
    """Start moto (S3) and the listener on `state_dir`/agent-services.sock and host:port (0: a free one)."""
    from moto.server import ThreadedMotoServer  # heavy: imported only by the server that needs it

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's server logs every request at INFO
    state_dir.mkdir(parents=True, exist_ok=True)
    socket_path = socket_path_for(state_dir)
    sockets = [unix_socket(socket_path), tcp_socket(host, port)]
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    moto_host, moto_port = moto.get_host_and_port()
    s3_url = f"http://{moto_host}:{moto_port}"
    if backup_bucket:
        make_bucket(s3_url, backup_bucket, region)
    limits = ConnectionLimits(caps or ConnectionCaps())
    app = AttributedRequests(
        create_app(s3_url, backend, backup_bucket, limits), limits, loopback_hosts(IN_SANDBOX_PORT)
    )
    config = uvicorn.Config(app, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    loop = asyncio.new_event_loop()  # the forwarder's too
    forwarder = Forwarder(limits, sockets[1].getsockname()[1], loop)
    thread = threading.Thread(target=_run, args=(loop, server, sockets), name="agent-services", daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            moto.stop()
            raise AgentServicesError("the agent-facing listener did not start; run serve -v for its log")
        time.sleep(0.01)
    tcp_url = f"http://{host}:{sockets[1].getsockname()[1]}"
    log.info(
        "agent services on %s and %s (model: %s)", socket_path, tcp_url, backend.name if backend else "none"
    )
    return AgentServices(
        socket_path,
        tcp_url,
        s3_url,
        region,
        backend is not None,
        backup_bucket,
        server,
        thread,
        moto,
        forwarder,
    )


def _run(loop: asyncio.AbstractEventLoop, server: uvicorn.Server, sockets: list[socket.socket]) -> None:
    """The listener's thread: serve until told to exit, then end what the forwarder still carries."""
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(server.serve(sockets=sockets))
    finally:
        for task in asyncio.all_tasks(loop):
            task.cancel()
        with contextlib.suppress(Exception):
            loop.run_until_complete(asyncio.sleep(0))
        loop.close()


def make_bucket(s3_url: str, name: str, region: str) -> None:
    """The sessions' backup bucket, in moto (which keeps it in memory, for as long as serve runs)."""
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=s3_url,
        region_name=region,
        aws_access_key_id=DUMMY_KEY,
        aws_secret_access_key=DUMMY_KEY,
    )
    where = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
    # moto's state is per process: another listener in this process may have made it already.
    with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
        client.create_bucket(Bucket=name, **where)
