"""The seed's two demo prompts, played by the offline scripted model (a test double) on the real service."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.agent_process import REPO, AgentProcess

BUILD = "Create a Node.js REST API: package.json with express and dotenv, index.js with GET /health"
RESUME = "Add a POST /echo endpoint. Check the workspace first to see what already exists."


def test_demo_plan_builds_the_api_then_resumes_after_a_restart(tmp_path: Path):
    agent = AgentProcess(tmp_path / "ws", plan=REPO / "demo" / "plan.json")
    try:
        agent.start()
        first = agent.invoke(BUILD, conversation_id="demo").json()
        package = json.loads((agent.workspace / "package.json").read_text())
        assert set(package["dependencies"]) == {"express", "dotenv"}
        assert "app.get('/health'" in (agent.workspace / "index.js").read_text()
        if '"exit_code": 0' in first["response"]:  # npm and its registry were reachable
            assert (agent.workspace / "node_modules" / "express").is_dir()
        agent.stop()  # a new process on the same storage: what a resumed session gets
        agent.start()
        second = agent.invoke(RESUME, conversation_id="demo").json()
    finally:
        agent.stop()
    assert second["history"]["messages_before"] == 10
    assert second["workspace"]["restored"] is True
    assert "I was given 10 messages of history" in second["response"]
    index = (agent.workspace / "index.js").read_text()
    assert "app.post('/echo'" in index and "app.get('/health'" in index
