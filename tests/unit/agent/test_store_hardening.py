"""What a session's own shell can plant in its checkpoint store, or a crafted backup can name, is
set aside or refused and never wedges, redirects or half-applies a restore: real files, FIFOs and
links in temp dirs."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from agent.backup import placement as backup_placement
from agent.backup.files import DamagedBackup, Store, check_manifest
from agent.checkpoints import undo
from agent.checkpoints.store import CheckpointStore
from agent.checkpoints.walk import walk


def two_checkpoints(ws: Path) -> CheckpointStore:
    (ws / "a").write_text("a")
    store = CheckpointStore(ws)
    store.checkpoint(walk(ws), kind="turn", turn=1)
    (ws / "b").write_text("b")
    store.checkpoint(walk(ws), kind="turn", turn=2)
    return store


@pytest.mark.parametrize(
    "plant",
    [
        lambda p: os.mkfifo(p),
        lambda p: p.write_text('{"seq": 3, "files": ' + "[" * 100_000 + "]" * 100_000 + "}"),
        lambda p: p.write_text(json.dumps({"seq": 3, "turn": "three", "files": {}})),
        lambda p: p.write_text(json.dumps({"seq": 3, "files": {"x": "not an entry"}})),
        lambda p: p.write_text(json.dumps({"seq": 4, "files": {}})),  # names another checkpoint
        lambda p: p.symlink_to(p.parent / "000001.json"),
    ],
    ids=["fifo", "100k-deep", "turn-not-a-number", "entry-not-a-map", "wrong-seq", "symlink"],
)
def test_a_planted_newest_manifest_is_set_aside_and_the_one_before_is_the_latest(
    tmp_path: Path, plant
) -> None:
    two_checkpoints(tmp_path)
    planted = tmp_path / ".sessions" / ".checkpoints" / "manifests" / "000003.json"
    plant(planted)
    store = CheckpointStore(tmp_path)
    assert store.latest()["seq"] == 2 and [m["seq"] for m in store.list()] == [1, 2]
    assert not os.path.lexists(planted)  # set aside, never read again
    assert any(n.startswith("000003.json.refused-") for n in os.listdir(planted.parent))


def test_a_manifests_directory_that_is_a_symlink_loop_is_set_aside_and_checkpoints_go_on(
    tmp_path: Path,
) -> None:
    store = two_checkpoints(tmp_path)
    manifests = store.manifests
    os.rename(manifests, manifests.with_name("old"))
    manifests.symlink_to(manifests)  # ELOOP on every open
    fresh = CheckpointStore(tmp_path)
    assert fresh.latest() is None and fresh.list() == []
    fresh.checkpoint(walk(tmp_path), kind="turn", turn=1)
    assert fresh.latest()["seq"] == 1


def test_a_refused_undo_deletes_nothing(tmp_path: Path) -> None:
    store = two_checkpoints(tmp_path)
    target = store.read(1)["files"]
    (tmp_path / "a").write_text("changed")  # undo must write a back from the store...
    sha = target["a"]["sha256"]
    os.chmod(store.object_path(sha), 0o644)
    store.object_path(sha).write_text("damaged")  # ...whose copy no longer matches its hash
    with pytest.raises(undo.UndoError, match="damaged"):
        undo.restore(tmp_path, store, target, walk(tmp_path).files)
    assert (tmp_path / "b").read_text() == "b"  # b (added after checkpoint 1) is still there
    assert (tmp_path / "a").read_text() == "changed"


FILE = {"type": "file", "sha256": hashlib.sha256(b"x").hexdigest(), "size": 1, "mode": 0o644}


@pytest.mark.parametrize(
    "files",
    [
        {"./s": {"type": "symlink", "target": ".sessions"}, "s/x": FILE},
        {"s": {"type": "symlink", "target": ".sessions"}, "s//x": FILE},
        {"esc": {"type": "symlink", "target": "/tmp"}, "esc/a": {"type": "dir", "mode": 0o755}},
        {"a/../../x": FILE},
        {".sessions/session_x/m": FILE},
        {"f": {"type": "fifo"}},
        {"l": {"type": "symlink", "target": "x" * 5000}},
        {"a": {**FILE, "mode": "rwx"}},
        {"a": "not an entry"},
    ],
    ids=["dot-slash", "double-slash", "link-out", "dotdot", "history", "fifo", "long-link", "mode", "entry"],
)
def test_check_manifest_refuses_every_entry_a_restore_could_not_place_safely(files: dict) -> None:
    with pytest.raises(DamagedBackup):
        check_manifest(files, {})


def test_a_restore_never_follows_a_link_already_in_the_workspace(tmp_path: Path) -> None:
    ws, outside = tmp_path / "ws", tmp_path / "outside"
    ws.mkdir(), outside.mkdir()
    (ws / ".sessions" / "session_c").mkdir(parents=True)
    (ws / "s").symlink_to(ws / ".sessions")  # what an exec made before the restore reached it
    (ws / "esc").symlink_to(outside)
    store = Store(ws)
    store.object_path(FILE["sha256"]).parent.mkdir(parents=True)
    store.object_path(FILE["sha256"]).write_bytes(b"x")
    files = {"s/x": FILE, "esc/y": FILE, "esc/d": {"type": "dir", "mode": 0o755}, "ok": FILE}
    check_manifest(files, {})  # fine as a manifest: the links are the workspace's, not the backup's
    for only in (["ok"], ["s/x"], ["esc/y"], ["esc/d"]):
        if only == ["ok"]:
            backup_placement.materialize(store, files, only=only)
            continue
        with pytest.raises(DamagedBackup, match="symbolic link"):
            backup_placement.materialize(store, files, only=only)
    assert (ws / "ok").read_bytes() == b"x"
    assert os.listdir(outside) == [] and os.listdir(ws / ".sessions" / "session_c") == []
