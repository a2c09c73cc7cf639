"""What the workspace held when a turn started, told to the model so it builds on earlier work."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from agent.session_files import SESSIONS


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
            e.name + ("/" if e.is_dir(follow_symlinks=False) else "") for e in it if e.name != SESSIONS
        )
    return Snapshot(path=root, entries=names)
