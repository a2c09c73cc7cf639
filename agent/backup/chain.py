"""The backup's history in S3: branches of checkpoints, each chained to the point it started from.

A storage numbers its checkpoints from 1 (a reset one starts again), so S3 keeps each storage's
pushes on a branch of their own, `branches/<branch>/<seq>.json`, and a push never rewrites a key
another storage wrote. `branches/<branch>.json` (the branch record, rewritten by each push on
it) names its parent, the point it started from, and lists its checkpoints in short; a restored
storage's parent is the checkpoint it restored, any other's the backup's latest when it first
pushed. `latest.json` names the newest branch's head, so the history a listing walks, head to
root through the parents, always contains every earlier latest. Before branches, manifests sat
at `manifests/<seq>.json` with `latest.json` `{"seq", "seqs"}`: read here as branch None.

Everything read back is bounded and checked (branch names, seqs, sizes, loops, hops), as a
session may have written any of it.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from agent.backup.files import DamagedBackup, json_bytes

BRANCH = re.compile(r"[0-9a-z]{4,40}")
MAX_LISTED = 500  # checkpoints one branch record lists; a fuller branch goes on in a new branch
MAX_BRANCHES = 200  # parents a listing follows: MAX_LISTED x this checkpoints of history at most
MAX_KEPT = 1000  # checkpoints latest.json names for a restore (the store keeps CHECKPOINT_KEEP)
MAX_SEQ = 10**9
PROMPT_CHARS = 120


@dataclass(frozen=True)
class Point:
    """One checkpoint in the backup: its branch (None: the keys before branches) and seq."""

    branch: str | None
    seq: int

    @property
    def id(self) -> str:
        return f"{self.seq:06d}" if self.branch is None else f"{self.branch}.{self.seq:06d}"

    def to_json(self) -> list:
        return [self.branch, self.seq]


def new_branch(now: float | None = None) -> str:
    """A fresh branch name; its hex time first, so names sort by when their storage first pushed."""
    return f"{int(now if now is not None else time.time()):x}{secrets.token_hex(3)}"


def manifest_key(point: Point) -> str:
    if point.branch is None:
        return f"manifests/{point.seq:06d}.json"
    return f"branches/{point.branch}/{point.seq:06d}.json"


def record_key(branch: str) -> str:
    return f"branches/{branch}.json"


def summary(manifest: dict) -> dict[str, Any]:
    """What a listing shows of one checkpoint (the branch record keeps this, not the manifest)."""
    prompt = manifest.get("prompt")
    return {
        "seq": manifest["seq"],
        "time": manifest.get("time"),
        "kind": manifest.get("kind"),
        "prompt": prompt.splitlines()[0][:PROMPT_CHARS] if isinstance(prompt, str) and prompt else None,
        "messages": manifest.get("messages"),
        "conversation_id": manifest.get("conversation_id"),
    }


def latest_body(head: Point, kept: Iterable[Point], now: float) -> dict[str, Any]:
    return {
        "format": 2,
        "branch": head.branch,
        "seq": head.seq,
        "kept": [p.to_json() for p in kept][-MAX_KEPT:],
        "time": now,
    }


def record_body(branch: str, parent: Point | None, entries: list[dict], now: float) -> dict[str, Any]:
    return {
        "branch": branch,
        "parent": parent.to_json() if parent else None,
        "checkpoints": entries,
        "time": now,
    }


# --- read back -------------------------------------------------------------------------------------


def _seq(value: Any) -> int:
    if type(value) is not int or not 0 < value <= MAX_SEQ:
        raise DamagedBackup(f"the backup names the checkpoint {value!r}, not a seq from 1 to {MAX_SEQ}")
    return value


def _branch(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not BRANCH.fullmatch(value):
        raise DamagedBackup(f"the backup names the branch {str(value)[:60]!r}, not [0-9a-z]{{4,40}}")
    return value


def point_of(value: Any) -> Point:
    if not isinstance(value, list) or len(value) != 2:
        raise DamagedBackup("the backup names a checkpoint that is not [branch, seq]")
    return Point(_branch(value[0]), _seq(value[1]))


def read_latest(data: dict) -> tuple[Point, list[Point]]:
    """latest.json as (head, the checkpoints kept with it, oldest first), either format."""
    if data.get("format") == 2:
        head = Point(_branch(data.get("branch")), _seq(data.get("seq")))
        kept = data.get("kept", [])
        if not isinstance(kept, list) or len(kept) > MAX_KEPT:
            raise DamagedBackup(f"latest.json keeps more than {MAX_KEPT} checkpoints, or not as a list")
        return head, [p for p in map(point_of, kept) if p != head]
    head = Point(None, _seq(data.get("seq")))
    seqs = data.get("seqs", [])
    if not isinstance(seqs, list) or len(seqs) > MAX_KEPT:
        raise DamagedBackup(f"latest.json keeps more than {MAX_KEPT} checkpoints, or not as a list")
    return head, [Point(None, s) for s in seqs if type(s) is int and 0 < s < head.seq]


def read_record(data: dict | None, branch: str) -> tuple[Point | None, list[dict]]:
    """A branch record as (its parent, its checkpoints in short); refused if it is not that branch's."""
    if data is None:
        raise DamagedBackup(f"the record of branch {branch} is gone (expired, or never written)")
    if data.get("branch") != branch:
        raise DamagedBackup(f"the record of branch {branch} names another branch")
    parent = None if data.get("parent") is None else point_of(data["parent"])
    entries = data.get("checkpoints")
    if not isinstance(entries, list) or len(entries) > MAX_LISTED:
        raise DamagedBackup(f"branch {branch} lists more than {MAX_LISTED} checkpoints, or not as a list")
    out = []
    for entry in entries:
        if not isinstance(entry, dict):
            raise DamagedBackup(f"branch {branch} lists a checkpoint that is not an object")
        prompt = entry.get("prompt")
        out.append(
            {
                "seq": _seq(entry.get("seq")),
                "time": entry["time"] if isinstance(entry.get("time"), int | float) else None,
                "kind": entry["kind"][:20] if isinstance(entry.get("kind"), str) else None,
                "prompt": prompt[:PROMPT_CHARS] if isinstance(prompt, str) else None,
                "messages": entry["messages"] if type(entry.get("messages")) is int else None,
                "conversation_id": c if isinstance(c := entry.get("conversation_id"), str) else None,
            }
        )
    return parent, out


def history(fetch: Callable[[str], dict | None], latest: dict) -> tuple[list[dict], str | None]:
    """Every checkpoint the backup's history holds, newest first, each with `id` and `branch`, from
    latest.json's head back through each branch's parent; and why the walk stopped early (a record
    expired or damaged, a loop, too many hops), or None. A parent's checkpoints after the point its
    child started from are on no chain the head leads to, and are left out."""
    head, kept = read_latest(latest)
    if head.branch is None:  # before branches: the seqs latest.json keeps, nothing more is known
        points = sorted({*kept, head}, key=lambda p: p.seq, reverse=True)
        return [{"id": p.id, "branch": None, "seq": p.seq} for p in points], None
    found: list[dict] = []
    seen: set[str] = set()
    branch, upto = head.branch, head.seq
    stopped = None
    for _ in range(MAX_BRANCHES):
        if branch in seen:
            stopped = f"branch {branch} is its own ancestor (a loop): the walk stops there"
            break
        seen.add(branch)
        try:
            parent, entries = read_record(fetch(record_key(branch)), branch)
        except DamagedBackup as error:
            stopped = str(error)
            break
        for entry in sorted(entries, key=lambda e: e["seq"], reverse=True):
            if entry["seq"] <= upto:
                found.append({"id": Point(branch, entry["seq"]).id, "branch": branch, **entry})
        if parent is None:
            return found, None
        if parent.branch is None:
            found.append({"id": parent.id, "branch": None, "seq": parent.seq})
            return found, None
        branch, upto = parent.branch, parent.seq
    else:
        stopped = f"the history goes back more than {MAX_BRANCHES} branches: older ones are not listed"
    return found, stopped


def resolve(entries: list[dict], wanted: str) -> Point:
    """The checkpoint a user named: `BRANCH.SEQ` as listed, or a bare seq (the newest with it)."""
    wanted = wanted.strip()
    branch, _, seq_text = wanted.rpartition(".")
    if not seq_text.isdigit() or len(seq_text) > 9 or (branch and not BRANCH.fullmatch(branch)):
        raise ValueError(f"{wanted!r} is not a checkpoint id; list them with: client.py checkpoints --backup")
    seq = int(seq_text)
    for entry in entries:  # newest first
        if entry["seq"] == seq and (not branch or entry["branch"] == branch):
            return Point(entry["branch"], seq)
    raise ValueError(
        f"checkpoint {wanted} is not in the backup's history; list them with: client.py checkpoints --backup"
    )


# --- the push side ---------------------------------------------------------------------------------


def ensure_branch(state: dict, seqs: list[int], latest: Callable[[], dict | None], now: float) -> None:
    """Give this storage a branch to push on (in state: branch, parent, listed, origins). A restored
    storage's branch starts from the checkpoint it restored; any other's from the backup's latest
    (`latest()`, None if there is none); a full one goes on in a new branch from its last checkpoint.
    `origins` says on which branch each local seq not on this branch was pushed."""
    branch = state.get("branch")
    listed = state.get("listed")
    if branch and isinstance(listed, list) and len(listed) < MAX_LISTED:
        return
    origins = state.setdefault("origins", {})
    if branch:
        parent: Point | None = Point(branch, state["pushed_seq"])
        origins.update({str(s): branch for s in seqs if s <= state["pushed_seq"] and str(s) not in origins})
    elif state.get("restored"):
        parent = point_of(state["restored"])
    else:
        try:
            found = latest()
            parent = read_latest(found)[0] if found else None
        except DamagedBackup:  # nothing a restore could use: this branch starts a history of its own
            parent = None
    state.update(branch=new_branch(now), parent=parent.to_json() if parent else None, listed=[], chain=None)


def put_head(put: Callable[[str, bytes], None], state: dict, seqs: list[int], now: float) -> None:
    """After a push's manifests: its branch record, then latest.json naming its head."""
    branch, origins = state["branch"], state.get("origins", {})
    parent = point_of(state["parent"]) if state.get("parent") else None
    listed = list({e["seq"]: e for e in state["listed"]}.values())  # a rerun after a kill lists once
    state["listed"] = listed
    put(record_key(branch), json_bytes(record_body(branch, parent, listed, now)))
    kept = [Point(origins.get(str(s), branch), s) for s in seqs if s <= state["pushed_seq"]]
    put("latest.json", json_bytes(latest_body(Point(branch, state["pushed_seq"]), kept, now)))
