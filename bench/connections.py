"""Section 8: a session that floods the agent-facing services does not slow the others. Session
B's exec and a control-plane call, idle and while session A holds 5,000 connection attempts to
its forward and its socket (half-sent requests, refused ones reopened at once), side by side."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from agentcore_local.sandbox.bwrap import RUN_INSIDE
from agentcore_local.services.listener import IN_SANDBOX_PORT
from bench.measure import distribution_ms, timed
from bench.runtime import LocalRuntime, new_session

# Inside A: ATTEMPTS connections, half to the forward and half to the socket, each a half-sent
# request; a refused one (answered, or closed) is reopened, until the bench drops `release`.
FLOOD = f"""
import json, os, selectors, socket, sys
attempts = int(sys.argv[1])
def tcp():
    return socket.create_connection(("127.0.0.1", {IN_SANDBOX_PORT}), timeout=10)
def unix():
    s = socket.socket(socket.AF_UNIX)
    s.setblocking(False)  # a full backlog answers EAGAIN at once: tried again below
    s.connect("{RUN_INSIDE}/forward-{IN_SANDBOX_PORT}.sock")
    return s
watch, made = selectors.DefaultSelector(), 0
def attempt(make):
    global made
    made += 1
    try:
        s = make()
        s.sendall(b"PUT /agentcore-local-backups/v1/x HTTP/1.1\\r\\nHost: 127.0.0.1")
        watch.register(s, selectors.EVENT_READ, make)
    except OSError:
        pass
for i in range(attempts):
    attempt(tcp if i % 2 else unix)
while not os.path.exists("release"):
    for key, _ in watch.select(0.1):
        watch.unregister(key.fileobj)
        key.fileobj.close()
        attempt(key.data)
    for i in range(attempts - len(watch.get_map())):
        attempt(tcp if i % 2 else unix)
    with open("progress.tmp", "w") as f:
        json.dump({{"made": made, "held": len(watch.get_map())}}, f)
    os.replace("progress.tmp", "progress")
"""


def _storage(rt: LocalRuntime, session: str) -> Path:
    return rt.storage(session)


def _held(progress: Path) -> int:
    try:
        return json.loads(progress.read_text())["held"]
    except (OSError, ValueError):
        return 0


def under_flood(rt: LocalRuntime, attempts: int = 5000, samples: int = 15) -> dict:
    client, control = rt.client(), rt.control()
    a, b = new_session("flood-a"), new_session("flood-b")
    for session in (a, b):
        rt.command(client, session, "true")

    def measure() -> dict:
        execs = [timed(lambda: rt.command(client, b, "true")) for _ in range(samples)]
        calls = [timed(control.list_agent_runtimes) for _ in range(samples)]
        return {"exec": distribution_ms(execs), "control": distribution_ms(calls)}

    idle = measure()
    (_storage(rt, a) / "flood.py").write_text(FLOOD)
    flooding = threading.Thread(
        target=rt.command, args=(rt.client(), a, f"{sys.executable} flood.py {attempts}", 600), daemon=True
    )
    flooding.start()
    progress = _storage(rt, a) / "progress"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and _held(progress) < attempts:
        time.sleep(
            0.1
        )  # until A holds its 5,000 attempts (its cap's worth admitted, the rest refused or queued)
    try:
        flood = measure()
        row, held = rt.session_row(a), json.loads(progress.read_text())
    finally:
        (_storage(rt, a) / "release").touch()
        flooding.join(60)
    for session in (a, b):
        rt.stop(client, session)
    return {
        "attempts": attempts,
        "a_held": held["held"],
        "a_attempts_made": held["made"],
        "idle": idle,
        "flood": flood,
        "a_limits_hit": row.get("limitsHit"),
        "a_open_connections": row.get("openConnections"),
        "exec_ratio": flood["exec"]["p50_ms"] / idle["exec"]["p50_ms"],
        "control_ratio": flood["control"]["p50_ms"] / idle["control"]["p50_ms"],
    }


def rows(c: dict, row: Callable[..., str]) -> list[str]:
    """Section 8 of make bench's table (`row` is bench.py's formatter)."""
    idle, flood = c["idle"], c["flood"]
    held = f"A holding {c['a_held']:,} attempts ({c['a_open_connections']} admitted, "
    held += f"{c['a_limits_hit']:,} refused)"
    return [
        row(
            8,
            f"session B's exec p50, idle vs {held}",
            f"{idle['exec']['p50_ms']:.1f} ms vs {flood['exec']['p50_ms']:.1f} ms = "
            f"**{c['exec_ratio']:.2f} x**",
            "<= 2 x",
            c["exec_ratio"] <= 2,
        ),
        row(
            8,
            "control plane (ListAgentRuntimes) p50, idle vs the same flood",
            f"{idle['control']['p50_ms']:.1f} ms vs {flood['control']['p50_ms']:.1f} ms = "
            f"**{c['control_ratio']:.2f} x**",
            "<= 2 x",
            c["control_ratio"] <= 2,
        ),
    ]
