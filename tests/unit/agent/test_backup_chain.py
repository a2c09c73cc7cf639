"""Backups never forget (agent/backup_chain.py): each storage pushes on a branch of its own, chained
to the point it started from, so a push never rewrites another storage's keys and every earlier
latest stays in the history; and what a session may have written into the chain is read back
bounded (loops, huge lists, names that climb out are refused or cut off, never followed)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from moto.server import ThreadedMotoServer

from agent.backup import chain as backup_chain
from agent.backup import s3 as backup
from agent.backup.chain import MAX_BRANCHES, MAX_LISTED, Point
from agent.backup.files import DamagedBackup
from agent.checkpoints.recorder import Recorder
from bench.backup import write_checkpoint
from tests.unit.agent.test_backup import S3, SESSION_A, backups, build_project, conversation, get, say, tree
from tests.unit.agent.test_backup_deltas import project, turn


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
    name = f"chain-{uuid.uuid4().hex[:12]}"
    s3.client.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "us-west-2"})
    return name


@pytest.fixture
def session_a(tmp_path: Path) -> Path:
    ws = tmp_path / "a"
    build_project(ws)
    say(ws, "build a node project", "done")
    write_checkpoint(ws, messages=2)
    return ws


def latest(s3: S3, bucket: str) -> dict:
    return json.loads(get(s3, bucket, f"{backup.prefix(SESSION_A)}/latest.json"))


def history(s3: S3, bucket: str) -> list[dict]:
    store = backups(s3, bucket)
    transfer = store.transfer(SESSION_A)
    entries, stopped = backup_chain.history(lambda k: store.get_json(transfer, k, True), latest(s3, bucket))
    assert stopped is None
    return entries


def test_each_reset_storage_restores_the_last_ones_work_however_many_redeploys(
    s3: S3, bucket: str, session_a: Path, tmp_path: Path
) -> None:
    backups(s3, bucket).push(session_a, SESSION_A)
    previous = session_a
    for n in range(3):  # three resets in a row, each storage adding a file and a turn
        fresh = tmp_path / f"reset{n}"
        report = backups(s3, bucket).restore_if_empty(fresh, SESSION_A)
        assert report is not None and not report.refused, report
        assert tree(fresh) == tree(previous)
        (fresh / f"added{n}.txt").write_text(f"{n}\n")
        say(fresh, f"turn {n}", "ok")
        write_checkpoint(fresh, messages=4 + 2 * n)
        backups(s3, bucket).push(fresh, SESSION_A)
        previous = fresh
    last = tmp_path / "last"
    backups(s3, bucket).restore_if_empty(last, SESSION_A)
    assert tree(last) == tree(previous) and (last / "added0.txt").read_text() == "0\n"
    assert conversation(last)[-2:] == ["turn 2", "ok"]
    branches = [e["branch"] for e in history(s3, bucket)]
    assert len(set(branches)) == 4 and branches[0] == latest(s3, bucket)["branch"]


def test_a_storage_that_did_not_restore_branches_from_the_latest_and_rewrites_none_of_its_keys(
    s3: S3, bucket: str, session_a: Path, tmp_path: Path
) -> None:
    backups(s3, bucket).push(session_a, SESSION_A)
    before = latest(s3, bucket)
    written = set(s3.puts) - {f"{backup.prefix(SESSION_A)}/latest.json"}
    other = tmp_path / "unrestored"  # e.g. a version whose restore was refused: its own seq 1 again
    (other / "own.txt").parent.mkdir(parents=True)
    (other / "own.txt").write_text("mine\n")
    write_checkpoint(other)
    s3.puts.clear()

    backups(s3, bucket).push(other, SESSION_A)

    assert not written & set(s3.puts)  # nothing the first storage wrote was written again
    head = latest(s3, bucket)
    pre = backup.prefix(SESSION_A)
    record = json.loads(get(s3, bucket, f"{pre}/branches/{head['branch']}.json"))
    assert record["parent"] == [before["branch"], before["seq"]]
    ids = [e["id"] for e in history(s3, bucket)]
    assert ids == [Point(head["branch"], 1).id, Point(before["branch"], 1).id]


def test_a_restore_places_only_what_is_absent_and_reports_what_it_kept(
    s3: S3, bucket: str, session_a: Path, tmp_path: Path
) -> None:
    backups(s3, bucket).push(session_a, SESSION_A)
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / "index.js").write_text("an exec wrote this after the mount\n")  # the backup has its own
    (fresh / "NOTES.md").write_text("note\n")

    report = backups(s3, bucket).restore_if_empty(fresh, SESSION_A)

    assert report is not None and report.kept == ("index.js",)
    assert report.fields()["restore"]["kept"] == {"count": 1, "paths": ["index.js"]}
    assert (fresh / "index.js").read_text() == "an exec wrote this after the mount\n"
    assert (fresh / "NOTES.md").read_text() == "note\n"
    assert (fresh / "bin" / "run.sh").read_text() == (session_a / "bin" / "run.sh").read_text()
    assert conversation(fresh) == ["build a node project", "done"]


def test_a_full_branch_goes_on_in_a_new_one_whose_parent_is_its_last_checkpoint(
    s3: S3, bucket: str, session_a: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(backup_chain, "MAX_LISTED", 2)
    for n in range(3):
        (session_a / "index.js").write_text(f"turn {n}\n")
        write_checkpoint(session_a, messages=2)
    backups(s3, bucket).push(session_a, SESSION_A)  # four checkpoints: two branches of two

    entries = history(s3, bucket)
    assert [e["seq"] for e in entries] == [4, 3, 2, 1]
    assert entries[0]["branch"] == entries[1]["branch"] != entries[2]["branch"] == entries[3]["branch"]


def test_a_file_written_between_turns_after_a_restore_is_pushed_so_the_next_restore_has_it_all(
    s3: S3, bucket: str, tmp_path: Path
) -> None:
    """Two checkpoints in one push after a restore (the exec's file as `external`, then the turn):
    the second is a delta, and must still say where the restored conversation's objects are."""
    ws = tmp_path / "a"
    first = project(ws)
    turn(first, lambda: (ws / "v.txt").write_text("v2\n"))
    backups(s3, bucket).push(ws, SESSION_A)
    reset = tmp_path / "b"
    reset.mkdir()
    backups(s3, bucket).restore_if_empty(reset, SESSION_A)
    (reset / "NOTES.md").write_text("note\n")  # an exec, between the restore and the next turn
    turn(Recorder(reset, keep=20, max_bytes=10**9, quota_bytes=10**9), lambda: None)
    assert backups(s3, bucket).push(reset, SESSION_A).manifests == [3, 4]

    again = tmp_path / "c"
    report = backups(s3, bucket).restore_if_empty(again, SESSION_A)

    assert report is not None and not report.refused
    assert tree(again) == tree(reset) and conversation(again) == conversation(reset)


# --- read back: what a session could have written -------------------------------------------------


def records(chain: dict[str, dict]):
    return lambda key: chain.get(key)


def test_a_loop_of_parents_stops_the_walk_with_a_reason() -> None:
    chain = {
        "branches/aaaa.json": {"branch": "aaaa", "parent": ["bbbb", 1], "checkpoints": [{"seq": 1}]},
        "branches/bbbb.json": {"branch": "bbbb", "parent": ["aaaa", 1], "checkpoints": [{"seq": 1}]},
    }
    entries, stopped = backup_chain.history(records(chain), {"format": 2, "branch": "aaaa", "seq": 1})
    assert [e["id"] for e in entries] == ["aaaa.000001", "bbbb.000001"]
    assert "loop" in stopped


def test_a_chain_longer_than_the_bound_is_cut_off() -> None:
    chain = {
        f"branches/b{n:05d}.json": {"branch": f"b{n:05d}", "parent": [f"b{n + 1:05d}", 1], "checkpoints": []}
        for n in range(MAX_BRANCHES + 10)
    }
    entries, stopped = backup_chain.history(records(chain), {"format": 2, "branch": "b00000", "seq": 1})
    assert entries == [] and f"more than {MAX_BRANCHES} branches" in stopped


@pytest.mark.parametrize(
    "latest",
    [
        {"format": 2, "branch": "../../other-session", "seq": 1},
        {"format": 2, "branch": "a/b", "seq": 1},
        {"format": 2, "branch": "aaaa", "seq": -1},
        {"format": 2, "branch": "aaaa", "seq": True},
        {"format": 2, "branch": "aaaa", "seq": 10**12},
        {"format": 2, "branch": "aaaa", "seq": 1, "kept": [["aaaa", 1]] * 100_000},
        {"format": 2, "branch": "aaaa", "seq": 1, "kept": [["..", 1]]},
        {"format": 2, "branch": "aaaa", "seq": 1, "kept": "everything"},
        {"seq": "1"},
    ],
)
def test_a_latest_json_that_names_a_path_out_or_too_much_is_refused(latest: dict) -> None:
    with pytest.raises(DamagedBackup):
        backup_chain.read_latest(latest)


@pytest.mark.parametrize(
    "record",
    [
        None,
        {"branch": "other", "parent": None, "checkpoints": []},  # another branch's record at this key
        {"branch": "aaaa", "parent": ["../x", 1], "checkpoints": []},
        {"branch": "aaaa", "parent": "bbbb", "checkpoints": []},
        {"branch": "aaaa", "parent": None, "checkpoints": [{"seq": 1}] * (MAX_LISTED + 1)},
        {"branch": "aaaa", "parent": None, "checkpoints": ["x"]},
        {"branch": "aaaa", "parent": None, "checkpoints": [{"seq": "1"}]},
    ],
)
def test_a_branch_record_that_is_gone_forged_or_huge_is_refused(record: dict | None) -> None:
    with pytest.raises(DamagedBackup):
        backup_chain.read_record(record, "aaaa")


def test_a_listed_prompt_or_kind_is_cut_to_its_bound_and_odd_fields_dropped() -> None:
    record = {
        "branch": "aaaa",
        "parent": None,
        "checkpoints": [{"seq": 1, "prompt": "p" * 10_000, "kind": "k" * 500, "time": "x", "messages": 1.5}],
    }
    _, (entry,) = backup_chain.read_record(record, "aaaa")
    assert len(entry["prompt"]) == backup_chain.PROMPT_CHARS and len(entry["kind"]) == 20
    assert entry["time"] is None and entry["messages"] is None


@pytest.mark.parametrize("wanted", ["../000001", "aaaa.x", "1" * 20, "", "AAAA.000001"])
def test_a_checkpoint_id_that_is_not_one_is_refused_with_what_to_do(wanted: str) -> None:
    with pytest.raises(ValueError, match="checkpoints --backup"):
        backup_chain.resolve([{"branch": "aaaa", "seq": 1}], wanted)


def test_a_bare_seq_names_the_newest_checkpoint_with_it() -> None:
    entries = [{"branch": "bbbb", "seq": 1}, {"branch": "aaaa", "seq": 1}]  # newest first
    assert backup_chain.resolve(entries, "000001") == Point("bbbb", 1)
    assert backup_chain.resolve(entries, "aaaa.000001") == Point("aaaa", 1)
