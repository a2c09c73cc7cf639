"""`make bench`: the service's speed, measured side by side in one run on this machine.

Every figure is a ratio or a distribution taken in the same run, so it means the
same thing on a laptop and in CI. Prints a table and writes bench/results.json.
The model is the offline scripted model (a test double): what is measured is
everything around the LLM: server, agent loop, tools, storage, agentcore_local, stop/resume.

  1 cold start          bench/service.py   coding_agent.py start vs a bare import of its packages
  2 turn overhead       bench/runtime.py   direct vs through agentcore_local (httpx, boto3)
  3 history growth      bench/service.py   warm turn and cold restore at 10/100/1,000 messages
  4 stop -> resume      bench/runtime.py   vs the seed's stop + sleep(15) + invoke, with and without
                                           the warm pool; a new session's first answer; the pool's cost
  5 scale               bench/load.py      1/5/10/20 concurrent sessions under bwrap
  6 workspace size      bench/load.py      stop/resume with 10,000 files, every hash checked
  7 checkpoints         bench/checkpoints.py  after a 10-file turn in 10,000 files, after npm install, undo
  8 connections         bench/connections.py  B and the control plane while A floods its forward
  9 session limits      bench/limits.py    B and the control plane while A forks, hogs memory, burns
                                           every core; a compute's cgroup per start
  10 disk               bench/disk.py      a new session's first exec with a filesystem per session vs without
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import checkpoints, connections, disk, limits, load, runtime, service  # noqa: E402
from bench.measure import machine  # noqa: E402


@dataclass(frozen=True)
class Sizes:
    """How much of each measure a run takes: the full run, or --quick for a smoke test."""

    cold_runs: int = 9  # the floor itself varies most between runs: more starts, a steadier ratio
    turns: int = 200
    history: tuple[int, ...] = (10, 100, 1000)
    samples: int = 30
    resume_repeats: int = 3
    run_seed_way: bool = True  # really stop, sleep 15 s, invoke (else computed from the parts)
    scale: tuple[int, ...] = (1, 5, 10, 20)
    scale_turns: int = 3
    files: int = 10_000
    npm_demo: bool = True  # the demo's real npm install for section 7 (else a same-size tree)
    flood_attempts: int = 5000  # connections session A holds open in section 8
    limit_samples: int = 15  # section 9: each of B's calls, per load


QUICK = Sizes(
    cold_runs=1,
    turns=20,
    history=(10, 40),
    samples=5,
    resume_repeats=1,
    run_seed_way=False,
    scale=(1, 2),
    scale_turns=1,
    files=200,
    npm_demo=False,
    flood_attempts=200,
    limit_samples=3,
)


def run(sizes: Sizes, sandbox: str) -> dict:
    started = time.perf_counter()
    results: dict = {"machine": machine(), "sizes": sizes.__dict__}
    results["cold_start"] = service.cold_start(sizes.cold_runs)
    results["history_growth"] = service.history_growth(
        Path(tempfile.mkdtemp(prefix="bench-hist-")), sizes.history, sizes.samples
    )
    local = runtime.LocalRuntime(Path(tempfile.mkdtemp(prefix="bench-local-")), sandbox)
    try:
        results["turn_overhead"] = runtime.turn_overhead(local, sizes.turns)
        unpooled = runtime.LocalRuntime(Path(tempfile.mkdtemp(prefix="bench-nopool-")), sandbox, pool=0)
        try:
            seed = runtime.seed_way(unpooled) if sizes.run_seed_way else None
            results["stop_resume_no_pool"] = runtime.stop_resume(unpooled, sizes.resume_repeats, seed)
            results["first_answer_no_pool"] = runtime.new_session_first_answer(unpooled, sizes.resume_repeats)
        finally:
            unpooled.close()
        seed = results["stop_resume_no_pool"]["seed_s"]
        results["stop_resume"] = runtime.stop_resume(local, sizes.resume_repeats, seed)
        results["first_answer"] = runtime.new_session_first_answer(local, sizes.resume_repeats)
        results["scale"] = load.scale(local, sizes.scale, sizes.scale_turns, deadline_s=120)
        results["workspace_size"] = load.workspace_size(local, sizes.files, sizes.samples)
        results["connections"] = connections.under_flood(local, sizes.flood_attempts, sizes.samples)
    finally:
        local.close()
    results["limits"] = limits.under_exhaustion(sandbox, sizes.limit_samples)
    results["disk"] = disk.start_cost(sizes.resume_repeats)
    results["checkpoints"] = checkpoints.ours(
        Path(tempfile.mkdtemp(prefix="bench-checkpoints-")), sizes.files, sizes.samples, sizes.npm_demo
    )
    results["machine"]["load_avg_1m_at_end"] = os.getloadavg()[0]
    results["machine"]["sandbox"] = sandbox
    results["bench_s"] = time.perf_counter() - started
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run in well under a minute")
    parser.add_argument("--sandbox", default="bwrap", help="agentcore_local's sandbox (default: bwrap)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results.json")
    args = parser.parse_args()
    results = run(QUICK if args.quick else Sizes(), args.sandbox)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(render(results))
    print(f"\nwritten to {args.out} in {results['bench_s']:.0f} s")


def row(section: int, measure: str, figure: str, target: str = "", ok: bool | None = None) -> str:
    verdict = "" if ok is None else ("met" if ok else "**not met**")
    return f"| {section} | {measure} | {figure} | {target} | {verdict} |"


def render(r: dict) -> str:
    """The results as the markdown table docs/performance.md shows."""
    m, cold, hist, turn = r["machine"], r["cold_start"], r["history_growth"], r["turn_overhead"]
    res, scale, ws = r["stop_resume"], r["scale"]["by_sessions"], r["workspace_size"]
    lines = [
        f"machine: {m['machine']}, {m['cpus']} cpus, {m['memory_gib']} GiB, Python {m['python']}, "
        f"sandbox {m['sandbox']}, load {m['load_avg_1m_at_start']:.2f} -> {m['load_avg_1m_at_end']:.2f}",
        "",
        "| # | measure | figure | target | |",
        "|---|---|---|---|---|",
        row(
            1,
            "cold start to Healthy /ping (floor: strands.Agent + BedrockAgentCoreApp imports)",
            f"{cold['start_s']:.2f} s = **{cold['ratio']:.2f} x** the floor "
            f"({cold['import_floor_s']:.2f} s); "
            + (
                f"the seed's imports {cold['seed_imports_s']:.2f} s = {cold['seed_ratio']:.2f} x"
                if cold.get("seed_imports_s")
                else "the seed's imports: strands_tools not installed"
            ),
            "<= 1.15 x, below the seed's",
            cold["ratio"] <= 1.15 and cold["start_s"] < (cold.get("seed_imports_s") or float("inf")),
        ),
    ]
    ways = {
        "direct": "direct (httpx to the agent in its sandbox)",
        "proxy_httpx": "through agentcore_local (httpx)",
        "proxy_boto3": "through agentcore_local (boto3 invoke_agent_runtime)",
    }
    for way, label in ways.items():
        t = turn[way]
        figure = f"p50 {t['p50_ms']:.1f} ms, p95 {t['p95_ms']:.1f} ms"
        if way == "direct":
            lines.append(row(2, f"turn, {label}, {t['n']} turns", figure, "p50 <= 15 ms", t["p50_ms"] <= 15))
        else:
            lines.append(row(2, f"turn, {label}, {t['n']} turns", figure))
    added = turn["proxy_adds_p50_ms"]
    lines.append(
        row(
            2,
            "added by agentcore_local (p50)",
            f"**{added:.1f} ms** (boto3's client adds {turn['boto3_client_adds_p50_ms']:.1f} ms more)",
            "<= 5 ms",
            added <= 5,
        )
    )
    for size, h in hist["by_messages"].items():
        memory = "-".join(map(str, h["messages_in_memory"]))
        lines.append(
            row(
                3,
                f"history {size} stored msgs ({memory} in memory)",
                f"warm p50 {h['warm_turn_p50_ms']:.1f} ms (agent CPU {h.get('warm_turn_cpu_ms', 0):.1f} ms), "
                f"cold restore turn {h['cold_restore_turn_ms']:.1f} ms",
            )
        )
    sizes, ratio, restore = (
        list(hist["by_messages"]),
        hist["warm_ratio_largest_vs_smallest"],
        hist["cold_restore_largest_ms"],
    )
    lines += [
        row(
            3,
            f"warm turn, {sizes[-1]} vs {sizes[0]} stored msgs",
            f"**{ratio:.2f} x** (agent CPU {hist.get('warm_cpu_ratio_largest_vs_smallest', 0):.2f} x)",
            "<= 1.15 x",
            ratio <= 1.15,
        ),
        row(3, f"cold restore turn, {sizes[-1]} msgs", f"**{restore:.0f} ms**", "<= 300 ms", restore <= 300),
    ]
    for count, b in hist["breakdown"]["by_messages_in_memory"].items():
        lines.append(
            row(
                3,
                f"where a warm turn goes, {count} msgs in memory (cProfile)",
                f"{b['turn_ms_profiled']:.1f} "
                f"ms: deepcopy {b['deepcopy_ms']:.1f} ms, tracer JSON {b['tracer_messages_ms']:.1f} ms",
            )
        )
    lines += [
        row(
            4,
            "StopRuntimeSession to the first resumed answer",
            f"{res['ours_s']:.2f} s (stop "
            f"{res['stop_s']:.2f} s + answer {res['first_answer_after_stop_s']:.2f} s)",
        ),
        row(4, f"the seed's stop + sleep(15) + invoke ({res['seed_how']})", f"{res['seed_s']:.2f} s"),
        row(
            4,
            "stop -> resume speed-up, warm pool (serve --pool 1)",
            f"**{res['speedup']:.1f} x**",
            ">= 50 x",
            res["speedup"] >= 50,
        ),
    ]
    if nopool := r.get("stop_resume_no_pool"):
        lines.append(
            row(
                4,
                "stop -> resume speed-up, no pool (--pool 0)",
                f"**{nopool['speedup']:.1f} x** ({nopool['ours_s']:.2f} s: stop {nopool['stop_s']:.2f} s "
                f"+ answer {nopool['first_answer_after_stop_s']:.2f} s)",
                ">= 20 x",
                nopool["speedup"] >= 20,
            )
        )
    if first := r.get("first_answer"):
        fresh = r.get("first_answer_no_pool") or {}
        lines.append(
            row(
                4,
                "a new session's first answer (InvokeAgentRuntime), warm pool; a fresh sandbox",
                f"**{first['first_answer_s']:.3f} s** (served by a member: {first['served_by_member']}); "
                f"fresh {fresh.get('first_answer_s', 0):.2f} s",
                "<= 0.15 s from a warm pool",
                first["first_answer_s"] <= 0.15 and first["served_by_member"],
            )
        )
        lines.append(
            row(
                4,
                "the pool's cost: one idle member; one refill",
                f"RSS {first['idle_member_rss_mib'] or 0:.0f} MiB; CPU {first['refill_cpu_s'] or 0:.2f} s",
            )
        )
    largest = max(scale, key=int)
    for n, sc in scale.items():
        warm, first = sc["warm_turn"] or {}, sc["cold_first_turn"] or {}
        figure = (
            f"{sc['turns_per_s']:.1f} turns/s, warm p95 {warm.get('p95_ms', 0):.0f} ms, cold first turn p95 "
            f"{first.get('p95_ms', 0) / 1000:.1f} s, peak RSS/session "
            f"{sc['peak_rss_mib_per_session_median'] or 0:.0f} MiB, **{sc['errors']} errors**"
        )
        if n == largest:
            lines.append(row(5, f"{n} concurrent sessions", figure, "0 errors", sc["errors"] == 0))
        else:
            lines.append(row(5, f"{n} concurrent sessions", figure))
    intact = ws["files"] - ws["files_changed_or_missing"]
    lines += [
        row(
            6,
            f"stop/resume with {ws['files']:,} files",
            f"stop {ws['stop_s']:.2f} s, resume "
            f"{ws['resume_s']:.2f} s = {ws['resume_ratio_vs_empty']:.2f} x an empty one's; warm turn p50 "
            f"{ws['warm_turn_p50_ms']:.1f} ms (empty: {ws['empty_workspace_warm_turn_p50_ms']:.1f} ms)",
        ),
        row(
            6,
            "file hashes after resume",
            f"**{intact:,} of {ws['files']:,} intact**",
            "all",
            ws["files_changed_or_missing"] == 0,
        ),
    ]
    flood = connections.rows(r["connections"], row) if "connections" in r else []
    bounded = limits.rows(r["limits"], row) if "limits" in r else []
    volume = disk.rows(r["disk"], row) if "disk" in r else []
    return "\n".join(lines + checkpoints.rows(r["checkpoints"], row) + flood + bounded + volume)


if __name__ == "__main__":
    main()
