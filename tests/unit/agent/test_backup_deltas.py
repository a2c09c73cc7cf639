"""Backups of delta checkpoints, against moto's S3 server: a turn pushes what it changed (a delta
on the manifest pushed before), and a restore into empty storage still brings back the exact
workspace and every checkpoint, so undo works after it. Real Recorder, real files."""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from moto.server import ThreadedMotoServer

from agent.backup import files as backup_files
from agent.backup import s3 as backup
from agent.backup.chain import Point, manifest_key
from agent.backup.s3 import S3Backup
from agent.backup.state import OBJECTS_FILE, STATE_FILE
from agent.checkpoints.recorder import Recorder
from agent.checkpoints.store import FULL_EVERY, CheckpointStore
from tests.unit.agent.test_backup import S3, get, say, tree

SESSION = "session-delta-" + "2" * 26


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
    name = f"deltas-{uuid.uuid4().hex[:12]}"
    s3.client.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "us-west-2"})
    return name


def project(ws: Path) -> Recorder:
    for n in range(20):
        (ws / "node_modules" / f"pkg{n}").mkdir(parents=True)
        (ws / "node_modules" / f"pkg{n}" / "index.js").write_text(f"module.exports = {n};\n")
    (ws / "run.sh").write_text("#!/bin/sh\n")
    os.symlink("run.sh", ws / "latest")
    say(ws, "make a project", "done")
    return Recorder(ws, keep=20, max_bytes=10**9, quota_bytes=10**9)


def turn(recorder: Recorder, change) -> None:
    start = recorder.begin("conv1")
    change()
    recorder.end(start, "conv1", "a turn", "answered")


def stored(s3: S3, bucket: str, seq: int) -> dict:
    pre = backup.prefix(SESSION)
    branch = json.loads(get(s3, bucket, f"{pre}/latest.json"))["branch"]  # one storage: one branch
    return json.loads(get(s3, bucket, f"{pre}/{manifest_key(Point(branch, seq))}"))


def test_a_turn_pushes_a_delta_and_a_restore_rebuilds_every_checkpoint(
    s3: S3, bucket: str, tmp_path: Path
) -> None:
    ws = tmp_path / "ws"
    recorder = project(ws)
    pusher = S3Backup(bucket, client=s3.client)
    turn(recorder, lambda: None)
    pusher.push(ws, SESSION)
    turn(recorder, lambda: (ws / "node_modules" / "pkg3" / "index.js").write_text("changed\n"))
    turn(recorder, lambda: ((ws / "run.sh").unlink(), os.chmod(ws / "node_modules" / "pkg4", 0o700)))
    before_last = tree(ws)
    turn(recorder, lambda: (ws / "new.txt").write_text("the last turn\n"))
    s3.puts.clear()
    pusher.push(ws, SESSION)

    seqs = recorder.store.seqs()
    first, *rest = (stored(s3, bucket, seq) for seq in seqs)
    assert "files" in first and all("delta" in m and "files" not in m for m in rest)
    assert rest[-1]["delta"].keys() == {"new.txt"} and rest[-1]["base"] == seqs[-2]
    new = rest[-1]["delta"]["new.txt"]["sha256"]
    history = {e["sha256"] for e in rest[-1]["history"].values() if e["type"] == "file"}
    assert {new} | history <= set(rest[-1]["locations"])  # the new file, and the conversation's files
    assert rest[-2]["delta"]["run.sh"] is None

    fresh = tmp_path / "fresh"
    fresh.mkdir()
    report = S3Backup(bucket, client=s3.client).restore_if_empty(fresh, SESSION)
    assert report is not None and report.checkpoint == f"{seqs[-1]:06d}"
    assert tree(fresh) == tree(ws)
    mine, theirs = CheckpointStore(fresh), recorder.store
    assert mine.seqs() == seqs
    assert all(mine.read(s)["files"] == theirs.read(s)["files"] for s in seqs)
    restarted = Recorder(fresh, keep=20, max_bytes=10**9, quota_bytes=10**9)
    restarted.undo(1, "conv1", {"conv1"})  # undo after a restore: the checkpoints came back too
    assert tree(fresh) == before_last


def test_a_base_pruned_here_is_still_fetched_and_a_stale_or_long_chain_pushes_whole(
    s3: S3, bucket: str, tmp_path: Path
) -> None:
    ws = tmp_path / "ws"
    recorder = project(ws)
    pusher = S3Backup(bucket, client=s3.client)
    for i in range(3):
        turn(recorder, lambda i=i: (ws / "node_modules" / "pkg1" / "index.js").write_text(f"turn {i}\n"))
        pusher.push(ws, SESSION)
    recorder.store.prune(keep=2, max_bytes=10**9)  # latest.json will not name the bases any more
    turn(recorder, lambda: (ws / "last.txt").write_text("last\n"))
    pusher.push(ws, SESSION)
    head = stored(s3, bucket, recorder.store.seqs()[-1])
    assert (
        "delta" in head
        and head["base"]
        not in [s for _, s in json.loads(get(s3, bucket, f"{backup.prefix(SESSION)}/latest.json"))["kept"]][
            :-2
        ]
    )
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    assert S3Backup(bucket, client=s3.client).restore_if_empty(fresh, SESSION) is not None
    assert tree(fresh) == tree(ws)

    # A whole manifest older than the refresh age is never a base (the bucket's expiry could take it).
    state_file = ws / ".sessions" / ".checkpoints" / STATE_FILE
    state = json.loads(state_file.read_text())
    state["chain"]["whole_time"] = 0
    state_file.write_text(json.dumps(state))
    turn(recorder, lambda: (ws / "later.txt").write_text("later\n"))
    pusher.push(ws, SESSION)
    assert "files" in stored(s3, bucket, recorder.store.seqs()[-1])
    # And a chain never grows past FULL_EVERY.
    for i in range(FULL_EVERY):
        turn(recorder, lambda i=i: (ws / "later.txt").write_text(f"later {i}\n"))
        pusher.push(ws, SESSION)
    kinds = ["files" in stored(s3, bucket, seq) for seq in recorder.store.seqs()[-FULL_EVERY:]]
    assert kinds.count(True) == 1


def new_pack_holds(s3: S3, bucket: str, seq: int) -> list[str]:
    """The objects the one pack of the last push holds, by the manifest's locations."""
    (pack,) = [key for key in s3.puts if "/packs/" in key]
    return [
        sha for sha, (where, _, _) in stored(s3, bucket, seq)["locations"].items() if pack.endswith(where)
    ]


def test_what_was_uploaded_is_appended_per_push_and_a_cut_line_or_the_old_format_loses_nothing(
    s3: S3, bucket: str, tmp_path: Path
) -> None:
    ws = tmp_path / "ws"
    recorder = project(ws)
    turn(recorder, lambda: None)
    S3Backup(bucket, client=s3.client).push(ws, SESSION)
    root = ws / ".sessions" / ".checkpoints"
    log = root / OBJECTS_FILE
    size = log.stat().st_size
    turn(recorder, lambda: (ws / "one.txt").write_text("one\n"))
    S3Backup(bucket, client=s3.client).push(ws, SESSION)
    added = log.read_bytes()[size:].decode()
    assert hashlib.sha256(b"one\n").hexdigest() in added and added.count("\n") == 2  # appended, not rewritten
    assert "objects" not in json.loads((root / STATE_FILE).read_text())

    with log.open("ab") as cut:  # a kill in the middle of an append
        cut.write(b'\n["' + b"a" * 64 + b'", [1')
    s3.puts.clear()
    turn(recorder, lambda: (ws / "two.txt").write_text("two\n"))
    S3Backup(bucket, client=s3.client).push(ws, SESSION)  # a new process: from disk
    assert new_pack_holds(s3, bucket, recorder.store.seqs()[-1]) == [hashlib.sha256(b"two\n").hexdigest()]

    # backup.json from before the log (objects inline): still honoured, then moved to the log.
    state = json.loads((root / STATE_FILE).read_text())
    state["objects"] = backup_files.read_log(log)[0]  # the cut line skipped
    (root / STATE_FILE).write_text(json.dumps(state))
    log.unlink()
    s3.puts.clear()
    turn(recorder, lambda: (ws / "three.txt").write_text("three\n"))
    S3Backup(bucket, client=s3.client).push(ws, SESSION)
    assert new_pack_holds(s3, bucket, recorder.store.seqs()[-1]) == [hashlib.sha256(b"three\n").hexdigest()]
    assert log.is_file() and "objects" not in json.loads((root / STATE_FILE).read_text())
