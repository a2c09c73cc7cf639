"""The data-plane calls on one runtime session: invoke, stop, and a command inside it.

Nothing here re-sends a turn that may have started: botocore's own retries are off
(cloud/clients.py), and only errors AWS raises before a turn starts are retried, with
bounded exponential backoff and a visible "waiting" line instead of a fixed sleep.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple, TypeVar

from botocore.exceptions import ClientError

from cloud.errors import TurnFailed, UserError, error_code, error_message

# Errors AWS raises before a turn starts: sending the same turn again cannot run it twice.
RETRYABLE = {"RetryableConflictException", "ThrottlingException"}
RETRY_FIRST_DELAY, RETRY_MAX_DELAY, RETRY_BUDGET = 0.25, 8.0, 120.0

T = TypeVar("T")
Say = Callable[[str], None]
Sleep = Callable[[float], None]


class CommandResult(NamedTuple):
    """What InvokeAgentRuntimeCommand's event stream said: exit code, COMPLETED/TIMED_OUT, and the output."""

    exit_code: int
    status: str
    stdout: str
    stderr: str


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def with_retry(call: Callable[[], T], say: Say, sleep: Sleep = time.sleep) -> T:
    """Run `call`; on errors AWS raises before a turn starts, wait with bounded exponential backoff.

    Anything else (a read timeout above all) is not retried: that turn may be running.
    """
    delay, waited = RETRY_FIRST_DELAY, 0.0
    while True:
        try:
            return call()
        except ClientError as error:
            code = error_code(error)
            if code not in RETRYABLE or waited + delay > RETRY_BUDGET:
                raise
            say(f"waiting {delay:.2g}s: {code} ({error_message(error)}); the turn has not started, retrying")
            sleep(delay)
            waited += delay
            delay = min(delay * 2, RETRY_MAX_DELAY)


def invoke(
    client: Any,
    arn: str,
    session: str,
    prompt: str,
    stream: bool,
    on_event: Callable[[dict[str, Any]], None] | None = None,
    say: Say = _to_stderr,
    sleep: Sleep = time.sleep,
) -> dict[str, Any]:
    """One turn. Streaming: every event goes to `on_event` as it arrives. Returns the answer object."""
    payload = json.dumps({"prompt": prompt, "stream": stream}).encode()
    response = with_retry(
        lambda: client.invoke_agent_runtime(
            agentRuntimeArn=arn,
            runtimeSessionId=session,
            payload=payload,
            contentType="application/json",
            accept="text/event-stream" if stream else "application/json",
        ),
        say,
        sleep,
    )
    body = response["response"]
    if not response.get("contentType", "").startswith("text/event-stream"):
        answer = json.loads(body.read())
        if "error" in answer:
            raise TurnFailed(f"the agent answered with an error: {answer['error']}")
        return answer
    # chunk_size=1: botocore's default (1 KB) would hold small events back until the turn ends.
    for line in body.iter_lines(chunk_size=1):
        if not line.startswith(b"data: "):
            continue
        event = json.loads(line[6:])
        if on_event:
            on_event(event)
        if event.get("type") == "done":
            return {key: value for key, value in event.items() if key != "type"}
        # bedrock_agentcore's own stream (app.py) reports a generator's exception as {"error": ...}.
        if event.get("type") == "error" or "error" in event:
            raise TurnFailed(f"the turn failed: {event.get('message') or event.get('error')}")
    raise TurnFailed("the answer stream ended without a done event (was the session stopped mid-turn?)")


def stop(client: Any, arn: str, session: str) -> None:
    """StopRuntimeSession; a session with no compute is a UserError that says so."""
    try:
        client.stop_runtime_session(agentRuntimeArn=arn, runtimeSessionId=session)
    except ClientError as error:
        if error_code(error) == "ResourceNotFoundException" and "session" in error_message(error).lower():
            raise UserError(
                f"nothing to stop: session {session} has no running compute (never started, or stopped)"
            ) from error
        raise


def read_command_stream(
    events: Iterable[dict[str, Any]], write: Callable[[str, str], None] | None = None
) -> CommandResult:
    """Read InvokeAgentRuntimeCommand's `stream`: output goes to `write(stream, text)` as it comes."""
    code, status, out, err = -1, "COMPLETED", [], []
    for event in events:
        chunk = event.get("chunk", {})
        for name, text in chunk.get("contentDelta", {}).items():
            (out if name == "stdout" else err).append(text)
            if write:
                write(name, text)
        if "contentStop" in chunk:
            code, status = chunk["contentStop"]["exitCode"], chunk["contentStop"]["status"]
    return CommandResult(code, status, "".join(out), "".join(err))


def run_command(
    client: Any,
    arn: str,
    session: str,
    command: str,
    timeout: int = 300,
    write: Callable[[str, str], None] | None = None,
    say: Say = _to_stderr,
    sleep: Sleep = time.sleep,
) -> CommandResult:
    """InvokeAgentRuntimeCommand in the session's compute (started if needed); output streams to `write`."""
    response = with_retry(
        lambda: client.invoke_agent_runtime_command(
            agentRuntimeArn=arn, runtimeSessionId=session, body={"command": command, "timeout": timeout}
        ),
        say,
        sleep,
    )
    return read_command_stream(response["stream"], write)


def act(
    client: Any, arn: str, session: str, body: dict[str, Any], say: Callable[[str], None] = _to_stderr
) -> dict[str, Any]:
    """A request that runs no turn ({"action": "undo" | "checkpoints" | "status", ...}); its JSON answer."""
    response = with_retry(
        lambda: client.invoke_agent_runtime(
            agentRuntimeArn=arn,
            runtimeSessionId=session,
            payload=json.dumps(body).encode(),
            contentType="application/json",
            accept="application/json",
        ),
        say,
    )
    answer = json.loads(response["response"].read())
    if "error" in answer:
        raise TurnFailed(f"the agent answered with an error: {answer['error']}")
    return answer
