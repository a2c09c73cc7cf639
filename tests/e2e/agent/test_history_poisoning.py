"""A poisoned history never takes a conversation down: the real service over HTTP, each poison in turn.

The agent's own shell can write `.sessions/`, so each kind of poison below is something a
turn could plant. Each must be quarantined (moved, not deleted), reported in the answer,
and the turn must go on; meanwhile another conversation's turn is not held up.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import httpx
import pytest
from strands import Agent
from strands.session.file_session_manager import FileSessionManager

from agent.model.scripted import ScriptedModel
from tests.support.agent_process import TEST_PLAN, AgentProcess

MESSAGES = "agents/agent_default/messages"
FROM_2 = [f"{MESSAGES}/message_2.json", f"{MESSAGES}/message_3.json"]
NESTED = 100_000


def _deep(levels: int) -> str:
    return "[" * levels + "]" * levels


def _message(content: str) -> str:
    return '{"message": {"role": "assistant", "content": ' + content + '}, "message_id": 2}'


def _fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


def _write(text: str):
    return lambda path: path.write_text(text)


def _replace_with_dir(path: Path) -> None:
    path.unlink()
    path.mkdir()
    (path / "inside").write_text("x")


def _symlink(path: Path) -> None:
    path.unlink()
    path.symlink_to("/etc/passwd")


def _huge(path: Path) -> None:
    with open(path, "r+b") as f:
        f.truncate(40 << 20)  # sparse: its size alone is over the bound


# kind -> (file under session_<id>/, how to poison it, what gets quarantined, messages kept)
POISONS = {
    "fifo-message": (f"{MESSAGES}/message_2.json", _fifo, FROM_2, 2),
    "nested-100000": (
        f"{MESSAGES}/message_2.json",
        _write(
            _message('[{"toolUse": {"toolUseId": "t", "name": "shell", "input": ' + _deep(NESTED) + "}}]")
        ),
        FROM_2,
        2,
    ),
    "nested-500": (  # json.loads copes; Strands' deepcopy of every turn would not
        f"{MESSAGES}/message_2.json",
        _write(_message('[{"toolUse": {"toolUseId": "t", "name": "shell", "input": ' + _deep(500) + "}}]")),
        FROM_2,
        2,
    ),
    "tooluse-string": (f"{MESSAGES}/message_2.json", _write(_message('[{"toolUse": "shell"}]')), FROM_2, 2),
    "content-string": (f"{MESSAGES}/message_2.json", _write(_message('"hello"')), FROM_2, 2),
    "directory": (f"{MESSAGES}/message_2.json", _replace_with_dir, FROM_2, 2),
    "symlink": (f"{MESSAGES}/message_2.json", _symlink, FROM_2, 2),
    "huge": (f"{MESSAGES}/message_2.json", _huge, FROM_2, 2),
    "not-utf8": (f"{MESSAGES}/message_2.json", lambda p: p.write_bytes(b'{"message": "\xff"}'), FROM_2, 2),
    "stray-name": (f"{MESSAGES}/message_backup.json", _write("{}"), [f"{MESSAGES}/message_backup.json"], 4),
    "fifo-agent-json": ("agents/agent_default/agent.json", _fifo, ["agents/agent_default"], 0),
    "fifo-session-json": ("session.json", _fifo, ["session.json"], 4),
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    agent = AgentProcess(tmp_path_factory.mktemp("workspace"))
    agent.start()
    yield agent
    agent.stop()


def _stored_conversation(workspace: Path, conversation_id: str) -> Path:
    """Two turns (four messages) on disk, written by Strands itself, never opened by the server."""
    sessions = FileSessionManager(session_id=conversation_id, storage_dir=str(workspace / ".sessions"))
    agent = Agent(model=ScriptedModel(TEST_PLAN, workspace), session_manager=sessions, callback_handler=None)
    agent("one")
    agent("two")
    return workspace / ".sessions" / f"session_{conversation_id}"


@pytest.mark.parametrize("kind", list(POISONS))
def test_poisoned_history_is_quarantined_and_the_turn_goes_on(server: AgentProcess, kind: str):
    where, poison, quarantined, kept = POISONS[kind]
    conversation = f"poisoned-{kind}"
    root = _stored_conversation(server.workspace, conversation)
    poison(root / where)
    answers: list[httpx.Response] = []
    turn = threading.Thread(
        target=lambda: answers.append(server.invoke("after", conversation_id=conversation))
    )
    turn.start()
    started = time.monotonic()
    other = server.invoke("meanwhile", conversation_id=f"bystander-{kind}")
    assert other.status_code == 200 and time.monotonic() - started < 10, "another conversation was held up"
    turn.join(30)
    assert not turn.is_alive(), "the poisoned conversation's turn hangs"
    answer = answers[0]
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["history"]["quarantined"] == quarantined
    assert body["history"]["messages_before"] == kept
    set_aside = list((server.workspace / ".sessions" / ".quarantine").glob(f"{conversation}-*/{where}"))
    assert set_aside and os.path.lexists(set_aside[0]), "the poison was deleted, not set aside"
    again = server.invoke("and again", conversation_id=conversation).json()["history"]
    assert "quarantined" not in again and again["messages_before"] == kept + 2


def test_a_write_killed_before_its_rename_leaves_nothing_to_quarantine(server: AgentProcess):
    """Strands writes a temp file and renames it; a kill -9 in between leaves the temp file behind."""
    conversation = "killed-mid-write"
    root = _stored_conversation(server.workspace, conversation)
    leftover = root / MESSAGES / ".strands_k1ll3d.tmp"
    leftover.write_text('{"message": {"role": "user", "content": [{"te')  # torn: the kill came mid-write
    (root / MESSAGES / "notes.txt").write_text("Strands' listing skips this name")

    body = server.invoke("after", conversation_id=conversation).json()

    assert "quarantined" not in body["history"] and body["history"]["messages_before"] == 4
    assert not os.path.lexists(leftover), "the dead write's temp file was kept"
    assert (root / MESSAGES / "notes.txt").exists()


def _long_history(workspace: Path, conversation_id: str, count: int) -> None:
    """`count` stored messages that a restore must all read (nothing trimmed yet)."""
    root = workspace / ".sessions" / f"session_{conversation_id}"
    messages = root / "agents" / "agent_default" / "messages"
    messages.mkdir(parents=True)
    now = "2026-01-01T00:00:00+00:00"
    (root / "session.json").write_text(
        json.dumps(
            {"session_id": conversation_id, "session_type": "AGENT", "created_at": now, "updated_at": now}
        )
    )
    state = {
        "__name__": "SlidingWindowConversationManager",
        "removed_message_count": 0,
        "model_call_count": 0,
    }
    agent = {"agent_id": "default", "state": {}, "conversation_manager_state": state, "_internal_state": {}}
    agent.update(created_at=now, updated_at=now)
    (root / "agents" / "agent_default" / "agent.json").write_text(json.dumps(agent))
    for i in range(count):
        role = "user" if i % 2 == 0 else "assistant"
        message = {"role": role, "content": [{"text": f"message {i}"}]}
        record = {
            "message": message,
            "message_id": i,
            "redact_message": None,
            "created_at": now,
            "updated_at": now,
        }
        (messages / f"message_{i}.json").write_text(json.dumps(record))


def test_ping_is_unhealthy_while_a_restore_is_stuck_and_healthy_after(tmp_path: Path):
    agent = AgentProcess(tmp_path / "ws", STALL_SECONDS="0.2")
    _long_history(agent.workspace, "slow", 8000)  # restoring it takes well over 0.2 s
    try:
        agent.start()
        answers: list[httpx.Response] = []
        turn = threading.Thread(target=lambda: answers.append(agent.invoke("hi", conversation_id="slow")))
        turn.start()
        seen = None
        while turn.is_alive() and seen is None:
            ping = agent.http.get("/ping")
            if ping.status_code == 503:
                seen = ping.json()
            time.sleep(0.02)
        turn.join(60)
        assert seen is not None, "ping never said the restore was stuck"
        assert seen["status"] == "Unhealthy" and "restoring conversation 'slow'" in seen["reason"]
        assert answers[0].status_code == 200
        assert agent.http.get("/ping").json()["status"] == "Healthy"
    finally:
        agent.stop()
