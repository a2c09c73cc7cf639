"""The API answers only requests addressed to it: a web page that rebinds its own name to
127.0.0.1 (DNS rebinding) sends `Host: attacker.example:8787` and is refused with 403.

Allowed: the address and port the connection reached (serve's --host, or the interface a
0.0.0.0 listener was reached on), 127.0.0.1, localhost and [::1] with that port, and the
endpoints serve's environment points boto3 at (AWS_ENDPOINT_URL, _BEDROCK_AGENTCORE[_CONTROL]).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from ..errors import AccessDeniedException
from .protocol import render_error

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


def own_hosts(server: tuple[str, int] | None, extra: tuple[str, ...]) -> set[str]:
    hosts = set(extra)
    if server:
        host, port = server
        shown = f"[{host}]" if ":" in host else host
        hosts |= {f"{name}:{port}" for name in (*LOOPBACK_NAMES, shown)}
    return hosts


class OwnHostOnly:
    def __init__(self, app: ASGIApp, extra: tuple[str, ...] = ()) -> None:
        self.app = app
        self.extra = extra

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            host = dict(scope["headers"]).get(b"host", b"").decode("latin-1").lower()
            with_port = host if host.rpartition(":")[2].isdigit() and not host.endswith("]") else f"{host}:80"
            if with_port not in own_hosts(scope.get("server"), self.extra):
                error = AccessDeniedException(
                    f"Host {host[:100]!r} is not this endpoint's address (DNS rebinding?): "
                    "call it by 127.0.0.1, localhost or the address serve listens on"
                )
                await render_error(Request(scope), error)(scope, receive, send)
                return
        await self.app(scope, receive, send)
