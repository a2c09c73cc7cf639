"""The turn budget: a model that loops, or a turn that runs on, is stopped, not left to burn.

Both limits use what the installed Strands offers per invocation, so nothing is patched:
- model calls: `limits={"turns": N}`, where one Strands loop turn is one model call plus the
  tools it asked for; the loop stops at the next boundary with stop_reason "limit_turns";
- time: a `cancel_signal` the loop watches, set by a timer; it stops the model's stream or
  the loop before the next tool batch or model call (stop_reason "cancelled"). A command
  already running is not killed: it ends at its own timeout (SHELL_TIMEOUT).
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

STOPPED = {"limit_turns": "model calls", "cancelled": "seconds"}


class TurnBudget:
    """One turn's limits. Use `async with TurnBudget(...) as budget`, pass `budget.kwargs` to stream_async."""

    def __init__(self, max_seconds: float, max_model_calls: int) -> None:
        self.max_seconds = max_seconds
        self.max_model_calls = max_model_calls
        self.signal = threading.Event()
        self.started = 0.0
        self._timer: asyncio.TimerHandle | None = None

    async def __aenter__(self) -> TurnBudget:
        self.started = time.monotonic()
        self._timer = asyncio.get_running_loop().call_later(self.max_seconds, self.signal.set)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._timer is not None:
            self._timer.cancel()

    @property
    def kwargs(self) -> dict[str, Any]:
        return {"limits": {"turns": self.max_model_calls}, "cancel_signal": self.signal}

    def exceeded(self, stop_reason: str | None) -> str | None:
        """The error to report when the turn stopped on its budget, else None."""
        if stop_reason == "limit_turns":
            return (
                f"the turn budget ran out: the model was called {self.max_model_calls} times "
                f"(MAX_MODEL_CALLS={self.max_model_calls})"
            )
        if stop_reason == "cancelled" and self.signal.is_set():
            return (
                f"the turn budget ran out: the turn ran {time.monotonic() - self.started:.0f} s "
                f"(MAX_TURN_SECONDS={self.max_seconds:g})"
            )
        return None
