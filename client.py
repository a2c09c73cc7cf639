#!/usr/bin/env python3
"""Talk to the coding agent on AgentCore Runtime: on AWS, or on agentcore_local when the
AWS_ENDPOINT_URL_BEDROCK_AGENTCORE variable points there (`python -m agentcore_local env`).

  python client.py new-session-id                 # a fresh id; export SESSION_ID=...
  python client.py invoke "Create a Node.js API" --stream
  python client.py stop                           # end the compute; the files stay
  python client.py invoke "Add POST /echo"        # new compute, same files and history
  python client.py exec "ls -A"                   # a shell command inside the session
  python client.py demo                           # all of the above, with a summary
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    EventStreamError,
    NoCredentialsError,
    ParamValidationError,
    ReadTimeoutError,
)

from cloud.clients import data_plane
from cloud.runtime_record import RECORD_PATH, read_arn

SESSION_ID_MIN = 33
SESSION_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{32,99}")
# Errors AWS raises before a turn starts: sending the same turn again cannot run it twice.
RETRYABLE = {"RetryableConflictException", "ThrottlingException"}
RETRY_FIRST_DELAY, RETRY_MAX_DELAY, RETRY_BUDGET = 0.25, 8.0, 120.0

BUILD_PROMPT = (
    "Create a Node.js project in the workspace: package.json with express and dotenv as dependencies, "
    "index.js with an Express app that has a GET /health endpoint, then run npm install."
)
RESUME_PROMPT = "Add a POST /echo endpoint to index.js. Check the workspace first: build on what is there."

T = TypeVar("T")


class UserError(Exception):
    """Something the user can fix; main() prints it as one line and exits 1."""


# --- where and who -----------------------------------------------------------------------------


def resolve_arn(explicit: str | None) -> str:
    arn = explicit or os.environ.get("AGENT_ARN") or read_arn()
    if not arn:
        raise UserError(
            "no runtime ARN: pass --arn, set AGENT_ARN, or deploy first "
            f"(python deploy.py ensure writes {RECORD_PATH})"
        )
    return arn


def new_session_id() -> str:
    """A valid runtime session id: 40 characters of [a-z0-9-] (AWS wants 33 to 256)."""
    return f"session-{uuid.uuid4().hex}"


def resolve_session(explicit: str | None) -> str:
    session = explicit or os.environ.get("SESSION_ID")
    if not session:
        raise UserError(
            "no session id: pass --session or set SESSION_ID (make one with: python client.py new-session-id)"
        )
    if len(session) < SESSION_ID_MIN:
        raise UserError(
            f"session id {session!r} has {len(session)} characters; "
            f"AgentCore requires at least {SESSION_ID_MIN} "
            "(make one with: python client.py new-session-id)"
        )
    return session


def endpoint_label() -> str:
    url = os.environ.get("AWS_ENDPOINT_URL_BEDROCK_AGENTCORE") or os.environ.get("AWS_ENDPOINT_URL")
    return f"{url} (local endpoint)" if url else "AWS"


# --- calling AgentCore -------------------------------------------------------------------------


def error_code(error: ClientError) -> str:
    return error.response.get("Error", {}).get("Code", "")


def with_retry(call: Callable[[], T], say: Callable[[str], None]) -> T:
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
            message = error.response.get("Error", {}).get("Message", "")
            say(f"waiting {delay:.2g}s: {code} ({message}); the turn has not started, retrying")
            time.sleep(delay)
            waited += delay
            delay = min(delay * 2, RETRY_MAX_DELAY)


def stderr_line(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def invoke(
    client: Any,
    arn: str,
    session: str,
    prompt: str,
    stream: bool,
    on_event: Callable[[dict[str, Any]], None] | None = None,
    say: Callable[[str], None] = stderr_line,
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
    )
    body = response["response"]
    if not response.get("contentType", "").startswith("text/event-stream"):
        answer = json.loads(body.read())
        if "error" in answer:
            raise UserError(f"the agent answered with an error: {answer['error']}")
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
        if event.get("type") == "error" or "error" in event:
            raise UserError(f"the turn failed: {event.get('message') or event.get('error')}")
    raise UserError("the answer stream ended without a done event (was the session stopped mid-turn?)")


def stop(client: Any, arn: str, session: str) -> None:
    client.stop_runtime_session(agentRuntimeArn=arn, runtimeSessionId=session)


def run_command(
    client: Any,
    arn: str,
    session: str,
    command: str,
    timeout: int = 300,
    write: Callable[[str, str], None] | None = None,
    say: Callable[[str], None] = stderr_line,
) -> tuple[int, str, str]:
    """InvokeAgentRuntimeCommand; output goes to `write(stream, text)` as it comes.

    Returns (exit code, status, stdout).
    """
    response = with_retry(
        lambda: client.invoke_agent_runtime_command(
            agentRuntimeArn=arn, runtimeSessionId=session, body={"command": command, "timeout": timeout}
        ),
        say,
    )
    code, status, out = -1, "COMPLETED", []
    for event in response["stream"]:
        chunk = event.get("chunk", {})
        for name, text in chunk.get("contentDelta", {}).items():
            if name == "stdout":
                out.append(text)
            if write:
                write(name, text)
        if "contentStop" in chunk:
            code, status = chunk["contentStop"]["exitCode"], chunk["contentStop"]["status"]
    return code, status, "".join(out)


# --- printing ----------------------------------------------------------------------------------


def print_event(event: dict[str, Any]) -> None:
    """--stream: show each event the moment it arrives."""
    kind = event.get("type")
    if kind == "text":
        sys.stdout.write(event.get("text", event.get("data", "")))
    elif kind == "tool_use":
        sys.stdout.write(f"\n  -> {event.get('name')}: {event.get('input', '')}\n")
    elif kind == "tool_result":
        mark = "ok" if event.get("status") == "success" else event.get("status")
        sys.stdout.write(f"  <- {event.get('name')}: {mark}\n")
    sys.stdout.flush()


def describe_answer(answer: dict[str, Any]) -> str:
    history = answer.get("history", {})
    workspace = answer.get("workspace", {})
    restored = "yes" if workspace.get("restored") else "no"
    return (
        f"[conversation {answer.get('conversation_id')}: "
        f"{history.get('messages_before', '?')} messages of history "
        f"before this turn; workspace restored: {restored}, {workspace.get('entries', '?')} entries]"
    )


def write_output(stream: str, text: str) -> None:
    target = sys.stderr if stream == "stderr" else sys.stdout
    target.write(text)
    target.flush()


# --- the commands ------------------------------------------------------------------------------


def cmd_new_session_id(args: argparse.Namespace) -> int:
    print(new_session_id())
    return 0


def cmd_invoke(args: argparse.Namespace) -> int:
    arn, session = resolve_arn(args.arn), resolve_session(args.session)
    client = data_plane(args.region, read_timeout=args.read_timeout)
    answer = invoke(client, arn, session, args.prompt, args.stream, print_event if args.stream else None)
    if args.stream:
        print()
    else:
        print(answer.get("response", ""))
    print(describe_answer(answer), file=sys.stderr)
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    arn, session = resolve_arn(args.arn), resolve_session(args.session)
    started = time.perf_counter()
    try:
        stop(data_plane(args.region), arn, session)
    except ClientError as error:
        if error_code(error) == "ResourceNotFoundException" and "session" in str(error).lower():
            raise UserError(
                f"nothing to stop: session {session} has no running compute (never started, or stopped)"
            ) from None
        raise
    print(
        f"stopped session {session} in {time.perf_counter() - started:.1f}s; "
        "its files stay in session storage"
    )
    return 0


def cmd_exec(args: argparse.Namespace) -> int:
    arn, session = resolve_arn(args.arn), resolve_session(args.session)
    client = data_plane(args.region, read_timeout=max(args.read_timeout, args.timeout + 30))
    code, status, _ = run_command(client, arn, session, args.command, args.timeout, write_output)
    if status == "TIMED_OUT":
        stderr_line(f"the command timed out after {args.timeout}s and was terminated")
        return 124
    return code


def cmd_demo(args: argparse.Namespace) -> int:
    return Demo(args).run()


class Demo:
    """The seed's cycle: build, stop, resume, then look inside the session."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.arn = resolve_arn(args.arn)
        self.session = (
            resolve_session(args.session) if (args.session or os.environ.get("SESSION_ID")) else None
        )
        self.session = self.session or new_session_id()
        self.client = data_plane(args.region, read_timeout=args.read_timeout)
        self.tools: list[tuple[str, str]] = []
        self.first_event_at: float | None = None

    def on_event(self, event: dict[str, Any]) -> None:
        if self.first_event_at is None:
            self.first_event_at = time.perf_counter()
        if event.get("type") == "tool_use":
            print(f"    -> {event.get('name')}: {str(event.get('input', ''))[:100]}", flush=True)
        elif event.get("type") == "tool_result":
            self.tools.append((event.get("name", "?"), event.get("status", "?")))
            if event.get("status") != "success":
                print(f"    <- {event.get('name')}: {event.get('status')}", flush=True)

    def turn(self, prompt: str) -> dict[str, Any]:
        self.tools, self.first_event_at = [], None
        say = lambda line: print(f"    {line}", flush=True)  # noqa: E731
        answer = invoke(self.client, self.arn, self.session, prompt, True, self.on_event, say)
        print(f"    answer: {answer.get('response', '').strip()[:400]}", flush=True)
        return answer

    def show(self, command: str) -> tuple[int, str]:
        print(f"    $ {command}", flush=True)
        code, _, out = run_command(
            self.client,
            self.arn,
            self.session,
            command,
            60,
            lambda _s, text: print(indent(text), end="", flush=True),
        )
        return code, out

    def run(self) -> int:
        print("Session storage demo: files and conversation survive StopRuntimeSession")
        print(f"  runtime  {self.arn}\n  session  {self.session}\n  endpoint {endpoint_label()}\n")

        print(f"[1/4] build: {BUILD_PROMPT}", flush=True)
        first = self.turn(BUILD_PROMPT)

        print("\n[2/4] stop the session (StopRuntimeSession)", flush=True)
        stop_started = time.perf_counter()
        stop(self.client, self.arn, self.session)
        stopped_in = time.perf_counter() - stop_started
        print(f"    stopped in {stopped_in:.1f}s: compute gone, storage kept", flush=True)

        print(f"\n[3/4] resume: {RESUME_PROMPT}", flush=True)
        second = self.turn(RESUME_PROMPT)
        resumed_in = (self.first_event_at or time.perf_counter()) - stop_started

        print("\n[4/4] look inside the resumed session (InvokeAgentRuntimeCommand)", flush=True)
        _, listing = self.show("ls -A")
        self.show("cat package.json")
        self.show("ls node_modules | head -n 5")
        _, echo = self.show("grep -c \"app.post('/echo'\" index.js")
        _, _, count = run_command(
            self.client, self.arn, self.session, "ls node_modules 2>/dev/null | wc -l", 60
        )
        packages = int(count.strip() or 0)

        files = [name for name in ("package.json", "index.js") if name in listing.split()]
        history = second.get("history", {}).get("messages_before", 0)
        restored = bool(second.get("workspace", {}).get("restored"))
        print("\nSummary")
        print(f"  {mark(len(files) == 2)} files survived the stop: {', '.join(files) or 'none'}")
        print(f"  {mark(echo.strip() not in ('', '0'))} the resumed turn added POST /echo to index.js")
        if packages:
            print(f"  {mark(True)} node_modules survived too: {packages} packages")
        else:
            _, _, npm = run_command(self.client, self.arn, self.session, "command -v npm || true", 60)
            why = "npm install could not reach the npm registry" if npm.strip() else "npm is not installed"
            print(f"  --   no node_modules ({why}); the files above still prove persistence")
        print(
            f"  {mark(history > 0)} conversation survived: {history} messages of history "
            "before the resumed turn"
        )
        print(f"  {mark(restored)} workspace.restored = {str(restored).lower()} in the resumed answer")
        print(
            f"  stop -> first resumed answer: {resumed_in:.1f}s (stop took {stopped_in:.1f}s; "
            "the seed slept 15 s before even trying)"
        )
        print(
            f"  session {self.session} "
            f"(first turn: {first.get('history', {}).get('messages_before', 0)} messages)"
        )
        return 0 if len(files) == 2 and history > 0 and restored else 1


def mark(ok: bool) -> str:
    return "OK  " if ok else "FAIL"


def indent(text: str) -> str:
    return "".join(f"      {line}\n" for line in text.splitlines())


# --- the command line --------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="client.py",
        description="Talk to the coding agent on AgentCore Runtime (AWS, or agentcore_local when "
        "AWS_ENDPOINT_URL_BEDROCK_AGENTCORE points there).",
        epilog="Runtime ARN: --arn, else AGENT_ARN, else the file deploy.py wrote. "
        "Session id: --session, else "
        "SESSION_ID (33+ characters; make one with new-session-id). After a stop, the next call waits and "
        "retries while AgentCore says the session is still stopping; it never re-sends a turn that may "
        "have started.",
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--arn", help="runtime ARN (default: AGENT_ARN, then the file deploy.py wrote)")
    common.add_argument("--session", help="runtime session id, 33+ characters (default: SESSION_ID)")
    common.add_argument("--region", help="AWS region (default: AWS_REGION, then us-west-2)")
    common.add_argument(
        "--read-timeout",
        type=int,
        default=300,
        metavar="SECONDS",
        help="wait this long for an answer (default: 300)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "invoke",
        parents=[common],
        help="send one prompt to the session",
        description="Send PROMPT to the agent in the session; "
        "the first call of a session starts its compute. "
        "Prints the answer, then a line about restored history and workspace.",
    )
    p.add_argument("prompt", metavar="PROMPT")
    p.add_argument("--stream", action="store_true", help="print text and tool calls as they happen")
    p.set_defaults(func=cmd_invoke)

    p = sub.add_parser(
        "stop",
        parents=[common],
        help="stop the session's compute (its files stay)",
        description="StopRuntimeSession: end the session's compute. Session storage keeps the files and the "
        "conversation; the next invoke starts new compute on them.",
    )
    p.set_defaults(func=cmd_stop)

    p = sub.add_parser(
        "exec",
        parents=[common],
        help="run a shell command inside the session",
        description="InvokeAgentRuntimeCommand: run COMMAND in the session's compute, in its workspace "
        "(starting the compute if needed). Output streams as it comes; exits with the command's exit code.",
    )
    p.add_argument("command", metavar="COMMAND")
    p.add_argument(
        "--timeout",
        type=int,
        default=300,
        metavar="SECONDS",
        help="kill the command after this long (1-3600; default: 300)",
    )
    p.set_defaults(func=cmd_exec)

    p = sub.add_parser(
        "demo",
        parents=[common],
        help="build, stop, resume, inspect: proof that storage and history survive",
        description="The seed's cycle: prompt 1 builds a Node.js project (express, dotenv, GET /health, "
        "npm install); StopRuntimeSession; prompt 2 adds POST /echo after checking the workspace; then "
        "commands inside the session show the files, and the answer shows the restored history. "
        "Uses --session/SESSION_ID if set, else a new session.",
    )
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser(
        "new-session-id",
        help="print a fresh valid session id",
        description="Print a new runtime session id (40 characters; AgentCore wants 33 to 256). "
        "Use: export SESSION_ID=$(python client.py new-session-id)",
    )
    p.set_defaults(func=cmd_new_session_id)
    return parser


def explain(error: Exception) -> str:
    """One actionable line for an error from botocore."""
    if isinstance(error, EndpointConnectionError):
        return (
            f"cannot reach {error.kwargs.get('endpoint_url')}: "
            "is agentcore_local running (make serve-local)? "
            "To use AWS, unset AWS_ENDPOINT_URL_BEDROCK_AGENTCORE"
        )
    if isinstance(error, NoCredentialsError):
        return "no AWS credentials: configure them (aws configure), or use agentcore_local (make serve-local)"
    if isinstance(error, ReadTimeoutError):
        return (
            "no answer within the read timeout; the turn may still be running, so it was not re-sent. "
            "Look with: python client.py exec 'ls -A', or raise --read-timeout"
        )
    if isinstance(error, ParamValidationError):
        return f"invalid request: {error}"
    if isinstance(error, EventStreamError | ClientError):
        code = error_code(error)
        message = error.response.get("Error", {}).get("Message", "")
        hint = {
            "ResourceNotFoundException": " (check --arn / AGENT_ARN)",
            "AccessDeniedException": " (check your IAM permissions for bedrock-agentcore)",
            "RetryableConflictException": " (still busy after retrying; try again shortly)",
        }.get(code, "")
        return f"{code}: {message}{hint}"
    return str(error)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UserError as error:
        stderr_line(f"client.py: {error}")
    except (BotoCoreError, ClientError) as error:
        stderr_line(f"client.py: {explain(error)}")
    except KeyboardInterrupt:
        stderr_line("client.py: interrupted")
    return 1


if __name__ == "__main__":
    sys.exit(main())
