"""The wire contract of POST /invocations (docs/CONTRACT.md §1): requests, answers, streamed events."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent.conversation.conversations import Conversation
    from agent.tools.snapshot import Snapshot

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


ACTIONS = ("undo", "checkpoints", "status", "restore")
MAX_CHECKPOINT_ID = 60
MAX_UNDO_TURNS = 1000


@dataclass(frozen=True)
class ActionRequest:
    """A request that runs no turn: {"action": "undo", "turns": N} | {"action": "checkpoints"} | "status"."""

    action: str
    conversation_id: str
    turns: int = 1
    backup: bool = False  # checkpoints: the backup's history instead of the store's
    checkpoint: str | None = None  # restore: the backup checkpoint to bring back


def default_conversation_id(runtime_session_id: str | None) -> str:
    """The runtime session id when it fits FileSessionManager's rules, a stable digest of it otherwise."""
    if not runtime_session_id:
        return "default"
    if CONVERSATION_ID.fullmatch(runtime_session_id):
        return runtime_session_id
    return "rs-" + hashlib.sha256(runtime_session_id.encode()).hexdigest()[:40]


def parse_request(
    payload: Any, runtime_session_id: str | None, max_prompt_chars: int
) -> TurnRequest | ActionRequest:
    """Validate a request body, or raise BadRequest saying what is wrong and how to fix it."""
    if not isinstance(payload, dict):
        raise BadRequest('the body must be a JSON object like {"prompt": "..."}')
    conversation_id = payload.get("conversation_id", payload.get("session_id"))
    if conversation_id is None:
        conversation_id = default_conversation_id(runtime_session_id)
    elif not isinstance(conversation_id, str) or not CONVERSATION_ID.fullmatch(conversation_id):
        raise BadRequest('"conversation_id" must be 1-128 characters of letters, digits, "_" or "-"')
    if "action" in payload:
        return _parse_action(payload, conversation_id)
    prompt = payload.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise BadRequest('"prompt" is required and must be a non-empty string')
    if len(prompt) > max_prompt_chars:
        raise BadRequest(
            f'"prompt" has {len(prompt)} characters; the limit is {max_prompt_chars}', status=413
        )
    stream = payload.get("stream", False)
    if not isinstance(stream, bool):
        raise BadRequest('"stream" must be true or false')
    return TurnRequest(prompt=prompt, conversation_id=conversation_id, stream=stream)


def _parse_action(payload: dict[str, Any], conversation_id: str) -> ActionRequest:
    action = payload["action"]
    if action not in ACTIONS:
        raise BadRequest(f'"action" must be one of {", ".join(ACTIONS)} (or send a "prompt" instead)')
    turns = payload.get("turns", 1)
    if action == "undo" and (
        not isinstance(turns, int) or isinstance(turns, bool) or not 1 <= turns <= MAX_UNDO_TURNS
    ):
        raise BadRequest(f'"turns" must be a whole number from 1 to {MAX_UNDO_TURNS}')
    backup = payload.get("backup", False)
    if not isinstance(backup, bool):
        raise BadRequest('"backup" must be true or false')
    checkpoint = payload.get("checkpoint")
    if action == "restore" and (
        not isinstance(checkpoint, str) or not 0 < len(checkpoint) <= MAX_CHECKPOINT_ID
    ):
        raise BadRequest('"checkpoint" must name a checkpoint of the backup (client.py checkpoints --backup)')
    return ActionRequest(action, conversation_id, turns, backup, checkpoint)


# --- the answer ----------------------------------------------------------------------------------

WARN_AT = 0.8  # of the quota: from here on every answer carries a warning


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


@dataclass(frozen=True)
class Usage:
    """What session storage holds against its quota: project files, history and checkpoints."""

    bytes: int
    files: int
    quota_bytes: int
    checkpoint_bytes: int = 0
    unrecorded: str | None = None  # why the last checkpoint was not written (the store's words)

    @property
    def warning(self) -> str | None:
        if self.unrecorded:
            return f"changes since the last checkpoint are not kept yet: {self.unrecorded}"
        if self.bytes < WARN_AT * self.quota_bytes:
            return None
        return (
            f"session storage is {100 * self.bytes / self.quota_bytes:.0f}% full ({_mib(self.bytes)} of "
            f"{_mib(self.quota_bytes)}, {_mib(self.checkpoint_bytes)} of it checkpoints): delete what can "
            "be rebuilt (node_modules, build output) or keep fewer checkpoints (CHECKPOINT_KEEP)"
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "bytes": self.bytes,
            "files": self.files,
            "quota_bytes": self.quota_bytes,
            "checkpoint_bytes": self.checkpoint_bytes,
        }
        if warning := self.warning:
            out["warning"] = warning
        return out


@dataclass(frozen=True)
class TurnRecord:
    """What the checkpoints say about a turn: the one it left, where the workspace came from,
    whether it matched the last manifest (None: not checked, this compute already had it)."""

    checkpoint: str | None = None
    restored_from: str | None = None  # "storage" | "backup" | None for a first turn
    verified: bool | dict[str, list[str]] | None = None
    usage: Usage | None = None
    restore: dict[str, Any] | None = None  # restored from backup: checkpoint, files, bytes, seconds


@dataclass(frozen=True)
class Answer:
    """The answer of a turn; streamed, its JSON form is the body of the `done` event."""

    response: str
    conversation_id: str
    path: str
    entries: int  # the workspace's top-level entries when the turn started
    messages_before: int
    record: TurnRecord = TurnRecord()
    interrupted: bool = False
    quarantined: tuple[str, ...] = ()

    @classmethod
    def of(cls, response: str, snapshot: Snapshot, conversation: Conversation, **facts: Any) -> Answer:
        """Built from the snapshot the turn began with and the conversation it ran in."""
        return cls(
            response=response.strip(),
            conversation_id=conversation.id,
            path=str(snapshot.path),
            entries=len(snapshot.entries),
            quarantined=tuple(conversation.quarantined),
            **facts,
        )

    def to_json(self) -> dict[str, Any]:
        history: dict[str, Any] = {"messages_before": self.messages_before}
        if self.interrupted:
            history["previous_turn_interrupted"] = True
        if self.quarantined:
            history["quarantined"] = list(self.quarantined)
        record = self.record
        return {
            "response": self.response,
            "conversation_id": self.conversation_id,
            "workspace": {
                "path": self.path,
                "restored": self.entries > 0,
                "entries": self.entries,
                "checkpoint": record.checkpoint,
                "restored_from": record.restored_from,
                "verified": record.verified,
                "usage": record.usage.to_json() if record.usage else None,
                **({"restore": record.restore} if record.restore else {}),
            },
            "history": history,
        }


def done_event(answer: Answer) -> dict[str, Any]:
    return {"type": "done", **answer.to_json()}


def error_event(message: str, **facts: Any) -> dict[str, Any]:
    return {"type": "error", "message": message, **facts}


def body_of(event: dict[str, Any]) -> dict[str, Any]:
    """The JSON answer a `done` event carries (its `type` is the SSE framing, not the answer)."""
    return {key: value for key, value in event.items() if key != "type"}


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
