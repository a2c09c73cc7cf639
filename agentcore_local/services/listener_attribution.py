"""The agent-facing listener's requests, each charged to the session that sent it: a share of the
upstreams (moto, a model backend) per session, and every refusal (the S3 gate's 403s among them)
counted and logged with the session's id. ASGI middleware around the listener's app.

Before anything else, a request must name the listener's own address as its Host (host_names.py):
the listener's TCP port is on the host's loopback, where a web page that rebinds its name to
127.0.0.1 could otherwise call bedrock-runtime (the model, on the user's API key) and S3."""

from __future__ import annotations

import re

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..connection_limits import ConnectionLimits
from ..host_names import foreign_host
from .forwarder import error_body

_MESSAGE = re.compile(rb"<Message>(.*?)</Message>", re.S)


def refusal(status: int, code: str, message: str) -> Response:
    return Response(
        error_body(code, message), status, media_type="application/xml", headers={"x-amzn-ErrorType": code}
    )


class AttributedRequests:
    def __init__(self, app: ASGIApp, limits: ConnectionLimits, hosts: tuple[str, ...] = ()) -> None:
        self.app = app
        self.limits = limits
        self.hosts = hosts  # its names besides the address a connection reached (host_names.py)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        compute = self.limits.compute_at(scope.get("client"))
        if (host := foreign_host(scope, self.hosts)) is not None:
            reason = f"Host {host!r} is not this listener's address (DNS rebinding?)"
            self.limits.refuse(compute, reason)
            hint = f"{reason}: call it by the address in AWS_ENDPOINT_URL_S3"
            await refusal(403, "AccessDenied", hint)(scope, receive, send)
            return
        if not self.limits.take_upstream(compute):
            await refusal(503, "SlowDown", "this session has too many requests at once")(scope, receive, send)
            return
        status = 0

        async def watched(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and status == 403:
                found = _MESSAGE.search(message.get("body", b""))
                reason = found.group(1).decode("utf-8", "replace") if found else "403 Forbidden"
                self.limits.refuse(compute, f"{scope['method']} {scope['path'][:200]}: {reason}")
            await send(message)

        try:
            await self.app(scope, receive, watched)
        finally:
            self.limits.give_upstream(compute)
