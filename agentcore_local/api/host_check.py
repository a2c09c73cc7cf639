"""The API answers only requests addressed to it (host_names.py holds the rule): a web page that
rebinds its own name to 127.0.0.1 (DNS rebinding) sends `Host: attacker.example:8787` and is
refused with 403. Besides serve's own address, the endpoints serve's environment points boto3 at
(AWS_ENDPOINT_URL, _BEDROCK_AGENTCORE[_CONTROL]) are its own.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from ..errors import AccessDeniedException
from ..host_names import foreign_host
from .protocol import render_error


class OwnHostOnly:
    def __init__(self, app: ASGIApp, extra: tuple[str, ...] = ()) -> None:
        self.app = app
        self.extra = extra

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (host := foreign_host(scope, self.extra)) is not None:
            error = AccessDeniedException(
                f"Host {host!r} is not this endpoint's address (DNS rebinding?): "
                "call it by 127.0.0.1, localhost or the address serve listens on"
            )
            await render_error(Request(scope), error)(scope, receive, send)
            return
        await self.app(scope, receive, send)
