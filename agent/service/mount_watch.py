"""Restore at the mount: a reset session storage gets its backup back as soon as it appears.

AgentCore mounts session storage at a session's first call, after the agent has started, and
serves InvokeAgentRuntimeCommand beside the agent, not through it: a restore that waited for the
first turn would let an exec find (and write into) an empty workspace. So a thread started with
the agent polls for the mount (one access(2) every POLL_S: it appears, or turns writable where a
read-only slot stood), and restores at once, in the background, with /ping saying HealthyBusy.

A backup's keys need the runtime session id, which the agent learns from a request's
`X-Amzn-Bedrock-AgentCore-Runtime-Session-Id` header (SessionHeader, on every path /ping
included): the restore starts at the mount when the id is known by then, else at the first
request that names it. Every request first waits for the restore (`ensure`). A restore never
overwrites what is there (agent/backup/s3.py), so a file an exec wrote meanwhile is kept.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.backup.reports import BackupError, BusyTracker, RestoreReport

log = logging.getLogger(__name__)

POLL_S = 0.005  # one access(2) a poll: ~1 us of CPU, and a restore starts within this of the mount
DECIDE_S = 1.0  # how long learning the id waits for the watcher to start its restore (or to skip it)
SESSION_HEADER = b"x-amzn-bedrock-agentcore-runtime-session-id"

Restore = Callable[[str], "RestoreReport | None"]


def mounted(workspace: Path) -> bool:
    """The storage is there: a writable directory (a read-only slot or a missing path is not)."""
    return os.access(workspace, os.W_OK | os.X_OK) and workspace.is_dir()


class MountWatch:
    """One per agent process (one compute serves one session's storage)."""

    def __init__(self, workspace: Path, restore: Restore | None, poll_s: float = POLL_S) -> None:
        self.workspace, self._restore, self.poll_s = workspace, restore, poll_s
        self.session_id: str | None = None
        self._known, self._decided, self._stop = threading.Event(), threading.Event(), threading.Event()
        self._lock = threading.Lock()  # one restore at a time: the watcher's, or a request's
        self._report: RestoreReport | None = None
        self.figures: dict[str, float | None] = {"mounted": None, "started": None, "done": None}
        self.error: str | None = None

    def start(self, busy: BusyTracker | None = None) -> threading.Thread | None:
        """Watch in a daemon thread (None without backups: nothing to restore)."""
        if self._restore is None:
            return None
        thread = threading.Thread(target=self._watch, args=(busy,), name="mount-watch", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self._stop.set()
        self._known.set()

    def learn(self, session_id: str | None) -> None:
        """The session id, from a request's header (the first one wins: a compute serves one session).
        If the storage is mounted, wait (at most DECIDE_S) until the watcher has begun its restore,
        so /ping says HealthyBusy from here on, or found nothing to restore."""
        if not session_id or self.session_id is not None:
            return
        self.session_id = session_id
        self._known.set()
        if self._restore is not None and mounted(self.workspace):
            self._decided.wait(DECIDE_S)

    def ensure(self, session_id: str | None, take: bool = True) -> RestoreReport | None:
        """Before a request touches the workspace: the restore done (the watcher's, waited for, or
        run here). Returns its report once (`take`): the next turn's answer carries it."""
        self.learn(session_id)
        if self._restore is not None and self.session_id:
            with self._lock:
                report = self._restore(self.session_id)
                if report is not None:
                    self._report = report
        report = self._report
        if take:
            self._report = None
        return report

    def _watch(self, busy: BusyTracker | None) -> None:
        while not mounted(self.workspace):
            if self._stop.wait(self.poll_s):
                return
        self.figures["mounted"] = time.monotonic()
        self._known.wait()
        if self._stop.is_set() or self.session_id is None:
            return
        with self._lock:
            task = busy.add_async_task("restore") if busy is not None else None
            self._decided.set()
            self.figures["started"] = time.monotonic()
            try:
                report = self._restore(self.session_id)  # type: ignore[misc]
                if report is not None:
                    self._report = report
            except BackupError as error:  # the next request retries (the marker says where it stopped)
                self.error = str(error)
                log.warning("backup | restore at the mount failed: %s", error)
            except Exception:  # a bug: the next request's restore says more; keep the agent serving
                log.exception("backup | restore at the mount failed unexpectedly")
            finally:
                self.figures["done"] = time.monotonic()
                if task is not None:
                    busy.complete_async_task(task)  # type: ignore[union-attr]

    def timings(self) -> dict[str, Any]:
        """For `status`: how soon after the mount the restore started, and how long it took (s)."""
        f = self.figures
        if f["mounted"] is None:
            return {"mounted": False}
        out: dict[str, Any] = {"mounted": True}
        if f["started"] is not None:
            out["start_after_mount_s"] = round(f["started"] - f["mounted"], 4)
        if f["done"] is not None and f["started"] is not None:
            out["restore_s"] = round(f["done"] - f["started"], 4)
        if self.error:
            out["error"] = self.error
        return out


class SessionHeader:
    """ASGI middleware: every request's runtime session header tells the watcher the session id."""

    def __init__(self, app: Any, watch: MountWatch) -> None:
        self.app, self.watch = app, watch

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope.get("type") == "http" and self.watch.session_id is None:
            for name, value in scope.get("headers", ()):
                if name.lower() == SESSION_HEADER:
                    await asyncio.to_thread(self.watch.learn, value.decode("latin-1"))
                    break
        await self.app(scope, receive, send)
