"""The agent's two tools, `shell` and `file_editor`, confined to the workspace by design.

Their names and inputs are those of Strands' vended tools (which plans and prompts
already use), but they are our own: the vended ones live in a package whose __init__
imports the MCP client (~0.5 s of every cold start), and strands_tools' file tools open
paths by name. `file_editor` does all I/O through agent.workspace's race-free resolver;
`shell` can never wait on input and never outlives its call.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Mapping
from contextlib import suppress
from typing import Any, Literal

from strands import tool
from strands.tools.decorator import DecoratedFunctionTool

from agent.tools.workspace import Workspace

SNIPPET_LINES = 4
MAX_TIMEOUT = 3600
# Everything that could otherwise stop a command to ask a question.
NON_INTERACTIVE_ENV = {
    "CI": "1",
    "DEBIAN_FRONTEND": "noninteractive",
    "GIT_TERMINAL_PROMPT": "0",
    "npm_config_yes": "true",
    "PIP_NO_INPUT": "1",
}


class Capped:
    """A stream's first and last `keep` bytes, and how many fell in between (memory stays bounded)."""

    def __init__(self, keep: int) -> None:
        self.keep, self.head, self.tail, self.total = keep, bytearray(), bytearray(), 0

    def add(self, chunk: bytes) -> None:
        self.total += len(chunk)
        room = self.keep - len(self.head)
        if room > 0:
            self.head += chunk[:room]
            chunk = chunk[room:]
        if chunk:
            self.tail = (self.tail + chunk)[-self.keep :]

    def text(self) -> str:
        omitted = self.total - len(self.head) - len(self.tail)
        middle = f"\n[... {omitted} bytes not shown ...]\n" if omitted else ""
        return bytes(self.head).decode(errors="replace") + middle + bytes(self.tail).decode(errors="replace")


async def run_command(
    command: str, cwd: str, timeout: float, keep: int, env: Mapping[str, str]
) -> dict[str, Any]:
    """`sh -c command` in its own process group, stdin /dev/null; killed with its group at the end.

    `env` is all it inherits (Settings.tool_env): never the agent's whole environment, which holds
    the model's keys and the runtime's credentials."""
    process = await asyncio.create_subprocess_exec(
        "/bin/sh",
        "-c",
        command,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=cwd,
        env={**env, "WORKSPACE_DIR": cwd, **NON_INTERACTIVE_ENV},
        start_new_session=True,
    )
    out, err = Capped(keep), Capped(keep)

    async def pump(stream: asyncio.StreamReader, sink: Capped) -> None:
        while chunk := await stream.read(65536):
            sink.add(chunk)

    assert process.stdout is not None and process.stderr is not None
    pumps = asyncio.gather(pump(process.stdout, out), pump(process.stderr, err))
    try:
        timed_out = not await _exited(process.pid, timeout)
    finally:  # also on cancellation: nothing the command started outlives the call
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    try:  # a process that left the group may still hold the pipes: do not wait on it
        await asyncio.wait_for(pumps, 2)
    except TimeoutError:
        pumps.cancel()
        with suppress(asyncio.CancelledError):
            await pumps
    code = await process.wait()
    exit_code = 124 if timed_out else (128 - code if code < 0 else code)  # killed by signal N: 128+N
    error = err.text()
    if timed_out:
        error += f"\n[timed out after {timeout:g} s: the command and its processes were killed]"
    return {"output": out.text(), "error": error, "exit_code": exit_code}


async def _exited(pid: int, timeout: float) -> bool:
    """Whether `pid` exits within `timeout` (Process.wait() would also wait for every holder of its pipes)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:  # already exited and reaped
        return True
    loop = asyncio.get_running_loop()
    gone = loop.create_future()
    loop.add_reader(fd, lambda: gone.done() or gone.set_result(None))
    try:
        await asyncio.wait_for(gone, timeout)
        return True
    except TimeoutError:
        return False
    finally:
        loop.remove_reader(fd)
        os.close(fd)


def _numbered(text: str, first: int) -> str:
    lines = text.expandtabs(8).split("\n")
    return "\n".join(f"{first + i:>6}  {line}" for i, line in enumerate(lines)) + "\n"


def _snippet(text: str, line: int, extra: int) -> str:
    lines = text.split("\n")
    start = max(0, line - SNIPPET_LINES)
    end = min(len(lines), line + extra + SNIPPET_LINES + 1)
    return _numbered("\n".join(lines[start:end]), start + 1)


def _view_range(text: str, view_range: list[int]) -> tuple[str, int]:
    lines = text.split("\n")
    if len(view_range) != 2:
        raise ValueError(f"`view_range` must be [start, end], got {view_range}")
    start, end = view_range
    if not 1 <= start <= len(lines) or (end != -1 and not start <= end <= len(lines)):
        raise ValueError(
            f"Invalid `view_range` {view_range}: the file has lines 1 to {len(lines)} (end -1: to the end)"
        )
    return "\n".join(lines[start - 1 :] if end == -1 else lines[start - 1 : end]), start


def _replace_once(text: str, old: str, new: str, path: str) -> tuple[str, int, int]:
    if not old:
        raise ValueError("No replacement was performed: old_str must not be empty")
    count = text.count(old)
    if count != 1:
        where = "did not appear verbatim" if not count else f"appears {count} times; make it unique"
        raise ValueError(f"No replacement was performed: old_str {where} in {path}")
    at = text.index(old)
    return text.replace(old, new, 1), text[:at].count("\n"), new.count("\n")


def make_tools(
    workspace: Workspace, shell_timeout: int, output_chars: int, env: Mapping[str, str]
) -> list[DecoratedFunctionTool]:
    """The tool objects for one workspace. No I/O: the mount may appear after import."""
    keep = max(1000, output_chars // 4)  # head + tail of stdout and of stderr stay under the output cap

    @tool(name="shell")
    async def shell(command: str, timeout: int | None = None) -> dict[str, Any]:
        """Run a shell command (sh -c) in the workspace and return its output, error output and exit code.

        Each call starts fresh in the workspace with stdin closed: pass flags such as --yes instead of
        expecting a prompt. Processes it starts are ended when it returns, so start a server and test
        it within one command. Long output keeps its first and last part.

        Args:
            command: The command line to run.
            timeout: Seconds before the command and its processes are killed (default from SHELL_TIMEOUT).
        """
        limit = min(max(1, timeout or shell_timeout), MAX_TIMEOUT)
        workspace.root.mkdir(parents=True, exist_ok=True)
        return await run_command(command, str(workspace.root), limit, keep, env)

    @tool(name="file_editor")
    def file_editor(
        command: Literal["view", "create", "str_replace", "insert"],
        path: str,
        file_text: str | None = None,
        view_range: list[int] | None = None,
        old_str: str | None = None,
        new_str: str | None = None,
        insert_line: int | None = None,
    ) -> str:
        """View, create and edit files in the workspace. Symbolic links are never followed.

        Args:
            command: `view` (a file with line numbers, or a directory 2 levels deep), `create` (a new
                file; never overwrites), `str_replace` (replace one unique occurrence), `insert`.
            path: A path in the workspace: absolute under it, or relative to it.
            file_text: The content of the new file (create).
            view_range: [start, end] lines to view, 1-indexed; end -1 means to the end of the file.
            old_str: The exact text to replace; it must occur exactly once (str_replace).
            new_str: The replacement (str_replace) or the text to insert (insert).
            insert_line: Insert after this line; 0 inserts at the top (insert).
        """
        if command == "view":
            if workspace.kind(path) == "dir":
                if view_range:
                    raise ValueError("`view_range` is only for files, and the path is a directory")
                listing = "\n".join(workspace.list_dir(path))
                return (
                    f"Files and directories up to 2 levels deep in {path}, hidden ones left out:\n{listing}\n"
                )
            text, first = workspace.read_text(path), 1
            if view_range:
                text, first = _view_range(text, view_range)
            return f"Here's the result of running `cat -n` on {path}:\n" + _numbered(text, first)
        if command == "create":
            if file_text is None:
                raise ValueError("`file_text` is required for command create")
            workspace.create_text(path, file_text)
            return f"File created successfully at: {path}"
        if command == "str_replace":
            if old_str is None:
                raise ValueError("`old_str` is required for command str_replace")
            where: list[int] = []

            def replace(text: str) -> str:
                new, line, extra = _replace_once(text, old_str, new_str or "", path)
                where[:] = [line, extra]
                return new

            new = workspace.edit_text(path, replace)
            return f"The file {path} has been edited. A snippet of it:\n{_snippet(new, *where)}"
        if command == "insert":
            if insert_line is None or new_str is None:
                raise ValueError("`insert_line` and `new_str` are required for command insert")

            def insert(text: str) -> str:
                lines = text.split("\n") if text else []
                if not 0 <= insert_line <= len(lines):
                    raise ValueError(
                        f"Invalid `insert_line` {insert_line}: the file has lines 0 to {len(lines)}"
                    )
                return "\n".join([*lines[:insert_line], *new_str.split("\n"), *lines[insert_line:]])

            new = workspace.edit_text(path, insert)
            snippet = _snippet(new, insert_line, new_str.count("\n"))
            return f"The file {path} has been edited. A snippet of it:\n{snippet}"
        raise ValueError(f"Unknown command {command!r}: use view, create, str_replace or insert")

    return [shell, file_editor]
