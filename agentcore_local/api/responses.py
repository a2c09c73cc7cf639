"""HTTP <-> backend translation, in AWS's rest-json shapes: each operation's handler reads its
input members, calls the rule's owner (registry, sessions) and shapes the answer. No rules live
here; the protocol around every handler (validation, request ids, errors) is protocol.py's.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from .. import eventstream
from ..control import Runtime
from ..errors import ValidationException
from ..sessions import RETURNED, SESSION_HEADER, validate_session_id
from .protocol import aws, idempotent, registry, sessions
from .validation import CONTROL, DATA

# InvokeAgentRuntimeCommand's timeout: the model says only "integer"; the API reference
# (InvokeAgentRuntimeCommandRequestBody) and the guide's runtime-execute-command page: 1-3,600 s, 300.
COMMAND_TIMEOUT_DEFAULT, COMMAND_TIMEOUT_MIN, COMMAND_TIMEOUT_MAX = 300, 1, 3600


def _data_plane_runtime(request: Request, params: dict[str, Any]) -> Runtime:
    """The runtime as the endpoint named by `qualifier` serves it (its `.version` is that version's)."""
    return registry(request).resolve(
        params["agentRuntimeArn"], params.get("qualifier"), params.get("accountId")
    )


# --- data plane ------------------------------------------------------------------------------


@aws(DATA, "InvokeAgentRuntime")
async def invoke_agent_runtime(request: Request, params: dict[str, Any]) -> Response:
    runtime = _data_plane_runtime(request, params)
    session_id = validate_session_id(params.get("runtimeSessionId"))
    answer, body = await sessions(request).invoke(
        runtime, session_id, params["payload"], dict(request.headers)
    )
    returned = {k: v for k, v in answer.headers.items() if k.lower() in RETURNED}
    returned.setdefault("content-type", "application/json")
    returned[SESSION_HEADER] = session_id
    return StreamingResponse(body, status_code=answer.status_code, headers=returned)


@aws(DATA, "GetAgentCard")
async def get_agent_card(request: Request, params: dict[str, Any]) -> Response:
    """An A2A agent's card: GET /.well-known/agent-card.json of the session's agent (starting it)."""
    runtime = _data_plane_runtime(request, params)
    session_id = validate_session_id(params.get("runtimeSessionId"))
    card = await sessions(request).agent_card(runtime, session_id)
    return JSONResponse(card, headers={SESSION_HEADER: session_id})


@aws(DATA, "StopRuntimeSession")
async def stop_runtime_session(request: Request, params: dict[str, Any]) -> Response:
    runtime = _data_plane_runtime(request, params)
    session_id = validate_session_id(params.get("runtimeSessionId"))
    key = {**params, "agentRuntimeArn": runtime.arn}
    if registry(request).tokens.replay("StopRuntimeSession", key) is None:
        await sessions(request).stop(runtime, session_id)
    return idempotent(
        request, "StopRuntimeSession", key, lambda: JSONResponse({}, headers={SESSION_HEADER: session_id})
    )


@aws(DATA, "InvokeAgentRuntimeCommand")
async def invoke_agent_runtime_command(request: Request, params: dict[str, Any]) -> Response:
    runtime = _data_plane_runtime(request, params)
    session_id = validate_session_id(params.get("runtimeSessionId"))
    body = params["body"]
    timeout = body.get("timeout", COMMAND_TIMEOUT_DEFAULT)
    if not COMMAND_TIMEOUT_MIN <= timeout <= COMMAND_TIMEOUT_MAX:
        raise ValidationException(
            f"body.timeout must be {COMMAND_TIMEOUT_MIN} to {COMMAND_TIMEOUT_MAX} seconds", "body.timeout"
        )
    events = await sessions(request).run_command(runtime, session_id, body["command"], timeout)
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


# --- control plane: runtimes -----------------------------------------------------------------


def _runtime_answer(runtime: Runtime, now: float, *keys: str) -> dict[str, Any]:
    described = runtime.describe(now)
    return {key: described[key] for key in keys if key in described}


@aws(CONTROL, "CreateAgentRuntime")
async def create_agent_runtime(request: Request, params: dict[str, Any]) -> Response:
    await asyncio.to_thread(sessions(request).artifacts.check, params)  # a code zip: fetched and checked now

    def make() -> Response:
        runtime = registry(request).create(params)
        keys = ("agentRuntimeArn", "agentRuntimeId", "agentRuntimeVersion", "createdAt", "status")
        answer = _runtime_answer(runtime, registry(request).clock(), *keys, "workloadIdentityDetails")
        return JSONResponse(answer, status_code=202)

    return idempotent(request, "CreateAgentRuntime", params, make)


@aws(CONTROL, "GetAgentRuntime")
async def get_agent_runtime(request: Request, params: dict[str, Any]) -> Response:
    runtime = registry(request).get(params["agentRuntimeId"])
    version = params.get("agentRuntimeVersion")
    return JSONResponse(runtime.describe(registry(request).clock(), int(version) if version else None))


@aws(CONTROL, "UpdateAgentRuntime")
async def update_agent_runtime(request: Request, params: dict[str, Any]) -> Response:
    await asyncio.to_thread(sessions(request).artifacts.check, params)

    def make() -> Response:
        runtime = registry(request).update(params["agentRuntimeId"], params)
        keys = ("agentRuntimeArn", "agentRuntimeId", "agentRuntimeVersion", "createdAt", "lastUpdatedAt")
        answer = _runtime_answer(
            runtime, registry(request).clock(), *keys, "status", "workloadIdentityDetails"
        )
        return JSONResponse(answer, status_code=202)

    return idempotent(request, "UpdateAgentRuntime", params, make)


@aws(CONTROL, "DeleteAgentRuntime")
async def delete_agent_runtime(request: Request, params: dict[str, Any]) -> Response:
    def make() -> Response:
        version = params.get("agentRuntimeVersion")
        runtime = registry(request).delete(params["agentRuntimeId"], int(version) if version else None)
        answer = {
            "status": "DELETING",
            "agentRuntimeId": runtime.id,
            "agentRuntimeVersion": version or str(runtime.version),
        }
        return JSONResponse(answer, status_code=202)

    return idempotent(request, "DeleteAgentRuntime", params, make)


@aws(CONTROL, "ListAgentRuntimes")
async def list_agent_runtimes(request: Request, params: dict[str, Any]) -> Response:
    items, token = registry(request).list(params.get("maxResults"), params.get("nextToken"))
    return JSONResponse({"agentRuntimes": items, **({"nextToken": token} if token else {})})


@aws(CONTROL, "ListAgentRuntimeVersions")
async def list_agent_runtime_versions(request: Request, params: dict[str, Any]) -> Response:
    items, token = registry(request).list_versions(
        params["agentRuntimeId"], params.get("maxResults"), params.get("nextToken")
    )
    return JSONResponse({"agentRuntimes": items, **({"nextToken": token} if token else {})})


# --- control plane: endpoints and tags -------------------------------------------------------


def _endpoint_answer(request: Request, runtime: Runtime, endpoint: Any, *keys: str) -> dict[str, Any]:
    described = registry(request).endpoints.describe_endpoint(runtime, endpoint)
    return {key: described[key] for key in keys if key in described}


@aws(CONTROL, "CreateAgentRuntimeEndpoint")
async def create_agent_runtime_endpoint(request: Request, params: dict[str, Any]) -> Response:
    def make() -> Response:
        runtime, endpoint = registry(request).endpoints.create_endpoint(params["agentRuntimeId"], params)
        keys = ("targetVersion", "agentRuntimeEndpointArn", "agentRuntimeArn", "status", "createdAt")
        answer = _endpoint_answer(request, runtime, endpoint, *keys)
        answer.update(agentRuntimeId=runtime.id, endpointName=endpoint.name)
        return JSONResponse(answer, status_code=202)

    return idempotent(request, "CreateAgentRuntimeEndpoint", params, make)


@aws(CONTROL, "GetAgentRuntimeEndpoint")
async def get_agent_runtime_endpoint(request: Request, params: dict[str, Any]) -> Response:
    runtime, endpoint = registry(request).endpoints.endpoint(params["agentRuntimeId"], params["endpointName"])
    return JSONResponse(registry(request).endpoints.describe_endpoint(runtime, endpoint))


@aws(CONTROL, "UpdateAgentRuntimeEndpoint")
async def update_agent_runtime_endpoint(request: Request, params: dict[str, Any]) -> Response:
    def make() -> Response:
        runtime, endpoint = registry(request).endpoints.update_endpoint(
            params["agentRuntimeId"], params["endpointName"], params
        )
        keys = ("liveVersion", "targetVersion", "agentRuntimeEndpointArn", "agentRuntimeArn", "status")
        answer = _endpoint_answer(request, runtime, endpoint, *keys, "createdAt", "lastUpdatedAt")
        return JSONResponse(answer, status_code=202)

    return idempotent(request, "UpdateAgentRuntimeEndpoint", params, make)


@aws(CONTROL, "DeleteAgentRuntimeEndpoint")
async def delete_agent_runtime_endpoint(request: Request, params: dict[str, Any]) -> Response:
    def make() -> Response:
        runtime, endpoint = registry(request).endpoints.delete_endpoint(
            params["agentRuntimeId"], params["endpointName"]
        )
        answer = {"status": "DELETING", "agentRuntimeId": runtime.id, "endpointName": endpoint.name}
        return JSONResponse(answer, status_code=202)

    return idempotent(request, "DeleteAgentRuntimeEndpoint", params, make)


@aws(CONTROL, "ListAgentRuntimeEndpoints")
async def list_agent_runtime_endpoints(request: Request, params: dict[str, Any]) -> Response:
    items, token = registry(request).endpoints.list_endpoints(
        params["agentRuntimeId"], params.get("maxResults"), params.get("nextToken")
    )
    return JSONResponse({"runtimeEndpoints": items, **({"nextToken": token} if token else {})})


@aws(CONTROL, "TagResource")
async def tag_resource(request: Request, params: dict[str, Any]) -> Response:
    registry(request).endpoints.tag(params["resourceArn"], params["tags"])
    return Response(status_code=204)


@aws(CONTROL, "UntagResource")
async def untag_resource(request: Request, params: dict[str, Any]) -> Response:
    registry(request).endpoints.untag(params["resourceArn"], params["tagKeys"])
    return Response(status_code=204)


@aws(CONTROL, "ListTagsForResource")
async def list_tags_for_resource(request: Request, params: dict[str, Any]) -> Response:
    return JSONResponse({"tags": registry(request).endpoints.list_tags(params["resourceArn"])})


# --- local only (not AWS): what a person or a test wants to see ------------------------------


async def local_health(request: Request) -> Response:
    """Liveness, and the runtime `env` exports as AGENT_ARN: the one now named as serve's default
    (a delete and re-create gives it a new ARN; none while it is deleted)."""
    state = request.app.state
    launcher, name = state.sessions.launcher, state.settings.default_runtime
    live = registry(request).find_by_name(name) if name else None
    answer = {"status": "ok", "sandbox": launcher.name, "isolated": launcher.isolated, "pid": os.getpid()}
    answer |= {"account": state.settings.account, "region": state.settings.region}
    return JSONResponse({**answer, "defaultRuntime": name, "agentRuntimeArn": live.arn if live else None})


async def local_sessions(request: Request) -> Response:
    backend = sessions(request)
    limits = backend.forwarder.limits if backend.forwarder else None
    described = [
        {**s.describe(), **(limits.describe(s.session_id) if limits else {})}
        for s in backend.sessions.values()
    ]
    return JSONResponse({"sessions": described, "pool": backend.pool.describe()})
