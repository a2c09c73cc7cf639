"""A stored manifest is read back from session storage, which a session's own commands can write:
what only a damaged or forged one holds is refused, and the file set aside, never trusted."""

from __future__ import annotations

import logging
import os
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

log = logging.getLogger("agent.checkpoints.store")

# What only a damaged or forged manifest holds; the fields every reader of one relies on.
MAX_MANIFEST_BYTES = 64 * 2**20
_INTS = ("turn", "messages_before", "messages", "parent", "target", "base")
_TEXTS = ("id", "kind", "conversation_id", "prompt", "outcome")


def malformed(manifest: Any, seq: int) -> str | None:
    """Why `manifest` (as stored, whole or a delta) cannot be a checkpoint, or None."""
    if not isinstance(manifest, dict) or manifest.get("seq") != seq:
        return f"not a manifest of checkpoint {seq}"
    if bad := [k for k in _INTS if manifest.get(k) is not None and type(manifest[k]) is not int]:
        return f"{bad[0]!r} is not a whole number"
    if bad := [k for k in _TEXTS if manifest.get(k) is not None and not isinstance(manifest[k], str)]:
        return f"{bad[0]!r} is not text"
    entries = manifest.get("delta") if "delta" in manifest else manifest.get("files")
    if not isinstance(entries, dict) or not all(
        e is None or (isinstance(e, dict) and isinstance(e.get("type"), str)) for e in entries.values()
    ):
        return "its file list is not a map of entries"
    return None


def set_aside(path: Path, reason: str) -> None:
    """Rename a store entry no checkpoint can come from to `<name>.refused-<time>` (kept to be
    looked at, never read again) and say why: the session goes on, as with a poisoned history."""
    aside = path.with_name(f"{path.name}.refused-{time.time_ns()}")
    with suppress(OSError):
        os.replace(path, aside)
    log.warning("checkpoints | set aside %s: %s", aside, reason)
