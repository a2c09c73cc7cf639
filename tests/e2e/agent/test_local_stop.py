"""A compute's stop, from the inside: sandbox_init ending the agent (SIGTERM, then SIGKILL after
the grace), its relay between the host's socket and the agent, and the agent's own graceful stop."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from agentcore_local.sandbox import sandbox_init
from agentcore_local.sandbox.launcher import SANDBOX_INIT
from tests.support.agent_process import AgentProcess


def start_init(tmp_path: Path, agent_code: str) -> subprocess.Popen[str]:
    """sandbox_init (as compute.py runs it, outside any sandbox) with `agent_code` as the agent."""
    init = subprocess.Popen(
        [
            sys.executable,
            "-I",
            str(SANDBOX_INIT),
            "--cwd",
            str(tmp_path),
            "--",
            sys.executable,
            "-c",
            agent_code,
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=tmp_path,  # the agent starts in sandbox_init's working directory
    )
    assert json.loads(init.stdout.readline()) == {"event": "init"}
    send(init, {"op": "start", "env": None, "grace": 10, "listen_fd": None, "agent_port": 1, "forwards": []})
    return init


def send(init: subprocess.Popen[str], message: dict) -> None:
    assert init.stdin
    init.stdin.write(json.dumps(message) + "\n")
    init.stdin.flush()


def stopped_event(init: subprocess.Popen[str], grace: float) -> dict:
    send(init, {"op": "stop", "grace": grace})
    assert init.stdout
    for line in init.stdout:
        event = json.loads(line)
        if event.get("event") == "stopped":
            init.wait(10)
            return event
    raise AssertionError("sandbox_init ended without reporting the stop")


# The agent says it is up (a file), so the stop cannot reach it before its handler is installed.
POLITE = "import signal, sys, time, pathlib\nsignal.signal(signal.SIGTERM, lambda *a: sys.exit(3))\n"
STUBBORN = "import signal, time, pathlib\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
UP_AND_WAIT = "pathlib.Path('up').write_text('1')\ntime.sleep(60)\n"


def wait_for(path: Path, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.01)


def test_a_stop_reports_the_exit_code_of_an_agent_that_ends_on_sigterm(tmp_path: Path) -> None:
    init = start_init(tmp_path, POLITE + UP_AND_WAIT)
    wait_for(tmp_path / "up")
    assert stopped_event(init, grace=10) == {"event": "stopped", "code": 3}


def test_an_agent_that_ignores_sigterm_is_killed_once_the_grace_has_passed(tmp_path: Path) -> None:
    init = start_init(tmp_path, STUBBORN + UP_AND_WAIT)
    wait_for(tmp_path / "up")
    started = time.monotonic()
    assert stopped_event(init, grace=0.5) == {"event": "stopped", "code": -signal.SIGKILL}
    assert time.monotonic() - started >= 0.5  # the grace was given


def test_the_relay_carries_both_ways_and_answers_a_request_whose_sender_shut_its_side(tmp_path: Path) -> None:
    agent = socket.create_server(("127.0.0.1", 0))
    received: list[bytes] = []

    def answer() -> None:  # reads the request to its end (EOF), then answers and closes
        conn, _ = agent.accept()
        with conn:
            while chunk := conn.recv(65536):
                received.append(chunk)
            conn.sendall(b"answer:" + b"".join(received)[-4:])

    threading.Thread(target=answer, daemon=True).start()
    path = str(tmp_path / "agent.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)  # the host's, as compute.py makes it
    listener.bind(path)
    listener.listen(8)
    sandbox_init.serve_sockets(listener.detach(), agent.getsockname()[1], [])
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(10)
        client.connect(path)
        client.sendall(b"x" * 200_000 + b"tail")
        client.shutdown(socket.SHUT_WR)  # half-close, as an HTTP client may
        reply = b""
        while chunk := client.recv(65536):
            reply += chunk
    assert reply == b"answer:tail"
    assert sum(map(len, received)) == 200_004


def test_a_sigterm_lets_the_answer_in_flight_finish_then_the_agent_ends(tmp_path: Path) -> None:
    agent = AgentProcess(tmp_path / "workspace")
    (tmp_path / "workspace").mkdir()
    agent.start()
    try:
        answers: list[httpx.Response] = []
        turn = threading.Thread(target=lambda: answers.append(agent.invoke("slow")))  # sleep 2 in a shell
        turn.start()
        deadline = time.monotonic() + 20
        while agent.http.get("/ping").json()["status"] != "HealthyBusy":
            assert time.monotonic() < deadline, "the turn never started"
            time.sleep(0.01)
        assert agent.proc is not None
        agent.proc.send_signal(signal.SIGTERM)
        assert agent.proc.wait(30) == -signal.SIGTERM  # ends by the signal it caught, as uvicorn does
        turn.join(10)
        assert answers and answers[0].status_code == 200
        assert "slept" in answers[0].json()["response"]  # the shell call ran to its end
    finally:
        agent.stop()
