"""The coding agent: a Strands agent with a shell and a file editor, served by BedrockAgentCoreApp.

Everything it builds and its conversation history live in WORKSPACE_DIR (on AgentCore, the
session-storage mount /mnt/workspace), so a stopped session resumes with both. Contract:
docs/CONTRACT.md §1. The machinery (checkpoints, backups, warm-up, health) is in agent/, laid out
in docs/architecture.md; this file is the pattern.
"""

from __future__ import annotations

import logging
from typing import Any

from strands import Agent
from strands.models.model import Model
from strands.session.file_session_manager import FileSessionManager

from agent.conversation import protocol
from agent.conversation.window import SteppedWindowConversationManager
from agent.service.answers import REFUSALS, json_answer, refusal
from agent.service.server import serve
from agent.service.service import Service, Tools
from agent.service.settings import Settings
from agent.tools.output_limit import OutputLimit

SYSTEM_PROMPT = """You are a coding agent. Your workspace is {workspace}; it persists across sessions.
Before you act, look at what the workspace already holds and build on it instead of starting over.
Use `shell` for commands: each call starts fresh in the workspace with no input, so pass flags such
as --yes rather than waiting for a prompt. Use `file_editor` with paths in {workspace}.
Answer briefly: what you changed, and how to run it."""

settings = Settings.from_env()  # no I/O: AgentCore mounts session storage after the import


def new_agent(
    model: Model, tools: Tools, conversation_id: str | None
) -> tuple[Agent, FileSessionManager | None]:
    """The agent factory: a conversation's Agent, its history kept by FileSessionManager inside the
    workspace (WORKSPACE_DIR/.sessions), so it comes back with the session. Called with the model and
    tools every conversation shares; conversation id None: the warm-up's throwaway Agent."""
    sessions = None
    if conversation_id is not None:
        sessions = FileSessionManager(session_id=conversation_id, storage_dir=str(settings.sessions_dir))
    agent = Agent(
        model=model,
        tools=tools,
        conversation_manager=SteppedWindowConversationManager(),
        system_prompt=SYSTEM_PROMPT.format(workspace=settings.workspace),
        session_manager=sessions,
        hooks=[OutputLimit(settings.max_tool_output_chars)],
        callback_handler=None,
    )
    return agent, sessions


service = Service(settings, new_agent)  # the model, tools, checkpoints, backups, warm-up, /ping health
app = service.app  # a BedrockAgentCoreApp: GET /ping, POST /invocations


@app.entrypoint
async def invoke(payload: Any, context: Any) -> Any:
    """POST /invocations: parse the request, claim its conversation, stream the turn (or answer it as
    JSON once it is done). Undo, checkpoints and status are actions, which run no turn."""
    service.watch_health()
    try:
        request = protocol.parse_request(payload, context.session_id, settings.max_prompt_chars)
        if isinstance(request, protocol.ActionRequest):
            return await service.act(request, context.session_id)
        conversation = service.conversations.begin(request.conversation_id)  # or 409: it is mid-turn
    except REFUSALS as error:
        return refusal(error)
    # A stream's last event is out before its generator's cleanup starts the backup; a JSON answer
    # starts it as a background task, once the body is sent.
    turn = service.turns.run(conversation, request.prompt, context.session_id, push=request.stream)
    if request.stream:
        return turn
    return await json_answer(turn, after=service.push_backup(context.session_id))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s | %(message)s")
    logging.getLogger("bedrock_agentcore").propagate = False  # it logs JSON lines through its own handler
    serve(app, settings)
