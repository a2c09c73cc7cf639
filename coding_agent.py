"""The coding agent: a Strands agent with a shell and a file editor, served by BedrockAgentCoreApp.

Everything it builds and its conversation history live in WORKSPACE_DIR (on AgentCore,
the session-storage mount /mnt/workspace), so a stopped session resumes with both.
Contract: docs/CONTRACT.md §1. The supporting pieces are one import away, in agent/.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from bedrock_agentcore.runtime import BedrockAgentCoreApp
from starlette.background import BackgroundTask
from starlette.responses import JSONResponse, Response
from strands import Agent
from strands.models.model import Model
from strands.session.file_session_manager import FileSessionManager
from strands.tools.decorator import DecoratedFunctionTool

from agent import backup, backup_points, history, protocol, workspace
from agent.backup_transfer import rehearse
from agent.backup_types import BackupError
from agent.budget import TurnBudget
from agent.conversation_manager import SteppedWindowConversationManager
from agent.conversations import Busy, Conversation, Conversations
from agent.health import Health, UnhealthyPing
from agent.hooks import OutputLimit
from agent.mount_watch import MountWatch, SessionHeader
from agent.providers import build_model, rehearse_model
from agent.recorder import Busy as WorkspaceBusy
from agent.recorder import Recorder
from agent.request_guard import RequestGuard
from agent.settings import Settings
from agent.tools import make_tools
from agent.undo import UndoError
from agent.warmup import Once, StartAfterFirstPing, WarmUp, first_use_imports

SYSTEM_PROMPT = """You are a coding agent. Your workspace is {workspace}; it persists across sessions.
Before you act, look at what the workspace already holds and build on it instead of starting over.
Use `shell` for commands: each call starts fresh in the workspace with no input, so pass flags such
as --yes rather than waiting for a prompt. Use `file_editor` with paths in {workspace}.
Answer briefly: what you changed, and how to run it."""

JSON = "application/json"
log = logging.getLogger("coding_agent")
settings = Settings.from_env()


@contextlib.asynccontextmanager
async def lifespan(_app: Any) -> AsyncIterator[None]:
    """At start: the warm-up starts by itself if no /ping has started it a second from now. On SIGTERM
    (a stop), give a running backup time to finish: AgentCore's stop waits for it no longer than its
    grace, so this stays below that."""
    warm_up.arm()
    mount_watch.start(app)  # restores a reset storage the moment it is mounted (agent/mount_watch.py)
    yield
    if backups is not None and not await asyncio.to_thread(backups.wait, settings.backup_wait_seconds):
        log.warning("backup | still uploading at shutdown; the next turn's push sends what is missing")


app = BedrockAgentCoreApp(lifespan=lifespan)
# Nothing here touches the workspace: AgentCore mounts session storage after the import.


# One model and one set of tools for every conversation, built by the warm-up (or the first turn):
# providers are slow to import, and nothing before the first turn needs either.
model: Once[Model] = Once(lambda: build_model(settings))
tools: Once[list[DecoratedFunctionTool]] = Once(
    lambda: make_tools(
        workspace.Workspace(settings.workspace),
        settings.shell_timeout,
        settings.max_tool_output_chars,
        settings.tool_env,
    )
)


def new_agent(session_manager: FileSessionManager | None) -> Agent:
    """A conversation's Agent (None: the warm-up's throwaway one, which no conversation uses)."""
    return Agent(
        model=model(),
        tools=tools(),
        conversation_manager=SteppedWindowConversationManager(),
        system_prompt=SYSTEM_PROMPT.format(workspace=settings.workspace),
        session_manager=session_manager,
        hooks=[OutputLimit(settings.max_tool_output_chars)],
        callback_handler=None,
    )


def open_conversation(conversation_id: str) -> tuple[Agent, FileSessionManager, list[str]]:
    """The agent factory: restore a conversation's Agent from session storage."""

    # Outside build(): a provider or tool problem is not damage to the history.
    model(), tools()

    def build() -> tuple[Agent, FileSessionManager]:
        sessions = FileSessionManager(session_id=conversation_id, storage_dir=str(settings.sessions_dir))
        return new_agent(sessions), sessions

    (agent, sessions), quarantined = history.open_with_quarantine(
        settings.sessions_dir, conversation_id, build
    )
    return agent, sessions, quarantined


conversations = Conversations(open_conversation, limit=settings.max_warm_conversations)
health = Health(conversations.stalled_opens, settings.stall_seconds)
app.add_middleware(RequestGuard)  # 400/413 for bodies the SDK would answer with a 500
app.add_middleware(UnhealthyPing, health=health)  # /ping answers 503 while turns could not be answered


recorder = Recorder(
    settings.workspace, settings.checkpoint_keep, settings.checkpoint_max_bytes, settings.storage_quota_bytes
)
backups = backup.S3Backup.from_bucket(settings.backup_bucket)  # None without BACKUP_BUCKET
mount_watch = MountWatch(
    settings.workspace, (lambda sid: backups.restore_if_empty(settings.workspace, sid)) if backups else None
)
app.add_middleware(SessionHeader, watch=mount_watch)  # the session id, from any request's header
# What every session's first turn needs, built once the first /ping is answered (agent/warmup.py).
warm_up = WarmUp(
    [
        *([("s3 client", lambda: rehearse(backups.client(), backups.bucket))] if backups else []),
        ("model", lambda: rehearse_model(model())),
        ("tools", tools),
        ("agent", lambda: new_agent(None)),
        ("imports", first_use_imports),
    ],
)
app.add_middleware(StartAfterFirstPing, warm_up=warm_up)
restores: dict[str, backup.RestoreReport] = {}  # conversation id -> the restore its turn triggered


def use_backups(session_id: str | None, conversation_id: str) -> None:
    """Point the recorder's restore hooks at this session's backups (one compute serves one session)."""
    if backups is None or not session_id:
        return
    if report := mount_watch.ensure(session_id):  # the restore at the mount, waited for (or run now)
        restores[conversation_id] = report

    def restore_empty(_store: Any) -> bool:
        report = mount_watch.ensure(session_id)  # the restore at the mount, waited for (or run now)
        if report is not None:
            restores[conversation_id] = report
        return report is not None and not report.refused

    def restore_missing(_store: Any, missing: list[str]) -> bool:
        return bool(backups.restore_missing(settings.workspace, session_id, missing).restored)

    recorder.restore_empty, recorder.restore_missing = restore_empty, restore_missing


async def run_turn(
    conversation: Conversation, prompt: str, session_id: str | None = None, push: bool = True
) -> AsyncGenerator[dict[str, Any], None]:
    """One turn as service events; the last is `done` or `error`.

    The conversation handshake: `begin` (in invoke: claim it, or 409) -> `open` (restore its
    Agent) -> the turn -> `end` (release it), whatever happens. A checkpoint brackets the turn:
    `recorder.begin` before the conversation is opened (a restore from backup brings its history
    back first), `recorder.end` after the turn, answered or not; then the backup, while /ping
    still says HealthyBusy (`push=False`: the caller starts it once its answer is sent)."""
    busy = app.add_async_task("turn")  # /ping says HealthyBusy until complete_async_task
    started, start, result = time.perf_counter(), None, None
    outcome, failure = "failed", None
    try:
        try:
            await asyncio.to_thread(use_backups, session_id, conversation.id)
            start = await asyncio.to_thread(recorder.begin, conversation.id)
            snapshot = workspace.snapshot(settings.workspace)
            # In a thread: restoring reads session storage, and the event loop serves every other turn.
            agent = (await asyncio.to_thread(conversations.open, conversation)).agent
            interrupted = history.close_interrupted_turn(agent, conversation.session_manager)
            messages_before = len(agent.messages)
            tool_names: dict[str, str] = {}
            # The snapshot goes in as its own block, so the model notices earlier work even unasked.
            async with TurnBudget(settings.max_turn_seconds, settings.max_model_calls) as budget:
                blocks = [{"text": snapshot.describe()}, {"text": prompt}]
                async for event in agent.stream_async(blocks, **budget.kwargs):
                    for out in protocol.events_of(event, tool_names):
                        yield out
                    result = event.get("result", result)
            failure = budget.exceeded(getattr(result, "stop_reason", None))
            if failure:  # close the history now, so the next turn starts from an answered one
                history.close_interrupted_turn(agent, conversation.session_manager)
            outcome = "budget" if failure else "answered"
        except Exception as error:  # the model or a provider failed: say so, keep serving
            log.warning(
                "conversation_id=<%s> | turn failed: %s",
                conversation.id,
                error,
                exc_info=log.isEnabledFor(logging.DEBUG),
            )
            failure = f"the turn failed: {error}"
        record = protocol.TurnRecord()
        if start is not None:
            ending, start = start, None
            try:
                record = await asyncio.to_thread(recorder.end, ending, conversation.id, prompt, outcome)
            except OSError as error:  # storage full, most likely: answer anyway, without a checkpoint
                log.warning("conversation_id=<%s> | checkpoint failed: %s", conversation.id, error)
            if recorder.needs_pruning():
                _prune_in_background()
            if report := restores.pop(conversation.id, None):
                fields = report.fields()
                record = dataclasses.replace(
                    record,
                    restore=fields["restore"],
                    restored_from=fields["restored_from"] or record.restored_from,
                )
        if failure:
            kept = f"; checkpoint {record.checkpoint} kept what it changed (client.py undo takes it back)"
            yield protocol.error_event(
                failure + (kept if record.checkpoint else ""), checkpoint=record.checkpoint
            )
            return
        done = protocol.Answer.of(
            str(result),
            snapshot,
            conversation,
            messages_before=messages_before,
            interrupted=interrupted,
            record=record,
        )
        conversation.quarantined = []  # reported once
        log.info("conversation_id=<%s> | turn done in %.3fs", conversation.id, time.perf_counter() - started)
        yield protocol.done_event(done)
    finally:
        if start is not None:  # the client went away mid-turn: still record what the turn did
            with contextlib.suppress(OSError):
                recorder.end(start, conversation.id, prompt, "failed")
        Conversations.end(conversation)
        if backups is not None and push:  # it holds /ping at HealthyBusy itself until the upload is done
            backups.start_backup(app, settings.workspace, session_id)
        app.complete_async_task(busy)


def _prune_in_background() -> None:
    """Drop old checkpoints after the answer. Not HealthyBusy: a prune killed midway only leaves
    objects no manifest names, which the next prune collects."""

    def prune() -> None:
        try:
            recorder.prune()
        except OSError as error:
            log.warning("checkpoints | prune failed: %s", error)

    threading.Thread(target=prune, name="prune-checkpoints", daemon=True).start()


async def act(request: protocol.ActionRequest, session_id: str | None = None) -> Any:
    """The requests that run no turn: undo, checkpoints, status, restore (docs/backups.md)."""
    await asyncio.to_thread(mount_watch.ensure, session_id, False)  # a reset storage is restored first
    if request.backup or request.action == "restore":
        return await backup_action(request, session_id)
    if request.action == "checkpoints":
        return {"action": "checkpoints", "checkpoints": await asyncio.to_thread(recorder.checkpoints)}
    if request.action == "status":
        status = await asyncio.to_thread(recorder.status)
        restore = {"restore": mount_watch.timings()} if backups else {}  # how soon after the mount
        return {"action": "status", **status, "backup": {"enabled": backups is not None, **restore}}
    busy = app.add_async_task("undo")
    claimed: list[Conversation] = []
    try:
        involved = await asyncio.to_thread(recorder.conversations_to_undo, request.turns)
        for conversation_id in sorted({request.conversation_id, *involved}):
            claimed.append(conversations.begin(conversation_id))
        report = await asyncio.to_thread(recorder.undo, request.turns, request.conversation_id, involved)
        for conversation in claimed:
            Conversations.drop(conversation)  # warm Agents must not keep the turns taken back
    finally:
        for conversation in claimed:
            Conversations.end(conversation)
        if backups is not None:  # the undo is a checkpoint too
            backups.start_backup(app, settings.workspace, session_id)
        app.complete_async_task(busy)
    return {"action": "undo", "conversation_id": request.conversation_id, **report}


async def backup_action(request: protocol.ActionRequest, session_id: str | None) -> Any:
    """`checkpoints --backup` and `restore CHECKPOINT` (agent/backup_points.py)."""
    if backups is None or not session_id:
        raise protocol.BadRequest("backups are off for this runtime (BACKUP_BUCKET is unset)")
    if request.action == "checkpoints":
        return {
            "action": "checkpoints",
            **await asyncio.to_thread(backup_points.listing, backups, session_id),
        }
    busy, claimed = app.add_async_task("restore"), conversations.begin(request.conversation_id)
    try:
        bring = backup_points.bring_back
        report = await asyncio.to_thread(bring, backups, recorder, session_id, request.checkpoint or "")
        Conversations.drop(claimed)  # its warm Agent must not keep the conversation replaced
    except UndoError:  # an object expired: 409, as an undo that cannot be done
        raise
    except ValueError as error:  # no such checkpoint in the history
        raise protocol.BadRequest(str(error), status=404) from None
    finally:
        Conversations.end(claimed)
        backups.start_backup(app, settings.workspace, session_id)
        app.complete_async_task(busy)
    return {"action": "restore", **report}


@app.entrypoint
async def invoke(payload: Any, context: Any) -> Any:
    """POST /invocations: validate, claim the conversation, run one turn (as JSON or as SSE)."""
    health.watch(asyncio.get_running_loop())  # the SDK's worker loop, which runs every turn
    try:
        request = protocol.parse_request(payload, context.session_id, settings.max_prompt_chars)
        if isinstance(request, protocol.ActionRequest):
            return await act(request, context.session_id)
        conversation = conversations.begin(request.conversation_id)
    except protocol.BadRequest as error:
        return JSONResponse({"error": str(error)}, status_code=error.status)
    except (Busy, WorkspaceBusy, UndoError) as error:
        return JSONResponse({"error": str(error)}, status_code=409)
    except BackupError as error:  # S3 unreachable, or a backup no restore can use
        return JSONResponse({"error": str(error)}, status_code=503)
    except OSError as error:  # an action hit the storage (full, read-only): say so, keep serving
        log.warning("action | failed: %s", error)
        return JSONResponse({"error": f"the request failed on the workspace: {error}"}, status_code=500)
    # A stream's last event is out before its generator's cleanup starts the backup; a JSON
    # answer starts it as a background task, which Starlette runs once the body is sent.
    turn = run_turn(conversation, request.prompt, context.session_id, push=request.stream)
    if request.stream:
        return turn
    last: dict[str, Any] = {}
    async for event in turn:  # run it to the end, so the conversation is released before we answer
        last = event
    after = (
        BackgroundTask(backups.start_backup, app, settings.workspace, context.session_id) if backups else None
    )
    if last.get("type") == "done":  # serialised as the SDK does for a returned dict
        return Response(
            json.dumps(protocol.body_of(last), ensure_ascii=False), media_type=JSON, background=after
        )
    error = {"error": last.get("message", "the turn ended without an answer")}
    if last.get("checkpoint"):
        error["checkpoint"] = last["checkpoint"]
    return JSONResponse(error, status_code=500, background=after)


def serve() -> None:
    """What `app.run` does (uvicorn, its settings), with a stop that takes milliseconds, not ~0.25 s."""
    import signal

    import uvicorn

    class PromptStop(uvicorn.Server):
        """uvicorn's graceful stop without its fixed waits. A stop (AgentCore's StopRuntimeSession,
        docker stop) is a SIGTERM, and its caller waits for the process to end before resuming:
        stock uvicorn notices the signal at its next 0.1 s tick, then sleeps 0.1 s before each check
        of open connections. Here the signal wakes the loop, and the checks poll at 5 ms. The order
        is uvicorn's: no new connections, answers in flight finish, then the lifespan (a backup
        upload finishing), then the process ends by the SIGTERM it caught."""

        async def main_loop(self) -> None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):  # add_signal_handler: a signal wakes the loop
                loop.add_signal_handler(sig, lambda sig=sig: (self.handle_exit(sig, None), stop.set()))
            counter = 0
            while not await self.on_tick(counter):  # its once-a-second duties (the date header)
                counter = (counter + 1) % 864000
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.1)

        async def shutdown(self, sockets: list | None = None) -> None:
            for server in self.servers:
                server.close()
            for connection in list(self.server_state.connections):
                connection.shutdown()  # an idle keep-alive connection closes now, a busy one after its answer
            # No timeout: the stop's grace SIGKILLs a turn that never ends (a second Ctrl-C forces it).
            while (self.server_state.connections or self.server_state.tasks) and not self.force_exit:
                await asyncio.sleep(0.005)
            if not self.force_exit:
                await self.lifespan.shutdown()

    # No WebSocket handler is defined, so no WebSocket implementation to load (~5 ms of start); h11 and
    # asyncio named outright, so uvicorn does not first try to import httptools and uvloop.
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        ws="none",
        http="h11",
        loop="asyncio",
        access_log=app.debug,  # app.run's defaults
        log_level="info" if app.debug else "warning",
    )
    PromptStop(config).run()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s | %(message)s")
    logging.getLogger("bedrock_agentcore").propagate = False  # it logs JSON lines through its own handler
    serve()
