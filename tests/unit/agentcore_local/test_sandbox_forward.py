"""sandbox_init's forward (inside a sandbox, 127.0.0.1:PORT -> the host's unix socket) outlives a
flood: out of descriptors it waits and goes on, past its cap it answers 503 at once. Run in a
process of its own with a small RLIMIT_NOFILE, carrying to an echo server on a unix socket."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentcore_local.sandbox.sandbox_init import FORWARD_CONNECTIONS

FORWARD = """
import resource, sys
from agentcore_local.sandbox import sandbox_init
resource.setrlimit(resource.RLIMIT_NOFILE, (int(sys.argv[3]), resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
sandbox_init.serve_sockets(None, 0, [[int(sys.argv[1]), sys.argv[2]]])
print("listening", flush=True)
sys.stdin.read()  # until the test closes our stdin
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def echo_server(path: Path) -> socket.socket:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(512)

    def echo(conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            while data := conn.recv(65536):
                conn.sendall(data)

    def serve() -> None:
        with contextlib.suppress(OSError):
            while True:
                threading.Thread(target=echo, args=(server.accept()[0],), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return server


@pytest.fixture
def forward(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[int]:
    """A forward on a free port with `request.param` descriptors at most; its port."""
    port, path = free_port(), tmp_path / "host.sock"
    server = echo_server(path)
    process = subprocess.Popen(
        [sys.executable, "-c", FORWARD, str(port), str(path), str(request.param)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None and process.stdout.readline() == "listening\n"
        yield port
    finally:
        process.kill()
        process.wait()
        server.close()


def echoed(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"ping")
        return sock.recv(4)


@pytest.mark.parametrize("forward", [64], indirect=True)
def test_the_forward_outlives_running_out_of_descriptors(forward: int) -> None:
    # Two descriptors each: the forward runs out of them well before 60 (the rest wait in its backlog).
    held = [socket.create_connection(("127.0.0.1", forward), timeout=10) for _ in range(60)]
    for sock in held:
        sock.close()
    assert echoed(forward) == b"ping"  # descriptors free again: still carried


@pytest.mark.parametrize("forward", [4096], indirect=True)
def test_past_its_cap_the_forward_answers_503_at_once(forward: int) -> None:
    held = [socket.create_connection(("127.0.0.1", forward), timeout=10) for _ in range(FORWARD_CONNECTIONS)]
    try:
        for sock in held[:3]:  # carried: echoed
            sock.sendall(b"ping")
            assert sock.recv(4) == b"ping"
        answer = socket.create_connection(("127.0.0.1", forward), timeout=10).recv(4096)
        assert answer.startswith(b"HTTP/1.1 503 SlowDown") and b"sandbox's forward" in answer
    finally:
        for sock in held:
            sock.close()
    assert echoed(forward) == b"ping"
