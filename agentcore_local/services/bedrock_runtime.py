"""bedrock-runtime's Converse and ConverseStream, as Strands' BedrockModel calls them, answered locally.

Every request is checked against botocore's bedrock-runtime model before a backend sees it;
errors come back in AWS's rest-json shape (`x-amzn-ErrorType`), so botocore raises
`ValidationException`, `ModelErrorException`, ... as the cloud would. ConverseStream answers
an AWS event stream (eventstream.py's frames). A backend turns a Converse request into the
ConverseStream events of one assistant message; Converse is the same events assembled.

The default backend is the offline scripted model, a TEST DOUBLE that plays a plan file
(scripted/plan.py); openai_backend.py forwards to an OpenAI-compatible server or Ollama.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any, Protocol

import botocore.session
from botocore.model import OperationModel
from botocore.validate import ParamValidator
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from scripted.plan import Rule, ScriptedFailure, load_plan, next_step, stream_events

from .. import eventstream
from ..settings import DEFAULT_MOUNT_PATH

log = logging.getLogger("agentcore_local.bedrock_runtime")
MAX_BODY = 20_000_000  # a whole conversation travels in each request; AWS documents no exact limit
DEFAULT_WORKSPACE = DEFAULT_MOUNT_PATH  # where a model would guess the agent works
Event = dict[str, Any]


class BedrockRuntimeError(Exception):
    """An AWS error of bedrock-runtime: its code (`x-amzn-ErrorType`) and HTTP status."""

    code, status = "InternalServerException", 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ValidationError(BedrockRuntimeError):
    code, status = "ValidationException", 400


class ModelError(BedrockRuntimeError):
    """The model behind the endpoint failed (AWS: ModelErrorException, 424)."""

    code, status = "ModelErrorException", 424


class AccessDenied(BedrockRuntimeError):
    code, status = "AccessDeniedException", 403


class ModelBackend(Protocol):
    """What answers the model calls: the ConverseStream events of one assistant message."""

    name: str

    async def respond(self, request: dict[str, Any]) -> list[Event]: ...


@cache
def operation(name: str) -> OperationModel:
    """An operation of the installed botocore's bedrock-runtime model (loaded once)."""
    return botocore.session.get_session().get_service_model("bedrock-runtime").operation_model(name)


def validate(name: str, params: dict[str, Any]) -> None:
    """ValidationError unless `params` fit the operation's input shape in botocore's model."""
    report = ParamValidator().validate(params, operation(name).input_shape)
    if report.has_errors():
        raise ValidationError(report.generate_report().replace("\n", " "))


_WORKSPACE = re.compile(r"\bworkspace(?: is)?:?\s+(/[^\s;,]*[^\s;,.])", re.IGNORECASE)


def workspace_in(request: dict[str, Any], default: str = DEFAULT_WORKSPACE) -> str:
    """The workspace path the agent told the model about (system prompt first, then the messages)."""
    blocks = [*(request.get("system") or []), *(b for m in request.get("messages", []) for b in m["content"])]
    for block in blocks:
        match = _WORKSPACE.search(block.get("text", ""))
        if match:
            return match.group(1)
    return default


class ScriptedBackend:
    """The offline scripted model (a test double): plays one plan file for every model call."""

    name = "scripted"

    def __init__(self, plan_path: Path, default_workspace: str = DEFAULT_WORKSPACE) -> None:
        self.plan_path = plan_path
        self.rules: list[Rule] = load_plan(plan_path)
        self.default_workspace = default_workspace

    async def respond(self, request: dict[str, Any]) -> list[Event]:
        workspace = workspace_in(request, self.default_workspace)
        try:
            step = next_step(self.rules, self.plan_path.name, request["messages"], workspace)
        except ScriptedFailure as error:
            raise ModelError(f"the scripted plan's failure step: {error}") from error
        return list(stream_events(step))


def indexed(events: list[Event]) -> Iterator[Event]:
    """Events with the `contentBlockIndex` the wire format requires (Strands' own shape omits it)."""
    index = -1
    for event in events:
        kind, body = next(iter(event.items()))
        if kind == "contentBlockStart":
            index += 1
            if not body.get("start"):  # Bedrock sends no start event for a text block
                continue
        if kind in ("contentBlockStart", "contentBlockDelta", "contentBlockStop"):
            body = {**body, "contentBlockIndex": max(index, 0)}
        yield {kind: body}


def assemble(events: list[Event]) -> dict[str, Any]:
    """The Converse answer that a ConverseStream of these events stands for."""
    content: list[dict[str, Any]] = []
    stop_reason, metadata = "end_turn", {}
    for event in indexed(events):
        kind, body = next(iter(event.items()))
        if kind == "contentBlockStart":
            tool = body.get("start", {}).get("toolUse")
            content.append({"toolUse": {**tool, "input": ""}} if tool else {"text": ""})
        elif kind == "contentBlockDelta":
            if body["contentBlockIndex"] >= len(content):  # a text delta with no start, as Bedrock allows
                content.append({"text": ""})
            block, delta = content[body["contentBlockIndex"]], body["delta"]
            if "text" in delta:
                block["text"] += delta["text"]
            elif "toolUse" in delta:
                block["toolUse"]["input"] += delta["toolUse"]["input"]
        elif kind == "messageStop":
            stop_reason = body["stopReason"]
        elif kind == "metadata":
            metadata = body
    for block in content:
        if "toolUse" in block:
            block["toolUse"]["input"] = json.loads(block["toolUse"]["input"] or "{}")
    return {
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": stop_reason,
        "usage": metadata.get("usage", {"inputTokens": 0, "outputTokens": 0, "totalTokens": 0}),
        "metrics": metadata.get("metrics", {"latencyMs": 0}),
    }


def _headers(**extra: str) -> dict[str, str]:
    return {"x-amzn-RequestId": str(uuid.uuid4()), **extra}


def render_error(error: BedrockRuntimeError) -> Response:
    """The one place bedrock-runtime errors become HTTP answers."""
    return JSONResponse(
        {"message": error.message},
        status_code=error.status,
        headers=_headers(**{"x-amzn-ErrorType": error.code}),
    )


async def _request(request: Request, name: str) -> dict[str, Any]:
    """The operation's parameters (path label + JSON body), validated against the model."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        raise ValidationError(f"the request body is {declared} bytes; agentcore_local takes up to {MAX_BODY}")
    chunks, size = [], 0
    async for chunk in request.stream():  # a chunked body is read only up to the limit
        size += len(chunk)
        if size > MAX_BODY:
            raise ValidationError(f"the request body is over {MAX_BODY} bytes, agentcore_local's limit")
        chunks.append(chunk)
    raw = b"".join(chunks)
    try:
        body = json.loads(raw or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValidationError(f"the request body is not JSON: {error}") from error
    if not isinstance(body, dict):
        raise ValidationError("the request body must be a JSON object")
    params = {**body, "modelId": request.path_params["model_id"]}
    validate(name, params)
    # The model leaves `messages` optional (a prompt-management ARN brings its own); a model id answers
    # an empty conversation with this ValidationException.
    if not params.get("messages") or params["messages"][0]["role"] != "user":
        raise ValidationError(
            "A conversation must start with a user message. Try again with a conversation that starts "
            "with a user message."
        )
    return params


class BedrockRuntime:
    """The two operations' HTTP side; `backend` decides what the model says (None: no model here)."""

    def __init__(self, backend: ModelBackend | None) -> None:
        self.backend = backend

    def routes(self) -> list[Route]:
        # {model_id:path}: an ARN as model id arrives with its '/' percent-decoded.
        return [
            Route("/model/{model_id:path}/converse", self.converse, methods=["POST"]),
            Route("/model/{model_id:path}/converse-stream", self.converse_stream, methods=["POST"]),
        ]

    async def _events(self, request: Request, name: str) -> list[Event]:
        params = await _request(request, name)
        if self.backend is None:
            raise AccessDenied(
                "agentcore_local serves no model (serve --model-backend none); start it with "
                "--model-backend scripted, openai=URL or ollama=URL"
            )
        try:
            return await self.backend.respond(params)
        except BedrockRuntimeError:
            raise
        except Exception as error:  # a backend bug or an unreachable server: the model failed, say which
            log.warning("backend %s failed: %s", self.backend.name, error)
            raise ModelError(f"the {self.backend.name} model backend failed: {error}") from error

    async def converse(self, request: Request) -> Response:
        try:
            events = await self._events(request, "Converse")
        except BedrockRuntimeError as error:
            return render_error(error)
        return JSONResponse(assemble(events), headers=_headers())

    async def converse_stream(self, request: Request) -> Response:
        try:
            events = await self._events(request, "ConverseStream")
        except BedrockRuntimeError as error:
            return render_error(error)
        frames = (eventstream.event(*next(iter(e.items()))) for e in indexed(events))
        return StreamingResponse(frames, media_type=eventstream.CONTENT_TYPE, headers=_headers())
