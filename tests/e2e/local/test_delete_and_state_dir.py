"""What a delete deletes and who owns a state dir, as a user meets them: `serve` and `env` and
`deploy.py` as processes, boto3 against them, real sandboxes. A second serve on a state dir in use
refuses and leaves the first working; `env` names the live runtime after a delete and re-create;
`deploy.py ensure` re-creates the local runtime with no made-up arguments; a re-created runtime
of the same name never restores the deleted one's backups (docs/lifecycle.md)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from agentcore_local.services.backups import session_prefix
from tests.support import REPO
from tests.support.local_runtime import PLAN, LocalRuntime, invoke, local_runtime, shell, wait_for

REGION = "us-west-2"


class Serve:
    """One `python -m agentcore_local serve` process and the exports `env` printed for it."""

    def __init__(self, process: subprocess.Popen, state: Path, log: Path, env: dict[str, str]) -> None:
        self.process, self.state, self.log, self.env = process, state, log, env

    def exports(self) -> dict[str, str]:
        """What `env --state-dir` prints now, as a dict."""
        answer = subprocess.run(
            [sys.executable, "-m", "agentcore_local", "env", "--state-dir", str(self.state)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert answer.returncode == 0, answer.stderr
        pairs = (line.removeprefix("export ").partition("=") for line in answer.stdout.splitlines())
        return {key: value for key, _, value in pairs}

    def client(self, service: str):
        return boto3.client(
            service,
            endpoint_url=self.env["AWS_ENDPOINT_URL_BEDROCK_AGENTCORE"],
            region_name=REGION,
            aws_access_key_id="agentcore-local",
            aws_secret_access_key="agentcore-local",
            config=Config(retries={"total_max_attempts": 1}, read_timeout=120),
        )

    def deploy(self, *args: str) -> subprocess.CompletedProcess:
        """deploy.py as a user runs it after `eval "$(python -m agentcore_local env)"`."""
        return subprocess.run(
            [sys.executable, str(REPO / "deploy.py"), *args],
            cwd=REPO,
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=120,
        )


def serve_command(state: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "agentcore_local",
        "serve",
        "--port",
        "0",
        "--state-dir",
        str(state),
        *extra,
    ]


def serve_env() -> dict[str, str]:
    env = {**os.environ, "MODEL_PROVIDER": "scripted", "SCRIPTED_PLAN": str(PLAN), "AWS_REGION": REGION}
    for name in ("AWS_ENDPOINT_URL_BEDROCK_AGENTCORE", "AWS_ENDPOINT_URL_BEDROCK_AGENTCORE_CONTROL"):
        env.pop(name, None)
    return env


@contextmanager
def serving(state: Path, *extra: str) -> Iterator[Serve]:
    log = state.parent / f"serve-{uuid.uuid4().hex[:6]}.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            serve_command(state, *extra), cwd=REPO, env=serve_env(), stdout=out, stderr=subprocess.STDOUT
        )
    try:
        served = Serve(process, state, log, {})
        wait = [sys.executable, "-m", "agentcore_local", "env", "--state-dir", str(state), "--wait", "60"]
        exports = subprocess.run(wait, cwd=REPO, capture_output=True, text=True, timeout=90)
        assert exports.returncode == 0, log.read_text()
        served.env = served.exports()
        yield served
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def answer_of(data, arn: str, session: str, prompt: str) -> dict:
    return invoke(data, arn, session, prompt)


def test_a_second_serve_refuses_the_state_dir_and_the_first_keeps_serving_new_sessions(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    with serving(state, "--pool", "0") as first:
        endpoint_before = (state / "endpoint.json").read_bytes()
        started = time.monotonic()
        second = subprocess.run(
            serve_command(state), cwd=REPO, env=serve_env(), capture_output=True, text=True, timeout=60
        )
        refused_in = time.monotonic() - started
        assert second.returncode != 0
        (line,) = second.stderr.strip().splitlines()  # one line, no stack trace
        assert f"pid {first.process.pid}" in line and first.env["AWS_ENDPOINT_URL_BEDROCK_AGENTCORE"] in line
        assert "another --state-dir" in line
        print(f"second serve refused in {refused_in:.2f} s")
        # Nothing of the first was removed: its endpoint, its socket, and a new session's sandbox.
        assert (state / "endpoint.json").read_bytes() == endpoint_before
        assert (state / "agent-services.sock").is_socket()
        data, arn = first.client("bedrock-agentcore"), first.env["AGENT_ARN"]
        assert (
            "wrote note.txt"
            in answer_of(data, arn, f"after-{uuid.uuid4().hex}", "write the note")["response"]
        )
        assert first.process.poll() is None


def test_a_serve_killed_with_sigkill_leaves_the_state_dir_to_the_next_serve(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with serving(state, "--pool", "0") as killed:
        os.kill(killed.process.pid, signal.SIGKILL)  # no session and no pool member: nothing mounted
        killed.process.wait(30)
    with serving(state, "--pool", "0") as after:  # the kernel dropped the lock with the process
        health = after.client("bedrock-agentcore-control")  # answers: it is serving
        assert health.list_agent_runtimes()["agentRuntimes"]
        assert json.loads((state / "endpoint.json").read_text())["pid"] == after.process.pid


def test_delete_and_ensure_give_a_new_empty_runtime_that_env_names(tmp_path: Path) -> None:
    """The user's path: a turn backed up, `deploy.py delete`, `deploy.py ensure` with no image or
    role, `env` printing the new ARN, and the same session id starting empty."""
    with serving(tmp_path / "state", "--pool", "0") as served:
        data, control, old_arn = (
            served.client("bedrock-agentcore"),
            served.client("bedrock-agentcore-control"),
            served.env["AGENT_ARN"],
        )
        session = f"kept-{uuid.uuid4().hex}"
        assert answer_of(data, old_arn, session, "write the note")["history"]["messages_before"] == 0
        data.stop_runtime_session(agentRuntimeArn=old_arn, runtimeSessionId=session)  # its backup is pushed

        deleted = served.deploy("delete", "--yes")
        assert deleted.returncode == 0, deleted.stderr
        assert "agentcore_local deletes them with the runtime" in deleted.stdout  # the warning says so
        assert "AGENT_ARN" not in served.exports()  # no stale ARN while it is gone

        ensured = served.deploy("ensure", "--yes")
        assert ensured.returncode == 0, ensured.stderr + ensured.stdout
        assert "deploy.py role" not in ensured.stdout + ensured.stderr
        new_arn = served.exports()["AGENT_ARN"]
        assert new_arn != old_arn and new_arn.split("/")[-1].startswith("coding_agent-")
        runtime = control.get_agent_runtime(agentRuntimeId=new_arn.split("/")[-1])
        assert runtime["environmentVariables"]["BACKUP_SCOPE"]  # deploy.py gave it its own scope

        again = answer_of(data, new_arn, session, "read the note")
        assert again["history"]["messages_before"] == 0, again  # nothing of the deleted runtime
        assert again["workspace"]["restored_from"] is None, again["workspace"]
        assert "No such file" in again["response"] or "note.txt says: \n" in again["response"], again


# --- in process: the backups themselves, in serve's S3 ------------------------------------------------


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRuntime]:
    with local_runtime(tmp_path_factory.mktemp("delete-deletes")) as runtime:
        if not runtime.app.state.sessions.launcher.private_network:
            pytest.skip("backups go through the forward to the agent-facing listener: bwrap with slirp4netns")
        yield runtime


def backup_keys(local: LocalRuntime, scope: str) -> list[str]:
    s3 = boto3.client(
        "s3",
        endpoint_url=local.app.state.agent_services.s3_url,
        region_name=REGION,
        aws_access_key_id="agentcore-local",
        aws_secret_access_key="agentcore-local",
    )
    listed = s3.list_objects_v2(Bucket=local.app.state.settings.backup_bucket, Prefix=f"v2/{scope}/")
    return [item["Key"] for item in listed.get("Contents", [])]


def test_a_runtime_created_by_boto3_alone_backs_up_under_its_id_and_its_delete_deletes_them(
    local: LocalRuntime,
) -> None:
    name, session = f"gone_{uuid.uuid4().hex[:8]}", f"same-{uuid.uuid4().hex}"
    data, control = local.data(), local.control()
    created = local.create_runtime(name)  # no BACKUP_SCOPE: agentcore_local uses the runtime's id
    arn, runtime_id = created["agentRuntimeArn"], created["agentRuntimeId"]
    shell(data, arn, session, "echo precious > keep.txt")
    invoke(data, arn, session, "write the note")
    data.stop_runtime_session(agentRuntimeArn=arn, runtimeSessionId=session)  # waits for the upload
    backed_up = backup_keys(local, runtime_id)

    control.delete_agent_runtime(agentRuntimeId=runtime_id)
    wait_for(lambda: not backup_keys(local, runtime_id), 60, "the deleted runtime's backups to go")

    again = local.create_runtime(name)  # the same name, the same session id
    answer = invoke(data, again["agentRuntimeArn"], session, "read the note")
    assert answer["history"]["messages_before"] == 0 and answer["workspace"]["restored_from"] is None, answer
    assert shell(data, again["agentRuntimeArn"], session, "ls -A | grep -v '^\\.' || true") == ""
    # It was backed up under the runtime's id, and those backups went with the delete.
    assert f"{session_prefix(runtime_id, session)}/latest.json" in backed_up
