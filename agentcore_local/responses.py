"""HTTP <-> backend translation, in AWS's rest-json shapes. No rules live here.

Every AgentCoreError becomes the same kind of answer (`render_error`): its HTTP status, the
`x-amzn-ErrorType` header botocore reads, and a JSON body with `message`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from . import eventstream
from .exceptions import AgentCoreError, InternalServerException, ValidationException
from .runtimes import RuntimeRegistry
from .sessions import SESSION_HEADER, SessionBackend, validate_session_id

log = logging.getLogger("agentcore_local.responses")
MAX_PAYLOAD = 100_000_000  # InvokeAgentRuntime's payload limit in the service model
MAX_JSON_BODY = 1_000_000  # the other operations' bodies (a command is at most 65,536 characters)
COMMAND_TIMEOUT_DEFAULT, COMMAND_TIMEOUT_MIN, COMMAND_TIMEOUT_MAX = 300, 1, 3600


def render_error(request: Request, error: Exception) -> Response:
    """The one place errors become HTTP answers."""
    if not isinstance(error, AgentCoreError):
        log.exception("unexpected error in %s %s", request.method, request.url.path)
        error = InternalServerException(f"agentcore_local failed: {error}")
    return JSONResponse(error.body(), status_code=error.status, headers={"x-amzn-ErrorType": error.code})


def unknown_operation(request: Request, _: Exception) -> Response:
    body = {"message": f"agentcore_local has no operation at {request.method} {request.url.path}"}
    return JSONResponse(body, status_code=404, headers={"x-amzn-ErrorType": "UnknownOperationException"})


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


async def json_body(request: Request, limit: int = MAX_JSON_BODY) -> dict[str, Any]:
    raw = await capped_body(request, limit, "body")
    if not raw:
        return {}
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValidationException(f"The request body is not JSON: {error}", reason="CannotParse") from error
    if not isinstance(body, dict):
        raise ValidationException("The request body must be a JSON object", reason="CannotParse")
    return body


def int_query(request: Request, name: str) -> int | None:
    value = request.query_params.get(name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise ValidationException(f"{name} must be an integer", name) from None


def _runtime_for_data_plane(request: Request):
    return registry(request).resolve(
        request.path_params["arn"],
        request.query_params.get("qualifier"),
        request.query_params.get("accountId"),
    )


# --- data plane ------------------------------------------------------------------------------


async def invoke_agent_runtime(request: Request) -> Response:
    runtime = _runtime_for_data_plane(request)
    session_id = validate_session_id(request.headers.get(SESSION_HEADER))
    payload = await capped_body(request, MAX_PAYLOAD, "payload")
    content_type, body = await sessions(request).invoke(runtime, session_id, payload, dict(request.headers))
    return StreamingResponse(body, media_type=content_type, headers={SESSION_HEADER: session_id})


async def stop_runtime_session(request: Request) -> Response:
    runtime = _runtime_for_data_plane(request)
    session_id = validate_session_id(request.headers.get(SESSION_HEADER))
    await json_body(request)  # clientToken only
    await sessions(request).stop(runtime, session_id)
    return JSONResponse({}, headers={SESSION_HEADER: session_id})


async def invoke_agent_runtime_command(request: Request) -> Response:
    runtime = _runtime_for_data_plane(request)
    session_id = validate_session_id(request.headers.get(SESSION_HEADER))
    body = await json_body(request)
    command = body.get("command")
    if not isinstance(command, str) or not 1 <= len(command) <= 65536:
        raise ValidationException("body.command must be a string of 1 to 65536 characters", "command")
    timeout = body.get("timeout", COMMAND_TIMEOUT_DEFAULT)
    if not isinstance(timeout, int) or not COMMAND_TIMEOUT_MIN <= timeout <= COMMAND_TIMEOUT_MAX:
        raise ValidationException(
            f"body.timeout must be {COMMAND_TIMEOUT_MIN} to {COMMAND_TIMEOUT_MAX} seconds", "timeout"
        )
    events = await sessions(request).run_command(runtime, session_id, command, timeout)
    return StreamingResponse(
        command_frames(events), media_type=eventstream.CONTENT_TYPE, headers={SESSION_HEADER: session_id}
    )


async def command_frames(events: AsyncIterator[dict[str, Any]]) -> AsyncIterator[bytes]:
    """contentStart, contentDelta (stdout/stderr) as output comes, contentStop (exitCode, status)."""
    yield eventstream.content_start()
    async for message in events:
        if "stream" in message:
            yield eventstream.content_delta(message["stream"], message["data"])
        elif "exit" in message:
            if message.get("stream_error"):
                yield eventstream.exception("RuntimeClientError", message["stream_error"])
                return
            yield eventstream.content_stop(int(message["exit"]), message["status"])


# --- control plane ---------------------------------------------------------------------------


async def create_agent_runtime(request: Request) -> Response:
    body = await json_body(request)
    runtime = registry(request).create(body)
    now = registry(request).clock()
    answer = {
        "agentRuntimeArn": runtime.arn,
        "agentRuntimeId": runtime.id,
        "agentRuntimeVersion": str(runtime.version),
        "createdAt": runtime.describe(now)["createdAt"],
        "status": runtime.status(now),
        "workloadIdentityDetails": runtime.describe(now)["workloadIdentityDetails"],
    }
    return JSONResponse(answer, status_code=202)


async def get_agent_runtime(request: Request) -> Response:
    runtime = registry(request).get(request.path_params["runtime_id"])
    return JSONResponse(runtime.describe(registry(request).clock(), int_query(request, "version")))


async def update_agent_runtime(request: Request) -> Response:
    body = await json_body(request)
    runtime = registry(request).update(request.path_params["runtime_id"], body)
    described = runtime.describe(registry(request).clock())
    keys = (
        "agentRuntimeArn",
        "agentRuntimeId",
        "agentRuntimeVersion",
        "createdAt",
        "lastUpdatedAt",
        "status",
    )
    answer = {key: described[key] for key in keys}
    answer["workloadIdentityDetails"] = described["workloadIdentityDetails"]
    return JSONResponse(answer, status_code=202)


async def delete_agent_runtime(request: Request) -> Response:
    runtime = registry(request).delete(request.path_params["runtime_id"])
    answer = {"status": "DELETING", "agentRuntimeId": runtime.id, "agentRuntimeVersion": str(runtime.version)}
    return JSONResponse(answer, status_code=202)


async def list_agent_runtimes(request: Request) -> Response:
    items, token = registry(request).list(
        int_query(request, "maxResults"), request.query_params.get("nextToken")
    )
    return JSONResponse({"agentRuntimes": items, **({"nextToken": token} if token else {})})


async def list_agent_runtime_versions(request: Request) -> Response:
    items, token = registry(request).list_versions(
        request.path_params["runtime_id"],
        int_query(request, "maxResults"),
        request.query_params.get("nextToken"),
    )
    return JSONResponse({"agentRuntimes": items, **({"nextToken": token} if token else {})})


# --- local only (not AWS): what a person or a test wants to see ------------------------------


async def local_health(request: Request) -> Response:
    launcher = request.app.state.sessions.launcher
    return JSONResponse({"status": "ok", "sandbox": launcher.name, "isolated": launcher.isolated})


async def local_sessions(request: Request) -> Response:
    return JSONResponse({"sessions": [s.describe() for s in sessions(request).sessions.values()]})
