"""Warm-up: build, before any session's first call, what every first turn needs that depends only
on the runtime's environment, so a new session's first answer does not pay for it.

What: the S3 client for backups and one rehearsed request through it (answered in-process, never
sent), the model (a provider's boto3 client), the tools and their JSON schemas, a throwaway
Strands Agent (its construction path and the modules first touched there), the modules a
first connection imports (`first_use_imports`), and libc for the checkpoints' inotify tracker.
Nothing of a session exists yet (its id, storage and history arrive with its first call), so
nothing built here can be one session's: each is what the first turn would build the same way
for any session.

When: in a background thread once the server's first /ping has been answered (so the start to
Healthy does not wait for it), or a second after start-up on a host that never pings. /ping
does not change: it still says Healthy, as nothing a caller could wait for is running. A turn
that arrives meanwhile is answered as usual: it waits for whatever part it needs (`Once`)
instead of building it twice. On AWS the same code runs in each new microVM: it gains there as
much as time passes between the first /ping and the first invocation, and never costs a turn.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")
FALLBACK_AFTER_S = 1.0  # no /ping by then: warm up anyway
Step = tuple[str, Callable[[], object]]


class Once(Generic[T]):
    """A value built on first use, once, by whichever thread asks first (the warm-up or a turn);
    the others wait for it. A failure is not kept: the next caller tries again (and reports it)."""

    def __init__(self, build: Callable[[], T]) -> None:
        self._build = build
        self._lock = threading.Lock()
        self._value: T | None = None
        self._built = False

    def __call__(self) -> T:
        with self._lock:
            if not self._built:
                self._value, self._built = self._build(), True
        return self._value  # type: ignore[return-value]


class WarmUp:
    """Runs `steps` once, in a background thread."""

    def __init__(self, steps: Sequence[Step]) -> None:
        self.steps = list(steps)
        self.done = threading.Event()
        self.seconds: dict[str, float] = {}  # what each step took (the log says it too)
        self.failed: dict[str, str] = {}  # the steps that raised, and what they said
        self._started = False
        self._guard = threading.Lock()

    @property
    def started(self) -> bool:
        return self._started

    def arm(self, after: float = FALLBACK_AFTER_S) -> None:
        """Start by itself `after` seconds from now if no /ping has started it (a host that never pings)."""
        timer = threading.Timer(after, self.start)
        timer.daemon = True
        timer.start()

    def start(self) -> None:
        """Begin, in a thread of its own (once: later calls do nothing)."""
        with self._guard:
            if self._started:
                return
            self._started = True
        threading.Thread(target=self._run, name="warm-up", daemon=True).start()

    def _run(self) -> None:
        began = time.perf_counter()
        try:
            for name, step in self.steps:
                started = time.perf_counter()
                try:
                    step()
                except Exception as error:  # the first turn builds it again and says what is wrong
                    self.failed[name] = str(error)
                    log.warning("warm-up | %s failed (the first turn will retry it): %s", name, error)
                self.seconds[name] = time.perf_counter() - started
        finally:
            self.done.set()
        parts = ", ".join(f"{name} {1000 * s:.0f} ms" for name, s in self.seconds.items())
        log.info("warm-up | done in %.3fs (%s)", time.perf_counter() - began, parts)


def first_use_imports() -> None:
    """What the first turn would otherwise import: the idna codec, which the socket module loads
    for the first host name it resolves (the first S3 or model request; ~3 ms)."""
    import encodings.idna  # noqa: F401


class StartAfterFirstPing:
    """ASGI middleware: starts the warm-up once the first /ping has been answered, whatever it said."""

    def __init__(self, app: Any, warm_up: WarmUp) -> None:
        self.app = app
        self.warm_up = warm_up

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if self.warm_up.started or scope["type"] != "http" or scope["path"] != "/ping":
            await self.app(scope, receive, send)
            return

        async def sending(message: dict[str, Any]) -> None:
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                self.warm_up.start()

        await self.app(scope, receive, sending)
