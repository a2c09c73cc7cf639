"""Helpers for the reliability suites: a local runtime on the reliability plan, kill -9 of a session's
compute, and the conversation history read straight from the session's storage on the host."""

from __future__ import annotations

import itertools
import os
import signal
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from tests.support.agent_process import history, message_files
from tests.support.local_runtime import LocalRuntime, local_runtime

RELIABILITY_PLAN = Path(__file__).resolve().parent / "plans" / "reliability.json"


def new_id(prefix: str = "rel") -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


@contextmanager
def reliability_runtime(tmp: Path) -> Iterator[LocalRuntime]:
    """agentcore_local whose default runtime plays tests/support/plans/reliability.json."""
    env = {"MODEL_PROVIDER": "scripted", "SCRIPTED_PLAN": str(RELIABILITY_PLAN)}
    with local_runtime(tmp, agent_env=env) as runtime:
        yield runtime


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        tree.setdefault(ppid, []).append(int(entry))
    return tree


def descendants(pid: int) -> list[int]:
    """`pid` and every process under it."""
    tree, found, todo = _children(), [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(tree.get(current, []))
    return found


def running(pid: int, word: str) -> bool:
    """Whether a process under `pid` has `word` in its command line (a tool's shell command)."""
    for child in descendants(pid):
        with suppress(OSError):
            if word in Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode(
                errors="replace"
            ):
                return True
    return False


def kill_compute(pid: int) -> list[int]:
    """SIGKILL a compute's whole process tree at once, as when its microVM vanishes. Returns the pids."""
    doomed = descendants(pid)
    for victim in doomed:
        with suppress(ProcessLookupError):
            os.kill(victim, signal.SIGKILL)
    return doomed


def compute_pid(local: LocalRuntime, session: str) -> int | None:
    return next((s["pid"] for s in local.sessions() if s["runtimeSessionId"] == session), None)


def assert_history_consistent(storage: Path, conversation_id: str) -> list[dict[str, Any]]:
    """Every message file parses, ids run 0..n-1, no turn is left open, and the roles alternate."""
    files = message_files(storage, conversation_id)
    assert [int(p.stem.split("_")[1]) for p in files] == list(range(len(files)))
    messages = history(storage, conversation_id)
    roles = [m["role"] for m in messages]
    assert all(a != b for a, b in itertools.pairwise(roles)), f"roles do not alternate: {roles}"
    assert roles[-2:] == ["user", "assistant"], f"the history ends mid-turn: {roles[-4:]}"
    return messages


def prompts(messages: list[dict[str, Any]]) -> list[str]:
    """The user's prompts, in order (the last text block of each prompt message; the first is a snapshot)."""
    out = []
    for m in messages:
        texts = [b["text"] for b in m["content"] if "text" in b]
        if m["role"] == "user" and texts:
            out.append(texts[-1])
    return out
