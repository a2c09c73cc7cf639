"""The service behind coding_agent.py: one object that owns what every conversation shares (the
model and tools, built once by the warm-up or the first turn; the warm Agents; the checkpoint
recorder; the backups; the warm-up; /ping health) and the app they serve. It holds no request's
state: a turn's lives in its TurnScope (agent/service/turn.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

from bedrock_agentcore.runtime import BedrockAgentCoreApp
from strands import Agent
from strands.models.model import Model
from strands.session.file_session_manager import FileSessionManager
from strands.tools.decorator import DecoratedFunctionTool

from agent.backup.s3 import S3Backup
from agent.backup.transfer import rehearse
from agent.checkpoints.recorder import Recorder
from agent.checkpoints.watch import load_inotify
from agent.conversation import history
from agent.conversation.conversations import Conversations
from agent.model.providers import build_model, rehearse_model
from agent.service.actions import Actions
from agent.service.health import Health, UnhealthyPing
from agent.service.mount_watch import MountWatch, SessionHeader
from agent.service.request_guard import RequestGuard
from agent.service.settings import Settings
from agent.service.turn import Turns
from agent.service.warmup import Once, StartAfterFirstPing, WarmUp, first_use_imports
from agent.tools.toolset import make_tools
from agent.tools.workspace import Workspace

log = logging.getLogger("coding_agent")
Tools = list[DecoratedFunctionTool]
# coding_agent.py's agent factory: a conversation's Agent and its FileSessionManager (conversation
# id None: the warm-up's throwaway Agent, with no history).
AgentFactory = Callable[[Model, Tools, str | None], tuple[Agent, FileSessionManager | None]]


class Service:
    def __init__(self, settings: Settings, new_agent: AgentFactory) -> None:
        self.settings, self.new_agent = settings, new_agent
        # Providers are slow to import, and nothing before the first turn needs the model or tools.
        self.model: Once[Model] = Once(lambda: build_model(settings))
        self.tools: Once[Tools] = Once(
            lambda: make_tools(
                Workspace(settings.workspace), settings.shell_timeout, settings.max_tool_output_chars,
                settings.tool_env,
            )
        )  # fmt: skip
        self.conversations = Conversations(self.open, limit=settings.max_warm_conversations)
        self.health = Health(self.conversations.stalled_opens, settings.stall_seconds)
        self.recorder = Recorder(
            settings.workspace, settings.checkpoint_keep, settings.checkpoint_max_bytes,
            settings.storage_quota_bytes,
        )  # fmt: skip
        # None without BACKUP_BUCKET; keyed under the runtime's BACKUP_SCOPE (agent/backup/s3.py prefix)
        self.backups = S3Backup.from_bucket(settings.backup_bucket, scope=settings.backup_scope)
        backups = self.backups
        # Restores a reset storage the moment it is mounted, before any request touches it.
        self.mount_watch = MountWatch(
            settings.workspace,
            (lambda session: backups.restore_if_empty(settings.workspace, session)) if backups else None,
        )
        # What every session's first turn needs, built once the first /ping is answered (warmup.py).
        self.warm_up = WarmUp(
            [
                *([("s3 client", lambda: rehearse(backups.client(), backups.bucket))] if backups else []),
                ("model", lambda: rehearse_model(self.model())),
                ("tools", self.tools),
                ("agent", lambda: new_agent(self.model(), self.tools(), None)),
                ("imports", first_use_imports),
                ("inotify", load_inotify),  # the first checkpoint's tracker
            ],
        )
        # Nothing here touches the workspace: AgentCore mounts session storage after the import.
        self.app = BedrockAgentCoreApp(lifespan=self.lifespan)
        self.app.add_middleware(RequestGuard)  # 400/413 for bodies the SDK would answer with a 500
        self.app.add_middleware(UnhealthyPing, health=self.health)  # 503 while turns could not be answered
        self.app.add_middleware(StartAfterFirstPing, warm_up=self.warm_up)
        self.app.add_middleware(SessionHeader, watch=self.mount_watch)  # the session id, from any request
        parts = (self.app, settings, self.recorder, self.backups, self.conversations, self.mount_watch)
        self.turns, self.act = Turns(*parts), Actions(*parts)

    def open(self, conversation_id: str) -> tuple[Agent, FileSessionManager, list[str]]:
        """Restore a conversation's Agent from session storage, quarantining a damaged history."""
        # Built outside `build`: a provider or tool problem is not damage to the history.
        model, tools = self.model(), self.tools()

        def build() -> tuple[Agent, FileSessionManager | None]:
            return self.new_agent(model, tools, conversation_id)

        (agent, sessions), quarantined = history.open_with_quarantine(
            self.settings.sessions_dir, conversation_id, build
        )
        return agent, cast(FileSessionManager, sessions), quarantined  # a conversation id always has one

    def push_backup(self, session_id: str | None) -> Callable[[], None] | None:
        """What starts this session's backup (None without backups), for after an answer is sent."""
        if self.backups is None:
            return None
        backups = self.backups
        return lambda: backups.start_backup(self.app, self.settings.workspace, session_id)

    def watch_health(self) -> None:
        """Watch the loop that runs every turn (the SDK's worker loop): /ping's stall check."""
        self.health.watch(asyncio.get_running_loop())

    @contextlib.asynccontextmanager
    async def lifespan(self, _app: Any) -> AsyncIterator[None]:
        """At start: the warm-up starts by itself if no /ping has started it a second from now. On
        SIGTERM (a stop), give a running backup time to finish: AgentCore's stop waits for it no
        longer than its grace, so this stays below that."""
        self.warm_up.arm()
        self.mount_watch.start(self.app)
        yield
        self.mount_watch.stop()
        wait = self.settings.backup_wait_seconds
        if self.backups is not None and not await asyncio.to_thread(self.backups.wait, wait):
            log.warning("backup | still uploading at shutdown; the next turn's push sends what is missing")
