"""The recorder's message count (agent/checkpoints/undo.py stored_messages): exact, without listing a
long history."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from agent.checkpoints import undo
from agent.conversation import history


def _messages(sessions: Path, cid: str) -> Path:
    folder = history.session_dir(sessions, cid) / "agents" / "agent_default" / "messages"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _write(folder: Path, *indices: int) -> None:
    for i in indices:
        (folder / f"message_{i}.json").write_text("{}")


def test_the_count_follows_new_messages_undo_quarantine_and_a_replaced_history(tmp_path: Path):
    folder = _messages(tmp_path, "c")
    assert undo.stored_messages(tmp_path, "c") == 0
    _write(folder, *range(6))
    assert undo.stored_messages(tmp_path, "c") == 6
    _write(folder, 6, 7)  # a turn's prompt and answer
    assert undo.stored_messages(tmp_path, "c") == 8
    assert undo.truncate_history(tmp_path, "c", 3) == 5  # an undo moves 3..7 aside
    assert undo.stored_messages(tmp_path, "c") == 3
    _write(folder, 3, 4)
    assert undo.stored_messages(tmp_path, "c") == 5
    shutil.rmtree(folder)  # the whole conversation set aside, then started afresh
    folder.mkdir()
    _write(folder, 0, 1)
    assert undo.stored_messages(tmp_path, "c") == 2
    _write(folder, 9)
    os.remove(folder / "message_1.json")  # the last one counted is gone: it lists, and counts past 9
    assert undo.stored_messages(tmp_path, "c") == 10


def test_a_long_history_is_counted_without_listing_it_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    folder = _messages(tmp_path, "long")
    _write(folder, *range(1000))
    assert undo.stored_messages(tmp_path, "long") == 1000
    listed: list[str] = []
    real = os.listdir
    monkeypatch.setattr(os, "listdir", lambda path: listed.append(str(path)) or real(path))
    _write(folder, 1000, 1001)
    assert undo.stored_messages(tmp_path, "long") == 1002
    assert listed == []
