"""What agent/backup/s3.py's callers see: its error, its reports, and the busy-tracker it needs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


class BackupError(RuntimeError):
    """A push or restore could not finish; the message says what happened and what comes next."""


class BusyTracker(Protocol):
    """BedrockAgentCoreApp's async-task API: /ping says HealthyBusy while a task is open."""

    def add_async_task(self, name: str, metadata: dict | None = None) -> int: ...
    def complete_async_task(self, task_id: int) -> bool: ...


@dataclass
class PushReport:
    manifests: list[int] = field(default_factory=list)
    requests: int = 0  # object and pack PUTs (manifests and latest.json not counted)
    bytes: int = 0
    seconds: float = 0.0


@dataclass(frozen=True)
class RestoreReport:
    """What a restore from backup brought back; `fields()` goes into the answer's `workspace`."""

    checkpoint: str
    files: int
    bytes: int
    downloaded_bytes: int
    messages: int | None
    seconds: float
    refused: str | None = None  # set aside: what was wrong with the backup (nothing was restored)
    point: str = ""  # the checkpoint in the backup's history (client.py checkpoints --backup)
    kept: tuple[str, ...] = ()  # files already there (an exec wrote them since the mount): not overwritten

    def fields(self) -> dict[str, Any]:
        if self.refused:
            return {"restored_from": None, "restore": {"refused": self.refused}}
        restore = {"checkpoint": self.checkpoint, "files": self.files, "bytes": self.bytes}
        if self.point:
            restore["backup_checkpoint"] = self.point
        if self.kept:
            restore["kept"] = {"count": len(self.kept), "paths": list(self.kept[:20])}
        return {"restored_from": "backup", "restore": {**restore, "seconds": round(self.seconds, 3)}}


@dataclass(frozen=True)
class MissingReport:
    restored: list[str]
    kept: list[str]  # something is at the path now: newer than the manifest, never overwritten
    unavailable: list[str]  # not in the last manifest, or its content is in neither store nor backup
