"""`client.py demo`: the seed's cycle, as proof that files and conversation survive a stop."""

from __future__ import annotations

import time
from typing import Any

from cloud.session_calls import invoke, run_command, stop

BUILD_PROMPT = (
    "Create a Node.js project in the workspace: package.json with express and dotenv as dependencies, "
    "index.js with an Express app that has a GET /health endpoint, then run npm install."
)
RESUME_PROMPT = "Add a POST /echo endpoint to index.js. Check the workspace first: build on what is there."


class Demo:
    """The seed's cycle: build, stop, resume, then look inside the session."""

    def __init__(self, client: Any, arn: str, session: str, endpoint: str) -> None:
        self.client, self.arn, self.session, self.endpoint = client, arn, session, endpoint
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
        result = run_command(
            self.client,
            self.arn,
            self.session,
            command,
            60,
            lambda _s, text: print(indent(text), end="", flush=True),
        )
        return result.exit_code, result.stdout

    def run(self) -> int:
        print("Session storage demo: files and conversation survive StopRuntimeSession")
        print(f"  runtime  {self.arn}\n  session  {self.session}\n  endpoint {self.endpoint}\n")

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
        listed = run_command(self.client, self.arn, self.session, "ls node_modules 2>/dev/null | wc -l", 60)
        count = listed.stdout
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
            npm = run_command(self.client, self.arn, self.session, "command -v npm || true", 60).stdout
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
