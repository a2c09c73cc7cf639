"""Sections 5 and 6, through agentcore_local: many sessions at once, and a 10,000-file workspace
across a stop (bench/runtime.py holds the runtime they run on)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
from botocore.exceptions import ClientError

from bench.measure import children_by_parent, distribution_ms, percentile, timed, tree_rss_mib
from bench.runtime import LocalRuntime, new_session


def scale(rt: LocalRuntime, sizes: tuple[int, ...], turns: int, deadline_s: float) -> dict:
    """N sessions at once, each: a cold first turn, then `turns` turns appending to writes.txt."""
    rows = {n: _sessions_at_once(rt, n, turns, deadline_s) for n in sizes}
    return {"by_sessions": rows, "turns_per_session": turns + 1, "target": "0 errors at 20 sessions"}


def _sessions_at_once(rt: LocalRuntime, n: int, turns: int, deadline_s: float) -> dict:
    sessions = [new_session(f"scale{n}-{i}") for i in range(n)]
    client = rt.client(pool=n)
    peak: dict[str, float] = dict.fromkeys(sessions, 0.0)
    sampling = threading.Event()
    start_by = time.monotonic()

    def sample_once() -> None:  # RSS of each session's process tree, from /proc
        pids, children = rt.compute_pids(), children_by_parent()
        for s in peak:
            if pid := pids.get(s):
                peak[s] = max(peak[s], tree_rss_mib(pid, children))

    def sample() -> None:
        while not sampling.wait(0.25):
            # With 20 agents starting on 2 cores, /_local/sessions can be slow: skip that sample.
            with contextlib.suppress(httpx.HTTPError):
                sample_once()

    def one_session(session: str) -> tuple[float | None, list[float], list[str]]:
        errors, warm, cold = [], [], None
        try:
            cold = timed(lambda: rt.invoke(client, session, "write a line"))
            for _ in range(turns):
                if time.monotonic() > start_by + deadline_s:
                    errors.append("over the time bound")
                    break
                started = time.perf_counter()
                answer = rt.invoke(client, session, "write a line")
                warm.append(time.perf_counter() - started)
                if "wrote line" not in answer.get("response", ""):
                    errors.append(f"unexpected answer: {answer}")
        except Exception as error:  # counted, and the bench goes on
            errors.append(f"{type(error).__name__}: {error}")
        return cold, warm, errors

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    with ThreadPoolExecutor(n) as pool:
        results = list(pool.map(one_session, sessions))
    wall = time.perf_counter() - started
    sampling.set()
    sampler.join()
    sample_once()  # after the last turn, before the stop: the high-water mark of a short run
    with ThreadPoolExecutor(n) as pool:
        stop_errors = list(pool.map(lambda s: _stop_quietly(rt, client, s), sessions))
    colds = [c for c, _, _ in results if c is not None]
    warm = [w for _, ws, _ in results for w in ws]
    errors = [e for _, _, es in results for e in es] + [e for e in stop_errors if e]
    peaks = [p for p in peak.values() if p]
    return {
        "sessions": n,
        "turns_done": len(warm) + len(colds),
        "wall_s": wall,
        "turns_per_s": (len(warm) + len(colds)) / wall,
        "cold_first_turn": distribution_ms(colds) if colds else None,
        "warm_turn": distribution_ms(warm) if warm else None,
        "peak_rss_mib_per_session_median": statistics.median(peaks) if peaks else None,
        "peak_rss_mib_per_session_max": max(peaks) if peaks else None,
        "errors": len(errors),
        "error_samples": errors[:3],
    }


def _stop_quietly(rt: LocalRuntime, client, session: str) -> str | None:
    try:
        rt.stop(client, session)
    except ClientError as error:
        return f"stop: {error}"
    return None


# A node_modules-like tree: 500 packages x 20 small files, each with its own content.
MAKE_TREE = (
    "for p in $(seq 1 {packages}); do d=node_modules/pkg-$p/lib; mkdir -p $d; "
    'for f in $(seq 1 {per_package}); do echo "module.exports = \\"pkg-$p/$f\\";" > $d/f$f.js; done; done; '
    "find node_modules -type f | wc -l"
)
HASH_TREE = "find node_modules -type f -print0 | sort -z | xargs -0 sha256sum"


def workspace_size(rt: LocalRuntime, files: int, warm_turns: int) -> dict:
    """Stop and resume a session holding `files` small files: how long, and does every file survive."""
    session, client = new_session("bigws"), rt.client()
    per_package = 20
    small_stop, small_resume = _stop_resume_once(rt, client, session)  # the same session, still empty
    make_tree = MAKE_TREE.format(packages=files // per_package, per_package=per_package)
    code, out = rt.command(client, session, make_tree)
    assert code == 0 and int(out.strip()) == files, f"could not build the tree: {code} {out[-300:]}"
    _, listing = rt.command(client, session, HASH_TREE)
    before = dict(line.split("  ", 1)[::-1] for line in listing.splitlines())
    small = new_session("smallws")
    warm_small = _warm_turns(rt, client, small, warm_turns)
    rt.stop(client, small)
    warm_big = _warm_turns(rt, client, session, warm_turns)
    big_stop, big_resume = _stop_resume_once(rt, client, session)
    _, listing = rt.command(client, session, HASH_TREE)
    after = dict(line.split("  ", 1)[::-1] for line in listing.splitlines())
    changed = sum(1 for path, digest in before.items() if after.get(path) != digest)
    rt.stop(client, session)
    return {
        "files": len(before),
        "files_after": len(after),
        "files_changed_or_missing": changed,
        "manifest_sha256": hashlib.sha256(json.dumps(sorted(before.items())).encode()).hexdigest()[:16],
        "stop_s": big_stop,
        "resume_s": big_resume,
        "empty_workspace_stop_s": small_stop,
        "empty_workspace_resume_s": small_resume,
        "resume_ratio_vs_empty": big_resume / small_resume,
        "warm_turn_p50_ms": 1000 * percentile(warm_big, 50),
        "empty_workspace_warm_turn_p50_ms": 1000 * percentile(warm_small, 50),
        "target": "every file's hash survives",
    }


def _stop_resume_once(rt: LocalRuntime, client, session: str) -> tuple[float, float]:
    rt.invoke(client, session, "hi")  # compute running, with the workspace as it is now
    stop = timed(lambda: rt.stop(client, session))
    resume = timed(lambda: rt.resume(client, session, "hi"))
    return stop, resume


def _warm_turns(rt: LocalRuntime, client, session: str, turns: int) -> list[float]:
    rt.invoke(client, session, "hi")
    return [timed(lambda: rt.invoke(client, session, "hi")) for _ in range(turns)]
