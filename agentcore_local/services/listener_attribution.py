"""The agent-facing listener's requests, each charged to the session that sent it: a share of the
upstreams (moto, a model backend) per session, and every refusal (the S3 gate's 403s among them)
counted and logged with the session's id. ASGI middleware around the listener's app."""

from __future__ import annotations

import re

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..connection_limits import ConnectionLimits
from .forwarder import error_body

_MESSAGE = re.compile(rb"<Message>(.*?)</Message>", re.S)


class AttributedRequests:
    def __init__(self, app: ASGIApp, limits: ConnectionLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        compute = self.limits.compute_at(scope.get("client"))
        if not self.limits.take_upstream(compute):
            body = error_body("SlowDown", "this session has too many requests at once")
            refused = Response(
                body, 503, media_type="application/xml", headers={"x-amzn-ErrorType": "SlowDown"}
            )
            await refused(scope, receive, send)
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
