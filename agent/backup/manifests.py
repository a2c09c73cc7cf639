"""A checkpoint's manifest as S3 keeps it: whole, or a delta on the one pushed before it.

A turn changes a few files of a tree of thousands, so a push sends what differs from the
manifest it pushed before (`base` + `delta`, as in the local store: docs/CONTRACT.md §6), and
a restore rebuilds each manifest from its bases. `locations` travel the same way: a delta
names where the objects it adds (and any uploaded anew) sit; the rest are its bases'.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from agent.backup.files import Store
from agent.checkpoints.store import FULL_EVERY


def _shas(entries: Iterable[dict]) -> set[str]:
    return {e["sha256"] for e in entries if e.get("type") == "file"}


def s3_form(
    store: Store,
    state: dict[str, Any],
    manifest: dict,
    needs: set[str],
    uploaded: set[str],
    now: float,
    refresh_s: float,
) -> dict[str, Any]:
    """The body to PUT: a delta on the manifest pushed before when that one is still here to
    compare with, the chain is short, and its whole manifest is younger than `refresh_s` (the
    bucket's expiry rule must never take a base in use); else whole. Updates state["chain"]."""
    known, chain = state["objects"], state.get("chain") or {}
    meta = {k: v for k, v in manifest.items() if k not in ("files", "base", "depth")}
    base = store.read(chain["seq"]) if chain.get("seq") == state["pushed_seq"] else None
    fresh = now - chain.get("whole_time", 0) < refresh_s
    if base is not None and fresh and chain.get("depth", FULL_EVERY) + 1 < FULL_EVERY:
        before, after = base["files"], manifest["files"]
        delta = {p: e for p, e in after.items() if (old := before.get(p)) is not e and old != e}
        delta.update((p, None) for p in before if p not in after)
        if 2 * len(delta) < len(after):
            # Located here: what the base's files do not hold (the delta's, and the conversation's:
            # a base's locations never cover a history it did not carry), and what moved anew.
            wanted = (needs - _shas(before.values())) | (needs & uploaded)
            state["chain"] = {**chain, "seq": manifest["seq"], "depth": chain["depth"] + 1}
            locations = {s: known[s][1] for s in wanted if s in known and known[s][1]}
            return {**meta, "base": base["seq"], "delta": delta, "locations": locations}
    state["chain"] = {"seq": manifest["seq"], "depth": 0, "whole_time": now}
    locations = {s: known[s][1] for s in needs if known[s][1]}
    return {**meta, "files": manifest["files"], "locations": locations}


def make_whole(
    fetch: Callable[[int], dict | None], got: dict[Any, dict], seq: int, hops: int = 2 * FULL_EVERY
) -> bool:
    """Make the S3 manifest `got[seq]` whole in place: a delta gets its base's files and
    locations (`fetch`-ed by seq, on the same branch, if not in `got` yet), its own on top.
    False if a base is missing."""
    m = got.get(seq)
    if m is None:
        m = got[seq] = fetch(seq) or {}
    if "delta" not in m:
        return isinstance(m.get("files"), dict)
    base, delta = m.get("base"), m.get("delta")
    if not (isinstance(base, int) and base < seq and isinstance(delta, dict) and hops > 0):
        return False
    if not make_whole(fetch, got, base, hops - 1):
        return False
    earlier = got[base]
    m["files"] = dict(earlier["files"])
    for path, entry in delta.items():
        if entry is None:
            m["files"].pop(path, None)
        else:
            m["files"][path] = entry
    m["locations"] = {**earlier.get("locations", {}), **m.get("locations", {})}
    del m["delta"]
    return True
