"""The pattern the README quotes works as quoted: two invocations, each with a new Agent, and the
second one is given the first one's conversation, read back from WORKSPACE_DIR/.sessions."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from agent.model.providers import build_model
from agent.service.settings import Settings
from tests.support import REPO


def readme_pattern() -> str:
    section = (REPO / "README.md").read_text().split("## The pattern\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 1, "the README's pattern section should hold one python block"
    return blocks[0]


def test_the_readme_pattern_resumes_a_conversation_from_the_workspace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WORKSPACE_DIR", str(tmp_path))
    # What the pattern leaves to the reader: a model (the offline scripted one, a test double), tools.
    names = {
        "__name__": "readme_pattern",
        "model": build_model(Settings(model_provider="scripted")),
        "tools": [],
        "SYSTEM_PROMPT": "You are a coding agent.",
    }
    exec(compile(readme_pattern(), "README.md: the pattern", "exec"), names)
    client = TestClient(names["app"])

    first = client.post("/invocations", json={"prompt": "hello", "conversation_id": "c1"})
    second = client.post("/invocations", json={"prompt": "again", "conversation_id": "c1"})

    assert first.status_code == second.status_code == 200
    assert second.json()["conversation_id"] == "c1"
    messages = tmp_path / ".sessions" / "session_c1" / "agents" / "agent_default" / "messages"
    assert len(list(messages.glob("message_*.json"))) == 4  # two turns, user and assistant each
    # The second turn's new Agent was given the first turn's two messages, restored from disk.
    assert "given 2 messages of history" in second.json()["response"]
    assert "given 0 messages of history" in first.json()["response"]
