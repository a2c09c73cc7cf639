"""Section 9: a session that exhausts its compute does not slow the others. Session B's exec, B's
turn and a control-plane call, idle and while session A runs a fork bomb (held at pids.max), a
memory hog (over and over: each one ends A's compute, the next call starts another) and a CPU
burn on every core, side by side in one run; and what a compute's cgroup costs per start.

A serve of its own with small limits (64 pids, 256 MiB, 1 CPU), so every exhaustion stays
far inside what the machine has."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from agentcore_local.sandbox.cgroup_tree import open_tree
from agentcore_local.session_limits import MIB, SessionLimits
from bench.measure import distribution_ms, percentile, timed
from bench.runtime import LocalRuntime, new_session

FLAGS = ("--session-pids", "64", "--session-memory", "256M", "--session-cpus", "1")

# Inside A: forks until the kernel refuses (at most 400, harmless where no limit binds), reports,
# then holds its children until the test drops `release` in the workspace (at most 60 s).
BOMB = """
import json, os, sys, time
kids, refused = [], 0
while len(kids) < 400 and refused < 20:
    try:
        pid = os.fork()
    except OSError:
        refused += 1
        continue
    if pid == 0:
        deadline = time.monotonic() + 60
        while not os.path.exists("release") and time.monotonic() < deadline:
            time.sleep(0.05)
        os._exit(0)
    kids.append(pid)
print(json.dumps({"forked": len(kids), "refused": refused}), flush=True)
for pid in kids:
    os.waitpid(pid, 0)
"""
HOG = f"{sys.executable} -c 'b = [bytearray(16 << 20) for _ in range(64)]'"  # 1 GiB asked, 256 MiB allowed
BURN = "for i in $(seq $(nproc)); do timeout 120 sh -c 'while [ ! -e release ]; do :; done' & done; wait"


def _hog_forever(rt: LocalRuntime, session: str, stop: threading.Event) -> None:
    client = rt.client()
    while not stop.is_set():
        for command in (HOG, "true"):  # the hog ends A's compute; the next call is told, then restarts
            # The lost compute's stream error, then the call that says why: expected, each time.
            with contextlib.suppress(Exception):
                rt.command(client, session, command, 60)


def _held(rt: LocalRuntime, session: str, script: str, ready: Callable[[dict], bool]) -> Callable[[], None]:
    """Start `script` in A until it holds (`ready` on A's /_local/sessions limits); returns its release."""
    done = threading.Thread(target=rt.command, args=(rt.client(), session, script, 300), daemon=True)
    done.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not ready(rt.session_row(session).get("limits") or {}):
        time.sleep(0.05)

    def release() -> None:
        (rt.storage(session) / "release").touch()
        done.join(120)
        (rt.storage(session) / "release").unlink(missing_ok=True)

    return release


def under_exhaustion(sandbox: str = "bwrap", samples: int = 15) -> dict:
    rt = LocalRuntime(Path(tempfile.mkdtemp(prefix="bench-limits-")), sandbox, pool=0, extra=FLAGS)
    try:
        client, control = rt.client(), rt.control()
        a, b = new_session("limits-a"), new_session("limits-b")
        for session in (a, b):
            rt.command(client, session, "true")
        if not rt.session_row(a).get("limits"):
            return {"skipped": "no cgroups here (serve is not root, or no pids/memory/cpu controller)"}

        def measure() -> dict:
            execs = [timed(lambda: rt.command(client, b, "true")) for _ in range(samples)]
            turns = [timed(lambda: rt.invoke(client, b, "hello")) for _ in range(samples)]
            calls = [timed(control.list_agent_runtimes) for _ in range(samples)]
            return {
                "exec": distribution_ms(execs),
                "turn": distribution_ms(turns),
                "control": distribution_ms(calls),
            }

        (rt.storage(a) / "bomb.py").write_text(BOMB)
        measure()  # a warm-up, not kept: the first calls pay for connections and caches
        results: dict = {"idle": measure()}
        release = _held(rt, a, f"{sys.executable} bomb.py", lambda limits: limits.get("forksRefused"))
        try:
            results["fork_bomb"] = {**measure(), "a_pids": rt.session_row(a)["limits"]["pids"]}
        finally:
            release()
        release = _held(rt, a, BURN, lambda limits: (limits.get("cpuPeriods") or 0) >= 10)
        try:
            before = rt.session_row(a)["limits"]
            results["cpu_burn"] = measure()
            after = rt.session_row(a)["limits"]
            periods = max(1, after["cpuPeriods"] - before["cpuPeriods"])
            results["cpu_burn"]["a_throttled_share"] = (
                after["cpuThrottled"] - before["cpuThrottled"]
            ) / periods
        finally:
            release()
        stop = threading.Event()
        hogging = threading.Thread(target=_hog_forever, args=(rt, a, stop), daemon=True)
        hogging.start()
        try:
            before = rt.session_row(a)["limitsHit"]
            results["memory_hog"] = measure()
            results["memory_hog"]["a_ooms"] = rt.session_row(a)["limitsHit"] - before
        finally:
            stop.set()
            hogging.join(120)
        idle = results["idle"]
        for load in ("fork_bomb", "cpu_burn", "memory_hog"):
            results[load]["ratios"] = {k: results[load][k]["p50_ms"] / idle[k]["p50_ms"] for k in idle}
        results["b_limits_hit"] = rt.session_row(b)["limitsHit"]
        return {**results, "per_start": cgroup_cost()}
    finally:
        rt.close()


def cgroup_cost(repeats: int = 50) -> dict:
    """Per compute start: the cgroup made with its limits, the shell that joins it, its removal (µs)."""
    tree, why = open_tree()
    if tree is None:
        return {"skipped": why}
    limits, made, removed, joined, bare = SessionLimits(64, 256 * MIB, 1.0), [], [], [], []
    try:
        for n in range(repeats):
            started = time.perf_counter()
            cgroup = tree.create(f"bench-{n}", limits)
            made.append(time.perf_counter() - started)
            argv = cgroup.wrap(["true"])
            joined.append(timed(lambda argv=argv: subprocess.run(argv, check=True)))
            bare.append(timed(lambda: subprocess.run(["true"], check=True)))
            started = time.perf_counter()
            cgroup.remove()
            removed.append(time.perf_counter() - started)
    finally:
        tree.close()

    def us(values: list[float]) -> float:
        return 1e6 * percentile(values, 50)

    return {
        "version": tree.version,
        "create_us": us(made),
        "remove_us": us(removed),
        "join_shell_us": us(joined) - us(bare),
        "repeats": repeats,
    }


def rows(r: dict, row: Callable[..., str]) -> list[str]:
    """Section 9 of make bench's table (`row` is bench.py's formatter)."""
    if "skipped" in r:
        return [row(9, "session limits", f"skipped: {r['skipped']}")]
    idle, lines = r["idle"], []
    loads = (
        ("fork_bomb", f"A's fork bomb (held at {r['fork_bomb']['a_pids']} pids)"),
        ("memory_hog", f"A's memory hog ({r['memory_hog']['a_ooms']} OOMs meanwhile, each a new compute)"),
        (
            "cpu_burn",
            f"A's CPU burn on every core (throttled {r['cpu_burn']['a_throttled_share']:.0%} of periods)",
        ),
    )
    for key, label in loads:
        ratios = r[key]["ratios"]
        figure = ", ".join(
            f"{name} {idle[name]['p50_ms']:.1f} vs {r[key][name]['p50_ms']:.1f} ms = **{ratios[name]:.2f} x**"
            for name in ("exec", "turn", "control")
        )
        lines.append(
            row(
                9,
                f"B's exec, B's turn, control plane p50: idle vs {label}",
                figure,
                "<= 2 x",
                max(ratios.values()) <= 2,
            )
        )
    cost = r["per_start"]
    if "skipped" not in cost:
        lines.append(
            row(
                9,
                f"a compute's cgroup (v{cost['version']}), per start",
                f"make + limits {cost['create_us']:.0f} µs, join shell {cost['join_shell_us']:.0f} µs, "
                f"removal {cost['remove_us']:.0f} µs",
            )
        )
    return lines
