"""Helpers for the agentcore_local tests: an in-process server (real HTTP, real sandboxes, real
coding_agent.py) with a clock the test moves by hand, and boto3 clients pointed at it."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import httpx
import uvicorn
from botocore.config import Config
from botocore.exceptions import ClientError

from agent.model.providers import model_variables
from agentcore_local.sandbox.launcher import Launcher
from agentcore_local.server import bind, create_app
from agentcore_local.settings import Settings
from cloud.session_calls import read_command_stream

PLAN = Path(__file__).resolve().parent / "plans" / "local_runtime.json"
ROLE = "arn:aws:iam::123456789012:role/AgentCoreRuntimeRole"
IMAGE = "123456789012.dkr.ecr.us-west-2.amazonaws.com/coding-agent:test"


class FakeClock:
    """Wall time plus an offset the test advances: days pass in a call, the reaper sees them."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@dataclass
class LocalRuntime:
    url: str
    app: Any
    clock: FakeClock
    state_dir: Path

    @property
    def default_arn(self) -> str:
        return self.app.state.default_runtime.arn

    def data(self, **config: Any):
        cfg = Config(read_timeout=120, connect_timeout=10, retries={"total_max_attempts": 1}, **config)
        return boto3.client("bedrock-agentcore", endpoint_url=self.url, region_name="us-west-2", config=cfg)

    def control(self):
        cfg = Config(retries={"total_max_attempts": 1})
        return boto3.client(
            "bedrock-agentcore-control", endpoint_url=self.url, region_name="us-west-2", config=cfg
        )

    @property
    def isolated(self) -> bool:
        return self.app.state.sessions.launcher.isolated

    def storage(self, arn: str, session: str) -> Path:
        """Where a session's storage lives on the host."""
        key = hashlib.sha256(session.encode()).hexdigest()[:32]
        return self.state_dir / "sessions" / arn.rsplit("/", 1)[1] / key / "storage"

    def workspace(self, arn: str, session: str) -> str:
        """The path the agent and commands see: the mount path in a sandbox, the storage itself without."""
        return "/mnt/workspace" if self.isolated else str(self.storage(arn, session))

    def sessions(self) -> list[dict[str, Any]]:
        return httpx.get(f"{self.url}/_local/sessions").json()["sessions"]

    def stop_sessions(self) -> None:
        """Stop every session that holds compute, through StopRuntimeSession: a module's server is
        shared, so each test leaves it with none running (the next one may need --max-sessions room)."""
        data, control = self.data(), self.control()
        for session in self.sessions():
            if session["state"] == "READY":
                arn = control.get_agent_runtime(agentRuntimeId=session["agentRuntimeId"])["agentRuntimeArn"]
                try:
                    data.stop_runtime_session(
                        agentRuntimeArn=arn, runtimeSessionId=session["runtimeSessionId"]
                    )
                except ClientError as error:  # it stopped by itself meanwhile
                    assert error.response["Error"]["Code"] == "ResourceNotFoundException", error
        wait_for(lambda: all(s["state"] == "STOPPED" for s in self.sessions()), 60, "every session to stop")

    def session_state(self, session_id: str) -> str | None:
        return next((s["state"] for s in self.sessions() if s["runtimeSessionId"] == session_id), None)

    def create_runtime(self, name: str, **extra: Any) -> dict[str, Any]:
        """A runtime on the test plan, READY (the clock is moved past provisioning)."""
        request = {
            "agentRuntimeName": name,
            "agentRuntimeArtifact": {"containerConfiguration": {"containerUri": IMAGE}},
            "roleArn": ROLE,
            "filesystemConfigurations": [{"sessionStorage": {"mountPath": "/mnt/workspace"}}],
            "environmentVariables": {"MODEL_PROVIDER": "scripted", "SCRIPTED_PLAN": str(PLAN)},
            **extra,
        }
        created = self.control().create_agent_runtime(**request)
        self.clock.advance(5)
        return {**created, "request": request}


@contextmanager
def local_runtime(tmp: Path, launcher: Launcher | None = None, **settings: Any) -> Iterator[LocalRuntime]:
    """agentcore_local in this process on a free port; every session stopped at exit. `launcher`
    replaces the --sandbox choice."""
    clock = FakeClock()
    # AGENTCORE_LOCAL_TEST_SANDBOX=process runs the suite on the fallback sandbox.
    # No warm pool unless a test asks (pool=N): a member per server costs a start the test never uses.
    settings = {"sandbox": os.environ.get("AGENTCORE_LOCAL_TEST_SANDBOX", "auto"), "pool": 0, **settings}
    config = Settings.from_env(
        {"MODEL_PROVIDER": "scripted", "SCRIPTED_PLAN": str(PLAN)},
        passthrough=model_variables(),  # as serve does
        state_dir=tmp / "state",
        reaper_interval=0.2,
        stop_grace=5.0,
        **settings,
    )
    app = create_app(config, clock=clock, launcher=launcher)
    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_for(lambda: server.started, 30, "the server to start")
    try:
        yield LocalRuntime(
            f"http://127.0.0.1:{sock.getsockname()[1]}", app, clock, config.state_dir.resolve()
        )
    finally:
        server.should_exit = True
        thread.join(60)


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll `condition` until it is truthy (no fixed sleeps in the tests)."""
    deadline = time.monotonic() + timeout
    delay = 0.02
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(delay)
        delay = min(delay * 2, 0.25)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def invoke(client, arn: str, session: str, prompt: str) -> dict[str, Any]:
    answer = client.invoke_agent_runtime(
        agentRuntimeArn=arn, runtimeSessionId=session, payload=json.dumps({"prompt": prompt})
    )
    return json.loads(answer["response"].read())


def run(client, arn: str, session: str, command: str, timeout: int = 60) -> tuple[int, str, str, str]:
    """(exit code, status, stdout, stderr) of a command in the session."""
    answer = client.invoke_agent_runtime_command(
        agentRuntimeArn=arn, runtimeSessionId=session, body={"command": command, "timeout": timeout}
    )
    return read_command_stream(answer["stream"])


def shell(data, arn: str, session: str, command: str) -> str:
    """A command in the session that must succeed; its stdout."""
    code, status, out, err = run(data, arn, session, command)
    assert (code, status) == (0, "COMPLETED"), f"{command!r} failed: {err or out}"
    return out
