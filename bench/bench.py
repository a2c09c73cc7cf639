"""`make bench`: the service's speed, measured side by side in one run on this machine.

Every figure is a ratio or a distribution taken in the same run, so it means the
same thing on a laptop and in CI. Prints a table and writes bench/results.json.
The model is the offline scripted model (a test double): what is measured is
everything around the LLM — server, agent loop, tools, storage, stop/resume.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.agent_process import AgentProcess  # noqa: E402  (the same harness the tests use)

# What coding_agent.py imports before it can serve: the floor a cold start cannot beat.
FLOOR_IMPORTS = (
    "import bedrock_agentcore.runtime, starlette.responses, strands, "
    "strands.session.file_session_manager, strands.vended_tools"
)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def timed(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def import_floor() -> float:
    """Spawn to "imports done" of a bare interpreter (not to its exit: tearing down modules is slow)."""
    started = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, "-c", FLOOR_IMPORTS + "; print('ready', flush=True)"], stdout=subprocess.PIPE
    )
    assert child.stdout is not None and child.stdout.readline().strip() == b"ready"
    elapsed = time.perf_counter() - started
    child.wait()
    return elapsed


def cold_start(runs: int) -> dict:
    """Process start to the first Healthy /ping, against a bare interpreter importing the same packages."""
    starts, floors = [], []
    for _ in range(runs):
        agent = AgentProcess(Path(tempfile.mkdtemp(prefix="bench-cold-")))
        starts.append(agent.start())
        agent.stop()
        floors.append(import_floor())
    start, floor = statistics.median(starts), statistics.median(floors)
    return {"start_s": start, "import_floor_s": floor, "ratio": start / floor, "target": "<= 1.2"}


def turn_overhead(agent: AgentProcess, turns: int, conversation: str) -> dict:
    """Latency of a no-tool turn with the scripted model, sent straight to the service."""
    agent.invoke("warm up", conversation_id=conversation)
    latencies = [timed(lambda: agent.invoke("hi", conversation_id=conversation)) for _ in range(turns)]
    return {
        "turns": turns,
        "p50_ms": 1000 * percentile(latencies, 50),
        "p95_ms": 1000 * percentile(latencies, 95),
        "target": "p50 <= 15 ms",
    }


def history_growth(workspace: Path, sizes: tuple[int, ...], samples: int) -> dict:
    """Warm turn latency and cold restore (first turn after a restart) with N messages of history."""
    agent = AgentProcess(workspace)
    agent.start()
    for size in sizes:  # each "hi" turn stores two messages: the prompt and the answer
        for _ in range(size // 2):
            agent.invoke("hi", conversation_id=f"h{size}")
    agent.stop()
    rows = {}
    for size in sizes:
        agent.start()
        agent.invoke("warm up the process", conversation_id="other")  # the model and imports, not the restore
        cold = timed(lambda: agent.invoke("hi", conversation_id=f"h{size}"))  # noqa: B023
        warm = [timed(lambda: agent.invoke("hi", conversation_id=f"h{size}")) for _ in range(samples)]  # noqa: B023
        agent.stop()
        rows[size] = {"cold_restore_turn_ms": 1000 * cold, "warm_turn_p50_ms": 1000 * percentile(warm, 50)}
    small, large = rows[sizes[0]], rows[sizes[-1]]
    return {
        "by_messages": rows,
        "warm_ratio_largest_vs_smallest": large["warm_turn_p50_ms"] / small["warm_turn_p50_ms"],
        "targets": "warm 1,000 <= 1.2 x 10; cold restore of 1,000 <= 300 ms",
    }


def machine() -> dict:
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "load_avg_1m": os.getloadavg()[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples, for a smoke run")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results.json")
    args = parser.parse_args()
    runs, turns, samples = (2, 30, 10) if args.quick else (5, 200, 30)

    results: dict = {"machine": machine()}
    results["cold_start"] = cold_start(runs)
    direct = AgentProcess(Path(tempfile.mkdtemp(prefix="bench-turns-")))
    direct.start()
    try:
        results["turn_overhead_direct"] = turn_overhead(direct, turns, "bench")
    finally:
        direct.stop()
    results["history_growth"] = history_growth(
        Path(tempfile.mkdtemp(prefix="bench-hist-")), (10, 100, 1000), samples
    )

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(render(results))
    print(f"\nwritten to {args.out}")


def render(r: dict) -> str:
    m, cold, direct, hist = r["machine"], r["cold_start"], r["turn_overhead_direct"], r["history_growth"]
    lines = [
        f"machine: {m['machine']}, {m['cpus']} cpus, Python {m['python']}, load {m['load_avg_1m']:.2f}",
        "",
        "| measure | figure | target |",
        "|---|---|---|",
        f"| cold start to Healthy /ping | {cold['start_s']:.2f} s = {cold['ratio']:.2f} x import floor "
        f"({cold['import_floor_s']:.2f} s) | <= 1.2 x |",
        f"| turn overhead, direct ({direct['turns']} turns) | p50 {direct['p50_ms']:.1f} ms, "
        f"p95 {direct['p95_ms']:.1f} ms | p50 <= 15 ms |",
    ]
    for size, row in hist["by_messages"].items():
        lines.append(
            f"| history {size} msgs | warm p50 {row['warm_turn_p50_ms']:.1f} ms, "
            f"cold restore turn {row['cold_restore_turn_ms']:.1f} ms | |"
        )
    lines.append(
        f"| warm turn, 1,000 vs 10 msgs | {hist['warm_ratio_largest_vs_smallest']:.2f} x | <= 1.2 x |"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
