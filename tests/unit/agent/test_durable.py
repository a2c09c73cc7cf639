"""durable: the one atomic write. A failure at any point leaves the old file whole and no temporary file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import durable


def test_write_json_replaces_the_file_with_the_new_document(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    target.write_text('{"old": true}')
    durable.write_json(target, {"new": [1, 2]}, indent=1)
    assert json.loads(target.read_text()) == {"new": [1, 2]}
    assert os.listdir(tmp_path) == ["state.json"]


def test_write_text_creates_a_missing_file_and_can_sync_the_directory(tmp_path: Path) -> None:
    target = tmp_path / "record.json"
    durable.write_text(target, "héllo\n", sync_dir=True)
    assert target.read_text(encoding="utf-8") == "héllo\n"
    assert os.listdir(tmp_path) == ["record.json"]


def test_data_that_fails_to_serialise_midway_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    target.write_text('{"old": true}')
    half_written = {"first": "x" * 100_000, "second": object()}  # json.dump streams "first" before failing
    with pytest.raises(TypeError):
        durable.write_json(target, half_written)
    assert target.read_text() == '{"old": true}'
    assert os.listdir(tmp_path) == ["state.json"]


def test_a_failed_fsync_leaves_the_old_file_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "state.json"
    target.write_text("old")
    seen: list[list[str]] = []

    def disk_full(fd: int) -> None:
        seen.append(sorted(os.listdir(tmp_path)))  # the new bytes are in a temporary beside the target
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(durable.os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        durable.write_text(target, "new")
    assert seen and len(seen[0]) == 2 and seen[0][0].startswith(".state.json.")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["state.json"]


def test_an_interrupt_midway_leaves_no_temporary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "state.json"
    target.write_text("old")

    def interrupted(src: str, dst: str) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(durable.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        durable.write_text(target, "new")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["state.json"]


def test_durable_imports_nothing_of_the_project() -> None:
    source = Path(durable.__file__).read_text()
    for package in ("agent", "agentcore_local", "cloud", "client", "deploy", "coding_agent"):
        assert f"import {package}" not in source and f"from {package}" not in source
