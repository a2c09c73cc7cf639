"""AWS's rest-json protocol around every operation; what an operation does is responses.py's.

Every operation is wrapped by `aws(SERVICE, OPERATION)`: the request is read back into the
operation's input members and checked against botocore's model (validation.py) before any rule
runs, and every answer, errors included, carries an `x-amzn-RequestId`. Every AgentCoreError
becomes the same kind of answer (`render_error`): its HTTP status, the `x-amzn-ErrorType` header
botocore reads, and a JSON body with `message` (and `reason`/`fieldList` for validation).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..control import RuntimeRegistry
from ..errors import AgentCoreError, InternalServerException, ValidationException
from ..sessions import SessionBackend
from .validation import operation, params_from_request, validate_input

log = logging.getLogger("agentcore_local.responses")
REQUEST_ID = "x-amzn-RequestId"
MAX_PAYLOAD = 100_000_000  # InvokeAgentRuntime's payload limit in the service model
MAX_JSON_BODY = 1_000_000  # the other operations' bodies (a command is at most 65,536 characters)

Handler = Callable[[Request, dict[str, Any]], Awaitable[Response]]


def request_id(request: Request) -> str:
    """This request's id (AWS sends one on every answer; SDKs show it as the RequestId)."""
    if not hasattr(request.state, "request_id"):
        request.state.request_id = str(uuid.uuid4())
    return request.state.request_id


def render_error(request: Request, error: Exception) -> Response:
    """The one place errors become HTTP answers."""
    if not isinstance(error, AgentCoreError):
        log.exception("unexpected error in %s %s", request.method, request.url.path)
        error = InternalServerException(f"agentcore_local failed: {error}")
    headers = {"x-amzn-ErrorType": error.code, REQUEST_ID: request_id(request)}
    return JSONResponse(error.body(), status_code=error.status, headers=headers)


def unknown_operation(request: Request, _: Exception) -> Response:
    body = {"message": f"agentcore_local has no operation at {request.method} {request.url.path}"}
    headers = {"x-amzn-ErrorType": "UnknownOperationException", REQUEST_ID: request_id(request)}
    return JSONResponse(body, status_code=404, headers=headers)


def registry(request: Request) -> RuntimeRegistry:
    return request.app.state.registry


def sessions(request: Request) -> SessionBackend:
    return request.app.state.sessions


async def capped_body(request: Request, limit: int, name: str) -> bytes:
    """The body, refused (ValidationException) as soon as it is known to exceed `limit` bytes.

    A declared Content-Length over the limit is refused before a byte is read; a chunked body is
    read only up to the limit, so an oversized request never sits whole in memory.
    """
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ValidationException(f"{name} is {int(declared)} bytes; the limit is {limit}", name)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ValidationException(f"{name} is over {limit} bytes, the limit", name)
        chunks.append(chunk)
    return b"".join(chunks)


def aws(service: str, name: str) -> Callable[[Handler], Callable[[Request], Awaitable[Response]]]:
    """Bind a handler to a modelled operation: parse, validate, answer with a request id."""
    op = operation(service, name)
    payload = op.input_shape.serialization.get("payload") if op.input_shape else None
    raw_payload = bool(payload) and op.input_shape.members[payload].type_name == "blob"

    def bind(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            request_id(request)
            limit, what = (MAX_PAYLOAD, "payload") if raw_payload else (MAX_JSON_BODY, "body")
            params = params_from_request(op, request, await capped_body(request, limit, what))
            validate_input(op, params)
            response = await handler(request, params)
            response.headers[REQUEST_ID] = request_id(request)
            return response

        endpoint.operation = op  # type: ignore[attr-defined]  # the model test walks these
        endpoint.__name__ = handler.__name__
        return endpoint

    return bind


def idempotent(request: Request, name: str, params: dict[str, Any], make: Callable[[], Response]) -> Response:
    """With a clientToken: the first call's answer again for a retry (rules: idempotency.py)."""
    tokens = registry(request).tokens
    stored = tokens.replay(name, params)
    if stored is not None:
        status, body, headers = stored
        return Response(body, status_code=status, headers=headers, media_type="application/json")
    response = make()
    keep = {
        k: v for k, v in response.headers.items() if k.lower() not in ("content-length", REQUEST_ID.lower())
    }
    tokens.remember(name, params, (response.status_code, bytes(response.body), keep))
    return response


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
