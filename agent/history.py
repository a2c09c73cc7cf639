"""Conversation history on disk (Strands FileSessionManager), made robust to what a kill leaves behind.

Two failure modes matter on session storage:
- a corrupt or half-written file (disk full, a hand edit, a bug): Strands refuses to
  restore the whole conversation. We move the bad files aside into `.sessions/.quarantine/`
  (nothing is deleted), keep the clean prefix of the history, and go on;
- a turn cut short (the process killed mid-tool, or a model error): the history ends
  with a tool call or a prompt that has no answer. We close that turn with a tool
  result and a short assistant note, so roles alternate again and the model knows.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from strands.session.file_session_manager import FileSessionManager
from strands.types.exceptions import SessionException
from strands.types.session import Session, SessionType

import durable

logger = logging.getLogger(__name__)

AGENT_ID = "default"
INTERRUPTED_NOTE = "(The previous turn was interrupted before it finished; its last step may not have run.)"
# What a damaged history can raise from inside Agent(...), per the library notes.
HISTORY_ERRORS = (SessionException, ValueError, TypeError, KeyError, AttributeError, json.JSONDecodeError)
_MESSAGE_FILE = re.compile(r"message_(\d+)\.json")

T = TypeVar("T")


def session_dir(storage: Path, conversation_id: str) -> Path:
    return storage / f"session_{conversation_id}"


def _load_dict(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _valid_message(path: Path) -> bool:
    data = _load_dict(path)
    message = data.get("message") if data else None
    return (
        isinstance(message, dict)
        and message.get("role") in ("user", "assistant")
        and isinstance(message.get("content"), list)
        and isinstance(data.get("message_id"), int)
    )


def find_damage(root: Path) -> list[Path]:
    """Files that stop the history from loading; after a bad message, every later one too (keep a prefix)."""
    bad: list[Path] = []
    if (root / "session.json").exists() and _load_dict(root / "session.json") is None:
        bad.append(root / "session.json")
    agent_dir = root / "agents" / f"agent_{AGENT_ID}"
    if (agent_dir / "agent.json").exists() and _load_dict(agent_dir / "agent.json") is None:
        return [*bad, agent_dir]  # without agent.json Strands would renumber over the old messages
    messages = agent_dir / "messages"
    numbered: dict[int, Path] = {}
    for entry in messages.iterdir() if messages.is_dir() else ():
        match = _MESSAGE_FILE.fullmatch(entry.name)
        if match and entry.is_file() and not entry.is_symlink():
            numbered[int(match.group(1))] = entry
        else:
            bad.append(entry)  # a stray name breaks Strands' int() parse of every file name
    broken = [i for i, p in numbered.items() if not _valid_message(p)]
    if broken:
        bad.extend(p for i, p in sorted(numbered.items()) if i >= min(broken))
    return bad


def quarantine(storage: Path, conversation_id: str, paths: list[Path]) -> list[str]:
    """Move `paths` under .sessions/.quarantine/<id>-<time>/, keeping their layout. Returns their names."""
    root = session_dir(storage, conversation_id)
    dest = storage / ".quarantine" / f"{conversation_id}-{time.strftime('%Y%m%dT%H%M%S')}-{time.time_ns()}"
    moved = []
    for path in paths:
        relative = path.relative_to(root)
        (dest / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(path), dest / relative)
        moved.append(str(relative))
    if (root.exists() and not (root / "session.json").exists()) and paths:
        # FileSessionManager refuses an existing directory without session.json: give it a fresh one.
        fresh = Session(session_id=conversation_id, session_type=SessionType.AGENT)
        durable.write_json(root / "session.json", fresh.to_dict())  # atomic: this must survive a kill too
    logger.warning(
        "conversation_id=<%s>, files=<%s> | quarantined damaged history to %s", conversation_id, moved, dest
    )
    return moved


def open_with_quarantine(storage: Path, conversation_id: str, build: Callable[[], T]) -> tuple[T, list[str]]:
    """Run `build` (which restores the history); if damage stops it, quarantine the damage and retry."""
    try:
        return build(), []
    except HISTORY_ERRORS as error:
        logger.warning("conversation_id=<%s> | history does not load: %s", conversation_id, error)
    root = session_dir(storage, conversation_id)
    moved = quarantine(storage, conversation_id, find_damage(root))
    try:
        return build(), moved
    except HISTORY_ERRORS:
        # Damage we could not pin down: set the whole conversation aside and start afresh.
        whole = [p for p in root.iterdir()] if root.exists() else []
        moved += quarantine(storage, conversation_id, whole)
        shutil.rmtree(root, ignore_errors=True)
        return build(), moved


def close_interrupted_turn(agent: Any, session_manager: FileSessionManager) -> bool:
    """If the history ends mid-turn, append (and persist) the missing tool results and a note. True if so."""
    if not agent.messages:
        return False
    last = agent.messages[-1]
    pending = [b["toolUse"]["toolUseId"] for b in last["content"] if "toolUse" in b]
    if last["role"] == "assistant" and not pending:
        return False
    closing: list[dict[str, Any]] = []
    if last["role"] == "assistant":
        results = [
            {
                "toolResult": {
                    "toolUseId": i,
                    "status": "error",
                    "content": [{"text": "Tool was interrupted."}],
                }
            }
            for i in pending
        ]
        closing.append({"role": "user", "content": results})
    closing.append({"role": "assistant", "content": [{"text": INTERRUPTED_NOTE}]})
    for message in closing:
        agent.messages.append(message)
        session_manager.append_message(message, agent)
    return True
