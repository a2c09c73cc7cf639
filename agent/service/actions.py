"""The requests that run no turn: undo, checkpoints, status (README "Checkpoints, undo and storage")."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from bedrock_agentcore.runtime import BedrockAgentCoreApp

from agent.backup.s3 import S3Backup
from agent.checkpoints.recorder import Recorder
from agent.conversation.conversations import Conversation, Conversations
from agent.conversation.protocol import ActionRequest
from agent.service.settings import Settings


@dataclass(frozen=True)
class Actions:
    app: BedrockAgentCoreApp
    settings: Settings
    recorder: Recorder
    backups: S3Backup | None
    conversations: Conversations

    async def __call__(self, request: ActionRequest, session_id: str | None = None) -> dict[str, Any]:
        if request.action == "checkpoints":
            return {
                "action": "checkpoints",
                "checkpoints": await asyncio.to_thread(self.recorder.checkpoints),
            }
        if request.action == "status":
            status = await asyncio.to_thread(self.recorder.status)
            return {
                "action": "status",
                **status,
                "backup": {"enabled": self.settings.backup_bucket is not None},
            }
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
