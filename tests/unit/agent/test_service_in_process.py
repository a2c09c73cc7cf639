"""coding_agent.py imported in this process and driven through its ASGI app (httpx's ASGITransport):
a whole turn with the scripted model (MODEL_PROVIDER=scripted, a test double for the LLM; the tools,
workspace, checkpoints, history and, below, S3 through moto's server are real)."""

from __future__ import annotations

import asyncio
import importlib
import json
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from agent.backup.s3 import S3Backup
from agent.checkpoints.recorder import Recorder
from tests.support import PLANS
from tests.unit.agent import test_backup
from tests.unit.agent.test_backup import S3

SESSION = "session-in-process-" + "3" * 21
endpoint = test_backup.endpoint  # the fixture: moto in server mode on 127.0.0.1
SESSION_HEADER = "X-Amzn-Bedrock-AgentCore-Runtime-Session-Id"


@pytest.fixture
def load_agent(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Import coding_agent afresh with this environment (it reads its settings once, at import)."""

    def load(workspace: Path, **env: str) -> ModuleType:
        monkeypatch.delenv("DOCKER_CONTAINER", raising=False)
        variables = {"WORKSPACE_DIR": str(workspace), "MODEL_PROVIDER": "scripted"}
        for name, value in {**variables, "SCRIPTED_PLAN": str(PLANS / "service.json"), **env}.items():
            monkeypatch.setenv(name, value)
        sys.modules.pop("coding_agent", None)
        return importlib.import_module("coding_agent")

    yield load
    sys.modules.pop("coding_agent", None)


def client(module: ModuleType) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=module.app)
    return httpx.AsyncClient(transport=transport, base_url="http://agent", headers={SESSION_HEADER: SESSION})


def sse(body: str) -> list[dict[str, Any]]:
    return [json.loads(line[6:]) for line in body.splitlines() if line.startswith("data: ")]


def test_a_turn_runs_in_process_and_keeps_its_files_history_and_checkpoint(
    load_agent, tmp_path: Path
) -> None:
    module = load_agent(tmp_path)

    async def turns() -> list[httpx.Response]:
        async with client(module) as http:
            made = await http.post("/invocations", json={"prompt": "make files", "conversation_id": "c1"})
            streamed = await http.post(
                "/invocations", json={"prompt": "again", "conversation_id": "c1", "stream": True}
            )
            listed = await http.post("/invocations", json={"action": "checkpoints", "conversation_id": "c1"})
            return [made, streamed, listed]

    made, streamed, listed = asyncio.run(turns())

    assert made.status_code == 200, made.text
    answer = made.json()
    assert "hello from turn one" in answer["response"]
    assert (tmp_path / "notes" / "a.txt").read_text() == "hello from turn one\n"
    events = sse(streamed.text)
    assert events[-1]["type"] == "done" and events[-1]["history"]["messages_before"] > 0
    assert (tmp_path / ".sessions" / "session_c1").is_dir()  # the history lives in the workspace
    kept = {c["id"]: c["prompt"] for c in listed.json()["checkpoints"]}
    assert kept[answer["workspace"]["checkpoint"]] == "make files"
    assert kept[events[-1]["workspace"]["checkpoint"]] == "again"


def test_a_busy_conversation_and_a_bad_request_are_refused_in_one_line(load_agent, tmp_path: Path) -> None:
    module = load_agent(tmp_path)
    held = module.service.conversations.begin("c1")  # as a turn running on it would

    async def requests() -> tuple[httpx.Response, httpx.Response]:
        async with client(module) as http:
            busy = await http.post("/invocations", json={"prompt": "hi", "conversation_id": "c1"})
            bad = await http.post("/invocations", json={"prompt": 7})
            return busy, bad

    busy, bad = asyncio.run(requests())
    module.service.conversations.end(held)
    assert busy.status_code == 409 and "already running a turn" in busy.json()["error"]
    assert bad.status_code == 400 and set(bad.json()) == {"error"}


def test_conversations_starting_together_each_get_their_own_restore_report(
    load_agent, tmp_path: Path, endpoint: str
) -> None:
    """The turn that restored the workspace from S3 is the one whose answer reports it. (Restore hooks
    rebound on the shared recorder by each request put the report under the last claimant's id.)"""
    s3 = S3(endpoint)
    bucket = f"in-process-{uuid.uuid4().hex[:12]}"
    s3.client.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "us-west-2"})
    before = tmp_path / "before"  # the session's storage before it was lost
    (before / "src").mkdir(parents=True)
    (before / "src" / "app.js").write_text("console.log('kept')\n")
    recorder = Recorder(before, keep=20, max_bytes=10**9, quota_bytes=10**9)
    recorder.end(recorder.begin("earlier"), "earlier", "make app.js", "answered")
    S3Backup(bucket, client=s3.client).push(before, SESSION)
    empty = tmp_path / "empty"
    empty.mkdir()
    module = load_agent(empty, BACKUP_BUCKET=bucket, AWS_ENDPOINT_URL_S3=endpoint)

    app, store = module.app, module.service.recorder.store

    async def together() -> list[httpx.Response]:
        """Four conversations claimed and waiting at their checkpoint's begin, then let go at once."""
        async with client(module) as http:
            with store.lock:  # what a running checkpoint holds
                calls = [
                    asyncio.ensure_future(
                        http.post("/invocations", json={"prompt": "hi", "conversation_id": cid})
                    )
                    for cid in "abcd"
                ]
                deadline = time.monotonic() + 30
                while app.get_async_task_info()["active_count"] < len(calls):
                    assert time.monotonic() < deadline, "the turns never started"
                    await asyncio.sleep(0.005)
            return list(await asyncio.gather(*calls))

    answers = [r.json()["workspace"] for r in asyncio.run(together())]
    module.service.backups.wait(30)

    assert (empty / "src" / "app.js").read_text() == "console.log('kept')\n"
    assert sorted(a["restored_from"] for a in answers) == ["backup", "storage", "storage", "storage"]
    for workspace in answers:
        assert ("restore" in workspace) == (workspace["restored_from"] == "backup"), answers
