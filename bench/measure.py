"""Small measuring tools shared by the bench sections: timing, percentiles, the machine, /proc."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from pathlib import Path


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def timed(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def distribution_ms(seconds: list[float]) -> dict:
    """p50/p95 in milliseconds of a list of durations in seconds."""
    return {
        "n": len(seconds),
        "p50_ms": 1000 * percentile(seconds, 50),
        "p95_ms": 1000 * percentile(seconds, 95),
    }


def machine() -> dict:
    """What the figures were taken on, and how busy it was (other work on the machine skews them)."""
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "load_avg_1m_at_start": os.getloadavg()[0],
    }


# --- process trees, from /proc (Linux) ------------------------------------------------------


def children_by_parent() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])  # the name in (...) may hold spaces
        children.setdefault(ppid, []).append(int(entry.name))
    return children


def process_tree(root: int, children: dict[int, list[int]] | None = None) -> list[int]:
    """`root` and every descendant (a session's bwrap, sandbox_init, the agent, its commands)."""
    children = children_by_parent() if children is None else children
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_rss_mib(root: int, children: dict[int, list[int]] | None = None) -> float:
    """Resident memory of a process tree (shared pages count once per process: an upper bound)."""
    return sum(rss_kib(pid) for pid in process_tree(root, children)) / 1024
