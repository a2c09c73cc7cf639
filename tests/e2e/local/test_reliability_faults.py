"""Faults through the whole stack: boto3 -> agentcore_local -> sandbox -> coding_agent.py (scripted model).

kill -9 of a session's compute mid-turn, two turns racing on one conversation, what a session's
shell and file tools can reach under bwrap, and the warning about storage AWS would not keep.
One agentcore_local for the module; every test uses its own session ids.
"""

from __future__ import annotations

import json
import logging
import os
import random
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from botocore.exceptions import ClientError

from agentcore_local.sandbox.bwrap import bwrap_works
from agentcore_local.settings import REPO
from agentcore_local.storage.limits import kind_of
from agentcore_local.storage.walk import scan_unsupported as scan
from tests.support.faults import (
    assert_history_consistent,
    compute_pid,
    history,
    kill_compute,
    new_id,
    prompts,
    reliability_runtime,
)
from tests.support.local_runtime import LocalRuntime, invoke, run, wait_for

KILL_ROUNDS = 6  # kills at varied moments of a turn that writes ~40 history messages
KILL_BUDGET_S = 90


@pytest.fixture(scope="module")
def local() -> Iterator[LocalRuntime]:
    # Not under /tmp: bwrap gives every sandbox a private /tmp, which would hide the state
    # directory even if agentcore_local forgot to; here only agentcore_local's own hiding counts.
    scratch = REPO / ".agentcore"
    scratch.mkdir(exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="test-faults-", dir=scratch))
    try:
        with reliability_runtime(tmp) as runtime:
            yield runtime
    finally:
        # rm, not shutil.rmtree: a session's 1,100-level chain is deeper than Python's recursion limit.
        subprocess.run(["rm", "-rf", str(tmp)], check=False)


@pytest.fixture
def data(local: LocalRuntime, _isolated_aws: None):
    return local.data()


def stream_turn(data, arn: str, session: str, prompt: str, events: list) -> None:
    """A streamed turn, its events appended as they arrive; a cut connection just ends the list."""
    try:
        answer = data.invoke_agent_runtime(
            agentRuntimeArn=arn,
            runtimeSessionId=session,
            payload=json.dumps({"prompt": prompt, "stream": True}),
        )
        for line in answer["response"].iter_lines(chunk_size=1):
            if line.startswith(b"data: "):
                events.append(json.loads(line[6:]))
    except Exception as error:  # the compute died under this request, as the test intends
        events.append({"type": "cut", "error": str(error)})


# --- kill -9 of the compute mid-turn ------------------------------------------------------------


def test_kill_during_a_long_shell_command_resumes_with_consistent_workspace_and_history(
    local: LocalRuntime, data
) -> None:
    arn, session = local.default_arn, new_id("kill-shell")
    invoke(data, arn, session, "hello before the crash")
    storage = local.storage(arn, session)
    events: list = []
    turn = threading.Thread(target=stream_turn, args=(data, arn, session, "long shell", events))
    turn.start()
    wait_for(lambda: (storage / "long-started.txt").exists(), 30, "the long command to start")
    kill_compute(compute_pid(local, session))
    turn.join(30)
    assert not turn.is_alive() and not any(e["type"] == "done" for e in events)

    answer = invoke(data, arn, session, "are you back?")  # at once: no waiting for a state change
    assert answer["history"]["previous_turn_interrupted"] is True
    assert answer["workspace"]["restored"] is True
    assert (storage / "long-started.txt").read_text() == "started\n"
    assert not (storage / "long-finished.txt").exists()
    messages = assert_history_consistent(storage, session)
    assert prompts(messages) == ["hello before the crash", "long shell", "are you back?"]
    assert "interrupted" in json.dumps(messages[-3]["content"])  # the note that closed the cut turn


def test_repeated_kills_at_varied_moments_never_leave_a_torn_or_open_history(
    local: LocalRuntime, data
) -> None:
    arn, session = local.default_arn, new_id("kill-loop")
    storage = local.storage(arn, session)
    shuffle = random.Random(5)  # varied moments, the same ones every run
    started, interrupted_seen = time.monotonic(), 0
    for round_ in range(KILL_ROUNDS):
        assert time.monotonic() - started < KILL_BUDGET_S, f"round {round_} began after the budget"
        events: list = []
        turn = threading.Thread(target=stream_turn, args=(data, arn, session, "many steps", events))
        turn.start()
        wait_for(
            lambda ev=events: any(e["type"] == "tool_result" for e in ev), 30, "the turn to run its tools"
        )
        time.sleep(shuffle.uniform(0.0, 1.5))  # somewhere among the ~40 message writes of the turn
        kill_compute(compute_pid(local, session))
        turn.join(30)
        finished = any(e["type"] == "done" for e in events)

        answer = invoke(data, arn, session, f"after kill {round_}")
        assert answer["history"].get("previous_turn_interrupted", False) is (not finished)
        assert "quarantined" not in answer["history"]  # nothing torn: every write was whole
        interrupted_seen += not finished
        messages = assert_history_consistent(storage, session)
        assert prompts(messages)[-1] == f"after kill {round_}"
    assert interrupted_seen >= KILL_ROUNDS - 1  # the kills did land mid-turn


# --- concurrency --------------------------------------------------------------------------------


def test_a_second_turn_on_a_busy_conversation_is_refused_with_the_agents_409(
    local: LocalRuntime, data
) -> None:
    arn, session = local.default_arn, new_id("busy")
    invoke(data, arn, session, "warm up")
    events: list = []
    slow = threading.Thread(target=stream_turn, args=(data, arn, session, "slow one", events))
    slow.start()
    wait_for(lambda: any(e["type"] == "tool_use" for e in events), 30, "the slow turn to start")
    with pytest.raises(ClientError) as refused:
        invoke(data, arn, session, "slow two")
    slow.join(30)
    error = refused.value.response["Error"]
    assert error["Code"] == "RuntimeClientError"
    assert "(409)" in error["Message"] and "already running a turn" in error["Message"]
    assert events[-1]["type"] == "done"
    messages = assert_history_consistent(local.storage(arn, session), session)
    assert prompts(messages) == ["warm up", "slow one"]  # the refused turn left no trace
    assert [m["role"] for m in messages] == ["user", "assistant"] * 3  # warm up; slow one with its tool


def test_two_conversations_in_one_session_run_side_by_side(local: LocalRuntime, data) -> None:
    arn, session = local.default_arn, new_id("pair")
    invoke(data, arn, session, "warm up")  # compute started: the timing below is the turns only
    answers: dict[str, dict] = {}

    def turn(conversation: str) -> None:
        payload = json.dumps({"prompt": f"slow {conversation}", "conversation_id": conversation})
        raw = data.invoke_agent_runtime(agentRuntimeArn=arn, runtimeSessionId=session, payload=payload)
        answers[conversation] = json.loads(raw["response"].read())

    started = time.monotonic()
    threads = [threading.Thread(target=turn, args=(c,)) for c in ("left", "right")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    elapsed = time.monotonic() - started
    assert set(answers) == {"left", "right"}
    assert elapsed < 2 * 1.5, f"two 1.5 s turns took {elapsed:.1f}s: they ran one after the other"
    storage = local.storage(arn, session)
    for conversation in ("left", "right"):
        assert f"slow {conversation}" in answers[conversation]["response"]
        assert prompts(history(storage, conversation)) == [f"slow {conversation}"]


# --- isolation: shell and file tools ------------------------------------------------------------


@pytest.mark.skipif(not bwrap_works(), reason="bubblewrap cannot create namespaces here")
def test_a_sessions_shell_cannot_write_into_another_session_or_the_state_directory(
    local: LocalRuntime, data
) -> None:
    """test_local_runtime_e2e proves B cannot list or read A; this proves B cannot write either."""
    if not local.isolated:
        pytest.skip("this run uses the process sandbox (AGENTCORE_LOCAL_TEST_SANDBOX)")
    arn, a, b = local.default_arn, new_id("owner"), new_id("intruder")
    run(data, arn, a, "echo mine > a.txt")
    a_storage, state = local.storage(arn, a), local.state_dir
    reads = {  # first, while B's view of the state directory is still the empty tmpfs bwrap gives it
        f"ls -A {state}": "",
        f"ls -A {a_storage}": "",
        f"cat {state}/runtimes.json": "",
        f"cat {a_storage}/a.txt": "",
    }
    assert {command: run(data, arn, b, command)[2] for command in reads} == reads
    writes = [
        f"echo planted > {a_storage}/planted.txt",
        f"echo planted > {a_storage}/a.txt",
        f"mkdir -p {a_storage} && echo planted > {a_storage}/planted.txt",  # lands in B's tmpfs only
        f"echo planted > {state}/planted.txt",
        f"echo '{{}}' > {state}/runtimes.json",
    ]
    for command in writes:
        run(data, arn, b, command)
    assert sorted(p.name for p in a_storage.iterdir()) == ["a.txt"]
    assert (a_storage / "a.txt").read_text() == "mine\n"
    assert not (state / "planted.txt").exists()
    assert json.loads((state / "runtimes.json").read_text())  # untouched: still the registry
    assert run(data, arn, a, "cat a.txt")[2] == "mine\n"


@pytest.mark.parametrize(
    ("prompt", "says"),
    [
        ("read passwd", "outside the workspace"),
        ("read dotdot", "path traversal is not allowed"),
        ("write dotdot", "path traversal is not allowed"),
    ],
)
def test_file_tools_refuse_etc_passwd_and_dotdot_through_the_full_stack(
    local: LocalRuntime, data, prompt: str, says: str
) -> None:
    arn, session = local.default_arn, new_id("escape")
    events: list = []
    stream_turn(data, arn, session, prompt, events)
    result = next(e for e in events if e["type"] == "tool_result")
    assert result["status"] == "error"
    assert says in events[-1]["response"]
    assert "root:x:0:0" not in events[-1]["response"]
    assert not (local.storage(arn, session).parent / "escaped.txt").exists()


# --- storage AWS does not keep ------------------------------------------------------------------


def test_unsupported_kinds_are_recognised_from_their_mode_and_link_count() -> None:
    import stat

    assert kind_of(stat.S_IFREG | 0o644, 1) is None
    assert kind_of(stat.S_IFREG | 0o644, 2) == "hard link"
    assert kind_of(stat.S_IFDIR | 0o755, 5) is None  # directories always have several links
    assert kind_of(stat.S_IFLNK | 0o777, 1) is None  # symlinks are supported
    assert kind_of(stat.S_IFIFO | 0o644, 1) == "FIFO"
    assert kind_of(stat.S_IFSOCK | 0o755, 1) == "socket"
    assert kind_of(stat.S_IFCHR | 0o666, 1) == "device file"
    assert kind_of(stat.S_IFBLK | 0o660, 1) == "device file"


def test_scan_finds_hard_links_fifos_and_sockets_and_nothing_else(tmp_path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "plain.txt").write_text("x")
    (tmp_path / "link-to-plain").symlink_to("src/plain.txt")
    (tmp_path / "shared").write_text("y")
    os.link(tmp_path / "shared", tmp_path / "src" / "shared-again")
    os.mkfifo(tmp_path / "pipe")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(tmp_path / "sock"))
        found = {(f.path, f.kind) for f in scan(tmp_path)}
    assert found == {
        ("shared", "hard link"),
        ("src/shared-again", "hard link"),
        ("pipe", "FIFO"),
        ("sock", "socket"),
    }


def test_stop_warns_in_the_server_log_about_what_session_storage_does_not_keep(
    local: LocalRuntime, data, caplog: pytest.LogCaptureFixture
) -> None:
    arn, clean, odd = local.default_arn, new_id("clean"), new_id("odd")
    run(data, arn, clean, "mkdir -p src && echo x > src/a.txt && ln -s src/a.txt link")
    run(
        data,
        arn,
        odd,
        "echo x > a.txt && ln a.txt b.txt && mkfifo pipe && "
        "python3 -c 'import socket; socket.socket(socket.AF_UNIX).bind(\"sock\")'",
    )
    with caplog.at_level(logging.WARNING, logger="agentcore_local.sessions"):
        for session in (clean, odd):
            data.stop_runtime_session(agentRuntimeArn=arn, runtimeSessionId=session)
    warnings = [r.getMessage() for r in caplog.records if "does not support" in r.getMessage()]
    assert len(warnings) == 1 and f"session_id=<{odd}>" in warnings[0]
    for expected in ("hard link", "FIFO", "socket", "a.txt", "b.txt", "pipe", "sock"):
        assert expected in warnings[0]
    described = {
        s["runtimeSessionId"]: s["storageWarning"]
        for s in httpx.get(f"{local.url}/_local/sessions").json()["sessions"]
    }
    assert described[clean] is None and "FIFO" in described[odd]
    assert run(data, arn, odd, "cat b.txt")[2] == "x\n"  # a warning, not a refusal: locally it still works


def test_no_call_fails_on_what_the_session_wrote(local: LocalRuntime, data) -> None:
    """A 1,100-level directory chain, a path past PATH_MAX and a FIFO: stop, resume, the version
    reset and the runtime's deletion all succeed (a walk that cannot count them says so in the log)."""
    created = local.create_runtime(f"deep_{uuid.uuid4().hex[:8]}")
    arn, session = created["agentRuntimeArn"], new_id("deep")
    deep = (
        'python3 -c "import os\n'
        "os.mkdir('chain'); os.chdir('chain')\n"
        "for _ in range(1100):\n"
        "    os.mkdir('d'); os.chdir('d')\n"
        "open('bottom.txt', 'w').write('x' * 1000)\n"
        "os.mkfifo('fifo')\n"
        "os.chdir('/mnt/workspace'); os.mkdir('long'); os.chdir('long')\n"
        "for _ in range(20):\n"
        "    os.mkdir('n' * 220); os.chdir('n' * 220)\n"
        "open('far.txt', 'w').write('y')\""
    )
    code, _, _, err = run(data, arn, session, deep)
    assert code == 0, err
    data.stop_runtime_session(agentRuntimeArn=arn, runtimeSessionId=session)
    assert local.session_state(session) == "STOPPED"
    code, _, out, _ = run(data, arn, session, "find chain -name bottom.txt | wc -l; echo resumed")
    assert out.split() == ["1", "resumed"]
    data.stop_runtime_session(agentRuntimeArn=arn, runtimeSessionId=session)
    request = {k: v for k, v in created["request"].items() if k != "agentRuntimeName"}
    local.control().update_agent_runtime(agentRuntimeId=created["agentRuntimeId"], **request)
    local.clock.advance(5)
    assert run(data, arn, session, "ls -A")[2] == ""  # the new version's reset emptied it
    run(data, arn, session, deep)
    local.control().delete_agent_runtime(agentRuntimeId=created["agentRuntimeId"])
    root = local.storage(arn, session).parent
    wait_for(lambda: not root.exists() or not (root / "storage").exists(), 30, "the session's storage to go")
