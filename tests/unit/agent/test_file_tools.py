"""The agent's tools attacked as a prompt-injected model would: links, `..`, absolute paths, swaps, FIFOs."""

from __future__ import annotations

import asyncio
import ctypes
import json
import os
import threading
import time
from pathlib import Path

import pytest

from agent.tools.toolset import make_tools
from agent.tools.workspace import MAX_FILE_BYTES, OutsideWorkspace, Workspace

SECRET = "host secret\n"


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    (tmp_path / "ws").mkdir()
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.txt").write_text(SECRET)
    return tmp_path / "ws"


@pytest.fixture
def editor(ws: Path):
    return make_tools(Workspace(ws), shell_timeout=10, output_chars=20_000, env=os.environ)[1]


@pytest.fixture
def shell(ws: Path):
    tool = make_tools(Workspace(ws), shell_timeout=10, output_chars=20_000, env=os.environ)[0]
    return lambda command, **kw: asyncio.run(tool(command=command, **kw))


def outside_untouched(ws: Path) -> bool:
    outside = ws.parent / "outside"
    return (
        sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
        and (outside / "secret.txt").read_text() == SECRET
    )


def test_create_view_replace_insert_and_list_inside_the_workspace(ws: Path, editor):
    assert "created" in editor(command="create", path="src/app.py", file_text="a = 1\nb = 2\n")
    assert "     2  b = 2" in editor(command="view", path=f"{ws}/src/app.py")
    assert "     1  a = 10" in editor(
        command="str_replace", path="src/app.py", old_str="a = 1", new_str="a = 10"
    )
    editor(command="insert", path="./src/app.py", insert_line=0, new_str="# top")
    assert (ws / "src" / "app.py").read_text() == "# top\na = 10\nb = 2\n"
    assert "     2  a = 10" in editor(command="view", path="src/app.py", view_range=[2, 3])
    assert "src/app.py" in editor(command="view", path=str(ws))


def test_an_edit_keeps_the_file_mode(ws: Path, editor):
    script = ws / "run.sh"
    script.write_text("echo one\n")
    script.chmod(0o755)
    editor(command="str_replace", path="run.sh", old_str="one", new_str="two")
    assert script.stat().st_mode & 0o777 == 0o755 and script.read_text() == "echo two\n"


def test_create_never_overwrites(ws: Path, editor):
    (ws / "kept.txt").write_text("mine")
    with pytest.raises(OutsideWorkspace, match="already exists"):
        editor(command="create", path="kept.txt", file_text="theirs")
    assert (ws / "kept.txt").read_text() == "mine"


@pytest.mark.parametrize("path", ["/etc/passwd", "/etc/../etc/passwd", "{outside}/secret.txt", "{ws}x/a"])
def test_absolute_paths_outside_are_refused(ws: Path, editor, path: str):
    path = path.format(outside=ws.parent / "outside", ws=ws)
    with pytest.raises(OutsideWorkspace, match="outside the workspace"):
        editor(command="view", path=path)
    with pytest.raises(OutsideWorkspace, match="outside the workspace"):
        editor(command="create", path=path, file_text="x")
    assert outside_untouched(ws)


@pytest.mark.parametrize(
    "path", ["../outside/new.txt", "a/../../outside/new.txt", "{ws}/../outside/new.txt", ".."]
)
def test_dotdot_is_refused_even_when_it_would_land_inside(ws: Path, editor, path: str):
    with pytest.raises(OutsideWorkspace, match="path traversal is not allowed"):
        editor(command="create", path=path.format(ws=ws), file_text="x")
    with pytest.raises(OutsideWorkspace, match="path traversal"):
        editor(command="view", path="a/../b")
    assert outside_untouched(ws)


def test_a_symlinked_file_is_never_followed(ws: Path, editor):
    (ws / "link.txt").symlink_to(ws.parent / "outside" / "secret.txt")
    for call in (
        dict(command="view", path="link.txt"),
        dict(command="str_replace", path="link.txt", old_str="host", new_str="pwned"),
        dict(command="insert", path="link.txt", insert_line=0, new_str="pwned"),
    ):
        with pytest.raises(OutsideWorkspace, match="symbolic link"):
            editor(**call)
    with pytest.raises(OutsideWorkspace, match="already exists"):  # not written through either
        editor(command="create", path="link.txt", file_text="pwned")
    assert outside_untouched(ws) and (ws / "link.txt").is_symlink()


@pytest.mark.parametrize("depth", [1, 3])
def test_a_symlinked_parent_directory_is_never_followed(ws: Path, editor, depth: int):
    parent = ws.joinpath(*["d"] * (depth - 1)) if depth > 1 else ws
    parent.mkdir(parents=True, exist_ok=True)
    (parent / "out").symlink_to(ws.parent / "outside")
    via = "/".join(["d"] * (depth - 1) + ["out"])
    for call in (
        dict(command="view", path=f"{via}/secret.txt"),
        dict(command="view", path=via),
        dict(command="create", path=f"{via}/new.txt", file_text="x"),
        dict(command="create", path=f"{via}/deeper/new.txt", file_text="x"),
        dict(command="str_replace", path=f"{via}/secret.txt", old_str="host", new_str="pwned"),
    ):
        with pytest.raises(OutsideWorkspace, match="symbolic link"):
            editor(**call)
    assert outside_untouched(ws)


def test_a_hard_link_to_a_file_outside_is_never_written_through(ws: Path, editor):
    os.link(ws.parent / "outside" / "secret.txt", ws / "hard.txt")
    with pytest.raises(OutsideWorkspace, match="has 2 hard links"):
        editor(command="str_replace", path="hard.txt", old_str="host", new_str="pwned")
    with pytest.raises(OutsideWorkspace, match="has 2 hard links"):
        editor(command="insert", path="hard.txt", insert_line=0, new_str="pwned")
    assert outside_untouched(ws)


def test_the_conversation_history_is_refused(ws: Path, editor):
    (ws / ".sessions").mkdir()
    (ws / ".sessions" / "session.json").write_text("{}")
    for path in (".sessions", "./.sessions/session.json", f"{ws}/.sessions/x", f"{ws}//.sessions"):
        with pytest.raises(OutsideWorkspace, match="conversation history"):
            editor(command="view", path=path)
    assert ".sessions" not in editor(command="view", path=".")


def test_a_fifo_is_refused_at_once_not_waited_on(ws: Path, editor):
    os.mkfifo(ws / "pipe")
    started = time.monotonic()
    with pytest.raises(OutsideWorkspace, match="not a regular file"):
        editor(command="view", path="pipe")
    with pytest.raises(OutsideWorkspace, match="not a regular file"):
        editor(command="str_replace", path="pipe", old_str="a", new_str="b")
    assert time.monotonic() - started < 2


def test_a_file_too_large_or_not_text_says_to_use_the_shell(ws: Path, editor):
    (ws / "big.txt").write_bytes(b"x" * (MAX_FILE_BYTES + 1))
    (ws / "bin").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(OutsideWorkspace, match=r"larger than .* with the shell"):
        editor(command="view", path="big.txt")
    with pytest.raises(OutsideWorkspace, match="not UTF-8"):
        editor(command="view", path="bin")


_libc = ctypes.CDLL(None, use_errno=True)
_AT_FDCWD, _RENAME_EXCHANGE = -100, 2


def _exchange(a: Path, b: Path) -> None:
    """renameat2(RENAME_EXCHANGE): swap two names atomically, so `target` is never missing."""
    if _libc.renameat2(_AT_FDCWD, bytes(a), _AT_FDCWD, bytes(b), _RENAME_EXCHANGE) != 0:
        raise OSError(ctypes.get_errno(), "renameat2")


def _swap_forever(target: Path, evil: Path, stop: threading.Event) -> None:
    """Flip `target` between what it is and a symlink to `evil`, as fast as it can."""
    link = target.with_name(".link")
    link.symlink_to(evil)
    while not stop.is_set():
        if not (link.is_symlink() or target.is_symlink()):  # an edit replaced the link itself: plant it again
            link.unlink()
            link.symlink_to(evil)
        _exchange(target, link)


def test_a_symlink_swapped_in_a_loop_never_lets_an_edit_escape(ws: Path, editor):
    secret = ws.parent / "outside" / "secret.txt"
    target = ws / "target.txt"
    target.write_text("host A\n")
    stop = threading.Event()
    swapper = threading.Thread(target=_swap_forever, args=(target, secret, stop), daemon=True)
    swapper.start()
    outcomes: dict[str, int] = {}
    try:
        for i in range(5000):  # 200 at least, then on until the race has hit a link
            old, new = ("A", "B") if i % 2 == 0 else ("B", "A")
            try:
                editor(command="str_replace", path="target.txt", old_str=old, new_str=new)
                outcome = "edited"
            except (OutsideWorkspace, ValueError, FileNotFoundError) as e:
                outcome = type(e).__name__
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            if i >= 199 and outcomes.get("OutsideWorkspace", 0):
                break
    finally:
        stop.set()
        swapper.join()
    assert secret.read_text() == SECRET, f"escaped; outcomes {outcomes}"
    assert outside_untouched(ws)
    assert outcomes.get("OutsideWorkspace", 0) > 0, f"the race never hit a link: {outcomes}"


def test_a_parent_directory_swapped_for_a_symlink_never_lets_a_create_escape(ws: Path, editor):
    outside = ws.parent / "outside"
    stop = threading.Event()
    (ws / "dir").mkdir()
    swapper = threading.Thread(target=_swap_forever, args=(ws / "dir", outside, stop), daemon=True)
    swapper.start()
    outcomes: dict[str, int] = {}
    try:
        # 200 tries at least, and on (at most 5,000) until the race has hit a link: on a loaded
        # machine the swapper thread may not run between the first 200.
        for i in range(5000):
            try:
                editor(command="create", path=f"dir/new-{i}.txt", file_text="x")
                outcome = "created"
            except Exception as e:  # any refusal is fine; the outcomes say which
                outcome = type(e).__name__
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            if i >= 199 and outcomes.get("OutsideWorkspace", 0):
                break
    finally:
        stop.set()
        swapper.join()
    assert outside_untouched(ws), f"escaped: {sorted(p.name for p in outside.iterdir())}; {outcomes}"
    assert outcomes.get("OutsideWorkspace", 0) > 0, f"the race never hit a link: {outcomes}"


def test_shell_runs_in_the_workspace_with_no_input_and_a_non_interactive_env(ws: Path, shell):
    started = time.monotonic()
    result = shell("pwd; read answer; echo read-exit=$?; echo $CI $GIT_TERMINAL_PROMPT")
    assert result["output"].split() == [str(ws), "read-exit=1", "1", "0"]
    assert result["exit_code"] == 0 and time.monotonic() - started < 5


def test_shell_timeout_kills_the_whole_process_group(ws: Path, shell):
    started = time.monotonic()
    result = shell("sleep 30 & echo $! > child.pid; sleep 30", timeout=1)
    assert result["exit_code"] == 124 and "timed out after 1 s" in result["error"]
    assert time.monotonic() - started < 6
    child, deadline = int((ws / "child.pid").read_text()), time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:  # SIGKILL is sent; its delivery is not instant
        time.sleep(0.01)
    assert not _alive(child)


def test_a_background_process_does_not_hold_the_call_open(ws: Path, shell):
    started = time.monotonic()
    result = shell("sleep 30 & echo $! > bg.pid; echo started")
    assert result["output"].strip() == "started" and time.monotonic() - started < 5
    deadline = time.monotonic() + 5
    while _alive(int((ws / "bg.pid").read_text())):
        assert time.monotonic() < deadline, "the background process outlived its call"
        time.sleep(0.05)


def test_shell_output_keeps_its_first_and_last_part(shell):
    result = shell("echo FIRST; yes | head -c 1000000; echo; echo LAST; echo oops >&2; exit 3")
    assert result["exit_code"] == 3 and result["error"].strip() == "oops"
    assert result["output"].startswith("FIRST") and result["output"].rstrip().endswith("LAST")
    assert "bytes not shown" in result["output"] and len(json.dumps(result)) < 25_000


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
