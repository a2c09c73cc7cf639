"""End to end: real boto3 -> agentcore_local -> sandbox -> the real coding_agent.py (scripted model).

One server for the module; every test uses its own session ids. The clock is the server's
injected clock, moved by hand for idle timeouts and the 14-day storage expiry.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

import client as client_cli
import deploy
from agentcore_local.sandbox.bwrap import bwrap_works
from agentcore_local.sessions.lifecycle import DAY
from cloud.runtime_record import read_arn
from tests.support.local_runtime import IMAGE, PLAN, ROLE, LocalRuntime, invoke, local_runtime, run, wait_for


def new_id() -> str:
    return f"test-{uuid.uuid4().hex}"


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRuntime]:
    with local_runtime(tmp_path_factory.mktemp("e2e")) as runtime:
        yield runtime


@pytest.fixture
def data(local: LocalRuntime, _isolated_aws: None) -> Iterator[Any]:
    """A data-plane client; afterwards, no session of the shared server is left running."""
    yield local.data()
    local.stop_sessions()


def code_of(call) -> str:
    with pytest.raises(ClientError) as caught:
        call()
    return caught.value.response["Error"]["Code"]


# --- invoke, stop, resume --------------------------------------------------------------------


def test_resume_after_stop_restores_files_and_history(local: LocalRuntime, data) -> None:
    arn, session = local.default_arn, new_id()
    first = invoke(data, arn, session, "write the note")
    assert first["history"]["messages_before"] == 0
    workspace = {"path": local.workspace(arn, session), "restored": False, "entries": 0}
    assert workspace.items() <= first["workspace"].items()
    first_pid = next(s["pid"] for s in local.sessions() if s["runtimeSessionId"] == session)

    stopped = data.stop_runtime_session(agentRuntimeArn=arn, runtimeSessionId=session)
    assert stopped["statusCode"] == 200 and stopped["runtimeSessionId"] == session
    assert local.session_state(session) == "STOPPED"

    second = invoke(data, arn, session, "read the note")
    assert "written in turn one" in second["response"]
    assert second["history"]["messages_before"] > 0
    assert second["workspace"]["restored"] is True
    assert next(s["pid"] for s in local.sessions() if s["runtimeSessionId"] == session) != first_pid


def test_stopping_a_session_with_no_compute_is_not_found(local: LocalRuntime, data) -> None:
    session = new_id()
    assert code_of(
        lambda: data.stop_runtime_session(agentRuntimeArn=local.default_arn, runtimeSessionId=session)
    ) == ("ResourceNotFoundException")
    invoke(data, local.default_arn, session, "hello")
    data.stop_runtime_session(agentRuntimeArn=local.default_arn, runtimeSessionId=session)
    assert code_of(
        lambda: data.stop_runtime_session(agentRuntimeArn=local.default_arn, runtimeSessionId=session)
    ) == ("ResourceNotFoundException")


# --- InvokeAgentRuntimeCommand ---------------------------------------------------------------


def test_exec_runs_in_the_mount_path_and_streams_stdout_stderr_and_exit_code(
    local: LocalRuntime, data
) -> None:
    session = new_id()
    code, status, out, err = run(data, local.default_arn, session, "pwd; echo out; echo err >&2; exit 7")
    assert (code, status) == (7, "COMPLETED")
    assert out == f"{local.workspace(local.default_arn, session)}\nout\n"
    assert err == "err\n"
    assert local.session_state(session) == "READY"  # the command started the session's compute


def test_exec_that_outlives_its_timeout_is_killed_and_reported_timed_out(local: LocalRuntime, data) -> None:
    started = time.monotonic()
    code, status, _, _ = run(data, local.default_arn, new_id(), "sleep 60", timeout=1)
    assert status == "TIMED_OUT" and code != 0
    assert time.monotonic() - started < 20


def test_exec_output_arrives_while_the_command_runs(local: LocalRuntime, data) -> None:
    session = new_id()
    run(data, local.default_arn, session, "true")  # start the compute first
    answer = data.invoke_agent_runtime_command(
        agentRuntimeArn=local.default_arn,
        runtimeSessionId=session,
        body={"command": "echo first; sleep 1; echo second"},
    )
    arrivals = {}
    for event in answer["stream"]:
        stdout = event["chunk"].get("contentDelta", {}).get("stdout", "")
        for word in stdout.split():
            arrivals[word] = time.monotonic()
    assert arrivals["second"] - arrivals["first"] > 0.7


# --- streaming through the proxy -------------------------------------------------------------


def test_streamed_events_arrive_one_by_one_as_the_agent_sends_them(local: LocalRuntime, data) -> None:
    answer = data.invoke_agent_runtime(
        agentRuntimeArn=local.default_arn,
        runtimeSessionId=new_id(),
        payload=json.dumps({"prompt": "slow turn", "stream": True}),
        accept="text/event-stream",
    )
    assert answer["contentType"].startswith("text/event-stream")
    arrivals = []
    for line in answer["response"].iter_lines(chunk_size=1):
        if line.startswith(b"data: "):
            arrivals.append((json.loads(line[6:])["type"], time.monotonic()))
    kinds = [kind for kind, _ in arrivals]
    assert kinds[0] == "tool_use" and kinds[-1] == "done" and "text" in kinds
    tool_use_at = arrivals[0][1]
    tool_result_at = next(at for kind, at in arrivals if kind == "tool_result")
    assert tool_result_at - tool_use_at > 1.0  # the shell slept 1.5 s between the two


# --- isolation -------------------------------------------------------------------------------


@pytest.mark.skipif(not bwrap_works(), reason="bubblewrap cannot create namespaces here")
def test_two_sessions_cannot_see_each_others_files_even_through_the_shell(local: LocalRuntime, data) -> None:
    if not local.isolated:
        pytest.skip("this run uses the process sandbox (AGENTCORE_LOCAL_TEST_SANDBOX)")
    health = httpx.get(f"{local.url}/_local/health").json()
    assert (health["status"], health["sandbox"], health["isolated"]) == ("ok", "bwrap", True)
    arn, a, b = local.default_arn, new_id(), new_id()
    run(data, arn, a, "echo secret-of-a > a.txt; echo tmp-of-a > /tmp/a-tmp.txt")
    runtime_id = arn.rsplit("/", 1)[1]
    a_storage = (
        local.state_dir / "sessions" / runtime_id / hashlib.sha256(a.encode()).hexdigest()[:32] / "storage"
    )
    assert (a_storage / "a.txt").read_text() == "secret-of-a\n"  # it is there, on the host

    probes = {
        "ls -A /mnt/workspace": "",
        f"ls -A {local.state_dir}": "",  # every session's storage lives here: hidden
        f"cat {a_storage}/a.txt": None,
        "cat /tmp/a-tmp.txt": None,  # private /tmp
        f"grep -rl secret-of-a /mnt /tmp {local.state_dir.parent}": None,
        "ls /proc | grep -c '^[0-9]'": None,
    }
    seen = {command: run(data, arn, b, command) for command in probes}
    assert seen["ls -A /mnt/workspace"][2] == ""
    assert seen[f"ls -A {local.state_dir}"][2] == ""
    assert seen[f"cat {a_storage}/a.txt"][0] != 0
    assert seen["cat /tmp/a-tmp.txt"][0] != 0
    assert "secret-of-a" not in seen[f"grep -rl secret-of-a /mnt /tmp {local.state_dir.parent}"][2]
    assert int(seen["ls /proc | grep -c '^[0-9]'"][2]) < 15  # its own PID namespace: a handful of processes
    assert run(data, arn, a, "cat a.txt")[2] == "secret-of-a\n"


# --- time: idle timeout, 14-day expiry ---------------------------------------------------------


def test_idle_timeout_stops_compute_and_keeps_storage(local: LocalRuntime, data) -> None:
    arn = local.create_runtime(
        "idle_e2e", lifecycleConfiguration={"idleRuntimeSessionTimeout": 60, "maxLifetime": 600}
    )["agentRuntimeArn"]
    session = new_id()
    run(data, arn, session, 'echo kept > kept.txt; touch "$TMPDIR/compute-marker"')
    reaper = local.app.state.sessions.changes
    passes = reaper.passes
    local.clock.advance(30)
    # A pass under way at the advance ends (+1); the next ones read the clock after it.
    wait_for(lambda: reaper.passes >= passes + 3, 20, "reaper passes after the clock moved 30 s")
    assert local.session_state(session) == "READY"
    local.clock.advance(31)
    wait_for(lambda: local.session_state(session) == "STOPPED", 20, "the idle timeout to stop the compute")
    code, _, out, _ = run(data, arn, session, 'cat kept.txt; test -e "$TMPDIR/compute-marker"')
    assert out == "kept\n" and code == 1  # same storage, new compute


def test_storage_resets_after_fourteen_days_without_an_invocation(local: LocalRuntime, data) -> None:
    arn, old, recent = local.default_arn, new_id(), new_id()
    for session in (old, recent):
        run(data, arn, session, "echo data > data.txt")
        data.stop_runtime_session(agentRuntimeArn=arn, runtimeSessionId=session)
    local.clock.advance(13 * DAY)
    assert run(data, arn, recent, "cat data.txt")[2] == "data\n"  # 13 days: kept, and invoked again
    local.clock.advance(1 * DAY + 1)
    assert run(data, arn, old, "ls -A")[2] == ""  # 14 days without an invocation: reset
    assert run(data, arn, recent, "cat data.txt")[2] == "data\n"  # invoked a day ago


def test_a_new_runtime_version_resets_every_sessions_storage(local: LocalRuntime, data) -> None:
    created = local.create_runtime("versions_e2e")
    arn, running, stopped = created["agentRuntimeArn"], new_id(), new_id()
    for session in (running, stopped):
        run(data, arn, session, "echo v1 > v1.txt")
    data.stop_runtime_session(agentRuntimeArn=arn, runtimeSessionId=stopped)
    request = {k: v for k, v in created["request"].items() if k != "agentRuntimeName"}
    local.control().update_agent_runtime(agentRuntimeId=created["agentRuntimeId"], **request)
    wait_for(lambda: local.session_state(running) == "STOPPED", 20, "the old version's compute to stop")
    local.clock.advance(5)
    assert run(data, arn, running, "ls -A")[2] == ""
    assert run(data, arn, stopped, "ls -A")[2] == ""
    run(data, arn, running, "echo v2 > v2.txt")
    data.stop_runtime_session(agentRuntimeArn=arn, runtimeSessionId=running)
    assert run(data, arn, running, "cat v2.txt")[2] == "v2\n"  # the new version keeps its own storage


def test_a_runtime_without_session_storage_starts_every_compute_empty(local: LocalRuntime, data) -> None:
    arn = local.create_runtime("ephemeral_e2e", filesystemConfigurations=[])["agentRuntimeArn"]
    session = new_id()
    run(data, arn, session, "echo gone > gone.txt")
    data.stop_runtime_session(agentRuntimeArn=arn, runtimeSessionId=session)
    assert run(data, arn, session, "ls -A")[2] == ""


def test_deploy_ensure_creates_then_updates_and_the_new_version_resets_storage(
    local: LocalRuntime, data, tmp_path
) -> None:
    """deploy.py unchanged against the local control plane; its wait loop's sleeps move the server's clock."""
    out = io.StringIO()
    record = tmp_path / "runtime.json"
    ctx = deploy.Context(
        region="us-west-2", control=local.control(), out=out, sleep=local.clock.advance, record_path=record
    )
    first = ["ensure", "--name", "deployed_e2e", "--image", IMAGE, "--role-arn", ROLE, "--yes"]
    assert deploy.main([*first, "--env", f"SCRIPTED_PLAN={PLAN}"], ctx) == 0, out.getvalue()
    arn = read_arn(record)
    assert arn and re.fullmatch(
        r"arn:aws:bedrock-agentcore:us-west-2:123456789012:runtime/deployed_e2e-\w{10}", arn
    )
    session = new_id()
    run(data, arn, session, "echo v1 > v1.txt")

    assert deploy.main(["ensure", "--name", "deployed_e2e", "--env", "FOO=bar", "--yes"], ctx) == 0, (
        out.getvalue()
    )
    got = local.control().get_agent_runtime(agentRuntimeId=arn.rsplit("/", 1)[1])
    assert (got["agentRuntimeVersion"], got["status"]) == ("2", "READY")
    wait_for(lambda: local.session_state(session) == "STOPPED", 20, "version 1's compute to stop")
    assert run(data, arn, session, 'ls -A; echo "$FOO $SCRIPTED_PLAN"')[2] == f"bar {PLAN}\n"


# --- racing a stop -----------------------------------------------------------------------------


def stop_during_a_slow_turn(
    local: LocalRuntime, data, arn: str, session: str
) -> tuple[threading.Thread, list]:
    """Start a slow streamed turn, then StopRuntimeSession while it runs; return once STOPPING."""
    events: list = []

    def slow_turn() -> None:
        answer = data.invoke_agent_runtime(
            agentRuntimeArn=arn,
            runtimeSessionId=session,
            payload=json.dumps({"prompt": "slow", "stream": True}),
        )
        for line in answer["response"].iter_lines(chunk_size=1):
            if line.startswith(b"data: "):
                events.append(json.loads(line[6:]))

    turn = threading.Thread(target=slow_turn)
    turn.start()
    wait_for(lambda: any(e["type"] == "tool_use" for e in events), 30, "the slow turn to start its tool")
    stopper = threading.Thread(
        target=lambda: local.data().stop_runtime_session(agentRuntimeArn=arn, runtimeSessionId=session)
    )
    stopper.start()
    wait_for(lambda: local.session_state(session) == "STOPPING", 10, "the session to be stopping")
    stopper.turn = turn  # type: ignore[attr-defined]
    return stopper, events


def test_an_invoke_racing_a_stop_gets_a_retryable_conflict_and_loses_nothing(
    local: LocalRuntime, data
) -> None:
    arn, session = local.default_arn, new_id()
    invoke(data, arn, session, "write the note")
    stopper, events = stop_during_a_slow_turn(local, data, arn, session)

    assert code_of(lambda: invoke(data, arn, session, "read the note")) == "RetryableConflictException"
    assert code_of(lambda: run(data, arn, session, "ls")) == "RetryableConflictException"

    stopper.join(30)
    stopper.turn.join(30)  # type: ignore[attr-defined]
    assert local.session_state(session) == "STOPPED"
    assert events[-1]["type"] == "done"  # the in-flight turn finished before the compute went away
    answer = invoke(data, arn, session, "read the note")
    assert "written in turn one" in answer["response"]
    assert run(data, arn, session, "cat slow.txt")[2] == "slept\n"


def test_the_client_waits_and_retries_after_a_stop_instead_of_sleeping(local: LocalRuntime, data) -> None:
    arn, session = local.default_arn, new_id()
    invoke(data, arn, session, "write the note")
    stopper, _ = stop_during_a_slow_turn(local, data, arn, session)
    said: list[str] = []
    answer = client_cli.invoke(local.data(), arn, session, "read the note", stream=False, say=said.append)
    stopper.join(30)
    assert said and all(line.startswith("waiting") and "RetryableConflictException" in line for line in said)
    assert "written in turn one" in answer["response"]
    assert answer["history"]["messages_before"] > 0


def test_a_second_call_while_the_session_provisions_is_refused_at_once(local: LocalRuntime, data) -> None:
    """AWS answers RetryableConflictException while a session is provisioning; it does not queue."""
    arn, session = local.default_arn, new_id()
    first = threading.Thread(target=run, args=(local.data(), arn, session, "true"))
    first.start()
    wait_for(lambda: local.session_state(session) == "STARTING", 10, "the session to be starting")
    began = time.monotonic()
    assert code_of(lambda: run(data, arn, session, "true")) == "RetryableConflictException"
    refused_in = time.monotonic() - began
    first.join(60)
    assert refused_in < 1.0 and local.session_state(session) == "READY"
    assert run(data, arn, session, "echo ok")[2] == "ok\n"


# --- load ------------------------------------------------------------------------------------


def test_past_max_sessions_a_new_session_is_refused_and_running_ones_keep_working(
    tmp_path, _isolated_aws: None
) -> None:
    with local_runtime(tmp_path, max_sessions=2) as capped:
        data, arn = capped.data(), capped.default_arn
        first, second = new_id(), new_id()
        for session in (first, second):
            assert run(data, arn, session, "echo up")[2] == "up\n"
        error = code_and_message(lambda: run(data, arn, new_id(), "true"))
        assert error[0] == "ServiceQuotaExceededException" and "--max-sessions" in error[1]
        assert "echo: hello" in invoke(data, arn, first, "hello")["response"]  # still serving
        data.stop_runtime_session(agentRuntimeArn=arn, runtimeSessionId=second)
        assert run(data, arn, new_id(), "echo room")[2] == "room\n"  # a stop makes room


def test_after_an_unexpected_500_the_same_connection_keeps_working(
    local: LocalRuntime, data, monkeypatch: pytest.MonkeyPatch
) -> None:
    arn, broken_id, unknown_id = local.default_arn, new_id(), new_id()
    sessions = local.app.state.sessions
    original = sessions.stop

    async def stop(runtime, session_id: str) -> None:
        if session_id == broken_id:
            raise RuntimeError("a bug in agentcore_local")
        await original(runtime, session_id)

    monkeypatch.setattr(sessions, "stop", stop)
    for _ in range(10):  # each 500 at once followed by a call on the same keep-alive connection
        error = code_and_message(
            lambda: data.stop_runtime_session(agentRuntimeArn=arn, runtimeSessionId=broken_id)
        )
        assert error[0] == "InternalServerException" and "a bug in agentcore_local" in error[1]
        next_call = code_and_message(
            lambda: data.stop_runtime_session(agentRuntimeArn=arn, runtimeSessionId=unknown_id)
        )
        assert next_call[0] == "ResourceNotFoundException"  # not botocore's ConnectionClosedError


def code_and_message(call) -> tuple[str, str]:
    with pytest.raises(ClientError) as caught:
        call()
    return caught.value.response["Error"]["Code"], caught.value.response["Error"]["Message"]


# --- AWS's error types -----------------------------------------------------------------------


@pytest.fixture
def unchecked(local: LocalRuntime, _isolated_aws: None):
    """botocore's client-side checks off: every answer below comes from the server."""
    config = Config(parameter_validation=False, retries={"total_max_attempts": 1})
    return boto3.client("bedrock-agentcore", endpoint_url=local.url, region_name="us-west-2", config=config)


@pytest.mark.parametrize(
    "session",
    [
        "x" * 32,
        "y" * 257,
        "has spaces in it but is long enough to pass",
        "tab\tinside-a-long-enough-session-id-xx",
    ],
    ids=["32 chars", "257 chars", "spaces", "control character"],
)
def test_bad_session_ids_are_validation_errors_on_the_server(
    local: LocalRuntime, unchecked, session: str
) -> None:
    for call in (
        lambda: invoke(unchecked, local.default_arn, session, "hi"),
        lambda: run(unchecked, local.default_arn, session, "ls"),
        lambda: unchecked.stop_runtime_session(agentRuntimeArn=local.default_arn, runtimeSessionId=session),
    ):
        assert code_of(call) == "ValidationException"


def test_a_request_without_a_session_id_is_a_validation_error(local: LocalRuntime) -> None:
    encoded = local.default_arn.replace(":", "%3A").replace("/", "%2F")
    answer = httpx.post(f"{local.url}/runtimes/{encoded}/invocations", content=b'{"prompt": "hi"}')
    assert answer.status_code == 400
    assert answer.headers["x-amzn-ErrorType"] == "ValidationException"


def test_session_ids_stay_inside_the_state_directory(local: LocalRuntime, data) -> None:
    session = "a" * 256
    assert (
        run(data, local.default_arn, session, "pwd")[2] == local.workspace(local.default_arn, session) + "\n"
    )
    assert local.storage(local.default_arn, session).is_relative_to(local.state_dir)
    escape = "../../../../tmp/escape-" + "z" * 20  # refused (ValidationException), so it creates nothing
    assert code_of(lambda: run(data, local.default_arn, escape, "pwd")) == "ValidationException"
    assert not list(local.state_dir.parent.glob("**/escape-*"))


@pytest.mark.parametrize(
    "arn,expected",
    [
        (
            "arn:aws:bedrock-agentcore:us-west-2:123456789012:runtime/ghost-AAAAAAAAAA",
            "ResourceNotFoundException",
        ),
        (
            "arn:aws:bedrock-agentcore:eu-west-1:123456789012:runtime/ghost-AAAAAAAAAA",
            "ResourceNotFoundException",
        ),
        ("not-an-arn", "ValidationException"),
    ],
)
def test_unknown_and_malformed_runtime_arns_get_aws_error_types(data, arn: str, expected: str) -> None:
    session = new_id()
    assert code_of(lambda: invoke(data, arn, session, "hi")) == expected
    assert code_of(lambda: run(data, arn, session, "ls")) == expected
    assert (
        code_of(lambda: data.stop_runtime_session(agentRuntimeArn=arn, runtimeSessionId=session)) == expected
    )


def test_an_unknown_qualifier_is_not_found(local: LocalRuntime, data) -> None:
    call = lambda: data.invoke_agent_runtime(  # noqa: E731
        agentRuntimeArn=local.default_arn, runtimeSessionId=new_id(), payload=b"{}", qualifier="prod"
    )
    assert code_of(call) == "ResourceNotFoundException"


def test_an_agent_error_becomes_a_runtime_client_error(local: LocalRuntime, data) -> None:
    call = lambda: data.invoke_agent_runtime(  # noqa: E731
        agentRuntimeArn=local.default_arn, runtimeSessionId=new_id(), payload=b'{"prompt": ""}'
    )
    with pytest.raises(ClientError) as caught:
        call()
    assert caught.value.response["Error"]["Code"] == "RuntimeClientError"
    assert "(400)" in caught.value.response["Error"]["Message"]
