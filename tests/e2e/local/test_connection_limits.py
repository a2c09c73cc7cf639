"""A session's connections to the agent-facing services are a bounded box, through the whole stack:
boto3 -> agentcore_local -> bwrap sandbox. Session A floods its forward (127.0.0.1:8788) and the
socket bound into its sandbox with half-sent requests; past its cap it is refused at once, while
session B's turn, B's own requests to the services and the control plane are answered, and
/_local/sessions charges every refusal to A. The API refuses a Host that is not its own."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import pytest
from botocore.config import Config

from agentcore_local.connection_limits import ConnectionCaps
from agentcore_local.sandbox.bwrap import RUN_INSIDE, bwrap_works, find_tool
from agentcore_local.sandbox.sandbox_init import FORWARD_CONNECTIONS
from agentcore_local.services.backups import session_prefix
from agentcore_local.services.listener import IN_SANDBOX_PORT
from agentcore_local.settings import REPO
from tests.support.local_runtime import LocalRuntime, invoke, local_runtime, run, shell, wait_for

pytestmark = pytest.mark.skipif(
    os.environ.get("AGENTCORE_LOCAL_TEST_SANDBOX", "auto") not in ("auto", "bwrap")
    or not bwrap_works(find_tool("bwrap") or "bwrap"),
    reason="needs the bwrap sandbox",
)
CAP = 12  # small, so the flood stays small: 3x the cap, well inside every limit of the machine
CAPS = ConnectionCaps(connections=CAP, header_timeout=60.0)  # the held requests outlast the test's checks
HALF = b"PUT /agentcore-local-backups/v1/x HTTP/1.1\r\nHost: 127.0.0.1"  # a header that never ends
SCOPE = "AWS4-HMAC-SHA256 Credential=x/20261201/us-west-2/s3/aws4_request, SignedHeaders=host, Signature=0"

# Run inside session A: opens COUNT connections to the forward and COUNT to the socket, each with
# a half-sent request; reports how many were answered 503 at once and how many are held; then
# holds them until the test drops a file in the workspace (at most 60 s).
FLOOD = f"""
import json, os, select, socket, sys, time
count = int(sys.argv[1])
def tcp():
    return socket.create_connection(("127.0.0.1", {IN_SANDBOX_PORT}), timeout=10)
def unix():
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect("{RUN_INSIDE}/forward-{IN_SANDBOX_PORT}.sock")
    return s
held, failed = [], 0
for make in [tcp] * count + [unix] * count:
    try:
        s = make()
        s.sendall({HALF!r})
        held.append(s)
    except OSError:
        failed += 1
answers, deadline = {{}}, time.monotonic() + 5
while time.monotonic() < deadline and len(answers) < len(held) - {CAP}:
    ready, _, _ = select.select([s for s in held if s not in answers], [], [], 0.2)
    for s in ready:
        answers[s] = s.recv(4096)[:12].decode()
print(json.dumps({{"refused": sum(a == "HTTP/1.1 503" for a in answers.values()),
                  "other": sorted(set(a for a in answers.values() if a != "HTTP/1.1 503")),
                  "held": len(held) - len(answers), "failed": failed}}), flush=True)
deadline = time.monotonic() + 60
while time.monotonic() < deadline and not os.path.exists("release"):
    time.sleep(0.05)
"""

# Run inside a session: one whole request to the services (an object that is not there, or one
# outside the backup prefix), Host 127.0.0.1:8788 unless a second argument names another; prints
# the status line.
REQUEST = f"""
import socket, sys
host = sys.argv[2] if len(sys.argv) > 2 else "127.0.0.1:{IN_SANDBOX_PORT}"
s = socket.create_connection(("127.0.0.1", {IN_SANDBOX_PORT}), timeout=30)
s.sendall(("GET " + sys.argv[1] + " HTTP/1.1\\r\\nHost: " + host + "\\r\\nAuthorization: {SCOPE}\\r\\n"
           "Connection: close\\r\\n\\r\\n").encode())
print(s.recv(4096).split(b"\\r\\n")[0].decode())
"""

# Run inside a session: COUNT connections to the forward, nothing sent; how each was answered
# (by the sandbox's own forward, by the host's cap, not at all); then all closed, and one whole
# request on a new connection (the forward outlived the flood): its status line.
INNER = f"""
import json, select, socket, sys, time
count, target = int(sys.argv[1]), sys.argv[2]
held = [socket.create_connection(("127.0.0.1", {IN_SANDBOX_PORT}), timeout=10) for _ in range(count)]
answers, deadline = {{}}, time.monotonic() + 20
while time.monotonic() < deadline and len(answers) < count - {CAP}:
    ready, _, _ = select.select([s for s in held if s not in answers], [], [], 0.2)
    for s in ready:
        answers[s] = s.recv(4096)
kinds = [b"sandbox's forward" in a and "inner" or b"this session holds" in a and "host" or repr(a[:40])
         for a in answers.values()]
for s in held:
    s.close()
for _ in range(50):  # the host counts the closed ones as their closes reach it: a moment
    s = socket.create_connection(("127.0.0.1", {IN_SANDBOX_PORT}), timeout=30)
    s.sendall(("GET " + target + " HTTP/1.1\\r\\nHost: 127.0.0.1:{IN_SANDBOX_PORT}\\r\\n"
               "Authorization: {SCOPE}\\r\\nConnection: close\\r\\n\\r\\n").encode())
    status = s.recv(4096).split(b"\\r\\n")[0].decode()
    s.close()
    if " 503 " not in status:
        break
    time.sleep(0.2)
seen = {{k: kinds.count(k) for k in set(kinds)}}
print(json.dumps(seen | {{"held": count - len(answers), "after": status}}))
"""

# Run inside a session: a whole request on a keep-alive connection, answered; then half a second
# request's header, never finished; prints how the connection ended and after how many seconds.
SLOW_SECOND = f"""
import socket, sys, time
s = socket.create_connection(("127.0.0.1", {IN_SANDBOX_PORT}), timeout=60)
s.sendall(("GET " + sys.argv[1] + " HTTP/1.1\\r\\nHost: 127.0.0.1:{IN_SANDBOX_PORT}\\r\\n"
           "Authorization: {SCOPE}\\r\\n\\r\\n").encode())
data = b""
while b"\\r\\n\\r\\n" not in data:
    data += s.recv(4096)
head, _, body = data.partition(b"\\r\\n\\r\\n")
length = int([l for l in head.split(b"\\r\\n") if l.lower().startswith(b"content-length")][0].split(b":")[1])
while len(body) < length:
    body += s.recv(4096)
first = head.split(b"\\r\\n")[0].decode()
began = time.monotonic()
s.sendall(b"GET /x HTTP/1.1\\r\\nHost: 127.0.0.1")
answer = s.recv(4096).split(b"\\r\\n")[0].decode()
print(first, "|", answer, "|", round(time.monotonic() - began, 1))
"""


@pytest.fixture(scope="module")
def local() -> Iterator[LocalRuntime]:
    scratch = REPO / ".agentcore"
    scratch.mkdir(exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="test-conn-", dir=scratch))
    try:
        with local_runtime(tmp, connection_caps=CAPS) as runtime:
            if not runtime.app.state.sessions.launcher.private_network:
                pytest.skip("slirp4netns is missing: sessions share the network")
            yield runtime
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def counted(local: LocalRuntime, session: str) -> dict:
    return next(s for s in local.sessions() if s["runtimeSessionId"] == session)


def put_script(local: LocalRuntime, session: str, name: str, text: str) -> str:
    (local.storage(local.default_arn, session) / name).write_text(text)
    return f"{sys.executable} {name}"


def test_a_flooding_session_is_refused_past_its_cap_while_another_session_and_the_api_answer(
    local: LocalRuntime,
) -> None:
    data, arn = local.data(), local.default_arn
    a, b = f"conn-a-{uuid.uuid4().hex}", f"conn-b-{uuid.uuid4().hex}"
    for session in (a, b):
        shell(data, arn, session, "true")  # compute started, storage attached
    flood, request = put_script(local, a, "flood.py", FLOOD), put_script(local, b, "request.py", REQUEST)
    report: list[str] = []
    flooding = threading.Thread(
        target=lambda: report.append(run(local.data(), arn, a, f"{flood} {3 * CAP // 2}")[2]), daemon=True
    )
    flooding.start()
    try:
        wait_for(lambda: counted(local, a)["openConnections"] >= CAP, 60, "A to hold its cap")
        wait_for(lambda: counted(local, a)["limitsHit"] >= 2 * CAP, 60, "A's refusals")
        # Meanwhile B and the control plane answer.
        own = session_prefix(local.app.state.default_runtime.id, b)
        answer = shell(data, arn, b, f"{request} /agentcore-local-backups/{own}/missing")
        assert answer.startswith("HTTP/1.1 404"), answer  # B reaches moto
        assert invoke(data, arn, b, "hello")["response"].endswith("(0 messages of history)")  # B's turn
        assert local.control().list_agent_runtimes()["agentRuntimes"]
        assert counted(local, b)["refusals"] == 0
    finally:
        (local.storage(arn, a) / "release").touch()
        flooding.join(90)
    seen = json.loads(report[0])
    k = CAP - seen["held"]  # the agent's own keep-alive connections to the listener hold k slots
    assert 0 <= k <= 2 and seen == {"refused": 2 * CAP + k, "other": [], "held": CAP - k, "failed": 0}, seen
    mine = counted(local, a)
    assert mine["limitsHit"] >= 2 * CAP and "connections open" in mine["lastRefusal"]
    # What may stay open is the agent's own: its S3 and its model client keep a connection each.
    wait_for(lambda: counted(local, a)["openConnections"] <= 2, 30, "A's flood connections to close")


def test_the_gates_refusals_are_charged_to_the_session_that_sent_them(local: LocalRuntime) -> None:
    data, arn = local.data(), local.default_arn
    a = f"conn-gate-{uuid.uuid4().hex}"
    shell(data, arn, a, "true")
    request = put_script(local, a, "request.py", REQUEST)
    before = counted(local, a)["refusals"]
    target = "/agentcore-local-backups/v1/../../moto-api/data.json"
    assert shell(data, arn, a, f"{request} {target}").startswith("HTTP/1.1 403")
    mine = counted(local, a)
    assert mine["refusals"] == before + 1 and mine["limitsHit"] == 0
    assert "moto-api" in mine["lastRefusal"] and "'..' segment" in mine["lastRefusal"]


def test_the_api_refuses_a_host_that_is_not_its_own(local: LocalRuntime) -> None:
    port = httpx.URL(local.url).port
    for host in (
        f"attacker.example:{port}",
        "attacker.example",
        f"127.0.0.1:{port + 1}",
        "127.0.0.1.evil:80",
    ):
        answer = httpx.get(f"{local.url}/_local/health", headers={"Host": host})
        assert answer.status_code == 403, host
        assert answer.headers["x-amzn-ErrorType"] == "AccessDeniedException"
        assert "DNS rebinding" in answer.json()["message"]
    for name in ("127.0.0.1", "localhost"):
        client = boto3.client(
            "bedrock-agentcore-control",
            endpoint_url=f"http://{name}:{port}",
            region_name="us-west-2",
            config=Config(retries={"total_max_attempts": 1}),
        )
        assert client.list_agent_runtimes()["agentRuntimes"]


def test_the_sandboxs_forward_refuses_past_its_own_cap_and_outlives_the_flood(local: LocalRuntime) -> None:
    """Connections the host refuses but the session keeps open still cost the sandbox's forward
    two threads each: past FORWARD_CONNECTIONS it answers 503 itself, and serves again after."""
    data, arn = local.data(), local.default_arn
    a = f"conn-inner-{uuid.uuid4().hex}"
    shell(data, arn, a, "true")
    inner = put_script(local, a, "inner.py", INNER)
    own = session_prefix(local.app.state.default_runtime.id, a)
    extra = 40
    seen = json.loads(
        shell(data, arn, a, f"{inner} {FORWARD_CONNECTIONS + extra} /agentcore-local-backups/{own}/x")
    )
    # The agent's own keep-alive connections (its restore at the mount, its warm-up) may hold k of
    # the forward's slots, and some of the host's: what the flood gets is the rest.
    k = seen["inner"] - extra
    assert 0 <= k <= 2, seen
    assert seen["host"] + seen["held"] + k == FORWARD_CONNECTIONS and CAP - 2 <= seen["held"] <= CAP, seen
    assert seen["after"] == "HTTP/1.1 404 Not Found", seen


def test_a_rebinding_host_from_inside_a_session_is_refused_and_charged_to_it(local: LocalRuntime) -> None:
    data, arn = local.data(), local.default_arn
    a = f"conn-host-{uuid.uuid4().hex}"
    shell(data, arn, a, "true")
    request = put_script(local, a, "request.py", REQUEST)
    own = session_prefix(local.app.state.default_runtime.id, a)
    assert shell(data, arn, a, f"{request} /agentcore-local-backups/{own}/x").startswith("HTTP/1.1 404")
    answer = shell(
        data, arn, a, f"{request} /agentcore-local-backups/{own}/x attacker.example:{IN_SANDBOX_PORT}"
    )
    assert answer.startswith("HTTP/1.1 403"), answer
    mine = counted(local, a)
    assert mine["refusals"] == 1 and "DNS rebinding" in mine["lastRefusal"]


PACED = ConnectionCaps(connections=CAP, header_timeout=2.0)


@pytest.fixture(scope="module")
def paced() -> Iterator[LocalRuntime]:
    """A runtime whose requests' headers must be whole within 2 s."""
    scratch = REPO / ".agentcore"
    scratch.mkdir(exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="test-pace-", dir=scratch))
    try:
        with local_runtime(tmp, connection_caps=PACED) as runtime:
            if not runtime.app.state.sessions.launcher.private_network:
                pytest.skip("slirp4netns is missing: sessions share the network")
            yield runtime
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_a_keep_alive_connections_second_header_sent_slowly_is_ended_and_charged(paced: LocalRuntime) -> None:
    data, arn = paced.data(), paced.default_arn
    a = f"conn-slow-{uuid.uuid4().hex}"
    shell(data, arn, a, "true")
    slow = put_script(paced, a, "slow.py", SLOW_SECOND)
    own = session_prefix(paced.app.state.default_runtime.id, a)
    first, second, seconds = shell(data, arn, a, f"{slow} /agentcore-local-backups/{own}/x").split(" | ")
    assert first.startswith("HTTP/1.1 404") and second.startswith("HTTP/1.1 408"), (first, second)
    assert PACED.header_timeout <= float(seconds) < PACED.header_timeout + 5
    mine = counted(paced, a)
    assert mine["limitsHit"] == 1 and "header took over" in mine["lastRefusal"]
    assert mine["lastRefusalAt"] is not None
