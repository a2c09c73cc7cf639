"""The agent-facing listener as a bounded box: each compute's socket (forwarder.py) caps its
session's connections, ends half-sent requests, and charges every refusal to that session; one
session's slow uploads cannot take the upstream from another. Real listener, real moto, raw
sockets, small caps so each limit is reached in a few connections."""

from __future__ import annotations

import contextlib
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentcore_local.connection_limits import ConnectionCaps, raise_open_files_limit
from agentcore_local.services.backups import session_prefix
from agentcore_local.services.listener import AgentServices, start_agent_services
from tests.support.local_runtime import wait_for

BUCKET = "limits-backups"
S3_SCOPE = (
    "AWS4-HMAC-SHA256 Credential=AKID/20261201/us-west-2/s3/aws4_request, SignedHeaders=host, Signature=0"
)
# A body must come at 2 bytes a second after its first 0.5 s, with no gap over 5 s: the slow
# uploads below hold for ~5 s, a byte a second is ended in ~2.
CAPS = ConnectionCaps(
    connections=4, upstream=2, header_timeout=0.5, idle_timeout=5.0, body_rate=2, body_idle_timeout=5.0
)


@pytest.fixture(scope="module")
def services() -> Iterator[AgentServices]:
    state = Path(tempfile.mkdtemp(prefix="limits-", dir="/tmp"))
    running = start_agent_services(state, None, "us-west-2", backup_bucket=BUCKET, caps=CAPS)
    yield running
    running.close()
    shutil.rmtree(state)


@pytest.fixture
def sockets(services: AgentServices, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """Two computes' sockets, A's and B's, attributed to sessions of those names."""
    assert services.forwarder is not None
    made = {}
    for name in ("a", "b"):
        directory = Path(tempfile.mkdtemp(prefix=f"fw-{name}-", dir="/tmp"))
        compute, session = f"compute-{name}-{time.monotonic_ns()}", f"session-{name}-{time.monotonic_ns()}"
        made[session] = (compute, services.forwarder.open(compute, directory))
        services.forwarder.limits.attribute(compute, session, session_prefix("scope", session))
    yield {session: path for session, (_, path) in made.items()}
    for compute, path in made.values():
        services.forwarder.close(compute)
        shutil.rmtree(path.parent, ignore_errors=True)


def connect(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(str(path))
    return sock


def exchange(path: Path, request: bytes) -> bytes:
    """One whole request (Connection: close) on its own connection; the answer, read to the end."""
    with connect(path) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        return answer


def get(target: str, **headers: str) -> bytes:
    lines = [
        f"GET {target} HTTP/1.1",
        "Host: 127.0.0.1:8788",
        f"Authorization: {S3_SCOPE}",
        "Connection: close",
    ]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def of(services: AgentServices, session: str) -> dict:
    assert services.forwarder is not None
    return services.forwarder.limits.describe(session)


def test_a_session_past_its_connection_cap_is_refused_at_once_while_another_is_served(
    services: AgentServices, sockets: dict[str, Path]
) -> None:
    (a, a_path), (b, b_path) = sockets.items()
    held = [connect(a_path) for _ in range(CAPS.connections)]
    try:
        for sock in held:
            sock.sendall(b"GET /")  # half-sent: the header never ends
        refused = exchange(a_path, get(f"/{BUCKET}/{session_prefix('scope', a)}/x"))
        assert refused.startswith(b"HTTP/1.1 503"), refused
        assert b"SlowDown" in refused
        assert exchange(b_path, get(f"/{BUCKET}/{session_prefix('scope', b)}/missing")).startswith(
            b"HTTP/1.1 404"
        )  # B reaches moto
    finally:
        for sock in held:
            sock.close()
    seen = of(services, a)
    assert seen["limitsHit"] >= 1 and "connections open" in seen["lastRefusal"]
    assert of(services, b)["limitsHit"] == 0


def test_a_half_sent_request_is_ended_after_the_header_timeout_and_counted(
    services: AgentServices, sockets: dict[str, Path]
) -> None:
    a, a_path = next(iter(sockets.items()))
    with connect(a_path) as sock:
        sock.sendall(
            f"PUT /limits-backups/{session_prefix('scope', a)}/x HTTP/1.1\r\nHost: 127.0.0.1".encode()
        )
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert "header took over" in of(services, a)["lastRefusal"]
    wait_for(lambda: of(services, a)["openConnections"] == 0, 10, "the timed-out connection to be let go")


def test_the_gates_refusal_is_charged_to_the_session_that_sent_it(
    services: AgentServices, sockets: dict[str, Path]
) -> None:
    (a, a_path), (b, _) = sockets.items()
    answer = exchange(a_path, get(f"/{BUCKET}/{session_prefix('scope', a)}/../../moto-api/data.json"))
    assert answer.startswith(b"HTTP/1.1 403"), answer
    seen = of(services, a)
    assert seen["refusals"] == 1 and seen["limitsHit"] == 0
    assert "moto-api" in seen["lastRefusal"] and "'..' segment" in seen["lastRefusal"]
    assert of(services, b)["refusals"] == 0


def test_slow_uploads_use_only_their_sessions_share_of_the_upstream(
    services: AgentServices, sockets: dict[str, Path]
) -> None:
    (a, a_path), (b, b_path) = sockets.items()
    put = (
        f"PUT /{BUCKET}/{session_prefix('scope', a)}/slow HTTP/1.1\r\n"
        f"Host: 127.0.0.1:8788\r\nAuthorization: {S3_SCOPE}\r\n"
        "Content-Length: 1000000\r\nConnection: close\r\n\r\n"
    ).encode()
    slow = [connect(a_path) for _ in range(CAPS.upstream)]
    try:
        for sock in slow:
            sock.sendall(put + b"x" * 10)  # a body that trickles: each holds an upstream request
        wanted = CAPS.upstream
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and of(services, a)["upstreamRequests"] < wanted:
            time.sleep(0.02)
        third = exchange(a_path, put.replace(b"1000000", b"3") + b"abc")
        assert third.startswith(b"HTTP/1.1 503") and b"SlowDown" in third, third
        assert "requests at once" in of(services, a)["lastRefusal"]
        body = b"done"
        mine = put.replace(session_prefix("scope", a).encode(), session_prefix("scope", b).encode())
        ok = exchange(b_path, mine.replace(b"1000000", b"4").replace(b"slow", b"fast") + body)
        assert ok.startswith(b"HTTP/1.1 200"), ok
    finally:
        for sock in slow:
            sock.close()


def test_serve_raises_its_open_files_limit_to_the_hard_limit() -> None:
    import resource

    hard = raise_open_files_limit()
    assert resource.getrlimit(resource.RLIMIT_NOFILE) == (hard, hard)


def read_answer(sock: socket.socket) -> bytes:
    """One whole answer (its Content-Length body) from a keep-alive connection."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536) or b"!"
        assert not data.endswith(b"!"), data
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(
        next(
            line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
        )
    )
    while len(body) < length:
        body += sock.recv(65536)
    return head


def keep_alive(target: str) -> bytes:
    return get(target).replace(b"Connection: close", b"Connection: keep-alive")


def test_the_second_request_of_a_keep_alive_connection_has_the_header_timeout_too(
    services: AgentServices, sockets: dict[str, Path]
) -> None:
    a, a_path = next(iter(sockets.items()))
    with connect(a_path) as sock:
        sock.sendall(keep_alive(f"/{BUCKET}/{session_prefix('scope', a)}/missing"))
        assert read_answer(sock).startswith(b"HTTP/1.1 404")
        sock.sendall(b"GET /" + BUCKET.encode() + b"/x HTTP/1.1\r\nHost: 127.0.0.1")  # never ends
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert "header took over" in of(services, a)["lastRefusal"]
    wait_for(lambda: of(services, a)["openConnections"] == 0, 10, "the timed-out connection to be let go")


def test_blank_lines_sent_one_at_a_time_do_not_hold_a_connection(
    services: AgentServices, sockets: dict[str, Path]
) -> None:
    a, a_path = next(iter(sockets.items()))
    with connect(a_path) as sock:
        deadline, answer = time.monotonic() + 5, b""
        while time.monotonic() < deadline and not answer:
            with contextlib.suppress(OSError):
                sock.sendall(b"\r\n")
            sock.settimeout(0.1)
            with contextlib.suppress(TimeoutError):
                answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert "header took over" in of(services, a)["lastRefusal"]


def test_a_body_that_trickles_is_ended_and_counted(services: AgentServices, sockets: dict[str, Path]) -> None:
    a, a_path = next(iter(sockets.items()))
    put = (
        f"PUT /{BUCKET}/{session_prefix('scope', a)}/trickle HTTP/1.1\r\n"
        f"Host: 127.0.0.1:8788\r\nAuthorization: {S3_SCOPE}\r\nContent-Length: 100\r\n\r\n"
    ).encode()
    with connect(a_path) as sock:
        sock.sendall(put)
        sock.settimeout(1.0)  # a byte a second: under the 5 s gap, far under 2 bytes a second
        answer, sent = b"", 0
        while not answer and sent < 20:
            with contextlib.suppress(TimeoutError):
                answer = sock.recv(65536)
            if not answer:
                sock.sendall(b"x")
                sent += 1
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert sent < 10  # ended within seconds, not at the end of its 100 bytes
    seen = of(services, a)
    assert "body came slower" in seen["lastRefusal"] and seen["limitsHit"] >= 1


def test_chunked_and_pipelined_requests_on_one_connection_are_all_answered(
    services: AgentServices, sockets: dict[str, Path]
) -> None:
    a, a_path = next(iter(sockets.items()))
    key = f"/{BUCKET}/{session_prefix('scope', a)}/chunked"
    put = (
        f"PUT {key} HTTP/1.1\r\nHost: 127.0.0.1:8788\r\nAuthorization: {S3_SCOPE}\r\n"
        "Transfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: 1\r\n\r\n"
    ).encode()
    with connect(a_path) as sock:
        sock.sendall(put + keep_alive(key))  # two requests in one write
        assert read_answer(sock).startswith(b"HTTP/1.1 200")
        assert read_answer(sock).startswith(b"HTTP/1.1 200")
        sock.sendall(keep_alive(key))
        assert read_answer(sock).startswith(b"HTTP/1.1 200")
