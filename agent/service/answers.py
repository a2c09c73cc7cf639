"""How /invocations answers what is not a stream: a refused request, and a turn run to its end as
one JSON body (serialised as the SDK does for a returned dict)."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.background import BackgroundTask
from starlette.responses import JSONResponse, Response

from agent.backup.reports import BackupError
from agent.checkpoints.no_room import StorageFull
from agent.checkpoints.recorder import Busy as WorkspaceBusy
from agent.checkpoints.undo import UndoError
from agent.conversation import protocol
from agent.conversation.conversations import Busy

log = logging.getLogger("coding_agent")
JSON = "application/json"
# What a request can be refused with before its turn starts; anything else is a bug, and raises.
REFUSALS = (protocol.BadRequest, Busy, WorkspaceBusy, UndoError, BackupError, OSError)


def refusal(error: Exception) -> JSONResponse:
    """400/404/413 for a bad request, 409 while its conversation or the workspace is busy, 503 when
    the backup cannot be reached, 507 when a checkpoint found no room (what to do is in its text),
    500 when an action hit the storage otherwise (read-only): said in one line, and the service
    keeps serving."""
    if isinstance(error, protocol.BadRequest):
        return JSONResponse({"error": str(error)}, status_code=error.status)
    if isinstance(error, (Busy, WorkspaceBusy, UndoError)):
        return JSONResponse({"error": str(error)}, status_code=409)
    if isinstance(error, BackupError):  # S3 unreachable, or a backup no restore can use
        return JSONResponse({"error": str(error)}, status_code=503)
    if isinstance(error, StorageFull):
        log.warning("action | refused: %s", error)
        return JSONResponse({"error": str(error)}, status_code=507)
    log.warning("action | failed: %s", error)
    return JSONResponse({"error": f"the request failed on the workspace: {error}"}, status_code=500)


async def json_answer(turn: AsyncIterator[dict[str, Any]], after: Callable[[], None] | None) -> Response:
    """Run the turn to its end (so its conversation is released before we answer), then answer; `after`
    (the backup) runs as a background task, which Starlette starts once the body is sent."""
    last: dict[str, Any] = {}
    async for event in turn:
        last = event
    background = BackgroundTask(after) if after else None
    if last.get("type") == "done":
        body = json.dumps(protocol.body_of(last), ensure_ascii=False)
        return Response(body, media_type=JSON, background=background)
    error = {"error": last.get("message", "the turn ended without an answer")}
    if last.get("checkpoint"):
        error["checkpoint"] = last["checkpoint"]
    return JSONResponse(error, status_code=500, background=background)
