"""Refuses a POST /invocations body the SDK would fail on with a 500, before it parses it.

BedrockAgentCoreApp parses the body with `request.json()` and answers any error but a
JSONDecodeError as a 500: a body nested past Python's recursion limit raises RecursionError, and a
lone surrogate (`"\\ud800"`, valid JSON) parses into a str that no UTF-8 encoder takes, so the turn
fails when the prompt is written to history. This middleware reads the whole body (bounded), checks
it, and answers 400/413 with one line saying what to fix; a body it accepts is replayed unchanged.
"""

from __future__ import annotations

import json
from typing import Any

PATH = "/invocations"
# A prompt of 100,000 characters (the contract's limit) is at most ~600 kB as JSON \\u escapes.
MAX_BODY_BYTES = 1024 * 1024
# Requests are flat objects ({"prompt": ..., "conversation_id": ...}); 32 leaves room for fields
# a client adds, and bounds every recursive walk of the payload after this point.
MAX_DEPTH = 32
# AgentCore passes at most 20 allowlisted headers of at most 4 KB to a session; an OAuth bearer token
# can be a few kB more. Larger gets 431 here rather than whatever the HTTP parser does with it.
MAX_HEADER_BYTES = 16 * 1024


class Refusal(ValueError):
    """A body refused, with the HTTP status to answer."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def check_body(body: bytes) -> None:
    """Raise Refusal when `body` is not UTF-8 JSON of bounded depth holding only encodable strings."""
    if len(body) > MAX_BODY_BYTES:
        raise Refusal(f"the body has {len(body)} bytes; the limit is {MAX_BODY_BYTES}", 413)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise Refusal(f"the body is not UTF-8 (byte {error.start}): send UTF-8 JSON") from None
    try:
        payload = json.loads(text)
    except RecursionError:
        raise Refusal(f"the body nests deeper than {MAX_DEPTH} levels: send a flat JSON object") from None
    except json.JSONDecodeError:
        return  # the SDK answers it: 400 "Invalid JSON" with the position
    _check_values(payload)


def _check_values(payload: Any) -> None:
    """Depth and strings, walked with a stack (no recursion: the depth is what is being checked)."""
    stack: list[tuple[Any, int, str]] = [(payload, 1, "the body")]
    while stack:
        value, depth, where = stack.pop()
        if isinstance(value, str):
            _check_text(value, where)
            continue
        if not isinstance(value, dict | list):
            continue
        if depth > MAX_DEPTH:
            raise Refusal(f"the body nests deeper than {MAX_DEPTH} levels: send a flat JSON object")
        if isinstance(value, dict):
            for key, item in value.items():
                _check_text(key, "a field name")
                stack.append((item, depth + 1, f'"{key}"' if depth == 1 else where))
        else:
            stack.extend((item, depth + 1, where) for item in value)


def _check_text(text: str, where: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        code = ord(text[error.start])
        raise Refusal(
            f"{where} holds a lone surrogate (\\u{code:04x} at character {error.start}): "
            "send text as UTF-8, or a surrogate pair in JSON escapes"
        ) from None


async def send_json(send: Any, status: int, answer: dict[str, Any]) -> None:
    """One complete JSON answer on an ASGI `send`."""
    body = json.dumps(answer).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class RequestGuard:
    """ASGI middleware: check_body on every POST /invocations; refusals answered as {"error": ...}."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != PATH:
            await self.app(scope, receive, send)
            return
        header_bytes = sum(len(name) + len(value) for name, value in scope["headers"])
        if header_bytes > MAX_HEADER_BYTES:
            error = f"the request's headers hold {header_bytes} bytes; the limit is {MAX_HEADER_BYTES}"
            await send_json(send, 431, {"error": error})
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the caller left: nothing to answer
            body += message.get("body", b"")
            if len(body) > MAX_BODY_BYTES:  # stop reading: the size alone decides
                await send_json(send, 413, {"error": f"the body is over {MAX_BODY_BYTES} bytes"})
                return
            if not message.get("more_body", False):
                break
        try:
            check_body(bytes(body))
        except Refusal as refusal:
            await send_json(send, refusal.status, {"error": str(refusal)})
            return
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if replayed:  # after the body, the app only listens for the caller leaving
                return await receive()
            replayed = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        await self.app(scope, replay, send)
