"""Conversation history on disk (Strands FileSessionManager), made robust to kills and to poison.

The history lives in session storage, which the agent's own shell can write. So before
Strands reads a conversation, every file it would read is checked here: opened without
following links and without blocking (a FIFO named message_2.json is not waited on),
a regular file of bounded size, JSON that cannot recurse the parser to death, and
messages whose content blocks have the shapes Strands indexes into. Whatever fails,
and every message after it (the clean prefix is kept), is moved aside into
`.sessions/.quarantine/` (nothing is deleted) and the answer lists it. If restoring still
raises anything, the whole conversation is set aside and the turn starts afresh.

A turn cut short (the process killed mid-tool, or a model error) leaves a history that
ends with a tool call or a prompt without an answer: it is closed with a tool result and
a short assistant note, so roles alternate again and the model knows.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from strands.session.file_session_manager import FileSessionManager
from strands.types.session import Session, SessionType

import durable
from agent import session_files as layout
from agent.session_files import session_dir

logger = logging.getLogger(__name__)

INTERRUPTED_NOTE = "(The previous turn was interrupted before it finished; its last step may not have run.)"
MAX_FILE_BYTES = 32 << 20  # far above a real message (tool results are capped at 20,000 characters)
MAX_DEPTH = 64  # Strands deep-copies and re-encodes messages recursively; real ones nest a few levels
_OPEN = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
# Content block kinds of the Bedrock Converse shape that Strands stores; the ones it indexes are checked.
_BLOCKS = {"text", "toolUse", "toolResult", "image", "document", "video", "reasoningContent"}
_BLOCKS |= {"citationsContent", "cachePoint", "guardContent"}

T = TypeVar("T")


def load(path: Path | str) -> Any:
    """A JSON file's value, or None when it is missing, not a regular file, too big, or not sane JSON."""
    try:
        fd = os.open(path, _OPEN)
    except OSError:  # missing, a symlink (ELOOP), unreadable
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_FILE_BYTES:
            return None
        data = os.read(fd, MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:
            return None
        value = json.loads(data)
    except (OSError, ValueError, RecursionError):  # ValueError covers bad UTF-8 and bad JSON
        return None
    finally:
        os.close(fd)
    return value if _shallow(value) else None


def _shallow(value: Any) -> bool:
    """No more than MAX_DEPTH levels of nesting (checked without recursion)."""
    todo = [(value, 1)]
    while todo:
        node, depth = todo.pop()
        if depth > MAX_DEPTH:
            return False
        if isinstance(node, dict):
            todo.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            todo.extend((v, depth + 1) for v in node)
    return True


def _valid_tool_use(use: dict[str, Any]) -> bool:
    return isinstance(use.get("toolUseId"), str) and isinstance(use.get("name"), str)


def _valid_tool_result(result: dict[str, Any]) -> bool:
    content = result.get("content", [])
    return (
        isinstance(result.get("toolUseId"), str)
        and isinstance(content, list)
        and all(isinstance(c, dict) for c in content)
        and result.get("status", "success") in ("success", "error")
    )


# The block kinds whose fields Strands and the providers index into, and what they read there.
_FIELDS = {"toolUse": _valid_tool_use, "toolResult": _valid_tool_result}


def _valid_block(block: Any) -> bool:
    if not isinstance(block, dict) or not block or not block.keys() <= _BLOCKS:
        return False
    if "text" in block and not isinstance(block["text"], str):
        return False
    if not all(isinstance(v, dict) for k, v in block.items() if k != "text"):
        return False
    return all(check(block[kind]) for kind, check in _FIELDS.items() if kind in block)


def valid_message(data: Any) -> bool:
    """The shape of a stored message that Strands, the providers and this service index into."""
    message = data.get("message") if isinstance(data, dict) else None
    return (
        isinstance(message, dict)
        and message.get("role") in ("user", "assistant")
        and isinstance(message.get("content"), list)
        and all(_valid_block(b) for b in message["content"])
        and isinstance(data.get("message_id"), int)
        and isinstance(data.get("redact_message"), dict | None)
    )


def _valid_agent(data: Any) -> bool:
    state = data.get("conversation_manager_state") if isinstance(data, dict) else None
    return (
        isinstance(data, dict)
        and isinstance(data.get("agent_id"), str)
        and isinstance(data.get("state"), dict)
        and isinstance(state, dict)
        and isinstance(state.get("removed_message_count", 0), int)
        and state.get("removed_message_count", 0) >= 0
        and isinstance(data.get(layout.INTERNAL_STATE, {}), dict)
    )


def _is_dir(path: Path) -> bool | None:
    """True for a real directory, False for anything else there (a link too), None when nothing is."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except FileNotFoundError:
        return None


def find_damage(root: Path) -> list[Path]:
    """What would stop (or hang) Strands restoring this conversation; after a bad message, every later one."""
    kind = _is_dir(root)
    if kind is None:
        return []
    if kind is False:
        return [root]
    bad: list[Path] = []
    if os.path.lexists(root / layout.SESSION_FILE):
        session = load(root / layout.SESSION_FILE)
        if not (isinstance(session, dict) and isinstance(session.get("session_id"), str)):
            bad.append(root / layout.SESSION_FILE)
    agents = root / layout.AGENTS
    if _is_dir(agents) is False:
        return [*bad, agents]
    folder = layout.agent_dir_in(root)
    if _is_dir(folder) is None:
        return bad
    if _is_dir(folder) is False or not os.path.lexists(folder / layout.AGENT_FILE):
        return [*bad, folder]  # without agent.json Strands would renumber over the old messages
    agent = load(folder / layout.AGENT_FILE)
    messages = folder / layout.MESSAGES
    if not _valid_agent(agent) or _is_dir(messages) is False:
        return [*bad, folder]
    offset = agent["conversation_manager_state"].get("removed_message_count", 0)
    numbered: dict[int, str] = {}  # plain strings: a long history has thousands of names
    for entry in _entries(messages):
        match = layout.MESSAGE_FILE.fullmatch(entry.name)
        if match:  # a FIFO, link or directory by that name fails load() below, like a torn file
            numbered[int(match.group(1))] = entry.path
        elif layout.is_temp_file(entry.name) and entry.is_file(follow_symlinks=False):
            _remove(Path(entry.path))  # a write killed before its rename: the file it replaces still stands
        elif layout.looks_like_message(entry.name):
            bad.append(Path(entry.path))  # Strands would int() this name and fail on the whole folder
        # any other name Strands' listing skips, so it cannot hurt the restore
    # Strands reads only from the offset on: check those (a restore stays cheap on a long history).
    broken = next((i for i in sorted(numbered) if i >= offset and not valid_message(load(numbered[i]))), None)
    if broken is not None:
        bad.extend(Path(p) for i, p in sorted(numbered.items()) if i >= broken)
    return bad


def _entries(folder: Path) -> list[os.DirEntry[str]]:
    if not _is_dir(folder):
        return []
    with os.scandir(folder) as it:
        return list(it)


def quarantine(storage: Path, conversation_id: str, paths: list[Path]) -> list[str]:
    """Move `paths` under .sessions/.quarantine/<id>-<time>/, keeping their layout. Returns their names."""
    root = session_dir(storage, conversation_id)
    dest = storage / ".quarantine" / f"{conversation_id}-{time.strftime('%Y%m%dT%H%M%S')}-{time.time_ns()}"
    moved = []
    for path in paths:
        relative = path.relative_to(root) if path != root else Path(root.name)
        target = dest / relative
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.rename(path, target)  # a rename, never a copy: copying a FIFO would block
        except OSError as error:  # the quarantine is unusable (e.g. a planted link): drop the file instead
            logger.warning(
                "conversation_id=<%s> | cannot quarantine %s (%s): removing it", conversation_id, path, error
            )
            _remove(path)
        moved.append(str(relative))
    if paths and _is_dir(root) and not os.path.lexists(root / layout.SESSION_FILE):
        # FileSessionManager refuses an existing directory without session.json: give it a fresh one.
        fresh = Session(session_id=conversation_id, session_type=SessionType.AGENT)
        durable.write_json(
            root / layout.SESSION_FILE, fresh.to_dict()
        )  # atomic: this must survive a kill too
    logger.warning(
        "conversation_id=<%s>, files=<%s> | quarantined damaged history to %s", conversation_id, moved, dest
    )
    return moved


def _remove(path: Path) -> None:
    """Best effort: delete a file, link or tree without following links."""
    try:
        if _is_dir(path):
            for top, dirs, files in os.walk(path, topdown=False):
                for name in files + dirs:
                    entry = Path(top, name)
                    os.rmdir(entry) if _is_dir(entry) else os.unlink(entry)
            os.rmdir(path)
        elif os.path.lexists(path):
            os.unlink(path)
    except (OSError, RecursionError) as error:
        logger.warning("cannot remove %s either: %s", path, error)


def open_with_quarantine(storage: Path, conversation_id: str, build: Callable[[], T]) -> tuple[T, list[str]]:
    """Quarantine what would break the restore, run `build` (which restores); on any failure, start afresh.

    `build` must fail only because of the history: build the model before calling this.
    """
    root = session_dir(storage, conversation_id)
    moved = quarantine(storage, conversation_id, damage) if (damage := find_damage(root)) else []
    try:
        return build(), moved
    except Exception as error:  # whatever the history made Strands raise, it must not take the turn down
        logger.warning("conversation_id=<%s> | history does not load: %r", conversation_id, error)
    moved += quarantine(storage, conversation_id, [root] if os.path.lexists(root) else [])
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
