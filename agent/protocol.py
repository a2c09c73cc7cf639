"""The wire contract of POST /invocations (docs/CONTRACT.md §1): requests, answers, streamed events."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

CONVERSATION_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")


class BadRequest(ValueError):
    """A request the service refuses, with its HTTP status (400 or 413)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class TurnRequest:
    prompt: str
    conversation_id: str
    stream: bool


def default_conversation_id(runtime_session_id: str | None) -> str:
    """The runtime session id when it fits FileSessionManager's rules, a stable digest of it otherwise."""
    if not runtime_session_id:
        return "default"
    if CONVERSATION_ID.fullmatch(runtime_session_id):
        return runtime_session_id
    return "rs-" + hashlib.sha256(runtime_session_id.encode()).hexdigest()[:40]


def parse_request(payload: Any, runtime_session_id: str | None, max_prompt_chars: int) -> TurnRequest:
    """Validate a request body, or raise BadRequest saying what is wrong and how to fix it."""
    if not isinstance(payload, dict):
        raise BadRequest('the body must be a JSON object like {"prompt": "..."}')
    prompt = payload.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise BadRequest('"prompt" is required and must be a non-empty string')
    if len(prompt) > max_prompt_chars:
        raise BadRequest(
            f'"prompt" has {len(prompt)} characters; the limit is {max_prompt_chars}', status=413
        )
    conversation_id = payload.get("conversation_id", payload.get("session_id"))
    if conversation_id is None:
        conversation_id = default_conversation_id(runtime_session_id)
    elif not isinstance(conversation_id, str) or not CONVERSATION_ID.fullmatch(conversation_id):
        raise BadRequest('"conversation_id" must be 1-128 characters of letters, digits, "_" or "-"')
    stream = payload.get("stream", False)
    if not isinstance(stream, bool):
        raise BadRequest('"stream" must be true or false')
    return TurnRequest(prompt=prompt, conversation_id=conversation_id, stream=stream)


def answer(
    response: str,
    conversation_id: str,
    workspace: dict[str, Any],
    messages_before: int,
    quarantined: list[str],
    interrupted: bool,
) -> dict[str, Any]:
    """The JSON answer of a turn; streamed, it is the body of the `done` event."""
    history: dict[str, Any] = {"messages_before": messages_before}
    if interrupted:
        history["previous_turn_interrupted"] = True
    if quarantined:
        history["quarantined"] = quarantined
    return {
        "response": response,
        "conversation_id": conversation_id,
        "workspace": workspace,
        "history": history,
    }


def short(value: Any, limit: int = 200) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def events_of(strands_event: dict[str, Any], tool_names: dict[str, str]) -> list[dict[str, Any]]:
    """Translate one Strands stream event into the service's SSE events (most translate to none)."""
    if "data" in strands_event and isinstance(strands_event["data"], str):
        return [{"type": "text", "text": strands_event["data"]}]
    message = strands_event.get("message")
    if not isinstance(message, dict):
        return []
    out = []
    for block in message.get("content", []):
        if "toolUse" in block:
            use = block["toolUse"]
            tool_names[use["toolUseId"]] = use["name"]
            out.append({"type": "tool_use", "name": use["name"], "input": short(use.get("input", {}))})
        elif "toolResult" in block:
            result = block["toolResult"]
            name = tool_names.get(result["toolUseId"], "unknown")
            out.append({"type": "tool_result", "name": name, "status": result.get("status", "success")})
    return out
