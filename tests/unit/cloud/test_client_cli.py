"""client.py without a runtime: argument handling, messages, and which errors it retries."""

from __future__ import annotations

import io
import json
import os
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from botocore.response import StreamingBody
from botocore.stub import Stubber

import client as client_cli
from cloud import runtime_record, session_calls
from cloud.clients import data_plane, resolve_region
from tests.support import REPO

ARN = "arn:aws:bedrock-agentcore:us-west-2:123456789012:runtime/coding_agent-AbCdEf1234"
SESSION = "session-0123456789abcdef0123456789abcdef"


def cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k not in ("AGENT_ARN", "SESSION_ID")}
    environment["AGENTCORE_RUNTIME_FILE"] = str(cwd / "no-runtime.json")  # never this checkout's record
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, str(REPO / "client.py"), *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_help_reads_like_documentation(tmp_path: Path) -> None:
    top = cli("--help", cwd=tmp_path)
    assert top.returncode == 0
    for command in ("invoke", "stop", "exec", "demo", "new-session-id"):
        assert command in top.stdout
    assert "AGENT_ARN" in top.stdout and "SESSION_ID" in top.stdout
    assert "--stream" in cli("invoke", "--help", cwd=tmp_path).stdout
    assert "exit code" in cli("exec", "--help", cwd=tmp_path).stdout


def test_new_session_id_prints_a_fresh_valid_id(tmp_path: Path) -> None:
    ids = {cli("new-session-id", cwd=tmp_path).stdout.strip() for _ in range(2)}
    assert len(ids) == 2
    for session in ids:
        assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", session)
        assert 33 <= len(session) <= 100


def test_a_short_session_id_is_refused_in_one_line_that_says_why(tmp_path: Path) -> None:
    result = cli("invoke", "hi", "--arn", ARN, "--session", "too-short", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "33" in result.stderr and "new-session-id" in result.stderr
    from_env = cli("stop", "--arn", ARN, cwd=tmp_path, env={"SESSION_ID": "short"})
    assert from_env.returncode == 1 and "'short' has 5 characters" in from_env.stderr


def test_missing_arn_and_session_say_where_they_come_from(tmp_path: Path) -> None:
    no_arn = cli("stop", "--session", SESSION, cwd=tmp_path)
    assert no_arn.returncode == 1 and "--arn" in no_arn.stderr and "AGENT_ARN" in no_arn.stderr
    no_session = cli("exec", "ls", "--arn", ARN, cwd=tmp_path)
    assert no_session.returncode == 1 and "SESSION_ID" in no_session.stderr


def stubbed_stop(monkeypatch: pytest.MonkeyPatch, arn: str) -> Stubber:
    """client.py's data-plane client, expecting one StopRuntimeSession on `arn`."""
    client = data_plane("us-west-2")
    stub = Stubber(client)
    stub.add_response("stop_runtime_session", {}, {"agentRuntimeArn": arn, "runtimeSessionId": SESSION})
    monkeypatch.setattr(client_cli, "data_plane", lambda *_, **__: client)
    return stub


def test_the_arn_falls_back_to_the_file_deploy_wrote(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    record = tmp_path / ".agentcore" / "runtime.json"
    record.parent.mkdir()
    record.write_text(json.dumps({"agentRuntimeArn": ARN}))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AGENTCORE_RUNTIME_FILE", ".agentcore/runtime.json")  # relative: to the cwd
    monkeypatch.delenv("AGENT_ARN", raising=False)
    with stubbed_stop(monkeypatch, ARN) as stub:
        assert client_cli.main(["stop", "--session", SESSION]) == 0
        stub.assert_no_pending_responses()


def test_arn_flag_beats_agent_arn_which_beats_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = tmp_path / ".agentcore" / "runtime.json"
    record.parent.mkdir()
    record.write_text(json.dumps({"agentRuntimeArn": ARN.replace("AbCdEf1234", "FromFile00")}))
    monkeypatch.setenv("AGENTCORE_RUNTIME_FILE", str(record))
    from_env = ARN.replace("AbCdEf1234", "FromEnv000")
    monkeypatch.setenv("AGENT_ARN", from_env)
    with stubbed_stop(monkeypatch, from_env) as stub:
        assert client_cli.main(["stop", "--session", SESSION]) == 0
        stub.assert_no_pending_responses()
    with stubbed_stop(monkeypatch, ARN) as stub:
        assert client_cli.main(["stop", "--session", SESSION, "--arn", ARN]) == 0
        stub.assert_no_pending_responses()


@pytest.mark.parametrize(
    ("message", "line"),
    [
        (
            "No session found",  # the session has no compute: the client says so in its own words
            f"nothing to stop: session {SESSION} has no running compute (never started, or stopped)",
        ),
        (
            "No runtime\nhere",  # any other: the operation, the code, AWS's message, then client.py's hint
            "StopRuntimeSession failed: ResourceNotFoundException: No runtime here (check --arn / AGENT_ARN)",
        ),
    ],
)
def test_a_stop_aws_refuses_is_one_line_that_says_what_to_check(
    message: str, line: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    client = data_plane("us-west-2")
    monkeypatch.setattr(client_cli, "data_plane", lambda *_, **__: client)
    with Stubber(client) as stub:
        stub.add_client_error("stop_runtime_session", "ResourceNotFoundException", message, 404)
        assert client_cli.main(["stop", "--arn", ARN, "--session", SESSION]) == 1
    assert capsys.readouterr().err == f"client.py: error: {line}\n"


def test_ctrl_c_exits_130_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupted() -> str:
        raise KeyboardInterrupt

    monkeypatch.setattr(client_cli, "new_session_id", interrupted)
    assert client_cli.main(["new-session-id"]) == 130
    assert capsys.readouterr().err == "client.py: interrupted\n"


def test_an_unreachable_endpoint_is_one_actionable_line(tmp_path: Path) -> None:
    env = {"AWS_ENDPOINT_URL_BEDROCK_AGENTCORE": "http://127.0.0.1:9", "AWS_DEFAULT_REGION": "us-west-2"}
    result = cli("invoke", "hi", "--arn", ARN, "--session", SESSION, cwd=tmp_path, env=env)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "agentcore_local" in result.stderr and "unset AWS_ENDPOINT_URL_BEDROCK_AGENTCORE" in result.stderr


def test_a_turn_is_never_resent_after_a_read_timeout(tmp_path: Path) -> None:
    """A server that accepts and never answers: one POST, then a message, never a second POST."""
    requests: list[bytes] = []
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            held.append(conn)
            requests.append(conn.recv(65536))

    threading.Thread(target=accept, daemon=True).start()
    env = {"AWS_ENDPOINT_URL_BEDROCK_AGENTCORE": f"http://127.0.0.1:{server.getsockname()[1]}"}
    result = cli(
        "invoke", "hi", "--arn", ARN, "--session", SESSION, "--read-timeout", "1", cwd=tmp_path, env=env
    )
    server.close()
    assert result.returncode == 1 and "not re-sent" in result.stderr
    assert len([r for r in requests if r.startswith(b"POST ")]) == 1


# --- the retry policy, against botocore's Stubber (requests validated against the real model) ---


def answer(body: dict) -> dict:
    raw = json.dumps(body).encode()
    return {
        "contentType": "application/json",
        "response": StreamingBody(io.BytesIO(raw), len(raw)),
        "statusCode": 200,
    }


EXPECTED = {
    "agentRuntimeArn": ARN,
    "runtimeSessionId": SESSION,
    "payload": json.dumps({"prompt": "hi", "stream": False}).encode(),
    "contentType": "application/json",
    "accept": "application/json",
}


@pytest.fixture
def sleeps() -> list[float]:
    """The delays with_retry asked for; handed in as its sleep function, so nothing really sleeps."""
    return []


def test_retryable_conflicts_are_retried_with_exponential_backoff_and_a_waiting_line(sleeps) -> None:
    client = data_plane("us-west-2")
    said: list[str] = []
    with Stubber(client) as stub:
        for _ in range(3):
            stub.add_client_error(
                "invoke_agent_runtime", "RetryableConflictException", "stopping", 409, EXPECTED
            )
        stub.add_client_error("invoke_agent_runtime", "ThrottlingException", "slow down", 429, EXPECTED)
        stub.add_response("invoke_agent_runtime", answer({"response": "ok"}), EXPECTED)
        result = session_calls.invoke(
            client, ARN, SESSION, "hi", stream=False, say=said.append, sleep=sleeps.append
        )
        stub.assert_no_pending_responses()
    assert result == {"response": "ok"}
    assert sleeps == [0.25, 0.5, 1.0, 2.0]
    assert len(said) == 4 and all(line.startswith("waiting") for line in said)


@pytest.mark.parametrize("code", ["RuntimeClientError", "InternalServerException", "ValidationException"])
def test_errors_that_may_have_started_the_turn_are_not_retried(sleeps, code: str) -> None:
    client = data_plane("us-west-2")
    with Stubber(client) as stub:
        stub.add_client_error("invoke_agent_runtime", code, "no", 500, EXPECTED)
        with pytest.raises(ClientError):
            session_calls.invoke(
                client, ARN, SESSION, "hi", stream=False, say=lambda _: None, sleep=sleeps.append
            )
    assert sleeps == []


def test_retrying_is_bounded(sleeps, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(session_calls, "RETRY_BUDGET", 3.0)
    client = data_plane("us-west-2")
    with Stubber(client) as stub:
        for _ in range(10):
            stub.add_client_error(
                "invoke_agent_runtime", "RetryableConflictException", "stopping", 409, EXPECTED
            )
        with pytest.raises(ClientError):
            session_calls.invoke(
                client, ARN, SESSION, "hi", stream=False, say=lambda _: None, sleep=sleeps.append
            )
    assert sum(sleeps) <= 3.0 and len(sleeps) == 3


def test_the_runtime_record_lives_beside_the_checkout_unless_agentcore_runtime_file_says(
    tmp_path: Path,
) -> None:
    assert runtime_record.record_path({}) == REPO / ".agentcore" / "runtime.json"
    elsewhere = tmp_path / "r.json"
    assert runtime_record.record_path({"AGENTCORE_RUNTIME_FILE": str(elsewhere)}) == elsewhere


def test_the_region_is_the_flag_then_aws_region_then_aws_default_region() -> None:
    env = {"AWS_REGION": "eu-west-1", "AWS_DEFAULT_REGION": "eu-west-2"}
    assert resolve_region("ap-south-1", env) == "ap-south-1"
    assert resolve_region(None, env) == "eu-west-1"
    assert resolve_region(None, {"AWS_DEFAULT_REGION": "eu-west-2"}) == "eu-west-2"
    assert resolve_region(None, {}) == "us-west-2"


def test_client_commands_use_the_resolved_region(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_REGION")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-2")
    regions: list[str] = []

    def record(region: str, **_: object) -> None:
        regions.append(region)
        raise KeyboardInterrupt  # stop before any request

    monkeypatch.setattr(client_cli, "data_plane", record)
    assert client_cli.main(["stop", "--arn", ARN, "--session", SESSION]) == 130
    assert client_cli.main(["stop", "--arn", ARN, "--session", SESSION, "--region", "ap-south-1"]) == 130
    assert regions == ["eu-west-2", "ap-south-1"]
