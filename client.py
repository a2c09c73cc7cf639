#!/usr/bin/env python3
"""Talk to the coding agent on AgentCore Runtime: on AWS, or on agentcore_local when the
AWS_ENDPOINT_URL_BEDROCK_AGENTCORE variable points there (`python -m agentcore_local env`).

  python client.py new-session-id                 # a fresh id; export SESSION_ID=...
  python client.py invoke "Create a Node.js API" --stream
  python client.py stop                           # end the compute; the files stay
  python client.py invoke "Add POST /echo"        # new compute, same files and history
  python client.py exec "ls -A"                   # a shell command inside the session
  python client.py demo                           # all of the above, with a summary
  python client.py checkpoints                    # one line per turn: time, prompt, files changed
  python client.py undo --turns 2                 # files and conversation back before the last 2 turns
  python client.py status                         # storage used against the quota, checkpoints, backup
  python client.py checkpoints --backup           # the backup's whole history (outlives storage resets)
  python client.py restore CHECKPOINT             # bring one of it back: files and conversation
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cloud import report
from cloud.clients import REGION_HELP, data_plane, resolve_region
from cloud.demo import run_demo
from cloud.errors import CLI_ERRORS, UserError, failure
from cloud.runtime_record import read_arn, record_path
from cloud.session_calls import act, invoke, run_command, stop

SESSION_ID_MIN = 33
# Advice client.py adds to AWS errors, by error code (cloud/errors.py words the rest).
HINTS = {
    "ResourceNotFoundException": "check --arn / AGENT_ARN",
    "RetryableConflictException": "still busy after retrying; try again shortly",
}


# --- where and who -----------------------------------------------------------------------------


def resolve_arn(explicit: str | None, record: Path) -> str:
    arn = explicit or os.environ.get("AGENT_ARN") or read_arn(record)
    if not arn:
        raise UserError(
            "no runtime ARN: pass --arn, set AGENT_ARN, or deploy first "
            f"(python deploy.py ensure writes {record})"
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


def session_target(args: argparse.Namespace, read_timeout: int | None = None) -> tuple[Any, str, str]:
    """The data-plane client, runtime ARN and session id a session command talks to."""
    arn, session = resolve_arn(args.arn, args.record), resolve_session(args.session)
    return data_plane(args.region, read_timeout=read_timeout or args.read_timeout), arn, session


def endpoint_label() -> str:
    url = os.environ.get("AWS_ENDPOINT_URL_BEDROCK_AGENTCORE") or os.environ.get("AWS_ENDPOINT_URL")
    return f"{url} (local endpoint)" if url else "AWS"


# --- printing ----------------------------------------------------------------------------------


def stderr_line(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def print_event(event: dict[str, Any]) -> None:
    """--stream: show each event the moment it arrives."""
    kind = event.get("type")
    if kind == "text":
        sys.stdout.write(event.get("text", ""))
    elif kind == "tool_use":
        sys.stdout.write(f"\n  -> {event.get('name')}: {event.get('input', '')}\n")
    elif kind == "tool_result":
        mark = "ok" if event.get("status") == "success" else event.get("status")
        sys.stdout.write(f"  <- {event.get('name')}: {mark}\n")
    sys.stdout.flush()


def write_output(stream: str, text: str) -> None:
    target = sys.stderr if stream == "stderr" else sys.stdout
    target.write(text)
    target.flush()


class DemoConsole:
    """cloud.demo's DemoView on the terminal: numbered steps, tool calls, failed tools, output indented."""

    def __init__(self, steps: int = 4) -> None:
        self.steps, self.done = steps, 0

    def step(self, title: str) -> None:
        self.done += 1
        print(f"\n[{self.done}/{self.steps}] {title}", flush=True)

    def event(self, event: dict[str, Any]) -> None:
        if event.get("type") == "tool_use":
            print(f"    -> {event.get('name')}: {str(event.get('input', ''))[:100]}", flush=True)
        elif event.get("type") == "tool_result" and event.get("status") != "success":
            print(f"    <- {event.get('name')}: {event.get('status')}", flush=True)

    def note(self, line: str) -> None:
        print(f"    {line}", flush=True)

    def answer(self, text: str) -> None:
        print(f"    answer: {text.strip()[:400]}", flush=True)

    def command(self, command: str) -> None:
        print(f"    $ {command}", flush=True)

    def output(self, text: str) -> None:
        print("".join(f"      {line}\n" for line in text.splitlines()), end="", flush=True)


# --- the commands ------------------------------------------------------------------------------


def cmd_new_session_id(args: argparse.Namespace) -> int:
    print(new_session_id())
    return 0


def cmd_invoke(args: argparse.Namespace) -> int:
    client, arn, session = session_target(args)
    answer = invoke(client, arn, session, args.prompt, args.stream, print_event if args.stream else None)
    print("" if args.stream else answer.get("response", ""))  # streamed text is already out
    print(report.answer_line(answer), file=sys.stderr)
    if warning := (answer.get("workspace", {}).get("usage") or {}).get("warning"):
        stderr_line(f"warning: {warning}")
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    client, arn, session = session_target(args)
    started = time.perf_counter()
    stop(client, arn, session)
    print(
        f"stopped session {session} in {time.perf_counter() - started:.1f}s; "
        "its files stay in session storage"
    )
    return 0


def cmd_exec(args: argparse.Namespace) -> int:
    client, arn, session = session_target(args, read_timeout=max(args.read_timeout, args.timeout + 30))
    result = run_command(client, arn, session, args.command, args.timeout, write_output)
    if result.status == "TIMED_OUT":
        stderr_line(f"the command timed out after {args.timeout}s and was terminated")
        return 124
    return result.exit_code


def cmd_demo(args: argparse.Namespace) -> int:
    arn = resolve_arn(args.arn, args.record)
    session = resolve_session(args.session) if (args.session or os.environ.get("SESSION_ID")) else None
    session = session or new_session_id()
    client = data_plane(args.region, read_timeout=args.read_timeout)
    print("Session storage demo: files and conversation survive StopRuntimeSession")
    print(f"  runtime  {arn}\n  session  {session}\n  endpoint {endpoint_label()}")
    result = run_demo(client, arn, session, DemoConsole())
    print("\n".join(report.demo_summary(result)))
    return 0 if result.ok else 1


def cmd_undo(args: argparse.Namespace) -> int:
    answer = act(*session_target(args), {"action": "undo", "turns": args.turns})
    print("\n".join(report.undo_lines(answer)))
    print(f"recorded as checkpoint {answer.get('checkpoint')}", file=sys.stderr)
    return 0


def cmd_checkpoints(args: argparse.Namespace) -> int:
    if args.backup:
        answer = act(*session_target(args), {"action": "checkpoints", "backup": True})
        print("\n".join(report.backup_checkpoint_lines(answer)))
        return 0
    answer = act(*session_target(args), {"action": "checkpoints"})
    print("\n".join(report.checkpoint_lines(answer)))
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    answer = act(*session_target(args), {"action": "restore", "checkpoint": args.checkpoint})
    print("\n".join(report.restore_lines(answer)))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    answer = act(*session_target(args), {"action": "status"})
    print("\n".join(report.status_lines(answer)))
    if warning := answer.get("usage", {}).get("warning"):
        stderr_line(f"warning: {warning}")
    return 0


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
    common.add_argument("--region", help=REGION_HELP)
    common.add_argument(
        "--read-timeout",
        type=int,
        default=300,
        metavar="SECONDS",
        help="wait this long for an answer (default: 300)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(
        name: str,
        func: Callable[[argparse.Namespace], int],
        help: str,
        description: str,
        parents: tuple[argparse.ArgumentParser, ...] = (common,),
    ) -> argparse.ArgumentParser:
        """A subcommand: its --help shows `description`; `func(args)` runs it and returns the exit code."""
        p = sub.add_parser(name, parents=list(parents), help=help, description=description)
        p.set_defaults(func=func)
        return p

    p = command(
        "invoke",
        cmd_invoke,
        "send one prompt to the session",
        "Send PROMPT to the agent in the session; "
        "the first call of a session starts its compute. "
        "Prints the answer, then a line about restored history and workspace.",
    )
    p.add_argument("prompt", metavar="PROMPT")
    p.add_argument("--stream", action="store_true", help="print text and tool calls as they happen")

    command(
        "stop",
        cmd_stop,
        "stop the session's compute (its files stay)",
        "StopRuntimeSession: end the session's compute. Session storage keeps the files and the "
        "conversation; the next invoke starts new compute on them.",
    )

    p = command(
        "exec",
        cmd_exec,
        "run a shell command inside the session",
        "InvokeAgentRuntimeCommand: run COMMAND in the session's compute, in its workspace "
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

    command(
        "demo",
        cmd_demo,
        "build, stop, resume, inspect: proof that storage and history survive",
        "The seed's cycle: prompt 1 builds a Node.js project (express, dotenv, GET /health, "
        "npm install); StopRuntimeSession; prompt 2 adds POST /echo after checking the workspace; then "
        "commands inside the session show the files, and the answer shows the restored history. "
        "Uses --session/SESSION_ID if set, else a new session.",
    )

    command(
        "undo",
        cmd_undo,
        "take back the last turns: files and conversation",
        "Put the session's workspace and conversation back as they were before the last N "
        "turns: changed and deleted files come back from the checkpoints, added ones go, modes are "
        "restored, and the agent forgets those turns. The undo is itself a checkpoint; undo again to "
        "go further back.",
    ).add_argument(
        "--turns", type=int, default=1, metavar="N", help="how many turns to take back (default: 1)"
    )

    command(
        "checkpoints",
        cmd_checkpoints,
        "list the session's checkpoints",
        "One line per checkpoint kept in session storage: id, turn, time, files changed "
        "(+added ~modified -deleted m mode), and the prompt's first line. "
        "[undone] marks turns an undo took back. With --backup: the backup's history in S3 instead, "
        "newest first (it outlives storage resets; docs/backups.md).",
    ).add_argument("--backup", action="store_true", help="list the backup's history (needs BACKUP_BUCKET)")

    command(
        "restore",
        cmd_restore,
        "bring a checkpoint of the backup back: files and conversation",
        "Make the session's workspace and conversation what they were at CHECKPOINT, an id that "
        "`checkpoints --backup` lists (BRANCH.SEQ, or a bare SEQ for the newest with it). What is "
        "there now is kept as a checkpoint first, and the replaced conversation moved aside.",
    ).add_argument("checkpoint", metavar="CHECKPOINT")

    command(
        "status",
        cmd_status,
        "show storage usage, checkpoints and backup state",
        "How much of the session storage quota the workspace, its history and its "
        "checkpoints use, how many checkpoints are kept, and whether backups are on.",
    )

    command(
        "new-session-id",
        cmd_new_session_id,
        "print a fresh valid session id",
        "Print a new runtime session id (40 characters; AgentCore wants 33 to 256). "
        "Use: export SESSION_ID=$(python client.py new-session-id)",
        parents=(),  # it calls nothing: no --arn, --session, --region
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if hasattr(args, "region"):  # the environment, read once: region and the deployed-runtime record
        args.region, args.record = resolve_region(args.region), record_path(os.environ)
    try:
        return args.func(args)
    except CLI_ERRORS as error:
        line, code = failure(error, HINTS)
        stderr_line(f"client.py: {line}")
        return code
    except BrokenPipeError:  # `client.py exec ... | head` stopped reading: it has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so exit's flush is quiet
        return 128 + signal.SIGPIPE


if __name__ == "__main__":
    sys.exit(main())
