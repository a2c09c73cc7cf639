"""agent/backup/s3.py against a real S3 API: moto in server mode on 127.0.0.1, reached over HTTP by boto3.

Checkpoints are written in the layout docs/CONTRACT.md §6 documents (the layout on disk is the
contract; bench/backup.py's write_checkpoint), so these tests do not depend on agent/checkpoints/store.py.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from moto.server import ThreadedMotoServer
from strands.session.file_session_manager import FileSessionManager
from strands.types.session import SessionAgent, SessionMessage

from agent.backup import s3 as backup
from agent.backup import transfer as backup_transfer
from agent.backup.s3 import BackupError, S3Backup
from bench.backup import (  # the store's documented layout, as agent/checkpoints/store.py writes it
    fingerprint,
    write_checkpoint,
)
from tests.support import REPO

SESSION_A = "session-a-" + "0" * 30
SESSION_B = "session-b-" + "1" * 30
CONVERSATION = "conv1"


# --- a real S3 API ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


class S3:
    """A boto3 S3 client on the moto server that counts the PUTs it sends, by key."""

    def __init__(self, endpoint: str) -> None:
        config = Config(max_pool_connections=2 * backup_transfer.WORKERS)
        self.client = boto3.client("s3", endpoint_url=endpoint, region_name="us-west-2", config=config)
        self.puts: list[str] = []
        self.client.meta.events.register("before-parameter-build.s3.PutObject", self._count)

    def _count(self, params: dict, **_: Any) -> None:
        self.puts.append(params["Key"])

    def keys(self, bucket: str) -> set[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        return {o["Key"] for page in pages for o in page.get("Contents", [])}


@pytest.fixture
def s3(endpoint: str) -> S3:
    return S3(endpoint)


@pytest.fixture
def bucket(s3: S3) -> str:
    name = f"backups-{uuid.uuid4().hex[:12]}"
    s3.client.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "us-west-2"})
    return name


# --- a workspace and its checkpoints, in the documented layout ----------------------------------------


def build_project(ws: Path) -> None:
    """Files with modes, a symlink, a project .git and a node_modules-like tree."""
    (ws / "bin").mkdir(parents=True)
    (ws / "index.js").write_text("require('express')\n")
    (ws / "bin" / "run.sh").write_text("#!/bin/sh\nnode index.js\n")
    os.chmod(ws / "bin" / "run.sh", 0o755)
    (ws / "secret.txt").write_text("only me\n")
    os.chmod(ws / "secret.txt", 0o600)
    os.symlink("index.js", ws / "main.js")
    os.symlink("bin", ws / "tools")
    (ws / "empty").mkdir()
    subprocess.run(["git", "init", "-q", str(ws)], check=True)
    for n in range(30):
        package = ws / "node_modules" / f"pkg{n}"
        (package / "lib").mkdir(parents=True)
        (package / "package.json").write_text(json.dumps({"name": f"pkg{n}"}))
        (package / "lib" / "index.js").write_text(f"module.exports = {n};\n" * 20)
    os.symlink("../pkg0/lib/index.js", ws / "node_modules" / "pkg1" / "alias.js")


def say(ws: Path, *texts: str) -> None:
    """Add messages to the conversation with Strands' own FileSessionManager."""
    sessions = FileSessionManager(session_id=CONVERSATION, storage_dir=str(ws / ".sessions"))
    if sessions.read_agent(CONVERSATION, "default") is None:
        agent = SessionAgent(agent_id="default", state={}, conversation_manager_state={})
        sessions.create_agent(CONVERSATION, agent)
    start = len(sessions.list_messages(CONVERSATION, "default"))
    for i, text in enumerate(texts, start):
        message = {"role": "user" if i % 2 == 0 else "assistant", "content": [{"text": text}]}
        sessions.create_message(CONVERSATION, "default", SessionMessage.from_message(message, i))


def conversation(ws: Path) -> list[str]:
    sessions = FileSessionManager(session_id=CONVERSATION, storage_dir=str(ws / ".sessions"))
    return [m.message["content"][0]["text"] for m in sessions.list_messages(CONVERSATION, "default")]


def tree(ws: Path) -> dict[str, tuple]:
    """Everything a restore must bring back: type, mode, content or target, mtime (not .sessions/)."""
    return fingerprint(ws, mtimes=True)


@pytest.fixture
def session_a(tmp_path: Path) -> Path:
    """Session A's workspace after one turn: a project, two messages, one checkpoint."""
    ws = tmp_path / "a"
    build_project(ws)
    say(ws, "build a node project", "done")
    write_checkpoint(ws, messages=2)
    return ws


def get(s3: S3, bucket: str, key: str) -> bytes:
    return s3.client.get_object(Bucket=bucket, Key=key)["Body"].read()


def backups(s3: S3, bucket: str) -> S3Backup:
    return S3Backup(bucket, client=s3.client)


# --- push -------------------------------------------------------------------------------------------


def test_push_uploads_objects_then_manifest_then_latest_under_the_sessions_prefix(
    s3: S3, bucket: str, session_a: Path
) -> None:
    report = backups(s3, bucket).push(session_a, SESSION_A)

    pre = backup.prefix(SESSION_A)
    assert report.manifests == [1]
    latest = json.loads(get(s3, bucket, f"{pre}/latest.json"))
    branch = latest["branch"]
    assert s3.puts[-3:] == [
        f"{pre}/branches/{branch}/000001.json",
        f"{pre}/branches/{branch}.json",
        f"{pre}/latest.json",
    ]
    assert all(key.startswith((f"{pre}/objects/", f"{pre}/packs/")) for key in s3.puts[:-3])
    assert len(s3.puts) - 3 == report.requests == 1  # every file is small: one pack holds them all
    assert latest["seq"] == 1 and latest["kept"] == [[branch, 1]]
    manifest = json.loads(get(s3, bucket, s3.puts[-3]))
    assert f"session_{CONVERSATION}/agents/agent_default/messages/message_1.json" in manifest["history"]
    packed = {e["sha256"] for e in manifest["files"].values() if e["type"] == "file"}
    assert packed <= set(manifest["locations"])


def test_a_large_file_travels_alone_and_small_ones_in_a_pack(s3: S3, bucket: str, session_a: Path) -> None:
    big = os.urandom(backup_transfer.ALONE_BYTES + 1)
    (session_a / "big.bin").write_bytes(big)
    write_checkpoint(session_a, messages=2)

    backups(s3, bucket).push(session_a, SESSION_A)

    pre = backup.prefix(SESSION_A)
    assert f"{pre}/objects/{hashlib.sha256(big).hexdigest()}" in s3.puts
    assert len([key for key in s3.puts if "/packs/" in key]) == 1


def test_second_push_uploads_only_what_changed(s3: S3, bucket: str, session_a: Path) -> None:
    store = backups(s3, bucket)
    store.push(session_a, SESSION_A)
    s3.puts.clear()
    (session_a / "index.js").write_text("require('express')\n// changed\n")
    say(session_a, "change index.js", "changed")
    write_checkpoint(session_a, messages=4)

    report = store.push(session_a, SESSION_A)

    pre = backup.prefix(SESSION_A)
    (pack,) = [key for key in s3.puts if "/packs/" in key]
    branch = json.loads(get(s3, bucket, f"{pre}/latest.json"))["branch"]
    key = f"{pre}/branches/{branch}/000002.json"
    assert s3.puts == [pack, key, f"{pre}/branches/{branch}.json", f"{pre}/latest.json"]
    manifest = json.loads(get(s3, bucket, key))
    in_new_pack = {sha for sha, (where, _, _) in manifest["locations"].items() if pack.endswith(where)}
    messages = session_a / ".sessions" / f"session_{CONVERSATION}" / "agents" / "agent_default" / "messages"
    changed = [session_a / "index.js", messages / "message_2.json", messages / "message_3.json"]
    assert in_new_pack == {hashlib.sha256(p.read_bytes()).hexdigest() for p in changed}
    assert report.bytes == sum(p.stat().st_size for p in changed)


def test_push_with_no_new_checkpoint_sends_nothing(s3: S3, bucket: str, session_a: Path) -> None:
    store = backups(s3, bucket)
    store.push(session_a, SESSION_A)
    s3.puts.clear()

    assert store.push(session_a, SESSION_A).manifests == []
    assert s3.puts == []


def test_start_backup_keeps_ping_busy_until_the_push_is_done(s3: S3, bucket: str, session_a: Path) -> None:
    from bedrock_agentcore.runtime import BedrockAgentCoreApp

    app, release = BedrockAgentCoreApp(), threading.Event()

    def hold(**_: Any) -> None:  # returning a value would replace the response
        release.wait(10)

    s3.client.meta.events.register("before-call.s3.PutObject", hold)
    store = backups(s3, bucket)

    thread = store.start_backup(app, session_a, SESSION_A)
    assert app.get_current_ping_status().value == "HealthyBusy"
    assert store.start_backup(app, session_a, SESSION_A) is None  # one push at a time: this one queues
    release.set()
    thread.join(30)
    assert app.get_current_ping_status().value == "Healthy"
    assert f"{backup.prefix(SESSION_A)}/latest.json" in s3.puts


def test_turns_in_quick_succession_share_a_push_and_a_stop_does_not_wait_for_the_gap(
    s3: S3, bucket: str, session_a: Path
) -> None:
    from bedrock_agentcore.runtime import BedrockAgentCoreApp

    app, store, pre = BedrockAgentCoreApp(), backups(s3, bucket), backup.prefix(SESSION_A)
    store.start_backup(app, session_a, SESSION_A).join(30)  # the first turn: pushed at once
    pending = None
    for turn in range(3):  # three more turns, answered in quick succession
        (session_a / "index.js").write_text(f"// turn {turn}\n")
        write_checkpoint(session_a, messages=4 + 2 * turn)
        pending = pending or store.start_backup(app, session_a, SESSION_A)
    pending.join(0.3)
    assert pending.is_alive() and s3.puts.count(f"{pre}/latest.json") == 1  # gathering, not pushing
    assert app.get_current_ping_status().value == "HealthyBusy"  # a push is owed: no idle stop now

    started = time.monotonic()
    assert store.wait(30) and time.monotonic() - started < backup.PUSH_EVERY_S  # a stop cuts the gap
    assert s3.puts.count(f"{pre}/latest.json") == 2  # the first push, then one for all three turns
    assert json.loads(get(s3, bucket, f"{pre}/latest.json"))["seq"] == 4
    pending.join(5)
    assert app.get_current_ping_status().value == "Healthy"


# --- restore ----------------------------------------------------------------------------------------


def test_restore_into_empty_storage_brings_back_files_modes_symlinks_git_and_conversation(
    s3: S3, bucket: str, session_a: Path, tmp_path: Path
) -> None:
    backups(s3, bucket).push(session_a, SESSION_A)
    fresh = tmp_path / "fresh"
    fresh.mkdir()

    report = backups(s3, bucket).restore_if_empty(fresh, SESSION_A)

    assert report is not None and report.checkpoint == "000001" and report.messages == 2
    assert tree(fresh) == tree(session_a)
    assert (fresh / ".git" / "HEAD").is_file() and (fresh / "node_modules" / "pkg29" / "lib").is_dir()
    assert conversation(fresh) == ["build a node project", "done"]
    assert report.fields()["restored_from"] == "backup"
    assert report.files == sum(1 for entry in tree(session_a).values() if entry[0] == "file")
    assert report.bytes >= sum(p.stat().st_size for p in session_a.rglob("*.js") if not p.is_symlink())
    assert not (fresh / ".sessions" / ".checkpoints" / backup.RESTORING_FILE).exists()
    assert (fresh / ".sessions" / ".checkpoints" / "manifests" / "000001.json").is_file()


def test_restore_does_nothing_when_storage_holds_files(s3: S3, bucket: str, session_a: Path) -> None:
    backups(s3, bucket).push(session_a, SESSION_A)
    (session_a / "index.js").write_text("newer\n")

    assert backups(s3, bucket).restore_if_empty(session_a, SESSION_A) is None
    assert (session_a / "index.js").read_text() == "newer\n"


def test_restore_without_a_backup_for_the_session_returns_none(s3: S3, bucket: str, tmp_path: Path) -> None:
    assert backups(s3, bucket).restore_if_empty(tmp_path / "empty", SESSION_B) is None
    assert s3.puts == []


def test_after_a_restore_the_next_push_uploads_only_the_new_turn(
    s3: S3, bucket: str, session_a: Path, tmp_path: Path
) -> None:
    backups(s3, bucket).push(session_a, SESSION_A)
    first_branch = json.loads(get(s3, bucket, f"{backup.prefix(SESSION_A)}/latest.json"))["branch"]
    fresh = tmp_path / "fresh"
    backups(s3, bucket).restore_if_empty(fresh, SESSION_A)
    s3.puts.clear()
    (fresh / "new.txt").write_text("after the reset\n")
    write_checkpoint(fresh, messages=2)

    backups(s3, bucket).push(fresh, SESSION_A)

    pre = backup.prefix(SESSION_A)
    (pack,) = [key for key in s3.puts if "/packs/" in key]
    branch = json.loads(get(s3, bucket, f"{pre}/latest.json"))["branch"]
    key = f"{pre}/branches/{branch}/000002.json"
    assert s3.puts == [pack, key, f"{pre}/branches/{branch}.json", f"{pre}/latest.json"]
    record = json.loads(get(s3, bucket, f"{pre}/branches/{branch}.json"))
    assert record["parent"] == [first_branch, 1]  # the new storage's branch starts where it restored
    manifest = json.loads(get(s3, bucket, key))
    in_new_pack = [sha for sha, (where, _, _) in manifest["locations"].items() if pack.endswith(where)]
    assert in_new_pack == [hashlib.sha256(b"after the reset\n").hexdigest()]


def test_a_manifest_that_climbs_out_of_the_workspace_is_refused_and_set_aside(
    s3: S3, bucket: str, tmp_path: Path
) -> None:
    pre = backup.prefix(SESSION_B)
    evil = {"id": "000001", "seq": 1, "files": {"../escaped": {"type": "symlink", "target": "/etc"}}}
    s3.client.put_object(Bucket=bucket, Key=f"{pre}/manifests/000001.json", Body=json.dumps(evil))
    s3.client.put_object(Bucket=bucket, Key=f"{pre}/latest.json", Body=b'{"seq": 1}')

    report = backups(s3, bucket).restore_if_empty(tmp_path / "ws", SESSION_B)
    assert report is not None and "unsafe path '../escaped'" in report.refused
    assert report.fields()["restored_from"] is None
    assert not (tmp_path / "escaped").exists()
    assert backups(s3, bucket).restore_if_empty(tmp_path / "ws", SESSION_B) is None  # not retried


# --- isolation: keys --------------------------------------------------------------------------------


def test_the_key_prefix_needs_the_session_id_and_differs_per_session() -> None:
    a, b = backup.prefix(SESSION_A), backup.prefix(SESSION_B)
    assert a != b and SESSION_A not in a
    assert a == "v1/" + hashlib.sha256(f"agentcore-backup:{SESSION_A}".encode()).hexdigest()


# --- a restore cut short by kill -9 -----------------------------------------------------------------

# Restore in a child process with a slow disk (every file copy waits 50 ms), so a kill lands mid-way.
SLOW_RESTORE = """
import shutil, sys, time
from pathlib import Path
import boto3
from agent.backup.s3 import S3Backup
endpoint, bucket, workspace, session = sys.argv[1:5]
copy = shutil.copyfile
shutil.copyfile = lambda src, dst: (time.sleep(0.05), copy(src, dst))[1]
client = boto3.client("s3", endpoint_url=endpoint, region_name="us-west-2")
S3Backup(bucket, client=client).restore_if_empty(Path(workspace), session)
"""


def files_in(ws: Path) -> int:
    return sum(len(names) for folder, _, names in os.walk(ws) if ".sessions" not in Path(folder).parts)


def test_restore_killed_mid_way_is_resumed_by_the_next_turn_to_the_same_result(
    s3: S3, bucket: str, endpoint: str, session_a: Path, tmp_path: Path
) -> None:
    backups(s3, bucket).push(session_a, SESSION_A)
    fresh = tmp_path / "fresh"
    argv = [sys.executable, "-c", SLOW_RESTORE, endpoint, bucket, str(fresh), SESSION_A]
    child = subprocess.Popen(argv, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    deadline = time.monotonic() + 60
    while child.poll() is None and files_in(fresh) < 20 and time.monotonic() < deadline:
        time.sleep(0.005)
    if child.poll() is not None:
        pytest.fail(f"the restore ended (exit {child.returncode}) before it could be killed")
    child.send_signal(signal.SIGKILL)
    child.wait()

    marker = fresh / ".sessions" / ".checkpoints" / backup.RESTORING_FILE
    assert marker.exists() and tree(fresh) != tree(session_a)  # cut short, and it knows
    report = backups(s3, bucket).restore_if_empty(fresh, SESSION_A)

    assert report is not None and report.checkpoint == "000001"
    assert tree(fresh) == tree(session_a)
    assert conversation(fresh) == ["build a node project", "done"]
    assert not marker.exists()
    assert backups(s3, bucket).restore_if_empty(fresh, SESSION_A) is None  # done: not again


# --- restore_missing ------------------------------------------------------------------------------


def test_restore_missing_brings_back_lost_files_and_never_overwrites_newer_ones(
    s3: S3, bucket: str, session_a: Path
) -> None:
    backups(s3, bucket).push(session_a, SESSION_A)
    before = tree(session_a)
    lost = ["bin/run.sh", "main.js"] + [p for p in before if p.startswith("node_modules/pkg3")]
    for path in ("bin/run.sh", "main.js"):
        (session_a / path).unlink()
    subprocess.run(["rm", "-rf", str(session_a / "node_modules" / "pkg3")], check=True)
    (session_a / "index.js").write_text("edited after the checkpoint\n")
    s3.puts.clear()

    report = backups(s3, bucket).restore_missing(session_a, SESSION_A, [*lost, "index.js", "not-in-manifest"])

    assert sorted(report.restored) == sorted(lost)
    assert report.kept == ["index.js"] and report.unavailable == ["not-in-manifest"]
    assert (session_a / "index.js").read_text() == "edited after the checkpoint\n"
    assert {p: v for p, v in tree(session_a).items() if p != "index.js"} == {
        p: v for p, v in before.items() if p != "index.js"
    }
    assert s3.puts == []


def test_restore_missing_fetches_from_the_backup_what_the_store_lost(
    s3: S3, bucket: str, session_a: Path
) -> None:
    backups(s3, bucket).push(session_a, SESSION_A)
    before = tree(session_a)
    run_sh = session_a / "bin" / "run.sh"
    sha = hashlib.sha256(run_sh.read_bytes()).hexdigest()
    run_sh.unlink()
    (session_a / ".sessions" / ".checkpoints" / "objects" / sha[:2] / sha).unlink()
    gets: list[dict] = []
    s3.client.meta.events.register(
        "before-parameter-build.s3.GetObject", lambda params, **_: gets.append(params)
    )

    report = backups(s3, bucket).restore_missing(session_a, SESSION_A, ["bin/run.sh"])

    assert report.restored == ["bin/run.sh"] and tree(session_a) == before
    ((get_params),) = gets
    assert "/packs/" in get_params["Key"] and get_params["Range"].startswith("bytes=")  # only its bytes


# --- configuration: environment variables only ------------------------------------------------------


def test_backups_are_off_without_backup_bucket_and_on_with_it() -> None:
    from agent.service.settings import Settings

    assert S3Backup.from_bucket(Settings.from_env({}).backup_bucket) is None
    assert S3Backup.from_bucket(Settings.from_env({"BACKUP_BUCKET": "  "}).backup_bucket) is None
    assert Settings.from_env({"BACKUP_BUCKET": " my-backups "}).backup_bucket == "my-backups"


def test_the_s3_client_comes_from_aws_endpoint_url_s3_alone(
    s3: S3, bucket: str, endpoint: str, session_a: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", endpoint)  # what agentcore_local passes to a session
    made = S3Backup.from_bucket(bucket, region="us-west-2")
    assert made is not None
    made.push(session_a, SESSION_A)

    report = S3Backup.from_bucket(bucket, region="us-west-2").restore_if_empty(tmp_path / "fresh", SESSION_A)

    assert report is not None and tree(tmp_path / "fresh") == tree(session_a)
    assert made.status(session_a) == {
        "bucket": bucket,
        "pushed_seq": 1,
        "last_push": pytest.approx(time.time(), abs=60),
        "last_error": None,
    }


def test_a_failed_push_is_recorded_and_the_next_push_completes_it(
    s3: S3, bucket: str, session_a: Path, tmp_path: Path
) -> None:
    broken = backups(s3, "no-such-bucket-here")
    with pytest.raises(
        BackupError, match=r"push to s3://no-such-bucket-here stopped: .*NoSuchBucket.*next turn retries"
    ):
        broken.push(session_a, SESSION_A)
    assert "NoSuchBucket" in broken.status(session_a)["last_error"]

    assert backups(s3, bucket).push(session_a, SESSION_A).manifests == [1]
    assert backups(s3, bucket).restore_if_empty(tmp_path / "fresh", SESSION_A) is not None


def test_an_older_checkpoint_whose_object_expired_is_dropped_and_the_restore_completes(
    s3: S3, bucket: str, session_a: Path, tmp_path: Path
) -> None:
    big = os.urandom(backup_transfer.ALONE_BYTES)  # alone in S3, so it can expire by itself
    (session_a / "big.bin").write_bytes(big)
    write_checkpoint(session_a, messages=2)  # 000002 holds big.bin
    (session_a / "big.bin").unlink()
    write_checkpoint(session_a, messages=2)  # 000003 does not
    backups(s3, bucket).push(session_a, SESSION_A)
    s3.client.delete_object(
        Bucket=bucket, Key=f"{backup.prefix(SESSION_A)}/objects/{hashlib.sha256(big).hexdigest()}"
    )

    fresh = tmp_path / "fresh"
    report = backups(s3, bucket).restore_if_empty(fresh, SESSION_A)

    assert report is not None and report.checkpoint == "000003" and tree(fresh) == tree(session_a)
    assert sorted(os.listdir(fresh / ".sessions" / ".checkpoints" / "manifests")) == [
        "000001.json",
        "000003.json",
    ]
