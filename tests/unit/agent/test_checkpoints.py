"""Unit tests of checkpoints: the walk, the content-addressed store, pruning, undo of files and
history, and a kill -9 in the middle of a checkpoint (a real subprocess). Real files in tmp dirs."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from agent.checkpoints import undo
from agent.checkpoints.history_bytes import HistoryBytes
from agent.checkpoints.recorder import Recorder, Restore
from agent.checkpoints.store import FULL_EVERY, CheckpointStore, missing_paths
from agent.checkpoints.walk import content, walk
from agent.conversation import protocol
from agent.service.settings import Settings
from tests.support import REPO
from tests.support.local_runtime import wait_for


def tree(root: Path) -> dict[str, tuple]:
    """Everything a restore must bring back, by lstat and content (never following symlinks)."""
    out = {}
    for base, dirs, files in os.walk(root):
        rel = os.path.relpath(base, root)
        if rel.split(os.sep)[0] == ".sessions":
            dirs[:] = []
            continue
        for name in dirs + files:
            path = Path(base, name)
            st = path.lstat()
            key = os.path.normpath(os.path.join(rel, name))
            if path.is_symlink():
                out[key] = ("link", os.readlink(path))
            elif path.is_dir():
                out[key] = ("dir", st.st_mode & 0o7777)
            else:
                out[key] = ("file", st.st_mode & 0o7777, path.read_bytes())
    return out


def test_the_walk_records_symlinks_and_fifos_without_opening_or_following_them(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("a")
    (tmp_path / "out").symlink_to("/etc")
    (tmp_path / "dangling").symlink_to("nowhere")
    os.mkfifo(tmp_path / "pipe")  # opening it would block: the walk must not
    (tmp_path / ".sessions" / "session_x").mkdir(parents=True)
    (tmp_path / ".sessions" / "session_x" / "m.json").write_text("12345")
    found = walk(tmp_path)
    assert found.files["out"] == {"type": "symlink", "target": "/etc"}
    assert found.files["dangling"] == {"type": "symlink", "target": "nowhere"}
    assert found.files["pipe"]["type"] == "fifo"
    assert not any(p.startswith(".sessions") for p in found.files)
    assert HistoryBytes(tmp_path).bytes() == 5 and found.count == 4  # history: usage, not the project
    store = CheckpointStore(tmp_path)
    manifest = store.checkpoint(found, kind="turn")  # hashing must skip the FIFO too
    assert manifest["files"]["a.txt"]["sha256"] and "sha256" not in manifest["files"]["pipe"]


def test_the_walk_goes_deeper_than_the_recursion_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    depth = sys.getrecursionlimit() + 200
    monkeypatch.chdir(tmp_path)
    for _ in range(depth):
        os.mkdir("d")
        os.chdir("d")
    Path("leaf.txt").write_text("deep")
    os.chdir(tmp_path)
    found = walk(tmp_path)
    assert len(found.files) == depth + 1
    assert any(p.endswith("/leaf.txt") for p in found.files)
    for _ in range(depth):  # pytest's cleanup is recursive: take the tree down from the bottom
        os.chdir("d")
    os.unlink("leaf.txt")
    for _ in range(depth):
        os.chdir("..")
        os.rmdir("d")


def test_a_second_checkpoint_reads_only_what_changed_and_stores_each_content_once(tmp_path: Path) -> None:
    for i in range(50):
        (tmp_path / f"f{i}.txt").write_text("same")  # one content, fifty names
    store = CheckpointStore(tmp_path)
    first = store.checkpoint(walk(tmp_path), kind="turn")
    objects = list(store.objects.rglob("*"))
    assert len([p for p in objects if p.is_file()]) == 1
    (tmp_path / "f3.txt").write_text("changed")
    os.chmod(tmp_path / "f4.txt", 0o600)
    (tmp_path / "f5.txt").unlink()
    (tmp_path / "new.txt").write_text("new")
    found = walk(tmp_path, first["files"])
    unhashed = sorted(p for p, e in found.files.items() if "sha256" not in e)
    assert unhashed == ["f3.txt", "f4.txt", "new.txt"]  # the other 46 kept their hash by stat
    second = store.checkpoint(found, kind="turn")
    assert second["changed"] == {
        "added": ["new.txt"],
        "modified": ["f3.txt"],
        "deleted": ["f5.txt"],
        "mode": ["f4.txt"],
    }
    assert store.latest()["seq"] == 2 and [m["seq"] for m in store.list()] == [1, 2]


def test_damaged_manifests_are_skipped_and_objects_are_checked_against_their_hash(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("a")
    store = CheckpointStore(tmp_path)
    store.checkpoint(walk(tmp_path), kind="turn")
    (store.manifests / "000002.json").write_text('{"torn')
    assert [m["seq"] for m in CheckpointStore(tmp_path).list()] == [1]
    assert CheckpointStore(tmp_path).latest()["seq"] == 1
    with pytest.raises(ValueError, match="do not match"):
        store.put_object_from("0" * 64, b"bytes")
    store.put_object_from(hashlib.sha256(b"x").hexdigest(), b"x")
    assert store.object_path(hashlib.sha256(b"x").hexdigest()).read_bytes() == b"x"


def test_pruning_keeps_the_last_k_and_deletes_objects_no_manifest_names(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    for i in range(6):
        (tmp_path / "f.txt").write_text(f"version {i}")
        store.checkpoint(walk(tmp_path, before=store.last_walk), kind="turn")
    stray = store.objects / ".tmp-killed"
    stray.write_text("left by a kill")
    assert store.prune(keep=3, max_bytes=10**9) == [1, 2, 3]
    assert store.seqs() == [4, 5, 6]
    kept = {e["sha256"] for m in store.list() for e in m["files"].values() if "sha256" in e}
    on_disk = {p.name for p in store.objects.rglob("*") if p.is_file()}
    assert on_disk == kept and len(kept) == 3
    assert store.bytes() == sum(
        p.stat().st_size for p in store.root.rglob("*") if p.is_file() and p.name != "HEAD"
    )
    # A byte budget smaller than one checkpoint still keeps the two an undo of one turn needs.
    assert store.prune(keep=20, max_bytes=1) == [4]
    assert store.seqs() == [5, 6]


def test_manifests_are_deltas_with_a_whole_one_every_so_often_and_each_reads_back_whole(
    tmp_path: Path,
) -> None:
    ws = tmp_path / "ws"
    (ws / "src").mkdir(parents=True)
    for i in range(10):
        (ws / "src" / f"f{i}.txt").write_text(f"file {i}")
    store = CheckpointStore(ws)
    expected = {}
    for i in range(FULL_EVERY + 3):
        (ws / "src" / f"f{i % 3}.txt").write_text(f"turn {i}")
        if i == 4:
            (ws / "src" / "f9.txt").unlink()
            os.chmod(ws / "src" / "f8.txt", 0o600)
        manifest = store.checkpoint(walk(ws, before=store.last_walk), kind="turn")
        expected[manifest["seq"]] = dict(manifest["files"])
    stored = {seq: json.loads((store.manifests / f"{seq:06d}.json").read_bytes()) for seq in expected}
    assert [seq for seq, m in stored.items() if "files" in m] == [1, 1 + FULL_EVERY]
    assert stored[6]["base"] == 5 and stored[6]["delta"].keys() == {"src/f2.txt"}
    assert stored[5]["delta"]["src/f9.txt"] is None and stored[5]["delta"]["src/f8.txt"]["mode"] == 0o600
    fresh = CheckpointStore(ws)  # another process: everything from disk
    assert {seq: fresh.read(seq)["files"] for seq in reversed(expected)} == expected
    assert fresh.latest()["files"] == expected[max(expected)]
    # Pruning keeps what is kept readable: the oldest one kept is made whole before its base goes.
    assert fresh.prune(keep=5, max_bytes=10**9) == list(range(1, len(expected) - 4))
    oldest = fresh.seqs()[0]
    assert "files" in json.loads((fresh.manifests / f"{oldest:06d}.json").read_bytes())
    again = CheckpointStore(ws)
    assert {seq: again.read(seq)["files"] for seq in again.seqs()} == {s: expected[s] for s in again.seqs()}
    named = {e["sha256"] for s in again.seqs() for e in expected[s].values() if "sha256" in e}
    assert {p.name for p in again.objects.rglob("*") if p.is_file()} == named
    assert fresh.bytes() == sum(
        p.stat().st_size for p in fresh.root.rglob("*") if p.name != "HEAD" and p.is_file()
    )


def test_a_delta_whose_base_is_damaged_is_skipped_like_a_damaged_manifest(tmp_path: Path) -> None:
    for i in range(4):
        (tmp_path / f"f{i}").write_text("x")
    store = CheckpointStore(tmp_path)
    for i in range(3):
        (tmp_path / "f0").write_text(f"turn {i}")
        store.checkpoint(walk(tmp_path, before=store.last_walk), kind="turn")
    (store.manifests / "000002.json").write_text("{damaged")
    fresh = CheckpointStore(tmp_path)
    assert [m["seq"] for m in fresh.list()] == [1] and fresh.latest()["seq"] == 1


KILL_MID_CHECKPOINT = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    sys.path.insert(0, {repo!r})
    from agent.checkpoints.store import CheckpointStore
    from agent.checkpoints.walk import content, walk
    root = Path(sys.argv[1])
    store = CheckpointStore(root)
    store.checkpoint(walk(root, store.latest()["files"]), kind="turn")
    """
)


def test_a_kill_9_mid_checkpoint_leaves_the_previous_one_usable_and_the_workspace_untouched(
    tmp_path: Path,
) -> None:
    ws = tmp_path / "ws"
    (ws / "src").mkdir(parents=True)
    (ws / "src" / "keep.txt").write_text("the first checkpoint")
    for i in range(4):
        (ws / "src" / f"small{i}.txt").write_text("small")
    store = CheckpointStore(ws)
    store.checkpoint(walk(ws), kind="turn")
    (ws / "src" / "small0.txt").write_text("the second checkpoint, a delta")
    store.checkpoint(walk(ws, before=store.last_walk), kind="turn")
    assert "delta" in json.loads((store.manifests / "000002.json").read_text())
    for i in range(3000):  # enough new content that the copy takes a while
        (ws / "src" / f"new{i}.bin").write_bytes(os.urandom(2048))
    before = tree(ws)
    objects = len(list(store.objects.rglob("*")))
    script = tmp_path / "checkpoint.py"
    script.write_text(KILL_MID_CHECKPOINT.format(repo=str(REPO)))
    child = subprocess.Popen([sys.executable, str(script), str(ws)])
    try:
        wait_for(
            lambda: len(list(store.objects.rglob("*"))) > objects + 100, 60, "the checkpoint to be copying"
        )
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert store.seqs() == [1, 2], "the kill came too late: the checkpoint finished first"
    assert tree(ws) == before
    fresh = CheckpointStore(ws)
    assert fresh.latest()["seq"] == 2 and "src/keep.txt" in fresh.latest()["files"]
    assert fresh.latest()["files"]["src/small0.txt"]["size"] == len("the second checkpoint, a delta")
    second = fresh.checkpoint(walk(ws, fresh.latest()["files"]), kind="turn")  # and the next one works
    assert len(second["changed"]["added"]) == 3000
    assert all(fresh.has_object(e["sha256"]) for e in second["files"].values() if "sha256" in e)


def make_project(ws: Path) -> None:
    (ws / "bin").mkdir(parents=True)
    (ws / "bin" / "run.sh").write_text("#!/bin/sh\necho run\n")
    os.chmod(ws / "bin" / "run.sh", 0o755)
    (ws / "node_modules" / "pkg" / "lib").mkdir(parents=True)
    (ws / "node_modules" / "pkg" / "lib" / "index.js").write_text("module.exports = 1;\n")
    (ws / ".git" / "objects" / "ab").mkdir(parents=True)
    (ws / ".git" / "objects" / "ab" / "cdef").write_bytes(b"\x78\x01blob")
    os.chmod(ws / ".git" / "objects" / "ab" / "cdef", 0o444)
    (ws / "latest").symlink_to("bin/run.sh")


def test_restore_brings_back_files_modes_symlinks_git_and_node_modules_and_deletes_added_ones(
    tmp_path: Path,
) -> None:
    make_project(tmp_path)
    store = CheckpointStore(tmp_path)
    target = store.checkpoint(walk(tmp_path), kind="turn")
    expected = tree(tmp_path)
    # A turn that changes everything it can.
    (tmp_path / "bin" / "run.sh").write_text("broken")
    os.chmod(tmp_path / "bin" / "run.sh", 0o600)
    os.chmod(tmp_path / ".git" / "objects" / "ab" / "cdef", 0o644)
    (tmp_path / ".git" / "objects" / "ab" / "cdef").unlink()
    shutil.rmtree(tmp_path / "node_modules")
    (tmp_path / "latest").unlink()
    (tmp_path / "latest").mkdir()  # a symlink became a directory
    (tmp_path / "latest" / "x").write_text("x")
    (tmp_path / "added").mkdir()
    (tmp_path / "added" / "escape").symlink_to("/etc")
    now = walk(tmp_path, target["files"])
    changed = undo.restore(tmp_path, store, target["files"], now.files)
    assert tree(tmp_path) == expected
    assert set(changed["deleted"]) == {"latest/x", "added", "added/escape"}
    assert "bin/run.sh" in changed["restored"] and "node_modules/pkg/lib/index.js" in changed["restored"]
    assert Path("/etc").is_dir()  # deleting the symlink did not follow it


def test_truncating_history_moves_later_messages_aside_and_keeps_the_restore_offset_inside(
    tmp_path: Path,
) -> None:
    agent_dir = tmp_path / "session_c" / "agents" / "agent_default"
    (agent_dir / "messages").mkdir(parents=True)
    for i in range(8):
        (agent_dir / "messages" / f"message_{i}.json").write_text("{}")
    state = {
        "conversation_manager_state": {
            "__name__": "SlidingWindowConversationManager",
            "removed_message_count": 6,
        }
    }
    (agent_dir / "agent.json").write_text(json.dumps(state))
    assert undo.stored_messages(tmp_path, "c") == 8
    assert undo.truncate_history(tmp_path, "c", 4) == 4
    assert undo.stored_messages(tmp_path, "c") == 4
    assert (
        json.loads((agent_dir / "agent.json").read_text())["conversation_manager_state"][
            "removed_message_count"
        ]
        == 0
    )
    assert len(list((tmp_path / ".undone").rglob("message_*.json"))) == 4


def test_undo_twice_goes_further_back_instead_of_undoing_the_undo(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path, keep=20, max_bytes=10**9, quota_bytes=10**9)
    states = []
    for i in range(3):
        start = recorder.begin("c")
        states.append(tree(tmp_path))
        (tmp_path / f"turn{i}.txt").write_text(str(i))
        recorder.end(start, "c", f"turn {i}\nmore lines", "answered")
    first = recorder.undo(1, "c", {"c"})
    assert tree(tmp_path) == states[2] and first["files"]["deleted"] == ["turn2.txt"]
    second = recorder.undo(1, "c", {"c"})
    assert tree(tmp_path) == states[1] and second["turns"][0]["prompt"] == "turn 1"
    fresh = walk(tmp_path)  # the undo's manifest is built without a walk: it must match one
    recorder.store.hash_missing(fresh)
    recorded = recorder.store.latest()["files"]
    assert {p: content(e) for p, e in fresh.files.items()} == {p: content(e) for p, e in recorded.items()}
    listing = recorder.checkpoints()
    assert [c["kind"] for c in listing] == ["external", "turn", "turn", "turn", "undo", "undo"]
    assert [c.get("undone", False) for c in listing if c["kind"] == "turn"] == [False, True, True]
    with pytest.raises(undo.UndoError, match="1 can be taken back"):
        recorder.undo(2, "c", {"c"})


def test_changes_made_between_turns_survive_an_undo_of_the_next_turn(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path, keep=20, max_bytes=10**9, quota_bytes=10**9)
    recorder.end(recorder.begin("c"), "c", "turn one", "answered")
    (tmp_path / "by-a-command.txt").write_text("made by exec between turns")
    start = recorder.begin("c")
    (tmp_path / "by-the-turn.txt").write_text("made by the turn")
    recorder.end(start, "c", "turn two", "answered")
    recorder.undo(1, "c", {"c"})
    assert (tmp_path / "by-a-command.txt").exists() and not (tmp_path / "by-the-turn.txt").exists()


def test_the_first_turn_on_new_compute_reports_what_is_missing_or_changed(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("a")
    (tmp_path / "b.txt").write_text("b")
    old = Recorder(tmp_path, keep=20, max_bytes=10**9, quota_bytes=10**9)
    old.end(old.begin("c"), "c", "turn", "answered")
    (tmp_path / "a.txt").unlink()
    (tmp_path / "b.txt").write_text("bb")
    restarted = Recorder(tmp_path, keep=20, max_bytes=10**9, quota_bytes=10**9)
    asked = []
    start = restarted.begin("c", Restore(missing=lambda store, missing: asked.append(missing) or False))
    assert start.verified == {"missing": ["a.txt"], "changed": ["b.txt"]} and asked == [["a.txt"]]
    assert start.restored_from == "storage"
    restarted.end(start, "c", "turn", "answered")
    assert restarted.begin("c").verified is None  # checked once per conversation per compute
    assert missing_paths(restarted.store, walk(tmp_path)) == []


def test_usage_counts_history_and_checkpoints_and_warns_from_80_percent(tmp_path: Path) -> None:
    (tmp_path / "big.bin").write_bytes(b"x" * 1000)
    recorder = Recorder(tmp_path, keep=20, max_bytes=10**9, quota_bytes=2500)
    record = recorder.end(recorder.begin("c"), "c", "turn", "answered")
    usage = record.usage
    assert usage.files == 1 and usage.checkpoint_bytes > 1000 and usage.bytes >= 2000
    assert "full" in usage.to_json()["warning"]
    assert "warning" not in protocol.Usage(bytes=79, files=1, quota_bytes=100).to_json()
    assert "warning" in protocol.Usage(bytes=80, files=1, quota_bytes=100).to_json()


def test_action_requests_are_parsed_and_bad_ones_refused_with_a_clear_400() -> None:
    undo_two = protocol.parse_request({"action": "undo", "turns": 2}, "s" * 40, 100)
    assert undo_two == protocol.ActionRequest(action="undo", conversation_id="s" * 40, turns=2)
    assert protocol.parse_request({"action": "status"}, None, 100).conversation_id == "default"
    for body, message in (
        ({"action": "redo"}, '"action" must be one of undo, checkpoints, status'),
        ({"action": "undo", "turns": 0}, '"turns" must be a whole number from 1'),
        ({"action": "undo", "turns": True}, '"turns" must be a whole number from 1'),
        ({"action": "undo", "turns": "2"}, '"turns" must be a whole number from 1'),
    ):
        with pytest.raises(protocol.BadRequest, match=message) as caught:
            protocol.parse_request(body, None, 100)
        assert caught.value.status == 400


def test_checkpoint_and_budget_settings_have_their_documented_defaults_and_refuse_bad_values() -> None:
    s = Settings.from_env({})
    assert (s.checkpoint_keep, s.checkpoint_max_bytes, s.storage_quota_bytes) == (20, 256 * 2**20, 2**30)
    assert (s.max_turn_seconds, s.max_model_calls, s.backup_bucket) == (900, 100, None)
    s = Settings.from_env({"MAX_MODEL_CALLS": "5", "STORAGE_QUOTA_BYTES": "1e6", "BACKUP_BUCKET": "b"})
    assert (s.max_model_calls, s.storage_quota_bytes, s.backup_bucket) == (5, 1_000_000, "b")
    with pytest.raises(ValueError, match="MAX_MODEL_CALLS='many' is not a number"):
        Settings.from_env({"MAX_MODEL_CALLS": "many"})
    with pytest.raises(ValueError, match="CHECKPOINT_KEEP='1' is too small; set it to a whole number >= 2"):
        Settings.from_env({"CHECKPOINT_KEEP": "1"})


def test_the_answer_knows_its_json_form_with_every_second_round_field() -> None:
    usage = protocol.Usage(bytes=10, files=2, quota_bytes=100, checkpoint_bytes=4)
    record = protocol.TurnRecord(checkpoint="000003", restored_from="storage", verified=True, usage=usage)
    answer = protocol.Answer("hi", "c", "/w", entries=2, messages_before=4, record=record, quarantined=("m",))
    assert answer.to_json() == {
        "response": "hi",
        "conversation_id": "c",
        "workspace": {
            "path": "/w",
            "restored": True,
            "entries": 2,
            "checkpoint": "000003",
            "restored_from": "storage",
            "verified": True,
            "usage": {"bytes": 10, "files": 2, "quota_bytes": 100, "checkpoint_bytes": 4},
        },
        "history": {"messages_before": 4, "quarantined": ["m"]},
    }
    assert protocol.body_of(protocol.done_event(answer)) == answer.to_json()


def test_an_empty_storage_asks_the_backup_hook_and_the_answer_says_backup(tmp_path: Path) -> None:
    source = tmp_path / "before-reset"
    source.mkdir()
    (source / "kept.txt").write_text("from the backup")
    old = Recorder(source, keep=20, max_bytes=10**9, quota_bytes=10**9)
    old.end(old.begin("c"), "c", "turn", "answered")
    fresh = tmp_path / "after-reset"
    fresh.mkdir()
    recorder = Recorder(fresh, keep=20, max_bytes=10**9, quota_bytes=10**9)

    def restore_empty(store: CheckpointStore) -> bool:  # what agent/backup/s3.py does, from S3
        for manifest in old.store.list():
            for entry in manifest["files"].values():
                if "sha256" in entry:
                    store.put_object_from(entry["sha256"], old.store.object_path(entry["sha256"]))
            store.write_manifest(manifest)
        shutil.copy2(source / "kept.txt", fresh / "kept.txt")
        return True

    start = recorder.begin("c", Restore(empty=restore_empty))
    assert start.restored_from == "backup" and start.verified is True
    assert recorder.end(start, "c", "next", "answered").restored_from == "backup"


def test_a_forged_manifest_cannot_make_undo_write_outside_the_workspace(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    store = CheckpointStore(ws)
    sha = hashlib.sha256(b"x").hexdigest()
    store.put_object_from(sha, b"x")
    file = {"type": "file", "size": 1, "mode": 0o644, "mtime": 1.0, "sha256": sha}
    for forged in (
        {"../outside": file},
        {"link": {"type": "symlink", "target": str(tmp_path)}, "link/escape": file},
    ):
        with pytest.raises(undo.UndoError, match="outside the workspace"):
            undo.restore(ws, store, forged, walk(ws).files)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ws"] and list(ws.iterdir()) == [ws / ".sessions"]
