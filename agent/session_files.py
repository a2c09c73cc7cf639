"""Strands FileSessionManager's files on disk: the one module that knows their layout (read in
strands-agents 1.62.0, pinned in pyproject.toml), and where this service keeps its own things
beside them. A leaf: tools/, conversation/, checkpoints/ and backup/ all read it.

    <workspace>/.sessions/                      FileSessionManager's storage_dir (SESSIONS)
        session_<conversation id>/session.json
            agents/agent_default/agent.json     its state: conversation_manager_state, _internal_state
            agents/agent_default/messages/message_<N>.json
        .strands_*.tmp                          its temp file, written then renamed over the name
        .checkpoints/ .quarantine/ .undone/     this service's (CHECKPOINTS, history.py, undo.py)
"""

from __future__ import annotations

import re
from pathlib import Path

SESSIONS = ".sessions"  # in the workspace: the history; the agent's tools never see it
CHECKPOINTS = ".checkpoints"  # in SESSIONS: the checkpoint store (agent/checkpoints/store.py)
SESSION_PREFIX = "session_"
SESSION_FILE = "session.json"
AGENT_ID = "default"  # Strands' id of an Agent not given one
AGENTS = "agents"
AGENT_FILE = "agent.json"
INTERNAL_STATE = "_internal_state"  # a key of agent.json, written by Strands for its own use
MESSAGES = "messages"
MESSAGE_FILE = re.compile(r"message_(\d+)\.json")
TEMP_FILE = re.compile(r"\.strands_[^/]*\.tmp")  # mkstemp, then rename over the name


def session_dir(storage: Path, conversation_id: str) -> Path:
    """A conversation's folder under FileSessionManager's storage_dir."""
    return storage / f"{SESSION_PREFIX}{conversation_id}"


def agent_dir(storage: Path, conversation_id: str) -> Path:
    """Where the conversation's one Agent keeps agent.json and messages/."""
    return agent_dir_in(session_dir(storage, conversation_id))


def agent_dir_in(session: Path) -> Path:
    return session / AGENTS / f"agent_{AGENT_ID}"


def message_name(index: int) -> str:
    return f"message_{index}.json"


def looks_like_message(name: str) -> bool:
    """Named as a message is (Strands would int() the number): a malformed one breaks its listing."""
    return name.startswith("message_") and name.endswith(".json")


def is_temp_file(name: str) -> bool:
    """A FileSessionManager write in flight, or one a kill cut short before its rename."""
    return TEMP_FILE.fullmatch(name) is not None
