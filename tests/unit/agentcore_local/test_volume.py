"""A session's own filesystem (agentcore_local/storage/volume.py) and the measured quota it
replaces where serve may not mount (agentcore_local/storage/disk.py)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentcore_local.errors import ServiceQuotaExceededException
from agentcore_local.storage import SessionStorage, Volumes, frees_or_reads, unmount_under
from agentcore_local.storage.volume import mounts_under
from agentcore_local.storage.walk import usage

SIZE = 8 * 2**20


@pytest.fixture
def volumes(tmp_path: Path) -> Iterator[Volumes]:
    found, why = Volumes.probe(SIZE, tmp_path / "probe")
    if found is None:
        pytest.skip(f"no filesystem per session here: {why}")
    yield found
    unmount_under(tmp_path)  # whatever a failing test left mounted


def test_the_probe_says_why_when_serve_is_not_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    found, why = Volumes.probe(SIZE, tmp_path)
    assert found is None and "not root" in why


def test_a_mount_makes_a_sparse_image_of_the_quota_and_holds_files_to_it(
    volumes: Volumes, tmp_path: Path
) -> None:
    root = tmp_path / "session"
    files = root / "storage"
    assert volumes.mount(root, files)
    image = root / "storage.img"
    assert image.stat().st_size == SIZE and image.stat().st_blocks * 512 < SIZE / 2  # sparse
    assert os.path.ismount(files) and os.listdir(files) == []  # no lost+found in the session's files
    with pytest.raises(OSError) as full, open(files / "big", "wb") as big:
        for _ in range(2 * SIZE // 2**20):
            big.write(b"\0" * 2**20)
            big.flush()
            os.fsync(big.fileno())
    assert full.value.errno == 28  # ENOSPC
    assert image.stat().st_blocks * 512 <= SIZE


def test_a_detached_volume_mounts_again_with_its_files_and_a_discarded_one_starts_empty(
    volumes: Volumes, tmp_path: Path
) -> None:
    root = tmp_path / "session"
    files = root / "storage"
    volumes.mount(root, files)
    (files / "kept.txt").write_text("kept")
    volumes.detach(files)
    assert not os.path.ismount(files) and os.listdir(files) == []
    volumes.mount(root, files)
    assert (files / "kept.txt").read_text() == "kept"
    volumes.discard(root, files)
    volumes.mount(root, files)
    assert os.listdir(files) == []


def test_a_busy_volume_is_detached_lazily_at_once(volumes: Volumes, tmp_path: Path) -> None:
    root = tmp_path / "session"
    files = root / "storage"
    volumes.mount(root, files)
    holder = subprocess.Popen(["sleep", "30"], cwd=files)  # a process still inside
    try:
        volumes.detach(files)
        assert mounts_under(files) == []
    finally:
        holder.kill()
        holder.wait()


def test_storage_from_before_volumes_is_never_hidden_under_a_mount(volumes: Volumes, tmp_path: Path) -> None:
    root = tmp_path / "session"
    files = root / "storage"
    files.mkdir(parents=True)
    (files / "old.txt").write_text("old")
    assert volumes.mount(root, files) is False
    assert not os.path.ismount(files) and (files / "old.txt").read_text() == "old"


def test_unmount_under_removes_what_a_killed_serve_left(volumes: Volumes, tmp_path: Path) -> None:
    sessions = tmp_path / "sessions"
    for name in ("a", "b"):
        volumes.mount(sessions / name, sessions / name / "storage")
    assert unmount_under(sessions) == 2
    assert mounts_under(sessions) == []


def test_the_session_storage_mounts_measures_without_a_walk_resets_and_deletes(
    volumes: Volumes, tmp_path: Path
) -> None:
    storage = SessionStorage(tmp_path, SIZE, volumes)
    root = storage.root("rt", "session-" + "x" * 30)
    storage.prepare(root, None)
    assert storage.enforced(root)
    (storage.files(root) / "f").write_bytes(b"x" * 2**20)
    os.sync()
    assert 2**20 <= (storage.measure(root) or 0) < SIZE
    storage.detach(root)
    assert not storage.enforced(root)
    storage.prepare(root, "the runtime's version changed")
    assert storage.enforced(root) and os.listdir(storage.files(root)) == []
    storage.delete(root)
    assert not root.exists() and mounts_under(tmp_path) == []


def test_the_measured_quota_refuses_a_turn_but_never_a_call_that_frees_or_reads() -> None:
    storage = SessionStorage(Path("/nonexistent"), 100)
    storage.check_quota(100)
    storage.check_quota(10**9, exempt=True)
    with pytest.raises(ServiceQuotaExceededException, match="delete files"):
        storage.check_quota(101)


@pytest.mark.parametrize(
    ("body", "frees"),
    [
        (json.dumps({"action": "undo", "turns": 2}).encode(), True),
        (b'{"action": "status"}', True),
        (b'{"action": "checkpoints"}', True),
        (b'{"prompt": "write a big file"}', False),
        (b'{"action": "rm -rf"}', False),
        (b"[" * 100_000 + b"]" * 100_000, False),  # hostile: deep nesting, far past the size parsed
        (b"[" * 2000 + b"]" * 2000, False),  # deep, within it
        (b"\xff\xfe not json", False),
        (json.dumps({"action": "status", "pad": "x" * 5000}).encode(), False),  # too long to be an action
    ],
)
def test_only_the_agents_undo_status_and_checkpoints_pass_the_measured_quota(
    body: bytes, frees: bool
) -> None:
    assert frees_or_reads(body) is frees


def test_the_measure_counts_a_sparse_file_at_its_apparent_size(tmp_path: Path) -> None:
    with open(tmp_path / "sparse.bin", "wb") as sparse:
        sparse.truncate(700 * 2**20)
    assert (tmp_path / "sparse.bin").stat().st_blocks * 512 < 2**20
    assert usage(tmp_path).bytes >= 700 * 2**20


def test_an_image_made_under_another_quota_is_resized_and_a_shrink_below_its_files_keeps_it(
    volumes: Volumes, tmp_path: Path
) -> None:
    root = tmp_path / "session"
    files = root / "storage"
    volumes.mount(root, files)
    (files / "five").write_bytes(os.urandom(5 * 2**20))
    volumes.detach(files)
    bigger = Volumes(2 * SIZE, volumes.mkfs, volumes.mount_tool)
    bigger.mount(root, files)
    assert (root / "storage.img").stat().st_size == 2 * SIZE
    assert os.statvfs(files).f_blocks * os.statvfs(files).f_frsize > 1.5 * SIZE
    assert (files / "five").stat().st_size == 5 * 2**20
    volumes.detach(files)
    smaller = Volumes(4 * 2**20, volumes.mkfs, volumes.mount_tool)
    smaller.mount(root, files)  # 5 MiB of files cannot fit in 4: kept as it was
    assert (root / "storage.img").stat().st_size == 2 * SIZE
    assert (files / "five").stat().st_size == 5 * 2**20
