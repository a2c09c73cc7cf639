"""Serving the app: what `app.run` does (uvicorn, its settings), with a stop that takes
milliseconds, not ~0.25 s. uvicorn is pinned (pyproject.toml) for the two methods overridden
here; tests/unit/agent/test_server.py fails on a uvicorn whose Server no longer fits them."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import Any

import uvicorn

from agent.service.settings import Settings


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


def config(app: Any, settings: Settings) -> uvicorn.Config:
    """`app.run`'s uvicorn settings. No WebSocket handler is defined, so no WebSocket implementation
    to load (~5 ms of start); h11 and asyncio named outright, so uvicorn does not first try to
    import httptools and uvloop."""
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        ws="none",
        http="h11",
        loop="asyncio",
        access_log=app.debug,  # app.run's defaults
        log_level="info" if app.debug else "warning",
    )


def serve(app: Any, settings: Settings) -> None:
    """Serve until SIGTERM or Ctrl-C."""
    PromptStop(config(app, settings)).run()
