"""The change tracker (agent/checkpoints/watch.py) under the recorder, for real: real files, real inotify,
real shell subprocesses. Every checkpoint it makes from tracked changes must equal what a full
walk of the same workspace finds; when it cannot vouch for its list it must walk everything."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from agent.checkpoints.recorder import Recorder
from agent.checkpoints.store import CheckpointStore
from agent.checkpoints.walk import walk
from agent.tools.workspace import Workspace
from tests.support import REPO

FIELDS = ("type", "sha256", "target", "mode", "size", "mtime")


def full_walk(ws: Path) -> dict[str, tuple]:
    """What an honest full walk finds now, hashes included."""
    found = walk(ws)
    CheckpointStore(ws).hash_missing(found)
    return {p: tuple(e.get(k) for k in FIELDS) for p, e in found.files.items()}


def recorded(manifest: dict) -> dict[str, tuple]:
    return {p: tuple(e.get(k) for k in FIELDS) for p, e in manifest["files"].items()}


def sh(ws: Path, script: str) -> None:
    subprocess.run(["sh", "-c", script], cwd=ws, check=True)


class Turns:
    """A recorder on a small project, and its turns, each checked against a full walk."""

    def __init__(self, ws: Path) -> None:
        (ws / "src" / "lib").mkdir(parents=True)
        (ws / "src" / "lib" / "a.js").write_text("a\n")
        (ws / "src" / "b.js").write_text("b\n")
        (ws / "README").write_text("readme\n")
        self.ws = ws
        self.recorder = Recorder(ws, keep=50, max_bytes=10**9, quota_bytes=10**9)
        self.turn(lambda: None)  # the first: a full walk, which starts the tracker

    def turn(self, change) -> dict:
        start = self.recorder.begin("c")
        change()
        self.recorder.end(start, "c", "prompt", "answered")
        manifest = self.recorder.store.latest()
        assert recorded(manifest) == full_walk(self.ws)
        assert recorded(CheckpointStore(self.ws).latest()) == recorded(manifest)  # as read back from disk
        return manifest

    @property
    def full_walks(self) -> int:
        return self.recorder.tracker.full_walks


def test_changes_by_the_file_tools_and_by_a_shell_are_recorded_without_walking(tmp_path: Path) -> None:
    turns = Turns(tmp_path)
    tools = Workspace(root=tmp_path)
    walks = turns.full_walks

    def change() -> None:
        tools.create_text("src/new.js", "new\n")
        tools.edit_text("src/b.js", lambda text: text + "more\n")
        sh(tmp_path, "echo shell >> src/lib/a.js; chmod 700 README; ln -s src/b.js link; rm src/new.js")
        sh(tmp_path, "mkfifo pipe; printf x > src/lib/c.js && truncate -s 0 src/lib/c.js")

    manifest = turns.turn(change)
    assert turns.full_walks == walks, "tracked changes must not need a full walk"
    assert manifest["changed"] == {
        "added": ["link", "pipe", "src/lib/c.js"],
        "modified": ["src/b.js", "src/lib/a.js"],
        "deleted": [],
        "mode": ["README"],
    }


def test_a_directory_filled_right_after_it_is_made_is_recorded_whole(tmp_path: Path) -> None:
    turns = Turns(tmp_path)
    walks = turns.full_walks
    # Made and filled in one go, before anything watches the new directories.
    manifest = turns.turn(
        lambda: sh(tmp_path, "mkdir -p d/e/f && for i in 1 2 3; do echo $i > d/e/f/$i; done")
    )
    assert {"d", "d/e", "d/e/f", "d/e/f/1", "d/e/f/3"} <= set(manifest["changed"]["added"])
    # Watched now: what is written there next turn is seen without a walk.
    manifest = turns.turn(lambda: sh(tmp_path, "echo again > d/e/f/1; mkdir d/e/g; echo x > d/e/g/y"))
    assert manifest["changed"]["modified"] == ["d/e/f/1"] and "d/e/g/y" in manifest["changed"]["added"]
    # Deleted and made anew under the same name: its old watch went with it, the new one is walked.
    manifest = turns.turn(lambda: sh(tmp_path, "rm -rf d/e && mkdir -p d/e/h && echo z > d/e/h/z"))
    assert "d/e/f/1" in manifest["changed"]["deleted"] and "d/e/h/z" in manifest["changed"]["added"]
    turns.turn(lambda: sh(tmp_path, "echo later > d/e/h/z"))
    assert turns.full_walks == walks


def test_a_directory_replaced_by_a_symlink_drops_what_was_under_it(tmp_path: Path) -> None:
    turns = Turns(tmp_path)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "secret").write_text("not the project's\n")
    manifest = turns.turn(lambda: sh(tmp_path, "rm -rf src/lib && ln -s ../elsewhere src/lib"))
    assert manifest["files"]["src/lib"] == {"type": "symlink", "target": "../elsewhere"}
    assert not any(p.startswith("src/lib/") for p in manifest["files"])


def test_a_directory_rename_falls_back_to_a_full_walk_and_stays_exact(tmp_path: Path) -> None:
    turns = Turns(tmp_path)
    walks = turns.full_walks
    manifest = turns.turn(lambda: sh(tmp_path, "mv src source && echo c > source/lib/c.js"))
    assert turns.full_walks == walks + 1
    assert "source/lib/c.js" in manifest["changed"]["added"] and "src/b.js" in manifest["changed"]["deleted"]
    # The watches were made anew by that walk: the next change under the new name is tracked.
    turns.turn(lambda: sh(tmp_path, "echo d >> source/lib/a.js"))
    assert turns.full_walks == walks + 1


def test_an_overflowing_event_queue_falls_back_to_a_full_walk(tmp_path: Path) -> None:
    turns = Turns(tmp_path)
    walks = turns.full_walks
    limit = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
    files = [tmp_path / "README", tmp_path / "src" / "b.js"]

    def flood() -> None:
        for i in range(limit + 100):  # alternating, so the kernel cannot merge them into one
            os.utime(files[i % 2], ns=(i, i))
        (tmp_path / "src" / "lib" / "a.js").write_text("changed amid the flood\n")

    manifest = turns.turn(flood)
    assert turns.full_walks == walks + 1
    assert "src/lib/a.js" in manifest["changed"]["modified"]


def test_nothing_changed_means_no_walk_and_changes_between_turns_go_to_the_next_checkpoint(
    tmp_path: Path,
) -> None:
    turns = Turns(tmp_path)
    recorder = turns.recorder
    before = recorder.unchanged
    turns.turn(lambda: None)
    assert recorder.unchanged == before + 2  # neither the start nor the end of the turn looked at a file
    sh(tmp_path, "echo between > between.txt")  # a background process, between two turns
    start = recorder.begin("c")
    external = recorder.store.latest()
    assert external["kind"] == "external" and external["changed"]["added"] == ["between.txt"]
    recorder.end(start, "c", "p", "answered")


# The kernel's own refusals, for real: each runs in a child process in a user namespace of its own,
# whose per-user inotify limits (/proc/sys/user/max_inotify_*) it sets without touching the machine's.
IN_NAMESPACE = """
import json, sys
from pathlib import Path
from tests.unit.agent import test_watch
print(json.dumps(getattr(test_watch, sys.argv[1])(Path(sys.argv[2]))))
"""


def in_user_namespace(scenario: str, ws: Path) -> dict:
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-U", "-r", "true"]).returncode:
        pytest.skip("needs unshare(1) and user namespaces")
    done = subprocess.run(
        ["unshare", "--user", "--map-root-user", sys.executable, "-c", IN_NAMESPACE, scenario, str(ws)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.splitlines()[-1])


def limit(name: str, value: int) -> None:
    Path("/proc/sys/user", name).write_text(f"{value}\n")


def no_instance_left(ws: Path) -> dict:
    """inotify_init1 refused (EMFILE: max_user_instances reached), then allowed again."""
    limit("max_inotify_instances", 0)
    turns = Turns(ws)
    walks = turns.full_walks
    manifest = turns.turn(lambda: sh(ws, "echo x > x; rm README"))
    refused = {
        "walks": turns.full_walks - walks,
        "doubt": turns.recorder.tracker.doubt,
        **manifest["changed"],
    }
    limit("max_inotify_instances", 128)
    walks = turns.full_walks
    turns.turn(lambda: sh(ws, "echo y > y"))
    allowed = turns.full_walks - walks
    walks = turns.full_walks
    turns.turn(lambda: sh(ws, "echo z > z"))
    return {"refused": refused, "walks_once_allowed": allowed, "walks_after": turns.full_walks - walks}


def test_without_an_inotify_instance_every_turn_walks_and_a_later_one_tracks(tmp_path: Path) -> None:
    seen = in_user_namespace("no_instance_left", tmp_path)
    refused = seen["refused"]
    assert refused["walks"] == 2  # the start and the end of the turn
    assert refused["added"] == ["x"] and refused["deleted"] == ["README"]
    assert refused["doubt"] == f"inotify_init1: {os.strerror(errno.EMFILE)}"
    assert seen["walks_once_allowed"] == 1  # the next turn's start walks once and starts the tracker
    assert seen["walks_after"] == 0  # and from then on it tracks


def no_watch_left(ws: Path) -> dict:
    """inotify_add_watch refused (ENOSPC: max_user_watches reached), then room again."""
    limit("max_inotify_watches", 1)  # the root's watch, and no other
    turns = Turns(ws)
    walks = turns.full_walks
    manifest = turns.turn(lambda: sh(ws, "echo x > src/x"))
    limit("max_inotify_watches", 100_000)  # room again: a tracker refused for want of room stays off
    later = turns.turn(lambda: sh(ws, "echo y > src/y"))
    tracker = turns.recorder.tracker
    return {
        "added": manifest["changed"]["added"] + later["changed"]["added"],
        "walks": turns.full_walks - walks,
        "watching": tracker.watching,
        "disabled": tracker.disabled,
    }


def test_watches_refused_for_want_of_room_mean_full_walks_and_no_retry(tmp_path: Path) -> None:
    seen = in_user_namespace("no_watch_left", tmp_path)
    assert seen["added"] == ["src/x", "src/y"]
    assert seen["walks"] == 4  # both ends of both turns, even once there is room again
    assert seen["watching"] == 0  # the watches it held were given back
    assert seen["disabled"].endswith(os.strerror(errno.ENOSPC))
