"""One `serve` per state dir: an flock on STATE_DIR/serve.lock, held for serve's life (the kernel
drops it when serve ends, kill -9 included), so a second serve refuses before it touches the
first one's endpoint.json, runtimes or agent-services.sock."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path
from typing import IO

LOCK_FILE = "serve.lock"
ENDPOINT_FILE = "endpoint.json"  # the running serve's url, default runtime and pid (server.py writes it)


class StateDirInUse(Exception):
    """Another serve holds the state dir; the message names it (pid, url) and says what to do."""


def hold(state_dir: Path) -> IO[str]:
    """Lock `state_dir` for this process, or raise StateDirInUse. Keep the returned file open: the
    lock lasts as long as it does. The file is not inherited by the sandboxes (O_CLOEXEC)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    lock = open(state_dir / LOCK_FILE, "a+")  # noqa: SIM115 (held for serve's life, closed by exit)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        holder = lock.read().strip() or "unknown"
        lock.close()
        raise StateDirInUse(
            f"state dir {state_dir} is in use by serve pid {holder} at {_url(state_dir / ENDPOINT_FILE)}: "
            "stop that one, or pass another --state-dir"
        ) from None
    lock.truncate(0)
    lock.write(f"{os.getpid()}\n")
    lock.flush()
    return lock


def _url(endpoint: Path) -> str:
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        return str(json.loads(endpoint.read_text())["url"])
    return "(still starting: no endpoint.json yet)"
