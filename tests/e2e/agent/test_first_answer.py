"""What a new session's first answer no longer pays for: the agent's warm-up (agent/service/warmup.py),
the rehearsed S3 and model requests (agent/backup/transfer.py, agent/model/providers.py) and the warm
pool's delayed refill.
The end-to-end proof (members warm before their session, each session seeing only its own
history and backup) is in tests/e2e/local/test_local_pool.py."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from agent.backup.transfer import rehearse
from agent.model.providers import build_model, rehearse_model
from agent.service.settings import Settings
from agent.service.warmup import Once, StartAfterFirstPing, WarmUp
from agentcore_local.sessions import pool as pool_module
from agentcore_local.sessions.pool import WarmPool
from tests.unit.agent import test_service_in_process

load_agent = test_service_in_process.load_agent  # the fixture: coding_agent imported afresh


def test_once_builds_one_value_for_concurrent_callers_and_retries_after_a_failure() -> None:
    calls: list[int] = []
    asking: list[int] = []

    def build() -> object:
        calls.append(1)
        deadline = time.monotonic() + 10  # the first to ask builds until every thread has asked
        while len(asking) < 4:
            assert time.monotonic() < deadline, "the other threads never asked"
            time.sleep(0.001)
        return object()

    def ask() -> None:
        asking.append(1)
        results.append(once())

    once = Once(build)
    results: list[object] = []
    threads = [threading.Thread(target=ask) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1 and len({id(r) for r in results}) == 1

    attempts: list[int] = []

    def flaky() -> str:
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("no credentials yet")
        return "built"

    failing = Once(flaky)
    with pytest.raises(RuntimeError):
        failing()
    assert failing() == "built" and failing() == "built" and len(attempts) == 2


def test_the_warm_up_runs_every_step_once_in_the_background_even_past_a_failing_one() -> None:
    ran: list[str] = []

    def broken() -> None:
        raise RuntimeError("the provider is unreachable")

    warm_up = WarmUp(
        [("first", lambda: ran.append("first")), ("broken", broken), ("last", lambda: ran.append("last"))]
    )
    warm_up.start()
    warm_up.start()  # a second start does nothing
    assert warm_up.done.wait(10)
    assert ran == ["first", "last"] and set(warm_up.seconds) == {"first", "broken", "last"}


def test_the_warm_up_starts_once_the_first_ping_is_answered_and_not_on_other_paths() -> None:
    warm_up = WarmUp([])
    started_while_answering: list[bool] = []

    def ping(_request: object) -> JSONResponse:
        started_while_answering.append(warm_up.started)
        return JSONResponse({"status": "Healthy"})

    def invocations(_request: object) -> JSONResponse:
        return JSONResponse({"response": "hi"})

    app = Starlette(routes=[Route("/ping", ping), Route("/invocations", invocations, methods=["POST"])])
    app.add_middleware(StartAfterFirstPing, warm_up=warm_up)
    with TestClient(app) as client:
        assert client.post("/invocations", json={}).status_code == 200
        assert not warm_up.started
        assert client.get("/ping").json() == {"status": "Healthy"}
        assert warm_up.started and warm_up.done.wait(10)
        client.get("/ping")
    assert started_while_answering == [False, True]  # the first ping's answer did not wait for it


class CountingServer:
    """A loopback HTTP server that records each request line and answers 404 (S3's NoSuchKey)."""

    BODY = b"<Error><Code>NoSuchKey</Code><Message>none</Message></Error>"

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.requests: list[bytes] = []
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                self.requests.append(conn.recv(65536).split(b"\r\n", 1)[0])
                head = (
                    f"HTTP/1.1 404 Not Found\r\nContent-Length: {len(self.BODY)}\r\nConnection: close\r\n\r\n"
                )
                conn.sendall(head.encode() + self.BODY)


def test_the_rehearsal_sends_no_request_and_leaves_every_other_request_alone() -> None:
    server = CountingServer()
    client = boto3.client(
        "s3",
        endpoint_url=server.url,
        region_name="us-west-2",
        config=Config(retries={"total_max_attempts": 1}, s3={"addressing_style": "path"}),
    )
    rehearse(client, "backups")
    rehearse(client, "backups")
    assert server.requests == []
    with pytest.raises(ClientError) as raised:
        client.get_object(Bucket="backups", Key="v1/abc/latest.json")
    assert raised.value.response["Error"]["Code"] == "NoSuchKey"
    assert server.requests == [b"GET /backups/v1/abc/latest.json HTTP/1.1"]
    server.sock.close()


def test_the_model_rehearsal_sends_no_request_and_other_providers_have_none(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    server = CountingServer()
    monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", server.url)
    bedrock = build_model(Settings.from_env({"MODEL_PROVIDER": "bedrock", "AWS_REGION": "us-west-2"}))
    rehearse_model(bedrock)
    assert server.requests == []
    with pytest.raises(ClientError):  # the real call goes out (and gets the server's 404)
        bedrock.client.converse_stream(modelId="m", messages=[{"role": "user", "content": [{"text": "hi"}]}])
    assert len(server.requests) == 1 and server.requests[0].startswith(b"POST /model/m/converse-stream")
    plan = tmp_path / "plan.json"
    plan.write_text('{"rules": [{"match": ".", "steps": [{"text": "hi"}]}]}')
    rehearse_model(build_model(Settings(model_provider="scripted", scripted_plan=plan)))  # nothing to do
    server.sock.close()


class FakeCompute:
    def __init__(self) -> None:
        self.pid, self.running = 1, False

    async def start(self, _timeout: float) -> None:
        self.running = True

    async def stop(self, grace: float) -> None:
        self.running = False


def test_a_take_refills_the_pool_after_the_refill_delay_not_beside_the_first_turn(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pool_module, "REFILL_DELAY_S", 0.2)
    monkeypatch.setattr(pool_module, "tree_usage", lambda _pid: (0.0, 0))
    runtime = SimpleNamespace(id="rt")
    builds: list[float] = []

    def build(_runtime: object) -> tuple[str, FakeCompute]:
        builds.append(time.monotonic())
        return "key", FakeCompute()

    async def scenario() -> tuple[float, list[float]]:
        pool = WarmPool(1, build, lambda _r: "key", asyncio.Semaphore(1), 10.0)
        pool.fill(runtime)  # type: ignore[arg-type]
        while not pool.members:
            await asyncio.sleep(0.01)
        taken_at = time.monotonic()
        assert pool.take(runtime) is not None  # type: ignore[arg-type]
        while len(builds) < 2:
            await asyncio.sleep(0.01)
        await pool.shutdown()
        return taken_at, builds

    taken_at, builds = asyncio.run(scenario())
    assert builds[1] - taken_at >= 0.2

    async def deleted_meanwhile() -> int:
        pool = WarmPool(1, build, lambda _r: "key", asyncio.Semaphore(1), 10.0)
        pool.take(runtime)  # type: ignore[arg-type]
        pool.retire(runtime, deleted=True)  # type: ignore[arg-type]
        await asyncio.sleep(0.4)  # past the delay: a negative can only be shown by waiting it out
        await pool.shutdown()
        return len(builds)

    before = len(builds)
    assert asyncio.run(deleted_meanwhile()) == before  # a deleted runtime gets no refill


def test_the_agent_warms_up_after_its_first_ping_before_any_call_and_ping_stays_healthy(
    load_agent, tmp_path: Path
) -> None:
    module = load_agent(tmp_path / "workspace")  # coding_agent.py itself, in this process
    warm_up = module.service.warm_up
    with TestClient(module.app) as client:
        assert client.get("/ping").json()["status"] == "Healthy"
        deadline = time.monotonic() + 30
        while not warm_up.done.wait(0.02):
            assert time.monotonic() < deadline, "the warm-up did not finish"
            assert client.get("/ping").json()["status"] == "Healthy"
        assert {"model", "tools", "agent", "inotify"} <= set(warm_up.seconds)
        assert warm_up.failed == {}
        assert client.post("/invocations", json={"prompt": "hello"}).status_code == 200
