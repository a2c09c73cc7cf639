"""`client.py checkpoints --backup` and `client.py restore` (agent/backup_points.py): any checkpoint
of the backup's history comes back, files and conversation; what was there is a checkpoint first;
an id not in the history, or a checkpoint whose objects expired, changes nothing."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from moto.server import ThreadedMotoServer

from agent.backup import points as backup_points
from agent.backup import s3 as backup
from agent.checkpoints.recorder import Recorder
from agent.checkpoints.undo import UndoError
from tests.unit.agent.test_backup import S3, backups, conversation, say, tree
from tests.unit.agent.test_backup_deltas import project, turn

SESSION = "session-points-" + "3" * 25


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3(endpoint: str) -> S3:
    return S3(endpoint)


@pytest.fixture
def bucket(s3: S3) -> str:
    name = f"points-{uuid.uuid4().hex[:12]}"
    s3.client.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "us-west-2"})
    return name


def test_an_older_checkpoint_comes_back_with_its_conversation_and_the_present_stays_listed(
    s3: S3, bucket: str, tmp_path: Path
) -> None:
    ws = tmp_path / "ws"
    recorder = project(ws)
    turn(recorder, lambda: (ws / "v1.txt").write_text("one\n"))
    early_tree, early_talk = tree(ws), conversation(ws)
    backups(s3, bucket).push(ws, SESSION)
    say(ws, "second", "ok")
    turn(recorder, lambda: ((ws / "v1.txt").unlink(), (ws / "v2.txt").write_text("two\n")))
    backups(s3, bucket).push(ws, SESSION)
    listed = backup_points.listing(backups(s3, bucket), SESSION)["checkpoints"]
    first_turn = [c for c in listed if c["kind"] == "turn"][-1]

    report = backup_points.bring_back(backups(s3, bucket), recorder, SESSION, first_turn["id"])

    assert report["restored"] == first_turn["id"]
    assert tree(ws) == early_tree and not (ws / "v2.txt").exists()
    assert conversation(ws) == early_talk  # cut back to the messages it had then
    assert list((ws / ".sessions" / ".undone").iterdir())  # the replaced conversation, kept aside
    kinds = [m.get("kind") for m in recorder.store.list()]
    assert kinds[-1] == "restore"
    backups(s3, bucket).push(ws, SESSION)
    again = backup_points.listing(backups(s3, bucket), SESSION)["checkpoints"]
    assert again[0]["kind"] == "restore" and {c["id"] for c in listed} <= {c["id"] for c in again}


def test_an_id_not_in_the_history_is_refused_and_nothing_changes(s3: S3, bucket: str, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    recorder = project(ws)
    turn(recorder, lambda: None)
    backups(s3, bucket).push(ws, SESSION)
    before = tree(ws)
    for wanted in ("000999", "zzzz.000001", "../../x"):
        with pytest.raises(ValueError, match="checkpoints --backup"):
            backup_points.bring_back(backups(s3, bucket), recorder, SESSION, wanted)
    assert tree(ws) == before


def test_a_checkpoint_whose_objects_expired_refuses_and_changes_nothing(
    s3: S3, bucket: str, tmp_path: Path
) -> None:
    ws = tmp_path / "ws"
    recorder = project(ws)
    turn(recorder, lambda: (ws / "gone.txt").write_text("only in the old checkpoint\n"))
    backups(s3, bucket).push(ws, SESSION)
    listed = backup_points.listing(backups(s3, bucket), SESSION)["checkpoints"]
    fresh = tmp_path / "fresh"  # another storage that never had those objects locally
    fresh.mkdir()
    other = Recorder(fresh, keep=20, max_bytes=10**9, quota_bytes=10**9)
    pre = backup.prefix(SESSION)
    for key in s3.keys(bucket):  # the lifecycle took every object
        if key.startswith((f"{pre}/packs/", f"{pre}/objects/")):
            s3.client.delete_object(Bucket=bucket, Key=key)

    with pytest.raises(UndoError, match="no longer in the backup"):
        backup_points.bring_back(backups(s3, bucket), other, SESSION, listed[0]["id"])
    assert sorted(p.name for p in fresh.iterdir()) == [".sessions"]
