"""`python -m agentcore_local serve` as a user runs it, driven by `client.py` as a user runs it.

One server process for the module; the SIGTERM test starts its own, so every test runs
alone and in any order.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import boto3
import pytest

from client import new_session_id
from tests.support import REPO
from tests.support.local_runtime import IMAGE, PLAN, ROLE, wait_for


class Served:
    def __init__(self, process: subprocess.Popen, state_dir: Path, log: Path) -> None:
        self.process, self.state_dir, self.log = process, state_dir, log
        self.env: dict[str, str] = {}

    def client(self, *args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, str(REPO / "client.py"), *args],
            cwd=REPO,
            env={**os.environ, **self.env, **env},
            capture_output=True,
            text=True,
            timeout=timeout,
        )


@contextmanager
def serving(tmp: Path) -> Iterator[Served]:
    """`serve` on a free port with its state in `tmp`, and the exports `env` prints for it."""
    state, log = tmp / "state", tmp / "serve.log"
    env = {
        **os.environ,
        "MODEL_PROVIDER": "scripted",
        "AWS_DEFAULT_REGION": "us-west-2",
        "AWS_REGION": "us-west-2",
    }
    env.pop("SCRIPTED_PLAN", None)  # the demo plan, next to coding_agent.py
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "agentcore_local", "serve", "--port", "0", "--state-dir", str(state)],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    served = Served(process, state, log)
    exports = subprocess.run(
        [sys.executable, "-m", "agentcore_local", "env", "--state-dir", str(state), "--wait", "60"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert exports.returncode == 0, log.read_text()
    for line in exports.stdout.splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        served.env[key] = value
    yield served
    if process.poll() is None:  # as Ctrl-C would: serve stops its sessions and unmounts their slots
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:  # SIGKILL leaves the slots mounted on the host
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serving(tmp_path_factory.mktemp("serve")) as server:
        yield server


def test_serve_prints_the_default_runtime_and_env_prints_the_exports(served: Served) -> None:
    output = served.log.read_text()
    assert "listening on http://127.0.0.1:" in output and "sandbox:" in output
    arn = served.env["AGENT_ARN"]
    assert arn.startswith("arn:aws:bedrock-agentcore:us-west-2:123456789012:runtime/coding_agent-")
    assert f"export AGENT_ARN={arn}" in output
    assert (
        served.env["AWS_ENDPOINT_URL_BEDROCK_AGENTCORE"]
        == served.env["AWS_ENDPOINT_URL_BEDROCK_AGENTCORE_CONTROL"]
    )
    assert served.env["AWS_DEFAULT_REGION"] == "us-west-2"
    assert (served.state_dir / "runtime.json").exists()  # the record client.py can read


def test_the_demo_proves_files_and_history_survive_a_stop(served: Served) -> None:
    result = served.client("demo", timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    for line in (
        "files survived the stop: package.json, index.js",
        "added POST /echo",
        "conversation survived",
    ):
        assert line in result.stdout
    assert "workspace.restored = true" in result.stdout
    assert "$ cat package.json" in result.stdout and '"express"' in result.stdout


def test_stream_prints_each_event_as_it_arrives(served: Served) -> None:
    control = boto3.client(
        "bedrock-agentcore-control",
        endpoint_url=served.env["AWS_ENDPOINT_URL_BEDROCK_AGENTCORE_CONTROL"],
        region_name="us-west-2",
    )
    created = control.create_agent_runtime(
        agentRuntimeName="stream_cli",
        agentRuntimeArtifact={"containerConfiguration": {"containerUri": IMAGE}},
        roleArn=ROLE,
        environmentVariables={"SCRIPTED_PLAN": str(PLAN)},
    )
    runtime_id = created["agentRuntimeId"]
    wait_for(lambda: control.get_agent_runtime(agentRuntimeId=runtime_id)["status"] == "READY", 30, "READY")
    process = subprocess.Popen(
        [
            sys.executable,
            str(REPO / "client.py"),
            "invoke",
            "slow turn",
            "--stream",
            "--arn",
            created["agentRuntimeArn"],
        ],
        cwd=REPO,
        env={**os.environ, **served.env, "SESSION_ID": new_session_id()},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen = []
    assert process.stdout is not None
    for line in process.stdout:
        seen.append((line, time.monotonic()))
    assert process.wait(60) == 0, process.stderr.read() if process.stderr else ""
    tool_at = next(at for line, at in seen if "-> shell" in line)
    result_at = next(at for line, at in seen if "<- shell" in line)
    assert result_at - tool_at > 1.0  # printed when it happened, not all at the end


def test_exec_passes_the_commands_output_and_exit_code_through(served: Served) -> None:
    session = new_session_id()
    result = served.client("exec", "echo out; echo err >&2; exit 5", SESSION_ID=session)
    assert (result.returncode, result.stdout, result.stderr) == (5, "out\n", "err\n")
    stopped = served.client("stop", SESSION_ID=session)
    assert stopped.returncode == 0 and "stopped session" in stopped.stdout
    again = served.client("stop", SESSION_ID=session)
    assert again.returncode == 1 and "nothing to stop" in again.stderr


def test_exec_piped_into_head_ends_quietly_when_head_stops_reading(served: Served) -> None:
    session = new_session_id()
    piped = subprocess.run(
        f"{sys.executable} {REPO / 'client.py'} exec 'seq 200000' | head -1",
        shell=True,
        cwd=REPO,
        env={**os.environ, **served.env, "SESSION_ID": session},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (piped.stdout, piped.stderr) == ("1\n", "")
    served.client("stop", SESSION_ID=session)


def test_sigterm_stops_every_session_and_leaves_no_sandbox_behind(tmp_path: Path) -> None:
    with serving(tmp_path) as served:
        assert served.client("exec", "true", SESSION_ID=new_session_id()).returncode == 0
        sigterm_stops_everything(served)


def sigterm_stops_everything(served: Served) -> None:
    state = str(served.state_dir)

    def sandboxes() -> list[str]:
        ps = subprocess.run(["ps", "-ww", "-eo", "pid,args"], capture_output=True, text=True).stdout
        return [line for line in ps.splitlines() if state in line and "agentcore_local serve" not in line]

    assert sandboxes(), "expected a running session"
    served.process.send_signal(signal.SIGTERM)
    assert served.process.wait(30) == 0
    assert sandboxes() == []
    assert not (served.state_dir / "endpoint.json").exists()


def test_serve_refuses_a_sandbox_that_cannot_run_here_in_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import agentcore_local.sandbox.choice
    from agentcore_local.__main__ import main

    monkeypatch.setattr(agentcore_local.sandbox.choice, "bwrap_works", lambda *_: False)
    assert main(["serve", "--sandbox", "bwrap", "--state-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("agentcore_local: --sandbox bwrap: bubblewrap is missing") and err.count("\n") == 1
