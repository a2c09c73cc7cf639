"""The backup's history as a user sees it: `client.py checkpoints --backup` lists it, and
`client.py restore CHECKPOINT` brings any checkpoint of it back into the session, files and
conversation (the actions `{"action": "checkpoints", "backup": true}` and `{"action": "restore",
"checkpoint": ID}`). What a restore replaces is a checkpoint first (agent/checkpoints/recorder.py bring_back),
and the conversation it replaces is moved aside into `.sessions/.undone/`, never deleted.
"""

from __future__ import annotations

import os
import time
from typing import Any

from agent.backup import chain, files, placement
from agent.backup.chain import Point
from agent.backup.files import DamagedBackup, Store
from agent.backup.manifests import make_whole
from agent.backup.reports import BackupError
from agent.backup.s3 import S3Backup, s3_errors
from agent.checkpoints.recorder import Recorder
from agent.checkpoints.undo import UndoError, truncate_history
from agent.conversation.protocol import CONVERSATION_ID

HISTORY_LOOKAHEAD = 8  # later checkpoints on its branch searched for a conversation a checkpoint lacks


def listing(backups: S3Backup, session_id: str) -> dict[str, Any]:
    """Every checkpoint of the backup's history, newest first: id, branch, time, kind, prompt."""
    transfer = backups.transfer(session_id)
    try:
        latest = backups.get_json(transfer, "latest.json", missing_ok=True)
        if latest is None:
            return {"checkpoints": [], "stopped": None, "head": None}
        entries, stopped = chain.history(lambda key: backups.get_json(transfer, key, True), latest)
    except DamagedBackup as error:
        raise BackupError(f"the backup's history is unreadable: {error}") from None
    except s3_errors() as error:
        raise BackupError(
            f"could not read the backup's history from s3://{backups.bucket}: {error}"
        ) from error
    return {"checkpoints": entries, "stopped": stopped, "head": entries[0]["id"] if entries else None}


def _whole(backups: S3Backup, session_id: str, point: Point) -> dict:
    transfer = backups.transfer(session_id)
    got: dict[int, dict] = {point.seq: backups.get_json(transfer, chain.manifest_key(point)) or {}}

    def fetch(seq: int) -> dict | None:
        return backups.get_json(transfer, chain.manifest_key(Point(point.branch, seq)), True)

    if not make_whole(fetch, got, point.seq):
        raise DamagedBackup(f"checkpoint {point.id} names a base that is not in the backup (expired?)")
    return got[point.seq]


def _history_for(backups: S3Backup, session_id: str, point: Point, entries: list[dict]) -> tuple[dict, dict]:
    """The conversation files to go with `point`, and where their objects are: its own `history`
    map, else the next one on its branch that has one (a push puts it in its newest manifest, with
    the locations of its objects; messages are cut back after)."""
    later = sorted(e["seq"] for e in entries if e["branch"] == point.branch and e["seq"] > point.seq)
    transfer = backups.transfer(session_id)
    for seq in later[:HISTORY_LOOKAHEAD]:
        found = backups.get_json(transfer, chain.manifest_key(Point(point.branch, seq)), True) or {}
        if isinstance(found.get("history"), dict):
            locations = found.get("locations")
            return found["history"], locations if isinstance(locations, dict) else {}
    return {}, {}


def bring_back(backups: S3Backup, recorder: Recorder, session_id: str, wanted: str) -> dict[str, Any]:
    """Restore checkpoint `wanted` (as `checkpoints --backup` lists it): ValueError if the history
    has no such checkpoint, BackupError if S3 cannot give it all, UndoError if an object expired."""
    entries = listing(backups, session_id)["checkpoints"]
    point = chain.resolve(entries, wanted)
    workspace = recorder.workspace
    store = Store(workspace)
    try:
        manifest = _whole(backups, session_id, point)
        history, elsewhere = manifest.pop("history", None), {}
        if not isinstance(history, dict):
            history, elsewhere = _history_for(backups, session_id, point, entries)
        conversation = manifest.get("conversation_id")
        if not isinstance(conversation, str) or not CONVERSATION_ID.fullmatch(conversation):
            conversation = None  # a forged one: the files come back, no conversation folder is touched
        mine = {
            p: e for p, e in history.items() if conversation and p.split("/")[0] == f"session_{conversation}"
        }
        shas = files.check_manifest(manifest["files"], mine)
        locations = {**elsewhere, **manifest.get("locations", {})}  # the history's objects: where it was
        wanted_objects = {s: locations.get(s) for s in shas if not store.object_path(s).exists()}
        store.staging(clear=True)
        backups.transfer(session_id).download(store, wanted_objects, missing_ok=True)
    except DamagedBackup as error:
        raise BackupError(f"checkpoint {point.id} is unusable: {error}") from None
    except (OSError, *s3_errors()) as error:
        raise BackupError(
            f"could not fetch checkpoint {point.id} from s3://{backups.bucket}: {error}"
        ) from error
    gone = [s for s in shas if not store.object_path(s).exists()]
    if gone:
        raise UndoError(
            f"checkpoint {point.id}: {len(gone)} of its objects are no longer in the backup "
            "(expired by the bucket's lifecycle); nothing was changed"
        )

    def place_history() -> dict[str, Any]:
        if not conversation or not mine:
            return {}
        sessions = workspace / files.SESSIONS
        folder = sessions / f"session_{conversation}"
        if folder.exists():  # the conversation it replaces is kept aside, as an undo keeps messages
            aside = sessions / ".undone" / f"{conversation}-restore-{time.time_ns()}"
            aside.parent.mkdir(parents=True, exist_ok=True)
            os.replace(folder, aside)
        placement.materialize_history(store, mine)
        keep = manifest.get("messages")
        if type(keep) is int and keep >= 0:
            truncate_history(sessions, conversation, keep)
        return {conversation: {"messages": keep}}

    report = recorder.bring_back(manifest["files"], point.id, conversation or "default", place_history)
    return {"restored": point.id, **report}
