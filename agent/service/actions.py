"""The requests that run no turn: undo, checkpoints, status (docs/checkpoints.md), and the backup's
history: checkpoints --backup, restore CHECKPOINT (docs/backups.md)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from bedrock_agentcore.runtime import BedrockAgentCoreApp

from agent.backup import points
from agent.backup.s3 import S3Backup
from agent.checkpoints.recorder import Recorder
from agent.checkpoints.undo import UndoError
from agent.conversation.conversations import Conversation, Conversations
from agent.conversation.protocol import ActionRequest, BadRequest
from agent.service.mount_watch import MountWatch
from agent.service.settings import Settings


@dataclass(frozen=True)
class Actions:
    app: BedrockAgentCoreApp
    settings: Settings
    recorder: Recorder
    backups: S3Backup | None
    conversations: Conversations
    mount_watch: MountWatch

    async def __call__(self, request: ActionRequest, session_id: str | None = None) -> dict[str, Any]:
        # A reset storage is restored first; its report is left for the next turn's answer.
        await asyncio.to_thread(self.mount_watch.ensure, session_id, False)
        if request.backup or request.action == "restore":
            return await self.backup_action(request, session_id)
        if request.action == "checkpoints":
            return {
                "action": "checkpoints",
                "checkpoints": await asyncio.to_thread(self.recorder.checkpoints),
            }
        if request.action == "status":
            status = await asyncio.to_thread(self.recorder.status)
            # How soon after the mount the restore started, and how long it took.
            restore = {"restore": self.mount_watch.timings()} if self.backups else {}
            return {"action": "status", **status, "backup": {"enabled": self.backups is not None, **restore}}
        return {
            "action": "undo",
            "conversation_id": request.conversation_id,
            **await self.undo(request, session_id),
        }

    async def undo(self, request: ActionRequest, session_id: str | None) -> dict[str, Any]:
        """Take back turns, holding every conversation they belong to (409 if one is mid-turn)."""
        busy = self.app.add_async_task("undo")
        claimed: list[Conversation] = []
        try:
            involved = await asyncio.to_thread(self.recorder.conversations_to_undo, request.turns)
            for conversation_id in sorted({request.conversation_id, *involved}):
                claimed.append(self.conversations.begin(conversation_id))
            report = await asyncio.to_thread(
                self.recorder.undo, request.turns, request.conversation_id, involved
            )
            for conversation in claimed:
                Conversations.drop(conversation)  # warm Agents must not keep the turns taken back
        finally:
            for conversation in claimed:
                Conversations.end(conversation)
            if self.backups is not None:  # the undo is a checkpoint too
                self.backups.start_backup(self.app, self.settings.workspace, session_id)
            self.app.complete_async_task(busy)
        return report

    async def backup_action(self, request: ActionRequest, session_id: str | None) -> dict[str, Any]:
        """`checkpoints --backup` lists the backup's whole history; `restore CHECKPOINT` brings one
        back, files and conversation (agent/backup/points.py)."""
        backups = self.backups
        if backups is None or not session_id:
            raise BadRequest("backups are off for this runtime (BACKUP_BUCKET is unset)")
        if request.action == "checkpoints":
            return {"action": "checkpoints", **await asyncio.to_thread(points.listing, backups, session_id)}
        busy, claimed = self.app.add_async_task("restore"), self.conversations.begin(request.conversation_id)
        try:
            report = await asyncio.to_thread(
                points.bring_back, backups, self.recorder, session_id, request.checkpoint or ""
            )
            Conversations.drop(claimed)  # its warm Agent must not keep the conversation replaced
        except ValueError as error:  # no such checkpoint in the history (an UndoError is a 409)
            if isinstance(error, UndoError):
                raise
            raise BadRequest(str(error), status=404) from None
        finally:
            Conversations.end(claimed)
            backups.start_backup(self.app, self.settings.workspace, session_id)
            self.app.complete_async_task(busy)
        return {"action": "restore", **report}
