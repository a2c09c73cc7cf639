"""The mechanisms considered for checkpoints, measured on the same trees (`python bench/checkpoints.py
--candidates`): GNU tar's --listed-incremental, git with a separate GIT_DIR, and our store."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from agent.checkpoints.store import CheckpointStore
from agent.checkpoints.undo import restore
from agent.checkpoints.walk import walk
from bench.checkpoints import (
    GIT,
    QUIET,
    allocated,
    change,
    demo_workspace,
    node_tree,
    project_git,
)
from bench.measure import timed


def tar_way(ws: Path, state: Path) -> dict:
    snar = state / "tar.snar"
    first = timed(
        lambda: subprocess.run(
            ["tar", "-c", "-g", str(snar), "-f", str(state / "0.tar"), "-C", str(ws), "."], **QUIET
        )
    )
    change(ws, 10, 1)
    then = timed(
        lambda: subprocess.run(
            ["tar", "-c", "-g", str(snar), "-f", str(state / "1.tar"), "-C", str(ws), "."], **QUIET
        )
    )
    # Back to state 0: tar's incremental extraction rewrites the whole level-0 dump.
    undo = timed(
        lambda: subprocess.run(
            ["tar", "-x", "-g", "/dev/null", "-f", str(state / "0.tar"), "-C", str(ws)], **QUIET
        )
    )
    return {
        "first_s": first,
        "after_10_ms": 1000 * then,
        "undo_ms": 1000 * undo,
        "bytes": allocated(state),
        "project_git": True,
    }


def git_way(ws: Path, state: Path) -> dict:
    env = {**os.environ, "GIT_DIR": str(state / "git"), "GIT_WORK_TREE": str(ws)}

    def commit(message: str) -> None:
        subprocess.run([*GIT, "add", "-A"], env=env, **QUIET)
        subprocess.run([*GIT, "commit", "-qm", message, "--no-verify"], env=env, **QUIET)

    subprocess.run(["git", "init", "-q"], env=env, **QUIET)
    first = timed(lambda: commit("0"))
    change(ws, 10, 1)
    then = timed(lambda: commit("1"))
    undo = timed(lambda: subprocess.run([*GIT, "reset", "-q", "--hard", "HEAD~1"], env=env, **QUIET))
    listed = subprocess.run(["git", "ls-files"], env=env, capture_output=True, text=True, check=True).stdout
    has_git = any(line.startswith(".git/") for line in listed.splitlines())
    return {
        "first_s": first,
        "after_10_ms": 1000 * then,
        "undo_ms": 1000 * undo,
        "bytes": allocated(state / "git"),
        "project_git": has_git,
    }


def store_way(ws: Path, state: Path) -> dict:
    store = CheckpointStore(ws)
    first = timed(lambda: store.checkpoint(walk(ws), kind="turn"))
    target = store.latest()
    change(ws, 10, 1)
    then = timed(lambda: store.checkpoint(walk(ws, before=store.last_walk), kind="turn"))
    undo = timed(lambda: restore(ws, store, target["files"], walk(ws, before=store.last_walk).files))  # type: ignore[index]
    return {
        "first_s": first,
        "after_10_ms": 1000 * then,
        "undo_ms": 1000 * undo,
        "bytes": allocated(store.root),
        "project_git": True,
    }


def candidates(tmp: Path, files: int) -> list[dict]:
    made = tmp / "made"
    label = demo_workspace(made / "demo")
    project_git(made / "demo")
    node_tree(made / "big", files)
    project_git(made / "big")
    rows = []
    for name, source in ((label, made / "demo"), (f"{files:,} files", made / "big")):
        ws_bytes = allocated(source)
        for way, measure in (
            ("GNU tar --listed-incremental", tar_way),
            ("git, separate GIT_DIR", git_way),
            ("content-addressed store (ours)", store_way),
        ):
            ws, state = tmp / "ws", tmp / "state"
            shutil.rmtree(ws, ignore_errors=True)
            shutil.rmtree(state, ignore_errors=True)
            shutil.copytree(source, ws, symlinks=True)
            state.mkdir()
            if way.startswith("content"):
                state = ws / ".sessions"
            rows.append({"workspace": name, "way": way, "workspace_bytes": ws_bytes, **measure(ws, state)})
    return rows


def render_candidates(rows: list[dict]) -> str:
    lines = [
        "| workspace | mechanism | first checkpoint | after 10 changed files | undo one turn "
        "| storage vs workspace (on disk) | project .git kept |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['workspace']} | {r['way']} | {r['first_s']:.2f} s | {r['after_10_ms']:.0f} ms "
            f"| {r['undo_ms']:.0f} ms | {r['bytes'] / r['workspace_bytes']:.2f} x "
            f"| {'yes' if r['project_git'] else '**no**'} |"
        )
    return "\n".join(lines)
