"""End to end: the real coding_agent.py over real HTTP, with the offline scripted model (a test double)."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.support.agent_process import AgentProcess, history

SESSION_HEADER = "X-Amzn-Bedrock-AgentCore-Runtime-Session-Id"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    agent = AgentProcess(tmp_path_factory.mktemp("workspace"))
    agent.start()
    yield agent
    agent.stop()


@pytest.fixture
def fresh(tmp_path: Path):
    """A server of its own, for tests that kill or restart it."""
    agent = AgentProcess(tmp_path / "workspace")
    yield agent
    agent.stop()


def test_turn_writes_files_and_runs_the_shell_in_the_workspace(server: AgentProcess):
    r = server.invoke("make files", conversation_id="files")
    assert r.status_code == 200, r.text
    body = r.json()
    assert (server.workspace / "notes" / "a.txt").read_text() == "hello from turn one\n"
    assert "hello from turn one" in body["response"] and str(server.workspace) in body["response"]
    assert body["response"].startswith("[offline scripted model]")
    assert body["conversation_id"] == "files"
    assert body["history"] == {"messages_before": 0}
    assert body["workspace"]["path"] == str(server.workspace)


def test_second_turn_reports_restored_workspace_and_history(server: AgentProcess):
    server.invoke("make files", conversation_id="second")
    body = server.invoke("what did you do?", conversation_id="second").json()
    assert body["history"]["messages_before"] == 6  # prompt, 2 x (tool use, tool result), answer
    assert body["workspace"]["restored"] is True
    assert body["workspace"]["entries"] == len(
        [p for p in server.workspace.iterdir() if p.name != ".sessions"]
    )
    assert "(history 6)" in body["response"]


def test_killed_process_restarts_with_files_and_history(fresh: AgentProcess):
    fresh.start()
    assert fresh.invoke("make files", conversation_id="resume").status_code == 200
    fresh.kill()
    fresh.start()
    body = fresh.invoke("are you back?", conversation_id="resume").json()
    assert body["history"]["messages_before"] == 6
    assert body["workspace"]["restored"] is True
    assert (fresh.workspace / "notes" / "a.txt").exists()
    assert [m["role"] for m in history(fresh.workspace, "resume")][-2:] == ["user", "assistant"]


def test_stream_sends_tool_events_then_text_then_done(server: AgentProcess):
    (server.workspace / "notes" / "a.txt").unlink(missing_ok=True)  # file_editor's create never overwrites
    events = server.stream("make files", conversation_id="streamed")
    kinds = [e["type"] for e in events]
    assert kinds[:4] == ["tool_use", "tool_result", "tool_use", "tool_result"]
    assert [e["name"] for e in events[:4]] == ["file_editor", "file_editor", "shell", "shell"]
    assert all(e["status"] == "success" for e in events if e["type"] == "tool_result")
    assert set(kinds[4:-1]) == {"text"} and kinds[-1] == "done"
    streamed_text = "".join(e["text"] for e in events if e["type"] == "text")
    assert events[-1]["response"] == streamed_text.strip()
    assert events[-1]["conversation_id"] == "streamed"


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        (b"{not json", 400, "Invalid JSON"),
        (b'["a list"]', 400, "JSON object"),
        (b"{}", 400, '"prompt" is required'),
        (b'{"prompt": ""}', 400, '"prompt" is required'),
        (b'{"prompt": "   "}', 400, '"prompt" is required'),
        (b'{"prompt": 42}', 400, '"prompt" is required'),
        (b'{"prompt": "hi", "conversation_id": "../x"}', 400, '"conversation_id"'),
        (json.dumps({"prompt": "hi", "conversation_id": "a" * 129}).encode(), 400, '"conversation_id"'),
        (b'{"prompt": "hi", "conversation_id": 7}', 400, '"conversation_id"'),
        (b'{"prompt": "hi", "session_id": "a/b"}', 400, '"conversation_id"'),
        (b'{"prompt": "hi", "stream": "yes"}', 400, '"stream"'),
        (json.dumps({"prompt": "x" * 100_001}).encode(), 413, "limit is 100000"),
    ],
)
def test_bad_request_gets_a_clear_error_and_the_server_keeps_serving(server, body, status, says):
    r = server.http.post("/invocations", content=body)
    assert r.status_code == status
    assert says in r.json()["error"]
    assert server.invoke("still there?", conversation_id="after-bad").status_code == 200


def test_model_failure_is_a_500_with_a_message_and_the_server_keeps_serving(server: AgentProcess):
    r = server.invoke("model fails", conversation_id="failing")
    assert r.status_code == 500
    assert "the provider is unreachable" in r.json()["error"]
    assert "Traceback" not in r.text
    assert server.invoke("hello again", conversation_id="failing").status_code == 200


def test_stream_failure_ends_with_an_error_event(server: AgentProcess):
    events = server.stream("model fails", conversation_id="failing-stream")
    assert events[-1]["type"] == "error"
    assert "the provider is unreachable" in events[-1]["message"]


def test_ping_is_busy_during_a_turn_and_a_second_turn_on_it_gets_409(server: AgentProcess):
    before = server.http.get("/ping").json()
    assert before["status"] == "Healthy"
    slow = threading.Thread(target=server.invoke, args=("slow",), kwargs={"conversation_id": "busy"})
    slow.start()
    deadline = time.monotonic() + 10
    while server.http.get("/ping").json()["status"] != "HealthyBusy":
        assert time.monotonic() < deadline, "ping never said HealthyBusy"
        time.sleep(0.02)
    clash = server.invoke("hi", conversation_id="busy")
    other = server.invoke("hi", conversation_id="not-busy")  # another conversation runs side by side
    assert slow.is_alive()
    slow.join()
    assert clash.status_code == 409 and "already running a turn" in clash.json()["error"]
    assert other.status_code == 200
    after = server.http.get("/ping").json()
    assert after["status"] == "Healthy"
    assert after["time_of_last_update"] >= before["time_of_last_update"]
    roles = [m["role"] for m in history(server.workspace, "busy")]
    assert roles == ["user", "assistant", "user", "assistant"]  # the refused turn left no trace


@pytest.mark.parametrize(
    ("how", "says"),
    [
        ("absolute", "outside the workspace"),
        ("dotdot", "path traversal is not allowed"),
        ("symlink", "symbolic link"),  # never followed (the races are in tests/unit/agent/test_file_tools.py)
    ],
)
def test_file_tools_refuse_paths_outside_the_workspace(
    server: AgentProcess, tmp_path: Path, how: str, says: str
):
    outside = tmp_path / "outside"
    outside.mkdir()
    link = server.workspace / "outside-link"
    if not link.is_symlink():
        link.symlink_to(outside)
    events = server.stream(f"escape {how}", conversation_id=f"escape-{how}")
    result = next(e for e in events if e["type"] == "tool_result")
    assert result["status"] == "error"
    assert says in events[-1]["response"]
    assert not (server.workspace.parent / "escaped.txt").exists()
    assert not (outside / "planted.txt").exists()


def test_file_tools_cannot_read_the_conversation_history(server: AgentProcess):
    events = server.stream("read history", conversation_id="nosy")
    listing, reading = [e for e in events if e["type"] == "tool_result"]
    assert listing["status"] == reading["status"] == "error"
    assert "conversation history" in events[-1]["response"]
    history = server.workspace / ".sessions" / "session_nosy" / "session.json"
    assert history.exists()  # it was there to read, and the tool was refused


def test_shell_runs_in_the_workspace_and_never_waits_for_input(server: AgentProcess):
    started = time.monotonic()
    body = server.invoke("shell cwd", conversation_id="shell").json()
    assert str(server.workspace) in body["response"]
    assert "read-exit=1" in body["response"]  # stdin is closed: `read` fails at once instead of hanging
    assert time.monotonic() - started < 10


def test_large_tool_output_is_capped_before_it_reaches_history(server: AgentProcess):
    assert server.invoke("big output", conversation_id="big").status_code == 200
    stored = json.dumps(history(server.workspace, "big"))
    assert "bytes not shown" in stored  # the shell keeps the first and last part
    assert len(stored) < 40_000  # the command printed 100,000 characters


def test_conversation_defaults_to_the_runtime_session_id(server: AgentProcess):
    session = "s" * 40
    body = server.invoke("hi", headers={SESSION_HEADER: session}).json()
    assert body["conversation_id"] == session
    alias = server.invoke("hi", session_id="seed-client-id").json()  # the seed's client sends session_id
    assert alias["conversation_id"] == "seed-client-id"


def test_corrupt_history_is_quarantined_and_the_conversation_goes_on(fresh: AgentProcess):
    fresh.start()
    fresh.invoke("first", conversation_id="corrupt")
    fresh.invoke("second", conversation_id="corrupt")
    fresh.stop()
    messages = fresh.workspace / ".sessions" / "session_corrupt" / "agents" / "agent_default" / "messages"
    (messages / "message_2.json").write_text('{"message": {"role": "us')  # half-written
    fresh.start()
    r = fresh.invoke("third", conversation_id="corrupt")
    assert r.status_code == 200, r.text
    history = r.json()["history"]
    assert history["quarantined"] == [
        "agents/agent_default/messages/message_2.json",
        "agents/agent_default/messages/message_3.json",
    ]
    assert history["messages_before"] == 2  # the clean prefix: "first" and its answer
    kept = list((fresh.workspace / ".sessions" / ".quarantine").rglob("message_2.json"))
    assert kept and kept[0].read_text().startswith('{"message"')  # set aside, not deleted
    again = fresh.invoke("fourth", conversation_id="corrupt").json()["history"]
    assert "quarantined" not in again and again["messages_before"] == 4


def test_process_killed_mid_tool_resumes_cleanly(fresh: AgentProcess):
    fresh.start()
    hanging = threading.Thread(target=lambda: _ignore_errors(fresh.invoke, "hang", conversation_id="killed"))
    hanging.start()
    deadline = time.monotonic() + 10
    while not (fresh.workspace / "hang-started.txt").exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    fresh.kill()
    hanging.join()
    fresh.start()
    r = fresh.invoke("are you ok?", conversation_id="killed")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["history"]["previous_turn_interrupted"] is True
    assert body["history"]["messages_before"] == 4  # prompt, tool use, closed result, interruption note
    roles = [m["role"] for m in history(fresh.workspace, "killed")]
    assert roles == ["user", "assistant", "user", "assistant", "user", "assistant"]


def _ignore_errors(call, *args, **kwargs) -> None:
    with contextlib.suppress(httpx.TransportError):  # the server was killed under this request, as intended
        call(*args, **kwargs)
