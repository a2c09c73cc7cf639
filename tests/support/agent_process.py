"""Run the real coding_agent.py as a child process on a free port, for end-to-end tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from agentcore_local.sandbox import free_port
from tests.support import PLANS, REPO

__all__ = ["REPO", "TEST_PLAN", "AgentProcess", "history", "message_files"]
TEST_PLAN = PLANS / "service.json"


def message_files(workspace: Path, conversation_id: str) -> list[Path]:
    """A conversation's message files in index order (FileSessionManager's layout)."""
    folder = workspace / ".sessions" / f"session_{conversation_id}" / "agents" / "agent_default" / "messages"
    return sorted(folder.glob("message_*.json"), key=lambda p: int(p.stem.split("_")[1]))


def history(workspace: Path, conversation_id: str) -> list[dict[str, Any]]:
    """Every stored message, parsed (json.loads raises on a torn file: that is a failure)."""
    return [json.loads(p.read_text())["message"] for p in message_files(workspace, conversation_id)]


class AgentProcess:
    """coding_agent.py with MODEL_PROVIDER=scripted (the offline test double) on a temporary workspace."""

    def __init__(self, workspace: Path, plan: Path = TEST_PLAN, **env: str) -> None:
        self.workspace = workspace
        self.port = free_port()
        self.env = {
            **os.environ,
            "WORKSPACE_DIR": str(workspace),
            "PORT": str(self.port),
            "MODEL_PROVIDER": "scripted",
            "SCRIPTED_PLAN": str(plan),
            **env,
        }
        self.env.pop("DOCKER_CONTAINER", None)
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"http://127.0.0.1:{self.port}"
        self.http = httpx.Client(base_url=self.url, timeout=60)

    def start(self, timeout: float = 30) -> float:
        """Start and wait for a Healthy /ping. Returns the seconds it took."""
        started = time.perf_counter()
        # A file, not a pipe: nobody reads a pipe during the test, and a full one would block the server.
        self.log = tempfile.NamedTemporaryFile(prefix="coding_agent-", suffix=".log", delete=False)  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, str(REPO / "coding_agent.py")],
            cwd=REPO,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        while time.perf_counter() - started < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"coding_agent.py exited: {Path(self.log.name).read_text()[-2000:]}")
            try:
                if self.http.get("/ping").json()["status"] == "Healthy":
                    return time.perf_counter() - started
            except httpx.TransportError:
                time.sleep(0.01)  # fine-grained: the bench times this
        raise TimeoutError("coding_agent.py did not answer /ping in time")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self) -> None:
        """kill -9: what an out-of-memory kill or a crashed microVM does."""
        self.stop(signal.SIGKILL)

    def invoke(
        self, prompt: Any = None, headers: dict[str, str] | None = None, **fields: Any
    ) -> httpx.Response:
        body = {"prompt": prompt, **fields} if prompt is not None else fields
        return self.http.post("/invocations", json=body, headers=headers or {})

    def stream(self, prompt: str, **fields: Any) -> list[dict[str, Any]]:
        """POST with "stream": true; the parsed SSE events in arrival order."""
        events = []
        with self.http.stream("POST", "/invocations", json={"prompt": prompt, "stream": True, **fields}) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            for line in r.iter_lines():
                if line.startswith("data: "):
                    events.append(json.loads(line[6:]))
        return events
