"""`client.py demo`: the seed's cycle, as proof that files and conversation survive a stop.

The runner only calls AgentCore and measures; it prints nothing. It tells a `DemoView`
what happens as it happens (client.py's view prints it) and returns a `DemoResult` the
CLI summarises, so the same cycle can run under a test or another front end.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from cloud.session_calls import invoke, run_command, stop

BUILD_PROMPT = (
    "Create a Node.js project in the workspace: package.json with express and dotenv as dependencies, "
    "index.js with an Express app that has a GET /health endpoint, then run npm install."
)
RESUME_PROMPT = "Add a POST /echo endpoint to index.js. Check the workspace first: build on what is there."
# Shown from inside the resumed session (InvokeAgentRuntimeCommand), in this order.
INSPECT = (
    "ls -A",
    "cat package.json",
    "ls node_modules | head -n 5",
    "grep -c \"app.post('/echo'\" index.js",
)
COMMAND_TIMEOUT = 60


class DemoView(Protocol):
    """What the runner reports while it runs; every method is called as the thing happens."""

    def step(self, title: str) -> None: ...
    def event(self, event: dict[str, Any]) -> None: ...  # a streamed event of a turn
    def note(self, line: str) -> None: ...  # progress: a retry wait, the stop's duration
    def answer(self, text: str) -> None: ...
    def command(self, command: str) -> None: ...
    def output(self, text: str) -> None: ...  # a command's output, as it streams


@dataclass(frozen=True)
class DemoResult:
    session: str
    files: list[str]  # of package.json and index.js, those the resumed session still has
    echo_added: bool  # the resumed turn added POST /echo to index.js
    packages: int  # entries in node_modules
    npm_found: bool  # whether the session has npm (why node_modules may be missing)
    first_turn_messages: int
    messages_before_resume: int
    restored: bool  # workspace.restored in the resumed answer
    stop_seconds: float
    resume_seconds: float  # from the stop call to the first event of the resumed turn

    @property
    def ok(self) -> bool:
        return len(self.files) == 2 and self.messages_before_resume > 0 and self.restored


def run_demo(client: Any, arn: str, session: str, view: DemoView) -> DemoResult:
    """Build, stop, resume, then look inside the session; return what survived."""
    first_event: list[float] = []

    def on_event(event: dict[str, Any]) -> None:
        first_event.append(time.perf_counter())
        view.event(event)

    def turn(prompt: str) -> dict[str, Any]:
        first_event.clear()
        answer = invoke(client, arn, session, prompt, True, on_event, view.note)
        view.answer(answer.get("response", ""))
        return answer

    def command(line: str, show: bool = True) -> str:
        if show:
            view.command(line)
        write: Callable[[str, str], None] | None = (lambda _stream, text: view.output(text)) if show else None
        return run_command(client, arn, session, line, COMMAND_TIMEOUT, write, view.note).stdout

    view.step(f"build: {BUILD_PROMPT}")
    first = turn(BUILD_PROMPT)

    view.step("stop the session (StopRuntimeSession)")
    stop_started = time.perf_counter()
    stop(client, arn, session)
    stop_seconds = time.perf_counter() - stop_started
    view.note(f"stopped in {stop_seconds:.1f}s: compute gone, storage kept")

    view.step(f"resume: {RESUME_PROMPT}")
    second = turn(RESUME_PROMPT)
    resume_seconds = (first_event[0] if first_event else time.perf_counter()) - stop_started

    view.step("look inside the resumed session (InvokeAgentRuntimeCommand)")
    listing, *_, echo = [command(line) for line in INSPECT]
    packages = int(command("ls node_modules 2>/dev/null | wc -l", show=False).strip() or 0)
    npm_found = bool(packages) or bool(command("command -v npm || true", show=False).strip())
    return DemoResult(
        session=session,
        files=[name for name in ("package.json", "index.js") if name in listing.split()],
        echo_added=echo.strip() not in ("", "0"),
        packages=packages,
        npm_found=npm_found,
        first_turn_messages=first.get("history", {}).get("messages_before", 0),
        messages_before_resume=second.get("history", {}).get("messages_before", 0),
        restored=bool(second.get("workspace", {}).get("restored")),
        stop_seconds=stop_seconds,
        resume_seconds=resume_seconds,
    )
