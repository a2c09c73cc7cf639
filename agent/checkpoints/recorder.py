"""The service's checkpoints: what changed when a turn starts, what it changed when it ends, and undo.

When a turn starts, the workspace is compared with the latest checkpoint: on the first turn
of a conversation on this compute by a full walk, the verified resume (`workspace.verified`);
whatever changed since (a command between turns, a restore) is kept as a checkpoint of kind
"external", so an undo never loses it. When the turn ends (answered, failed, or stopped by its
budget) what the turn changed is recorded, with the usage figures. Between full walks only the
paths agent/checkpoints/watch.py reports are looked at (none at all when it reports nothing); whenever it
cannot vouch for its list, the recorder walks the whole workspace instead.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.checkpoints import undo
from agent.checkpoints.history_bytes import HistoryBytes
from agent.checkpoints.no_room import StorageFull
from agent.checkpoints.store import CheckpointStore, missing_paths
from agent.checkpoints.walk import Walk, after_restore, diff, update, verify, walk
from agent.checkpoints.watch import UNAVAILABLE, Tracker
from agent.conversation.protocol import TurnRecord, Usage
from agent.session_files import SESSIONS

log = logging.getLogger(__name__)

# agent/backup/s3.py's hooks. restore_empty: the storage holds no checkpoint (new, or reset, maybe
# with files an exec wrote since): bring back the latest backup (objects, manifests, files that
# are absent, history) and say if it did.
# restore_missing: given the files the latest manifest has and the workspace lacks, restore what
# it can (never overwriting a file that exists) and say if it did.
RestoreEmpty = Callable[[CheckpointStore], bool]
RestoreMissing = Callable[[CheckpointStore, list[str]], bool]


@dataclass(frozen=True)
class Restore:
    """Where one turn's `begin` may restore from: passed with that call, so two conversations
    starting together each restore, and report, through their own hooks."""

    empty: RestoreEmpty | None = None
    missing: RestoreMissing | None = None


NO_RESTORE = Restore()  # no backups: a turn starts from what the storage holds


class Busy(RuntimeError):
    """The workspace is in use by a running turn."""


@dataclass(frozen=True)
class TurnStart:
    parent: int  # the checkpoint holding the state this turn started from
    messages_before: int
    turn: int  # this turn's number in the workspace
    restored_from: str | None
    verified: bool | dict[str, list[str]] | None


class Recorder:
    """Checkpoints for one workspace. Creating it touches nothing (the mount is not there yet)."""

    def __init__(self, workspace: Path, keep: int, max_bytes: int, quota_bytes: int) -> None:
        self.workspace = workspace
        self.sessions = workspace / SESSIONS
        self.store = CheckpointStore(workspace)
        self.keep, self.max_bytes, self.quota_bytes = keep, max_bytes, quota_bytes
        self._running = 0
        self._seen: set[str] = set()  # conversations that had a turn on this compute
        self._guard = threading.Lock()
        self.tracker = Tracker(SESSIONS)
        self.history = HistoryBytes(workspace)  # the usage figure's history part, from its own tracker
        self.unchanged = 0  # walks that found the tracker reporting nothing (for the bench)
        self.store.limit = self._room

    def _room(self, found: Walk) -> int:
        """What new checkpoint contents may take before session storage passes its quota (a
        measured quota lets files past it in one call; a checkpoint of them would keep it there)."""
        return self.quota_bytes - (found.bytes + self.history.bytes() + self.store.bytes())

    def _walk(self) -> Walk:
        """The workspace now, hashed, and the store's last walk from here on."""
        last = self.store.last_walk
        changes = self.tracker.take() if last is not None else None
        if changes is None or last is None:  # a full walk, which (re)adds every watch first
            if last is not None and self.tracker.doubt != UNAVAILABLE:
                log.info("checkpoints | a full walk: %s", self.tracker.doubt)
            self.tracker.restart()
            if last is not None:
                found = walk(self.workspace, before=last, watch=self.tracker.watch)
            else:
                latest = self.store.latest()
                found = walk(self.workspace, latest["files"] if latest else {}, watch=self.tracker.watch)
            self.store.hash_missing(found)
            return found
        paths = changes.paths | self.store.recheck
        self.store.recheck = set()
        if not paths:
            self.unchanged += 1
            return last
        found, touched = update(self.workspace, last, paths, self.tracker.watch, changes.dirs)
        self.store.hash_missing(found, touched)
        return found

    def _look(self) -> Walk:
        """The workspace now, for its usage only: nothing hashed or stored, nothing taken from the
        tracker (the next _walk sees the same changes), so it answers on a full filesystem too."""
        last = self.store.last_walk
        changes = self.tracker.peek() if last is not None else None
        if changes is None or last is None:
            latest = self.store.latest() if last is None else None
            return walk(self.workspace, latest["files"] if latest else None, before=last)
        paths = changes.paths | self.store.recheck
        return update(self.workspace, last, paths, None, changes.dirs)[0] if paths else last

    def begin(self, conversation_id: str, restore: Restore = NO_RESTORE) -> TurnStart:
        """Before the model runs: verify (first turn here), keep changes made between turns."""
        with self.store.lock:
            latest = self.store.latest()
            found = self._walk()
            restored_from = "storage" if latest or found.files else None
            # No checkpoint: a new or reset storage, even with what an exec wrote into it since.
            if latest is None and restore.empty and restore.empty(self.store):
                restored_from, latest, found = "backup", self.store.latest(), self._walk()
            first_here = conversation_id not in self._seen
            self._seen.add(conversation_id)
            if first_here and latest and restore.missing:
                missing = missing_paths(self.store, found)
                if missing and restore.missing(self.store, missing):
                    restored_from, found = "backup", self._walk()
            messages = undo.stored_messages(self.sessions, conversation_id)
            turn = int(latest.get("turn", 0)) if latest else 0
            manifest = self._record_if_changed(found, latest, conversation_id, messages, turn)
            verified = None
            if first_here and latest:
                report = verify(latest["files"], found.files)
                verified = True if not (report["missing"] or report["changed"]) else _short(report)
            parent = manifest["seq"] if manifest else latest["seq"]  # type: ignore[index]
            self._running += 1  # until end(): an undo now would pull the files from under the turn
            return TurnStart(parent, messages, turn + 1, restored_from, verified)

    def _record_if_changed(
        self, found: Walk, latest: dict[str, Any] | None, conversation_id: str, messages: int, turn: int
    ) -> dict[str, Any] | None:
        if latest is not None and not any(
            diff(latest["files"], found.files, self.store.differing(found)).values()
        ):
            return None
        return self.store.checkpoint(
            found, set(), kind="external", outcome=None, conversation_id=conversation_id, messages=messages,
            parent=latest["seq"] if latest else None, turn=turn,
        )  # fmt: skip

    def end(self, start: TurnStart, conversation_id: str, prompt: str, outcome: str) -> TurnRecord:
        """After the turn: record what it changed; the same walk gives the usage."""
        with self.store.lock:
            try:
                found = self._walk()
                manifest = self.store.checkpoint(
                    found,
                    set(),  # _walk hashed it, with what it touched
                    kind="turn",
                    outcome=outcome,
                    conversation_id=conversation_id,
                    messages=undo.stored_messages(self.sessions, conversation_id),
                    messages_before=start.messages_before,
                    prompt=(prompt.strip().splitlines() or [""])[0][:200],
                    parent=start.parent,
                    turn=start.turn,
                )
            except StorageFull:  # answered all the same: the next checkpoint that has room keeps it
                return TurnRecord(None, start.restored_from, start.verified, self.usage(self._look()))
            finally:
                self._running -= 1
            return TurnRecord(manifest["id"], start.restored_from, start.verified, self.usage(found))

    def usage(self, found: Walk) -> Usage:
        kept = self.store.bytes()
        total = found.bytes + self.history.bytes() + kept
        return Usage(total, found.count, self.quota_bytes, kept, unrecorded=self.store.failed)

    def needs_pruning(self) -> bool:
        return self.store.over(self.keep, self.max_bytes)

    def prune(self) -> list[int]:
        return self.store.prune(self.keep, self.max_bytes)

    def conversations_to_undo(self, turns: int) -> set[str]:
        """The conversations whose history an undo of `turns` turns shortens (UndoError if it cannot)."""
        with self.store.lock:
            return set(undo.plan(self.store, turns).keep_messages)

    def undo(self, turns: int, conversation_id: str, claimed: set[str]) -> dict[str, Any]:
        """Take back the last `turns` turns: files and conversations. The caller holds `claimed`."""
        with self.store.lock:
            if self._running:
                raise Busy("a turn is running in this workspace; undo when it has ended")
            latest = self.store.latest()
            messages = undo.stored_messages(self.sessions, conversation_id)
            turn = int(latest.get("turn", 0)) if latest else 0
            try:
                now = self._walk()
                self._record_if_changed(now, latest, conversation_id, messages, turn)
            except StorageFull as full:  # without that checkpoint the undo would delete what it holds
                why = "it keeps the changes since the last checkpoint first"
                raise StorageFull(f"undo refused ({why}): {full}") from None
            step = undo.plan(self.store, turns)
            if not set(step.keep_messages) <= claimed:
                raise Busy("another conversation took a turn meanwhile; retry the undo")
            changed = undo.restore(self.workspace, self.store, step.target["files"], now.files)
            history = {}
            for cid, keep in step.keep_messages.items():
                before = undo.stored_messages(self.sessions, cid)
                undo.truncate_history(self.sessions, cid, keep)
                history[cid] = {"messages_before": before, "messages_after": keep}
            after = after_restore(
                self.workspace, step.target["files"], now, changed["restored"] + changed["mode"]
            )
            manifest = self.store.checkpoint(
                after,
                kind="undo",
                outcome="answered",
                conversation_id=conversation_id,
                messages=undo.stored_messages(self.sessions, conversation_id),
                target=step.target["seq"],
                undone=[t["seq"] for t in step.turns],
                turn=turn,
            )
            summary = (
                f"undid {len(step.turns)} turn(s): the workspace is back at checkpoint {step.target['id']} "
                f"({len(changed['restored'])} restored, {len(changed['deleted'])} deleted, "
                f"{len(changed['mode'])} modes); "
                + "; ".join(
                    f"{c}: {h['messages_before']} -> {h['messages_after']} messages"
                    for c, h in history.items()
                )
            )
            return {
                "response": summary,
                "checkpoint": manifest["id"],
                "restored_to": step.target["id"],
                "turns": [
                    {"checkpoint": t["id"], "turn": t.get("turn"), "prompt": t.get("prompt")}
                    for t in step.turns
                ],
                "files": changed,
                "history": history,
                "usage": self.usage(after).to_json(),
            }

    def bring_back(
        self, files: dict[str, Any], label: str, conversation_id: str, place_history: Callable[[], dict]
    ) -> dict[str, Any]:
        """Make the workspace hold `files` (a checkpoint from the backup, its objects in the store)
        and `place_history()` its conversation; what was there is a checkpoint first, so an undo
        of the turns after it, or another restore, still reaches it."""
        with self.store.lock:
            if self._running:
                raise Busy("a turn is running in this workspace; restore when it has ended")
            latest = self.store.latest()
            now = self._walk()
            turn = int(latest.get("turn", 0)) if latest else 0
            messages = undo.stored_messages(self.sessions, conversation_id)
            before = self._record_if_changed(now, latest, conversation_id, messages, turn) or latest
            changed = undo.restore(self.workspace, self.store, files, now.files)
            history = place_history()
            after = after_restore(self.workspace, files, now, changed["restored"] + changed["mode"])
            manifest = self.store.checkpoint(
                after, kind="restore", outcome="answered", conversation_id=conversation_id,
                messages=undo.stored_messages(self.sessions, conversation_id), source=label,
                parent=before["seq"] if before else None, turn=turn,
            )  # fmt: skip
            return {"checkpoint": manifest["id"], "files": changed, "history": history,
                    "usage": self.usage(after).to_json()}  # fmt: skip

    def checkpoints(self) -> list[dict[str, Any]]:
        """Every checkpoint kept, oldest first, in short: turn, time, prompt, files changed."""
        with self.store.lock:
            manifests = self.store.list()
            on_line = {t["seq"] for t in undo.turns_on_line(self.store, len(manifests))[0]}
            return [
                {
                    "id": m["id"],
                    "kind": m.get("kind"),
                    "turn": m.get("turn"),
                    "time": m.get("time"),
                    "prompt": m.get("prompt"),
                    "outcome": m.get("outcome"),
                    "changed": {k: len(v) for k, v in m.get("changed", {}).items()},
                    **({"undone": True} if m.get("kind") == "turn" and m["seq"] not in on_line else {}),
                }
                for m in manifests
            ]

    def status(self) -> dict[str, Any]:
        """Usage and checkpoints, read-only: it answers on a full filesystem or over the quota."""
        with self.store.lock:
            found = self._look()
            seqs = self.store.seqs()
            return {
                "usage": self.usage(found).to_json(),
                "checkpoints": {
                    "count": len(seqs),
                    "latest": f"{seqs[-1]:06d}" if seqs else None,
                    "bytes": self.store.bytes(),
                    "keep": self.keep,
                    "max_bytes": self.max_bytes,
                },
            }


def _short(report: dict[str, list[str]], limit: int = 50) -> dict[str, Any]:
    """Lists capped for the answer, with the full counts."""
    out: dict[str, Any] = {k: v[:limit] for k, v in report.items()}
    for key, paths in report.items():
        if len(paths) > limit:
            out[f"{key}_count"] = len(paths)
    return out
