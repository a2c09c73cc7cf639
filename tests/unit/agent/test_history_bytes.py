"""The usage figure's history bytes follow real changes under `.sessions/` (real files, real inotify)."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

from agent.checkpoints.history_bytes import HistoryBytes

MESSAGES = ".sessions/session_c/agents/agent_default/messages"


def counted(workspace: Path) -> int:
    """What a full listing finds: every file and link under .sessions/ except the checkpoint store."""
    root, total = workspace / ".sessions", 0
    for folder, dirs, files in os.walk(root):  # links to directories are in dirs, not followed
        if Path(folder) == root and ".checkpoints" in dirs:
            dirs.remove(".checkpoints")
        entries = [os.lstat(Path(folder, name)) for name in files + dirs]
        total += sum(st.st_size for st in entries if not stat.S_ISDIR(st.st_mode))
    return total


def history(workspace: Path, messages: int) -> Path:
    folder = workspace / MESSAGES
    folder.mkdir(parents=True)
    for i in range(messages):
        (folder / f"message_{i}.json").write_text("x" * (100 + i))
    (workspace / ".sessions" / ".checkpoints").mkdir()
    (workspace / ".sessions" / ".checkpoints" / "big").write_bytes(b"s" * 50_000)  # the store: not history
    return folder


def test_the_first_figure_counts_every_history_file_and_leaves_out_the_store(tmp_path: Path) -> None:
    history(tmp_path, 30)
    usage = HistoryBytes(tmp_path)
    assert usage.bytes() == counted(tmp_path) == sum(100 + i for i in range(30))


def test_later_figures_follow_writes_renames_appends_and_deletions_without_listing_again(
    tmp_path: Path,
) -> None:
    folder = history(tmp_path, 30)
    usage = HistoryBytes(tmp_path)
    usage.bytes()
    listings = usage.tracker.full_walks

    (folder / "message_30.json").write_text("new" * 50)  # a new message
    temp = folder / ".strands_x.tmp"
    temp.write_text("r" * 999)
    os.replace(temp, folder / "message_3.json")  # Strands' rewrite: a temp file renamed over the old one
    subprocess.run(
        ["sh", "-c", f"printf 'grown' >> {folder}/message_5.json"], check=True
    )  # a shell, in place
    (folder / "message_7.json").unlink()
    (tmp_path / ".sessions" / ".checkpoints" / "more").write_bytes(b"s" * 10_000)  # the store again
    assert usage.bytes() == counted(tmp_path)

    nested = tmp_path / ".sessions" / "session_d" / "agents"
    nested.mkdir(parents=True)  # a new directory, filled at once
    (nested / "agent.json").write_text("{}" * 40)
    assert usage.bytes() == counted(tmp_path)
    assert usage.tracker.full_walks == listings, "a tracked change listed the whole history again"


def test_a_directory_moved_away_is_counted_afresh(tmp_path: Path) -> None:
    history(tmp_path, 10)
    usage = HistoryBytes(tmp_path)
    usage.bytes()
    quarantine = tmp_path / ".sessions" / ".quarantine"
    quarantine.mkdir()
    os.rename(tmp_path / ".sessions" / "session_c", quarantine / "session_c-1")  # what a quarantine does
    (tmp_path / ".sessions" / "session_c").mkdir()
    (tmp_path / ".sessions" / "session_c" / "session.json").write_text("{}")
    assert usage.bytes() == counted(tmp_path)


def test_history_that_appears_after_the_first_figure_is_counted(tmp_path: Path) -> None:
    usage = HistoryBytes(tmp_path)  # a pool member: the storage is attached later
    assert usage.bytes() == 0
    history(tmp_path, 5)
    assert usage.bytes() == counted(tmp_path) > 0


def test_a_directory_swapped_for_a_link_out_of_the_history_is_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "big").write_bytes(b"x" * 100_000)
    history(tmp_path, 3)
    usage = HistoryBytes(tmp_path)
    usage.bytes()
    link = tmp_path / ".sessions" / "session_c" / "agents"
    os.rename(link, tmp_path / ".sessions" / "moved")
    link.symlink_to(outside)  # what a shell in the session could do between two answers
    assert usage.bytes() == counted(tmp_path) < 100_000
