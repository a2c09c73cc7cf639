"""The workspace: the only place the agent's tools may touch, and what it holds.

The vended `shell` and `file_editor` tools do all their I/O through the agent's
Sandbox, so confining that one object confines both tools: no path outside
WORKSPACE_DIR (absolute, `..`, or a symlink out), no access to the history in
`.sessions/`, and a shell that starts in the workspace and can never wait on a prompt.
"""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from strands.sandbox.not_a_sandbox_local_environment import NotASandboxLocalEnvironment
from strands.sandbox.types import ExecutionResult, StreamChunk

HIDDEN = ".sessions"  # conversation history: the agent must not read or rewrite its own memory

# Everything that could otherwise stop a command to ask a question.
NON_INTERACTIVE_ENV = {
    "CI": "1",
    "DEBIAN_FRONTEND": "noninteractive",
    "GIT_TERMINAL_PROMPT": "0",
    "npm_config_yes": "true",
    "PIP_NO_INPUT": "1",
}


class OutsideWorkspace(PermissionError):
    """A tool asked for a path the agent may not touch."""


class WorkspaceSandbox(NotASandboxLocalEnvironment):
    """Host execution confined to one directory (the session-storage mount)."""

    def __init__(self, root: Path, shell_timeout: int = 120) -> None:
        super().__init__()
        self.root = Path(os.path.realpath(root))
        self.shell_timeout = shell_timeout

    def _resolve_path(self, path: str) -> Path:  # type: ignore[override]  # instance, not static
        """Resolve `path` against the workspace, refusing anything that lands outside it."""
        candidate = Path(os.path.realpath(self.root / os.path.expanduser(path)))
        inside = candidate == self.root or self.root in candidate.parents
        if not inside:
            raise OutsideWorkspace(f"{path!r} is outside the workspace {self.root}; use a path inside it")
        if (self.root / HIDDEN) in (candidate, *candidate.parents):
            raise OutsideWorkspace(f"{path!r} is the conversation history, which tools may not touch")
        return candidate

    async def execute_streaming(
        self,
        command: str,
        *,
        timeout: float | None = None,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> AsyncGenerator[StreamChunk | ExecutionResult, None]:
        """Run `command` in the workspace with stdin closed and a timeout, so it can never hang on input."""
        workdir = self._resolve_path(cwd) if cwd else self.root
        if not workdir.is_dir():  # a missing cwd would fail the `cd` and run the command elsewhere
            workdir = self.root
        async for chunk in super().execute_streaming(
            "exec </dev/null\n" + command,
            timeout=timeout or self.shell_timeout,
            cwd=str(workdir),
            env={**NON_INTERACTIVE_ENV, **(env or {})},
            **kwargs,
        ):
            yield chunk


@dataclass(frozen=True)
class Snapshot:
    """What the workspace held when a turn started (top level only: node_modules can be huge)."""

    path: Path
    entries: list[str]

    @property
    def restored(self) -> bool:
        """True when there were files before this invocation (from earlier turns or sessions)."""
        return bool(self.entries)

    def describe(self, limit: int = 25) -> str:
        """A short factual note for the model, so it notices earlier work even when not asked to look."""
        if not self.entries:
            return f"Workspace {self.path} is empty."
        shown = ", ".join(self.entries[:limit])
        more = f" and {len(self.entries) - limit} more" if len(self.entries) > limit else ""
        return (
            f"Workspace {self.path} already holds {len(self.entries)} entries from earlier work: "
            f"{shown}{more}. Inspect them before changing anything."
        )


def snapshot(root: Path) -> Snapshot:
    """List the workspace's top level, directories marked with a trailing slash."""
    root.mkdir(parents=True, exist_ok=True)
    with os.scandir(root) as it:
        names = sorted(
            e.name + ("/" if e.is_dir(follow_symlinks=False) else "") for e in it if e.name != HIDDEN
        )
    return Snapshot(path=root, entries=names)
