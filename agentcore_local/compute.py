"""One running compute: a sandboxed `sandbox_init.py` + agent, its health check, commands and stop."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import signal
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx

from .exceptions import RuntimeClientError
from .sandbox import Launcher, LaunchSpec

log = logging.getLogger("agentcore_local.compute")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    return "\n".join(text)


class Compute:
    """The process tree of one session's compute, driven over sandbox_init's stdin/stdout protocol."""

    def __init__(
        self, launcher: Launcher, spec: LaunchSpec, log_path: Path, on_exit: Callable[[Compute], None]
    ):
        self.launcher = launcher
        self.spec = spec
        self.log_path = log_path
        self.url = f"http://127.0.0.1:{spec.port}"
        self._on_exit = on_exit
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task | None = None
        self._exited = asyncio.Event()
        self._execs: dict[str, asyncio.Queue] = {}
        self._ids = itertools.count(1)
        self.stopping = False
        self.exit_code: int | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def running(self) -> bool:
        return self._process is not None and not self._exited.is_set()

    async def start(self, timeout: float) -> None:
        """Launch, then poll GET /ping until Healthy; RuntimeClientError when it dies or never answers."""
        argv, env, cwd = self.launcher.command(self.spec)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log_file:
            self._process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=log_file,
                env=env,
                cwd=cwd,
                start_new_session=True,  # its own process group: a last-resort SIGKILL reaches all of it
                limit=4 * 1024 * 1024,
            )
        self._reader = asyncio.create_task(self._read())
        try:
            await self._wait_healthy(timeout)
        except BaseException:
            await self.stop(grace=1.0)
            raise

    async def _wait_healthy(self, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        delay = 0.02
        async with httpx.AsyncClient(timeout=2.0) as http:
            while True:
                if self._exited.is_set():
                    raise RuntimeClientError(
                        f"The agent exited during start-up (code {self.exit_code}). "
                        f"Its log:\n{log_tail(self.log_path)}"
                    )
                with contextlib.suppress(httpx.TransportError, ValueError):
                    answer = await http.get(f"{self.url}/ping")
                    if answer.status_code == 200 and answer.json().get("status") in (
                        "Healthy",
                        "HealthyBusy",
                    ):
                        return
                if loop.time() > deadline:
                    raise RuntimeClientError(
                        "Runtime initialization time exceeded: the agent did not answer /ping "
                        f"within {timeout:.0f}s. "
                        f"Its log:\n{log_tail(self.log_path)}"
                    )
                # Poll, but wake up at once if the process dies.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._exited.wait(), delay)
                delay = min(delay * 1.5, 0.25)

    async def wait_exited(self, timeout: float) -> bool:
        """True once the process has ended (within `timeout` seconds), else False."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._exited.wait(), timeout)
        return self._exited.is_set()

    async def ping(self) -> str | None:
        """The agent's /ping status (Healthy, HealthyBusy), or None when it does not answer."""
        try:
            async with httpx.AsyncClient(timeout=2.0) as http:
                return (await http.get(f"{self.url}/ping")).json().get("status")
        except (httpx.HTTPError, ValueError):
            return None

    async def _read(self) -> None:
        assert self._process and self._process.stdout
        try:
            async for line in self._process.stdout:
                try:
                    message: dict[str, Any] = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if "id" in message and (queue := self._execs.get(str(message["id"]))):
                    queue.put_nowait(message)
                elif message.get("event") in ("exited", "stopped"):
                    self.exit_code = message.get("code")
        finally:
            await self._process.wait()
            self._exited.set()
            for queue in self._execs.values():
                queue.put_nowait(None)  # commands still running: the compute is gone
            if not self.stopping:
                self._on_exit(self)

    async def _send(self, message: dict[str, Any]) -> None:
        assert self._process and self._process.stdin
        self._process.stdin.write((json.dumps(message) + "\n").encode())
        await self._process.stdin.drain()

    async def exec(self, command: str, timeout: float) -> AsyncIterator[dict[str, Any]]:
        """Run a shell command in the sandbox; yields {"stream","data"} then {"exit","status"}."""
        exec_id = str(next(self._ids))
        queue: asyncio.Queue = asyncio.Queue()
        self._execs[exec_id] = queue
        finished = False
        try:
            try:
                await self._send({"op": "exec", "id": exec_id, "command": command, "timeout": timeout})
            except (ConnectionError, RuntimeError) as error:
                raise RuntimeClientError(f"The session's compute is gone: {error}") from error
            while True:
                message = await queue.get()
                if message is None:
                    finished = True
                    yield {"exit": -1, "status": "COMPLETED", "stream_error": "the session's compute stopped"}
                    return
                if "exit" in message:
                    finished = True
                    yield message
                    return
                yield message
        finally:
            self._execs.pop(exec_id, None)
            if not finished and self.running:  # the caller went away: end the command too
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await self._send({"op": "kill", "id": exec_id})

    async def stop(self, grace: float) -> None:
        """Graceful: sandbox_init SIGTERMs the agent, SIGKILLs it after `grace`, syncs. Then the fallbacks."""
        self.stopping = True
        if self._process is None:
            return
        if not self._exited.is_set():
            with contextlib.suppress(ConnectionError, RuntimeError, AssertionError):
                await self._send({"op": "stop", "grace": grace})
                self._process.stdin.close()  # type: ignore[union-attr]
            try:
                await asyncio.wait_for(self._exited.wait(), grace + 5.0)
            except TimeoutError:
                log.warning("compute=<%s> | did not stop in %.0fs: killing it", self.spec.name, grace + 5.0)
                await self._kill()
        await self._process.wait()
        if self._reader:
            await self._reader

    async def _kill(self) -> None:
        kill_argv = self.launcher.kill_argv(self.spec)
        if kill_argv:
            proc = await asyncio.create_subprocess_exec(*kill_argv, stdout=asyncio.subprocess.DEVNULL)
            await proc.wait()
        assert self._process
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._process.pid, signal.SIGKILL)
        await asyncio.wait_for(self._exited.wait(), 10.0)
