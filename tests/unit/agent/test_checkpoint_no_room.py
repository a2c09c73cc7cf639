"""A checkpoint with no room (a full filesystem, or the quota reached) is not half-written: the
store stays as it was and says why, status still answers and writes nothing, an undo that would
have to checkpoint first is refused, and the next checkpoint with room keeps every change.
Real files; the full filesystem is a real tmpfs (as root), one failing write a patched os.write."""

from __future__ import annotations

import errno
import hashlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.checkpoints.no_room import StorageFull
from agent.checkpoints.recorder import Recorder
from agent.session_files import SESSIONS

BIG = 3 * 2**19  # past objects.py's SMALL: copied by streaming
MiB = 2**20


def recorder_at(workspace: Path, quota: int = 10**12) -> Recorder:
    return Recorder(workspace, keep=20, max_bytes=10**12, quota_bytes=quota)


def turn(recorder: Recorder, write: dict[str, bytes]) -> str | None:
    start = recorder.begin("c")
    for name, data in write.items():
        (recorder.workspace / name).write_bytes(data)
    return recorder.end(start, "c", "a turn", "answered").checkpoint


def store_state(recorder: Recorder) -> dict[str, bytes]:
    """Every file of the store (HEAD, manifests, objects, temp files) with its bytes."""
    root = recorder.store.root
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def project(workspace: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in workspace.iterdir() if p.name != SESSIONS}


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A real 4 MiB filesystem (tmpfs), as root; the workspace is a folder on it."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    point = tmp_path / "fs"
    point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(point)], check=False)
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        (point / "ws").mkdir()
        yield point
    finally:
        subprocess.run(["umount", "-l", str(point)], check=False)


def fill(path: Path) -> None:
    """Write zeros into `path` until the filesystem refuses (ENOSPC)."""
    with open(path, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError as error:
            assert error.errno == errno.ENOSPC


def test_a_checkpoint_on_a_full_filesystem_is_not_written_and_the_next_one_with_room_keeps_it(
    small_fs: Path,
) -> None:
    recorder = recorder_at(small_fs / "ws")
    assert turn(recorder, {"one.txt": b"one\n"}) is not None
    big, small = os.urandom(BIG), os.urandom(5000)
    (recorder.workspace / "big.bin").write_bytes(big)
    (recorder.workspace / "small.txt").write_bytes(small)
    fill(small_fs / "filler")  # beside the workspace: deleting it makes room, changing nothing kept
    before, files = store_state(recorder), project(recorder.workspace)

    status = recorder.status()  # read-only: answers on a full filesystem
    assert status["usage"]["files"] == 3 and store_state(recorder) == before
    with pytest.raises(StorageFull, match=r"filesystem is full.*Delete files"):
        recorder.undo(1, "c", {"c"})
    assert store_state(recorder) == before  # no manifest, HEAD unchanged, no object or temp file left
    assert project(recorder.workspace) == files  # the undo changed nothing
    assert "not kept yet" in recorder.status()["usage"]["warning"]

    (small_fs / "filler").unlink()  # room again
    report = recorder.undo(1, "c", {"c"})
    assert report["files"]["deleted"] == ["big.bin", "one.txt", "small.txt"]
    kept = recorder.store.read(int(report["checkpoint"]) - 1)  # what the undo kept first
    assert kept is not None and kept["kind"] == "external"
    for name, data in (("big.bin", big), ("small.txt", small)):
        sha = kept["files"][name]["sha256"]
        assert sha == hashlib.sha256(data).hexdigest()
        assert recorder.store.object_path(sha).read_bytes() == data
    assert "warning" not in recorder.status()["usage"]


def test_a_turn_that_fills_the_filesystem_is_answered_without_a_checkpoint_and_the_next_turn_keeps_it(
    small_fs: Path,
) -> None:
    recorder = recorder_at(small_fs / "ws")
    start = recorder.begin("c")
    seqs = recorder.store.seqs()
    (recorder.workspace / "made.bin").write_bytes(os.urandom(BIG))
    fill(small_fs / "filler")
    record = recorder.end(start, "c", "fill the disk", "answered")
    assert record.checkpoint is None and "filesystem is full" in record.usage.to_json()["warning"]
    assert recorder.store.seqs() == seqs
    (small_fs / "filler").unlink()
    assert turn(recorder, {}) is not None  # its begin kept made.bin as an external checkpoint
    external = recorder.store.read(recorder.store.seqs()[-2])
    assert external is not None and external["changed"]["added"] == ["made.bin"]


def failing_write(monkeypatch: pytest.MonkeyPatch, target: str) -> None:
    """os.write fails with ENOSPC on files whose path contains `target` (the durable layer's temp files)."""
    real = os.write

    def write(fd: int, data: bytes) -> int:
        if target in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, data)

    monkeypatch.setattr(os, "write", write)


@pytest.mark.parametrize("target", ["/objects/", "/manifests/.", "/.HEAD."])
def test_no_room_for_an_object_the_manifest_or_head_leaves_no_torn_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, target: str
) -> None:
    recorder = recorder_at(tmp_path)
    first = turn(recorder, {"one.txt": b"one\n"})
    head = (recorder.store.root / "HEAD").read_bytes()
    before = store_state(recorder)
    start = recorder.begin("c")
    (tmp_path / "two.txt").write_bytes(b"two\n")
    with monkeypatch.context() as patch:
        failing_write(patch, target)
        assert recorder.end(start, "c", "a turn", "answered").checkpoint is None
    assert store_state(recorder) == before and (recorder.store.root / "HEAD").read_bytes() == head
    assert recorder.store.latest()["id"] == first  # type: ignore[index]
    assert recorder.store.failed and "Delete files" in recorder.store.failed

    again = turn(recorder, {})  # room again: the change is kept, by a full walk
    assert again is not None and (recorder.store.root / "HEAD").read_text().strip() == again
    kept = recorder.store.read(int(again) - 1)
    assert kept is not None and "two.txt" in kept["changed"]["added"]
    assert recorder.store.object_path(kept["files"]["two.txt"]["sha256"]).read_bytes() == b"two\n"
    assert recorder.store.failed is None


def test_over_the_quota_nothing_new_is_checkpointed_and_a_delete_brings_the_session_back(
    tmp_path: Path,
) -> None:
    """The measured quota lets a call write past it; a checkpoint of that would keep it there."""
    recorder = recorder_at(tmp_path, quota=MiB)
    assert turn(recorder, {"one.txt": b"one\n"}) is not None
    (tmp_path / "big.bin").write_bytes(os.urandom(BIG))  # past the quota
    before = store_state(recorder)
    assert recorder.status()["usage"]["bytes"] > MiB and store_state(recorder) == before
    with pytest.raises(StorageFull, match="past its quota"):
        recorder.undo(1, "c", {"c"})
    assert store_state(recorder) == before and (tmp_path / "big.bin").exists()
    (tmp_path / "big.bin").unlink()  # the session's way back
    report = recorder.undo(1, "c", {"c"})
    assert report["files"]["deleted"] == ["one.txt"] and report["usage"]["bytes"] < MiB / 2


def test_a_large_file_already_kept_is_checkpointed_over_the_quota_without_a_copy(tmp_path: Path) -> None:
    recorder = recorder_at(tmp_path, quota=4 * BIG)
    data = os.urandom(BIG)
    assert turn(recorder, {"big.bin": data}) is not None  # 2 x BIG with its object
    (tmp_path / "copy.bin").write_bytes(data)  # 3 x BIG: another copy would pass the quota
    before = recorder.store.bytes()
    assert turn(recorder, {}) is not None
    assert recorder.store.bytes() - before < 10_000  # manifests only: the object was known


def test_status_writes_nothing_and_leaves_the_changes_for_the_next_checkpoint(tmp_path: Path) -> None:
    recorder = recorder_at(tmp_path)
    assert turn(recorder, {"one.txt": b"one\n"}) is not None
    (tmp_path / "new.txt").write_bytes(b"new\n")
    (tmp_path / "one.txt").unlink()
    before = store_state(recorder)
    for _ in range(2):
        status = recorder.status()
        assert status["usage"]["files"] == 1 and store_state(recorder) == before
    assert turn(recorder, {}) is not None
    external = recorder.store.read(recorder.store.seqs()[-2])
    assert external is not None and external["kind"] == "external"
    assert (external["changed"]["added"], external["changed"]["deleted"]) == (["new.txt"], ["one.txt"])


def test_an_undo_whose_files_cannot_fit_back_is_refused_before_it_changes_anything(small_fs: Path) -> None:
    recorder = recorder_at(small_fs / "ws")
    data = os.urandom(BIG)
    assert turn(recorder, {"big.bin": data, "other.txt": b"other\n"}) is not None
    start = recorder.begin("c")
    (recorder.workspace / "big.bin").unlink()  # a turn deletes it; undoing that writes it back
    assert recorder.end(start, "c", "rm big.bin", "answered").checkpoint is not None
    fill(small_fs / "filler")
    before, files = store_state(recorder), project(recorder.workspace)
    with pytest.raises(StorageFull, match=r"undo refused: the files it writes back take 1\.5 MiB"):
        recorder.undo(1, "c", {"c"})
    assert store_state(recorder) == before and project(recorder.workspace) == files
    (small_fs / "filler").unlink()
    assert recorder.undo(1, "c", {"c"})["files"]["restored"] == ["big.bin"]
    assert (recorder.workspace / "big.bin").read_bytes() == data
