"""The storage walks hold against what a session can write: deep chains, paths past PATH_MAX,
FIFOs, hard links, symlinks out, unreadable directories, and a tree moved mid-walk."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentcore_local.storage import walk as storage_walk
from agentcore_local.storage.walk import WalkError, clear_tree, remove_tree, scan_unsupported, usage

DEPTH = 1_100  # past Python's recursion limit; 4 characters a level: a 4,400-character path
PAYLOAD = 1024 * 1024


def deep_chain(root: Path, depth: int = DEPTH) -> int:
    """Make root/abc/abc/... `depth` levels deep with a 1 MiB file, a FIFO and a hard link at the bottom.

    Built through directory descriptors, since no path call can name the bottom. Returns the
    bottom's directory fd (the caller closes it)."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(depth):
        os.mkdir("abc", dir_fd=fd)
        child = os.open("abc", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = child
    data = os.open("data.bin", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
    os.write(data, b"x" * PAYLOAD)
    os.close(data)
    os.mkfifo("pipe", dir_fd=fd)
    os.link("data.bin", "twin", src_dir_fd=fd, dst_dir_fd=fd)
    return fd


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[Path]:
    storage = tmp_path / "storage"
    storage.mkdir()
    os.close(deep_chain(storage))
    yield storage
    remove_tree(storage)  # pytest's own clean-up of old temp dirs would recurse into it and fail


def test_a_chain_deeper_than_the_recursion_limit_and_path_max_is_counted(chain: Path) -> None:
    counted = usage(chain)
    assert counted.dirs == DEPTH
    assert counted.files == 3  # data.bin, its hard link, the FIFO
    assert counted.bytes >= 2 * PAYLOAD  # both names of the hard-linked file, as du -l counts


def test_the_scan_finds_the_fifo_and_the_hard_links_at_the_bottom(chain: Path) -> None:
    found = {(item.kind, item.path.rsplit("/", 1)[-1]) for item in scan_unsupported(chain)}
    assert found == {("FIFO", "pipe"), ("hard link", "data.bin"), ("hard link", "twin")}
    assert all(len(item.path) > 4096 for item in scan_unsupported(chain))


def test_clear_empties_the_deep_chain_and_keeps_the_root(chain: Path) -> None:
    clear_tree(chain)
    assert chain.is_dir()
    assert os.listdir(chain) == []


def test_remove_deletes_the_deep_chain(chain: Path) -> None:
    remove_tree(chain)
    assert not os.path.lexists(chain)


def test_the_walk_holds_a_bounded_number_of_descriptors(chain: Path) -> None:
    before = len(os.listdir("/proc/self/fd"))
    most = 0
    for _ in storage_walk.walk(chain):
        most = max(most, len(os.listdir("/proc/self/fd")) - before)
    assert most <= storage_walk.MAX_OPEN + 2
    assert len(os.listdir("/proc/self/fd")) == before  # all closed afterwards


def test_symlinks_out_of_the_storage_are_never_followed(tmp_path: Path) -> None:
    outside = tmp_path / "host"
    outside.mkdir()
    (outside / "secret").write_text("host file")
    storage = tmp_path / "storage"
    (storage / "sub").mkdir(parents=True)
    (storage / "to_host").symlink_to(outside)
    (storage / "sub" / "to_file").symlink_to(outside / "secret")
    counted = usage(storage)
    assert (counted.files, counted.dirs) == (2, 1)  # the two links themselves, not what they point at
    remove_tree(storage)
    assert (outside / "secret").read_text() == "host file"
    assert not os.path.lexists(storage)


def test_unreadable_directories_are_skipped_by_a_measure_and_removed_by_a_reset(tmp_path: Path) -> None:
    storage = tmp_path / "storage"
    locked = storage / "locked"
    (locked / "inner").mkdir(parents=True)
    (locked / "inner" / "f").write_text("x")
    locked.chmod(0)
    try:
        assert usage(storage).dirs >= 1  # never raises, whoever runs it
        clear_tree(storage)
        assert os.listdir(storage) == []
    finally:
        if locked.exists():
            locked.chmod(0o700)


def test_a_directory_moved_to_another_parent_mid_walk_stops_the_walk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(storage_walk, "MAX_OPEN", 2)  # so ".." is used to climb back
    storage = tmp_path / "storage"
    (storage / "a" / "b" / "c" / "d").mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with pytest.raises(WalkError, match="moved during the walk"):
        for entry in storage_walk.walk(storage):
            if entry.name == "d":  # deep enough that "a" is closed: move "b" out from under it
                os.rename(storage / "a" / "b", elsewhere / "b")


def test_missing_paths_are_no_ops(tmp_path: Path) -> None:
    assert usage(tmp_path / "none").bytes == 0
    assert scan_unsupported(tmp_path / "none") == []
    clear_tree(tmp_path / "none")
    remove_tree(tmp_path / "none")
