"""The host's side of sandbox_init's protocol (its docstring has the messages): one JSON object a
line on sandbox_init's stdin and stdout; the events it reports, and each command's output routed
to the command by its id."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

from ..errors import RuntimeClientError


class InitChannel:
    def __init__(self, lost: Callable[[], str | None]) -> None:
        self._lost = lost  # why the kernel ended the compute, for a command it cut short
        self.process: asyncio.subprocess.Process | None = None
        self.init = asyncio.Event()  # sandbox_init runs: bwrap has finished building the sandbox
        self.ready = asyncio.Event()  # sandbox_init saw the agent's /ping answer Healthy
        self.exit_code: int | None = None
        self.closed = False
        self._execs: dict[str, asyncio.Queue] = {}
        self._ids = itertools.count(1)

    async def read(self) -> None:
        """Every line sandbox_init writes, until its stdout closes."""
        assert self.process and self.process.stdout
        async for line in self.process.stdout:
            try:
                message: dict[str, Any] = json.loads(line)
            except json.JSONDecodeError:
                continue
            if "id" in message and (queue := self._execs.get(str(message["id"]))):
                queue.put_nowait(message)
            elif message.get("event") == "init":
                self.init.set()
            elif message.get("event") == "ready":
                self.ready.set()
            elif message.get("event") in ("exited", "stopped"):
                self.exit_code = message.get("code")

    def close(self) -> None:
        """sandbox_init has ended: commands still running end with the compute."""
        self.closed = True
        for queue in self._execs.values():
            queue.put_nowait(None)

    async def send(self, message: dict[str, Any]) -> None:
        assert self.process and self.process.stdin
        self.process.stdin.write((json.dumps(message) + "\n").encode())
        await self.process.stdin.drain()

    async def exec(self, command: str, timeout: float) -> AsyncIterator[dict[str, Any]]:
        """Run a shell command in the sandbox; yields {"stream","data"} then {"exit","status"}."""
        exec_id = str(next(self._ids))
        queue: asyncio.Queue = asyncio.Queue()
        self._execs[exec_id] = queue
        finished = False
        try:
            try:
                await self.send({"op": "exec", "id": exec_id, "command": command, "timeout": timeout})
            except (ConnectionError, RuntimeError) as error:
                raise RuntimeClientError(f"The session's compute is gone: {error}") from error
            while True:
                message = await queue.get()
                if message is None:
                    finished = True
                    lost = self._lost()
                    why = f"the session's compute stopped{': ' + lost if lost else ''}"
                    yield {"exit": -1, "status": "COMPLETED", "stream_error": why}
                    return
                if "exit" in message:
                    finished = True
                    yield message
                    return
                yield message
        finally:
            self._execs.pop(exec_id, None)
            if not finished and not self.closed:  # the caller went away: end the command too
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await self.send({"op": "kill", "id": exec_id})
