"""One turn as service events (the last is `done` or `error`), and what brackets it whatever happens.

The conversation handshake: `begin` (in invoke: claim it, or 409) -> `open` (restore its Agent)
-> the turn -> `end` (release it). A checkpoint brackets the turn: `recorder.begin` before the
conversation is opened (a restore from backup brings its history back first), `recorder.end`
after the turn, answered or not; then the backup, while /ping still says HealthyBusy.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import threading
import time
from collections.abc import AsyncGenerator
from typing import Any

from bedrock_agentcore.runtime import BedrockAgentCoreApp

from agent.backup.reports import RestoreReport
from agent.backup.s3 import S3Backup
from agent.checkpoints.recorder import NO_RESTORE, Recorder, Restore, TurnStart
from agent.checkpoints.store import CheckpointStore
from agent.conversation import history, protocol
from agent.conversation.conversations import Conversation, Conversations
from agent.model.budget import TurnBudget
from agent.service.mount_watch import MountWatch
from agent.service.settings import Settings
from agent.tools.snapshot import snapshot

log = logging.getLogger("coding_agent")


class TurnScope:
    """`async with` around one turn: /ping says HealthyBusy until it is over; the checkpoint begun
    is always ended (as failed when the client went away mid-turn); the conversation is released;
    then the backup starts (`push=False`: the caller starts it once its answer is sent)."""

    def __init__(
        self, turns: Turns, conversation: Conversation, prompt: str, session_id: str | None, push: bool
    ):
        self.turns, self.conversation, self.prompt = turns, conversation, prompt
        self.session_id, self.push = session_id, push
        self.start: TurnStart | None = None  # begun and not yet ended
        self.restored: RestoreReport | None = None  # the restore this turn's begin triggered

    async def __aenter__(self) -> TurnScope:
        self.busy = self.turns.app.add_async_task("turn")
        return self

    async def begin(self) -> None:
        # The restore at the mount first (waited for, or run now): its report goes with this answer.
        if report := await asyncio.to_thread(self.turns.mount_watch.ensure, self.session_id):
            self.restored = report
        self.start = await asyncio.to_thread(self.turns.recorder.begin, self.conversation.id, self.restore())

    def restore(self) -> Restore:
        """Hooks bound to this turn's session, reporting into this turn (one compute serves one session)."""
        backups, root, session_id = self.turns.backups, self.turns.settings.workspace, self.session_id
        if backups is None or not session_id:
            return NO_RESTORE

        def empty(_store: CheckpointStore) -> bool:
            report = self.turns.mount_watch.ensure(session_id)
            if report is not None:
                self.restored = report
            return report is not None and not report.refused

        def missing(_store: CheckpointStore, paths: list[str]) -> bool:
            return bool(backups.restore_missing(root, session_id, paths).restored)

        return Restore(empty, missing)

    async def end(self, outcome: str) -> protocol.TurnRecord:
        """Record what the turn changed; storage trouble costs the checkpoint, never the answer."""
        record = protocol.TurnRecord()
        if self.start is None:
            return record
        start, self.start = self.start, None
        recorder = self.turns.recorder
        try:
            record = await asyncio.to_thread(recorder.end, start, self.conversation.id, self.prompt, outcome)
        except OSError as error:  # storage full, most likely: answer anyway, without a checkpoint
            log.warning("conversation_id=<%s> | checkpoint failed: %s", self.conversation.id, error)
        if recorder.needs_pruning():
            prune_in_background(recorder)
        if self.restored is not None:
            fields = self.restored.fields()
            restored_from = fields["restored_from"] or record.restored_from
            record = dataclasses.replace(record, restore=fields["restore"], restored_from=restored_from)
        return record

    async def __aexit__(self, *_: object) -> None:
        # No await here: this runs as the generator's cleanup too, when the client went away.
        if self.start is not None:  # the turn did not reach end(): still record what it did
            with contextlib.suppress(OSError):
                self.turns.recorder.end(self.start, self.conversation.id, self.prompt, "failed")
        Conversations.end(self.conversation)
        if self.turns.backups is not None and self.push:  # it holds /ping at HealthyBusy until uploaded
            self.turns.backups.start_backup(self.turns.app, self.turns.settings.workspace, self.session_id)
        self.turns.app.complete_async_task(self.busy)


@dataclasses.dataclass(frozen=True)
class Turns:
    """What a turn runs with: the app (for /ping's busy tasks), the settings, the recorder, the backups."""

    app: BedrockAgentCoreApp
    settings: Settings
    recorder: Recorder
    backups: S3Backup | None
    conversations: Conversations
    mount_watch: MountWatch

    async def run(
        self, conversation: Conversation, prompt: str, session_id: str | None = None, push: bool = True
    ) -> AsyncGenerator[dict[str, Any], None]:
        """One turn of `conversation` (claimed by the caller) as service events."""
        started = time.perf_counter()
        async with TurnScope(self, conversation, prompt, session_id, push) as scope:
            outcome, failure, result = "failed", None, None
            try:
                await scope.begin()
                found = snapshot(self.settings.workspace)
                # In a thread: restoring reads session storage, and the event loop serves every other turn.
                agent = (await asyncio.to_thread(self.conversations.open, conversation)).agent
                interrupted = history.close_interrupted_turn(agent, conversation.session_manager)
                messages_before = len(agent.messages)
                tool_names: dict[str, str] = {}
                # The snapshot goes in as its own block, so the model notices earlier work even unasked.
                async with TurnBudget(
                    self.settings.max_turn_seconds, self.settings.max_model_calls
                ) as budget:
                    blocks = [{"text": found.describe()}, {"text": prompt}]
                    async for event in agent.stream_async(blocks, **budget.kwargs):
                        for out in protocol.events_of(event, tool_names):
                            yield out
                        result = event.get("result", result)
                failure = budget.exceeded(getattr(result, "stop_reason", None))
                if failure:  # close the history now, so the next turn starts from an answered one
                    history.close_interrupted_turn(agent, conversation.session_manager)
                outcome = "budget" if failure else "answered"
            except Exception as error:  # the model or a provider failed: say so, keep serving
                debug = log.isEnabledFor(logging.DEBUG)
                log.warning("conversation_id=<%s> | turn failed: %s", conversation.id, error, exc_info=debug)
                failure = f"the turn failed: {error}"
            record = await scope.end(outcome)
            if failure:
                kept = f"; checkpoint {record.checkpoint} kept what it changed (client.py undo takes it back)"
                yield protocol.error_event(
                    failure + (kept if record.checkpoint else ""), checkpoint=record.checkpoint
                )
                return
            done = protocol.Answer.of(
                str(result), found, conversation, messages_before=messages_before, interrupted=interrupted,
                record=record,
            )  # fmt: skip
            conversation.quarantined = []  # reported once
            log.info(
                "conversation_id=<%s> | turn done in %.3fs", conversation.id, time.perf_counter() - started
            )
            yield protocol.done_event(done)


def prune_in_background(recorder: Recorder) -> None:
    """Drop old checkpoints after the answer. Not HealthyBusy: a prune killed midway only leaves
    objects no manifest names, which the next prune collects."""

    def prune() -> None:
        try:
            recorder.prune()
        except OSError as error:
            log.warning("checkpoints | prune failed: %s", error)

    threading.Thread(target=prune, name="prune-checkpoints", daemon=True).start()
