"""agent/mount_watch.py: the restore starts when the storage appears (or turns writable), with
the session id learned from a request header before or after; every request waits for it."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from agent.backup.reports import BackupError, RestoreReport
from agent.service.mount_watch import MountWatch, mounted
from tests.support.local_runtime import wait_for

REPORT = RestoreReport("000003", 2, 10, 10, 4, 0.01)


class Restorer:
    """Records the workspace state each restore saw; the first returns REPORT, later ones None."""

    def __init__(self, workspace: Path, hold: threading.Event | None = None) -> None:
        self.workspace, self.hold, self.calls = workspace, hold, []

    def __call__(self, session_id: str) -> RestoreReport | None:
        self.calls.append((session_id, mounted(self.workspace)))
        if self.hold is not None:
            self.hold.wait(10)
        return REPORT if len(self.calls) == 1 else None


class Busy:
    def __init__(self) -> None:
        self.open: set[int] = set()
        self.seen = 0

    def add_async_task(self, name: str, metadata: dict | None = None) -> int:
        self.seen += 1
        self.open.add(self.seen)
        return self.seen

    def complete_async_task(self, task_id: int) -> bool:
        self.open.discard(task_id)
        return True


def test_nothing_is_restored_before_the_mount_and_the_restore_starts_within_a_poll_of_it(
    tmp_path: Path,
) -> None:
    workspace = tmp_path / "workspace"
    restore, busy = Restorer(workspace), Busy()
    watch = MountWatch(workspace, restore)
    watch.start(busy)
    watch.learn("session-" + "a" * 32)  # known before the mount: the first request came first
    assert restore.calls == [] and watch.timings() == {"mounted": False}

    appeared = time.monotonic()
    workspace.mkdir()  # the mount appears
    wait_for(lambda: watch.figures["done"], 10, "the restore at the mount")

    assert restore.calls == [("session-" + "a" * 32, True)] and busy.open == set() and busy.seen == 1
    after = watch.figures["started"] - appeared
    print(f"\nthe restore started {after * 1000:.1f} ms after the mount appeared")
    assert 0 <= watch.timings()["start_after_mount_s"] <= after < 1.0
    assert watch.ensure("session-" + "a" * 32) is REPORT  # the first request after it gets the report
    assert watch.ensure("session-" + "a" * 32) is None


def test_a_read_only_slot_is_not_a_mount_until_it_turns_writable(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root writes through mode bits; the e2e test covers bwrap's read-only slot")
    workspace = tmp_path / "workspace"
    workspace.mkdir(mode=0o500)
    assert not mounted(workspace)
    workspace.chmod(0o700)
    assert mounted(workspace)


def test_a_request_during_the_restore_waits_for_it_and_ping_says_busy_meanwhile(tmp_path: Path) -> None:
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    hold = threading.Event()
    restore, busy = Restorer(workspace, hold), Busy()
    watch = MountWatch(workspace, restore)
    watch.start(busy)
    watch.learn("session-" + "b" * 32)  # mounted: returns once the restore has begun
    assert busy.open == {1}  # HealthyBusy from the moment the id is known
    answered: list = []
    request = threading.Thread(target=lambda: answered.append(watch.ensure("session-" + "b" * 32)))
    request.start()
    request.join(0.2)
    assert request.is_alive() and answered == []  # waits while the restore runs
    hold.set()
    request.join(10)
    assert answered == [REPORT] and busy.open == set()


def test_a_restore_that_fails_at_the_mount_is_retried_by_the_next_request(tmp_path: Path) -> None:
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    calls: list[str] = []

    def restore(session_id: str) -> RestoreReport | None:
        calls.append(session_id)
        if len(calls) == 1:
            raise BackupError("restore from s3://b stopped: unreachable; the next call resumes it")
        return REPORT

    watch = MountWatch(workspace, restore)
    watch.start(Busy())
    watch.learn("session-" + "c" * 32)
    wait_for(lambda: watch.figures["done"], 10, "the failed restore")
    assert "unreachable" in watch.timings()["error"]
    assert watch.ensure("session-" + "c" * 32) is REPORT and len(calls) == 2


def test_without_backups_nothing_watches_and_requests_do_not_wait(tmp_path: Path) -> None:
    watch = MountWatch(tmp_path, None)
    assert watch.start(Busy()) is None
    assert watch.ensure("session-" + "d" * 32) is None
