"""What the backup remembers on disk of what it pushed: `.sessions/.checkpoints/backup.json` (the
last checkpoint pushed, when, the last error) and `backup-objects.jsonl` beside it (which objects
went where), kept in memory between pushes while neither file changes."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from agent.backup import files
from agent.backup.files import Store

STATE_FILE = "backup.json"
OBJECTS_FILE = "backup-objects.jsonl"  # what is uploaded and where: [sha, [time, location]] a line


class PushedState:
    """One bucket's pushed state, per workspace store."""

    def __init__(self, bucket: str) -> None:
        self.bucket = bucket
        self.memo: dict[Path, tuple[tuple, dict[str, Any]]] = {}  # store root -> (file stamps, state)

    def load(self, store: Store, pre: str) -> dict[str, Any]:
        """backup.json, with `objects` ({sha: [uploaded, location]}) from backup-objects.jsonl.
        Kept in memory between pushes while neither file changed on disk: one is as big as
        the tree, and parsing it each turn would cost what the turn changed many times over."""
        stamp = _stamps(store)
        memo = self.memo.get(store.root)
        if memo is not None and memo[0] == stamp:
            state = dict(memo[1])
            state["objects"] = dict(memo[1]["objects"])
            return state
        state = files.read_json(store.root / STATE_FILE)
        if not state or state.get("bucket") != self.bucket or state.get("prefix") != pre:
            # another bucket (or none yet): nothing is known to be there
            state = {"bucket": self.bucket, "prefix": pre, "pushed_seq": 0, "objects": {}, "history": {}}
            state["_logged"], state["_lines"] = {}, -1  # -1: rewrite the log at the next save
            return state
        if "objects" not in state:  # inline in backup.json before the log existed
            state["objects"], state["_lines"] = files.read_log(store.root / OBJECTS_FILE)
        state["_logged"] = dict(state["objects"])
        return state

    def save(self, store: Store, state: dict) -> None:
        """The log gets the objects that changed since the last save (all of them when it has
        grown to twice what it maps), then backup.json the rest."""
        objects, logged = state["objects"], state["_logged"]
        lines = state.get("_lines", -1)
        new = {sha: v for sha, v in objects.items() if logged.get(sha) != v}
        rewrite = lines < 0 or lines + len(new) > 2 * len(objects) + 1000
        if new or rewrite:
            files.append_log(store.root / OBJECTS_FILE, objects if rewrite else new, rewrite)
            state["_lines"] = len(objects) if rewrite else lines + len(new)
            logged.update(new)
        small = {k: v for k, v in state.items() if k not in ("objects", "_logged")}
        files.write_json(store.root / STATE_FILE, small)
        self.memo[store.root] = (_stamps(store), {**state, "objects": dict(objects), "_logged": logged})


def _stamps(store: Store) -> tuple:
    out = []
    for name in (STATE_FILE, OBJECTS_FILE):
        try:
            st = os.stat(store.root / name)
            out.append((st.st_ino, st.st_mtime_ns, st.st_size))
        except FileNotFoundError:
            out.append(None)
    return tuple(out)
