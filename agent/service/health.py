"""Honest readiness: /ping must not say Healthy while a turn could not be answered.

BedrockAgentCoreApp answers /ping on its main event loop, while turns run on a worker
event loop and restores run in threads, so a wedged turn path would still ping Healthy.
Two signs are watched here: a conversation restore that has run longer than
`stall_after` seconds (session storage hung), and the turn event loop not running a
callback posted to it `stall_after` seconds ago (something blocks it). Either makes
/ping answer 503 {"status": "Unhealthy", "reason": ...}; AgentCore counts anything but a
200 Healthy/HealthyBusy as unhealthy. The SDK's ping handler can only return Healthy or
HealthyBusy, so this is an ASGI middleware in front of the app (Starlette's public API).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

from agent.service.request_guard import send_json


class Health:
    """What, if anything, stops the service from answering a turn now."""

    def __init__(
        self,
        stalled_opens: Callable[[float], list[str]],
        stall_after: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stalled_opens = stalled_opens
        self.stall_after = stall_after
        self.clock = clock
        self._loop: asyncio.AbstractEventLoop | None = None
        self._posted: float | None = None  # when a heartbeat was posted that has not run yet
        self._lock = threading.Lock()

    def watch(self, loop: asyncio.AbstractEventLoop) -> None:
        """The loop turns run on (known from the first invocation: the SDK makes it lazily)."""
        self._loop = loop

    def problem(self) -> str | None:
        """None when a turn could be answered; else why not. Never blocks: called by /ping."""
        now = self.clock()
        stalled = self.stalled_opens(self.stall_after)
        if stalled:
            return f"restoring conversation {stalled[0]!r} has taken over {self.stall_after:g} s"
        loop = self._loop
        if loop is None or loop.is_closed():
            return None
        with self._lock:
            if self._posted is None:
                self._posted = now
                loop.call_soon_threadsafe(self._beat)
            elif now - self._posted > self.stall_after:
                return f"the turn event loop has not run for {now - self._posted:.0f} s"
        return None

    @property
    def heartbeat_pending(self) -> bool:
        """A heartbeat was posted to the turn loop and has not run yet."""
        with self._lock:
            return self._posted is not None

    def _beat(self) -> None:
        with self._lock:
            self._posted = None


class UnhealthyPing:
    """ASGI middleware: GET /ping answers 503 while `health.problem()` says why not to send turns."""

    def __init__(self, app: Any, health: Health) -> None:
        self.app = app
        self.health = health

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/ping" and (reason := self.health.problem()):
            answer = {"status": "Unhealthy", "reason": reason, "time_of_last_update": int(time.time())}
            await send_json(send, 503, answer)
            return
        await self.app(scope, receive, send)
