"""Checkpoints: what one costs after a turn, what an undo costs, what they take on disk; and the
mechanisms we could have used instead, measured the same way.

  python bench/checkpoints.py               # our store, as make bench's section 7 shows it
  python bench/checkpoints.py --candidates  # GNU tar --listed-incremental, git with its own GIT_DIR, ours

Row 7's checkpoint figure is taken side by side with the design before change tracking (a full
walk when a turn starts and when it ends, a whole manifest each time: `as_before`), turns
alternating on two copies of the same tree in the same run.

Two workspaces: the demo's (`npm install express dotenv`, made once in a temp dir; without npm a
node_modules-like tree of the same size stands in, and the table says so) and a 10,000-file one,
each with a project `.git` at its root, as an agent's project may have. Every run is real I/O
on this machine's disk; the figures are medians of a few runs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from agent.checkpoints.recorder import Recorder  # noqa: E402
from agent.checkpoints.walk import walk  # noqa: E402
from bench.measure import percentile, timed  # noqa: E402

GIT = ["git", "-c", "user.email=bench@example.com", "-c", "user.name=bench", "-c", "gc.auto=0"]
QUIET = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "check": True}


def node_tree(root: Path, files: int, per_package: int = 20) -> None:
    """A node_modules-like tree: packages of small files, each with its own content."""
    for p in range(files // per_package):
        lib = root / "node_modules" / f"pkg-{p}" / "lib"
        lib.mkdir(parents=True, exist_ok=True)
        for f in range(per_package):
            (lib / f"f{f}.js").write_text(f'module.exports = "pkg-{p}/{f}";\n')


def project_git(root: Path) -> None:
    """The project's own repository at the workspace root, with one commit."""
    (root / "index.js").write_text("console.log('hi');\n")
    subprocess.run(["git", "init", "-q"], cwd=root, **QUIET)
    subprocess.run([*GIT, "add", "index.js"], cwd=root, **QUIET)
    subprocess.run([*GIT, "commit", "-qm", "one"], cwd=root, **QUIET)


def demo_workspace(root: Path) -> str:
    """The demo's npm install in `root` (once); a same-size synthetic tree when npm is missing."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "package.json").write_text('{"name": "demo-api", "version": "1.0.0", "private": true}\n')
    if shutil.which("npm"):
        done = subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error", "express", "dotenv"],
            cwd=root,
            capture_output=True,
            timeout=300,
        )
        if done.returncode == 0:
            return "demo (npm install express dotenv)"
    node_tree(root, 620)
    return "demo-sized synthetic tree (npm unavailable)"


def change(root: Path, count: int, round_: int) -> None:
    """What a small turn does: rewrite `count` files of the tree."""
    files = sorted((root / "node_modules").rglob("*.js"))[:count]
    for path in files:
        path.write_text(f"// turn {round_}\n" + path.read_text())


def workspace_bytes(root: Path) -> int:
    return sum(e.get("size", 0) for e in walk(root).files.values())


def allocated(root: Path, skip: str | None = None) -> int:
    """Bytes on disk (du), which is what small files really cost: a block each."""
    total = 0
    for base, dirs, names in os.walk(root):
        if skip and skip in dirs:
            dirs.remove(skip)
        total += sum(os.lstat(os.path.join(base, n)).st_blocks * 512 for n in names)
    return total


# --- our store, through the service's Recorder -----------------------------------------------------


def as_before(recorder: Recorder) -> Recorder:
    """The design before change tracking, for the side-by-side: a full walk when a turn starts
    and when it ends (the tracker never starts), a whole manifest every checkpoint."""
    recorder.tracker.restart = lambda: False  # type: ignore[method-assign]
    recorder.store.full_every = 1
    return recorder


def one_turn(recorder: Recorder, root: Path, i: int, times: dict[str, list[float]]) -> None:
    clock = time.perf_counter()
    start = recorder.begin("bench")
    times["begin"].append(time.perf_counter() - clock)
    change(root, 10, i)
    used, clock = time.process_time(), time.perf_counter()
    recorder.end(start, "bench", f"turn {i}", "answered")
    times["end"].append(time.perf_counter() - clock)
    times["cpu"].append(time.process_time() - used)  # what other work on the machine does not inflate


def ours(tmp: Path, files: int, samples: int, demo: bool) -> dict:
    big, old = tmp / "big", tmp / "before"
    node_tree(big, files)
    project_git(big)
    shutil.copytree(big, old, symlinks=True)  # the same tree, for the design before (alternating)
    recorder = Recorder(big, keep=20, max_bytes=2**30, quota_bytes=2**30)
    before = as_before(Recorder(old, keep=20, max_bytes=2**30, quota_bytes=2**30))
    for r in (recorder, before):
        r.end(r.begin("bench"), "bench", "setup", "answered")
    times: dict[str, list[float]] = {"begin": [], "end": [], "cpu": []}
    times_before: dict[str, list[float]] = {"begin": [], "end": [], "cpu": []}
    for i in range(samples):
        one_turn(recorder, big, i, times)
        one_turn(before, old, i, times_before)
    begin, end, cpu = times["begin"], times["end"], times["cpu"]
    tracked, fell_back, unchanged = (
        recorder.tracker.tracked,
        recorder.tracker.full_walks,
        recorder.unchanged,
    )
    # The floor on this machine, now: find(1) doing the same lstat walk in C.
    find = [
        "find",
        str(big),
        "-path",
        str(big / ".sessions"),
        "-prune",
        "-o",
        "-printf",
        "%s %T@ %C@ %i %m\n",
    ]
    floor = [timed(lambda: subprocess.run(find, **QUIET)) for _ in range(5)]
    stored, store_du = recorder.store.bytes(), allocated(recorder.store.root)
    sizes = [p.stat().st_size for p in recorder.store.manifests.glob("*.json")]
    undo = [timed(lambda: recorder.undo(1, "bench", {"bench"})) for _ in range(min(3, samples))]
    ws_bytes, ws_du = workspace_bytes(big), allocated(big, skip=".sessions")
    result = {
        "files": len([e for e in walk(big).files.values() if e["type"] == "file"]),
        "checkpoint_after_10_changed_p50_ms": 1000 * percentile(end, 50),
        "checkpoint_after_10_changed_p95_ms": 1000 * percentile(end, 95),
        "checkpoint_after_10_changed_cpu_p50_ms": 1000 * percentile(cpu, 50),
        "walk_at_turn_start_p50_ms": 1000 * percentile(begin, 50),
        "before_checkpoint_after_10_changed_p50_ms": 1000 * percentile(times_before["end"], 50),
        "before_checkpoint_after_10_changed_cpu_p50_ms": 1000 * percentile(times_before["cpu"], 50),
        "before_walk_at_turn_start_p50_ms": 1000 * percentile(times_before["begin"], 50),
        "tracked_walks": tracked,
        "full_walk_fallbacks": fell_back,
        "walks_with_nothing_changed": unchanged,
        "find_walk_p50_ms": 1000 * percentile(floor, 50),
        "undo_one_turn_p50_ms": 1000 * percentile(undo, 50),
        "store_bytes": stored,
        "workspace_bytes": ws_bytes,
        "store_share_of_workspace": stored / ws_bytes,
        "store_share_of_workspace_on_disk": store_du / ws_du,
        "manifest_bytes_each": percentile(sizes, 50),
        "manifest_bytes_whole": max(sizes),
        "checkpoints_kept": len(recorder.store.seqs()),
    }
    first = tmp / "demo"
    label = demo_workspace(first) if demo else (node_tree(first, 620) or "demo-sized synthetic tree")
    shutil.move(str(first / "node_modules"), tmp / "installed")  # the turn below installs it
    recorder = Recorder(first, keep=20, max_bytes=2**30, quota_bytes=2**30)
    start = recorder.begin("bench")
    shutil.move(str(tmp / "installed"), first / "node_modules")  # npm install, done by the turn
    result["demo"] = label
    result["demo_files"] = len(walk(first).files)
    result["first_checkpoint_after_npm_install_s"] = timed(
        lambda: recorder.end(start, "bench", "npm", "answered")
    )
    result["demo_store_share_of_workspace"] = recorder.store.bytes() / workspace_bytes(first)
    result["demo_store_share_of_workspace_on_disk"] = allocated(recorder.store.root) / allocated(
        first, skip=".sessions"
    )
    result["load_avg_1m"] = os.getloadavg()[0]
    return result


def rows(c: dict, row: Callable[..., str]) -> list[str]:
    """Section 7 of make bench's table (`row` is bench.py's formatter)."""
    end, first, undo = (
        c["checkpoint_after_10_changed_p50_ms"],
        c["first_checkpoint_after_npm_install_s"],
        c["undo_one_turn_p50_ms"],
    )
    old = c["before_checkpoint_after_10_changed_p50_ms"]
    return [
        row(
            7,
            f"checkpoint after a turn that changed 10 of {c['files']:,} files",
            f"p50 **{end:.1f} ms**, p95 {c['checkpoint_after_10_changed_p95_ms']:.1f} ms, CPU p50 "
            f"{c['checkpoint_after_10_changed_cpu_p50_ms']:.1f} ms; **{old / end:.0f} x** faster than full "
            f"walks + whole manifests on the same tree, alternating ({old:.0f} ms) "
            f"(the turn's start: {c['walk_at_turn_start_p50_ms']:.1f} ms vs "
            f"{c['before_walk_at_turn_start_p50_ms']:.0f} ms; inotify: {c['tracked_walks']} tracked, "
            f"{c['walks_with_nothing_changed']} with nothing changed, {c['full_walk_fallbacks']} full walks; "
            f"find(1)'s lstat walk of the tree: {c['find_walk_p50_ms']:.0f} ms; load {c['load_avg_1m']:.1f})",
            "<= 50 ms",
            end <= 50,
        ),
        row(
            7,
            f"first checkpoint after npm install ({c['demo']}, {c['demo_files']} entries)",
            f"**{first:.2f} s**",
            "<= 1 s",
            first <= 1,
        ),
        row(7, f"undo of one turn, {c['files']:,} files", f"p50 **{undo:.0f} ms**", "<= 0.5 s", undo <= 500),
        row(
            7,
            f"checkpoint storage, {c['checkpoints_kept']} kept, vs the workspace",
            f"{c['store_share_of_workspace_on_disk']:.2f} x on disk ({c['store_share_of_workspace']:.1f} x "
            f"its apparent size; a manifest is {c['manifest_bytes_each'] / 2**10:.1f} KiB, a whole one "
            f"{c['manifest_bytes_whole'] / 2**20:.1f} MiB); demo: "
            f"{c['demo_store_share_of_workspace_on_disk']:.2f} x on disk",
        ),
    ]


# --- the candidates, side by side ------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", action="store_true", help="compare tar, git and our store")
    parser.add_argument("--files", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-checkpoints-") as tmp:
        if args.candidates:
            from bench.checkpoint_candidates import candidates, render_candidates  # it imports this module

            print(render_candidates(candidates(Path(tmp), args.files)))
        else:
            for key, value in ours(Path(tmp), args.files, 9, demo=True).items():
                print(f"{key}: {value:.3f}" if isinstance(value, float) else f"{key}: {value}")


if __name__ == "__main__":
    main()
