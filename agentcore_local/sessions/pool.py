"""A warm pool: sandboxes started ahead of the sessions that will use them (serve --pool N).

A member is a compute like any session's (same launcher, same flags, its own network namespace)
whose agent has imported and answered Healthy, but whose mount path is still the empty slot
(slots.py): no session's storage is in it yet. A new session's first call takes a member whose
key matches (runtime id, version, mount path and the agent's whole environment), has its storage
mounted, and is answered at once; anything else starts fresh. Refills run in the background
(at serve start, and REFILL_DELAY_S after a member is taken), never on a request's path: on two
cores a replacement starting beside the first turn of the session that took its predecessor
(bwrap, the network, an interpreter importing Strands) made that turn two to four times slower.
Members of a runtime are stopped when it gets a new version or is deleted, and at shutdown.

Only sandboxes that attach the storage at the first call can pool (bwrap, with serve allowed to
mount: root). The process sandbox's workspace is the storage directory itself and the docker
sandbox binds the storage at `docker run`, so they always start fresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from ..control import Runtime
from ..sandbox import Compute

log = logging.getLogger("agentcore_local.pool")
# (runtime) -> (its key, a compute not yet started): computes.py builds both, as for a session.
Build = Callable[[Runtime], tuple[Hashable, Compute]]
Key = Callable[[Runtime], Hashable]
REFILL_DELAY_S = 0.5  # after a take: past the busy start of a first turn (~0.1 s; more on a loaded host)


@dataclass
class Member:
    key: Hashable
    runtime_id: str
    compute: Compute
    ready_at: float  # time.monotonic() when it answered Healthy
    start_cpu_s: float | None  # CPU its process tree used to start (what a refill costs)


class WarmPool:
    def __init__(
        self, size: int, build: Build, key: Key, starting: asyncio.Semaphore, timeout: float
    ) -> None:
        self.size = size
        self._build, self._key = build, key
        self._starting = starting  # shared with the sessions' starts: refills never crowd them out
        self._timeout = timeout
        self.members: list[Member] = []
        self.refills = 0  # members started so far
        self.last_refill_cpu_s: float | None = None
        self._wanted: Runtime | None = None
        self._filler: asyncio.Task | None = None
        self._refills: dict[str, asyncio.TimerHandle] = {}  # runtime id -> the refill a take scheduled
        self._stops: set[asyncio.Task] = set()
        self.closed = False

    def describe(self) -> dict:
        return {
            "size": self.size,
            "members": [
                {"agentRuntimeId": m.runtime_id, "pid": m.compute.pid, "running": m.compute.running}
                for m in self.members
            ],
            "refills": self.refills,
            "lastRefillCpuSeconds": self.last_refill_cpu_s,
        }

    def take(self, runtime: Runtime) -> Compute | None:
        """A running member for `runtime` as it is now (None: none matches), and a refill behind it."""
        if self.size <= 0 or self.closed:
            return None
        key = self._key(runtime)
        found = next((m for m in self.members if m.key == key and m.compute.running), None)
        if found is not None:
            self.members.remove(found)
        if runtime.id not in self._refills:  # a burst of takes: one refill, REFILL_DELAY_S after the first
            loop = asyncio.get_running_loop()
            self._refills[runtime.id] = loop.call_later(REFILL_DELAY_S, self._refill, runtime)
        return found.compute if found else None

    def _refill(self, runtime: Runtime) -> None:
        self._refills.pop(runtime.id, None)
        self.fill(runtime)

    def fill(self, runtime: Runtime) -> None:
        """Keep `size` members for `runtime` (evicting other runtimes' members), in the background."""
        if self.size <= 0 or self.closed:
            return
        self._wanted = runtime
        if self._filler is None or self._filler.done():
            self._filler = asyncio.get_running_loop().create_task(self._fill())

    async def _fill(self) -> None:
        while not self.closed and (runtime := self._wanted) is not None:
            key = self._key(runtime)
            for dead in [m for m in self.members if not m.compute.running]:
                self._stop(dead)
            if sum(1 for m in self.members if m.key == key) >= self.size:
                if self._wanted is runtime:
                    self._wanted = None
                continue
            while len(self.members) >= self.size:  # the pool follows the runtime used last
                self._stop(next(m for m in self.members if m.key != key))
            member_key, compute = self._build(runtime)
            try:
                async with self._starting:
                    await compute.start(self._timeout)
            except Exception as error:  # a runtime whose agent cannot start: its sessions will say why
                log.warning("pool: a member for %s did not start: %s", runtime.id, str(error)[:300])
                self._wanted = None
                return
            self.refills += 1
            self.last_refill_cpu_s = tree_usage(compute.pid)[0] if compute.pid else None
            member = Member(member_key, runtime.id, compute, time.monotonic(), self.last_refill_cpu_s)
            if self.closed or member_key != self._key(runtime):  # a new version arrived meanwhile
                self._stop(member)
                continue
            self.members.append(member)

    def lost(self, compute: Compute) -> None:
        """A member's process ended by itself (not taken): forget it."""
        self.members = [m for m in self.members if m.compute is not compute]

    def _stop(self, member: Member) -> None:
        if member in self.members:
            self.members.remove(member)
        task = asyncio.get_running_loop().create_task(member.compute.stop(grace=1.0))
        self._stops.add(task)
        task.add_done_callback(self._stops.discard)

    def retire(self, runtime: Runtime, deleted: bool) -> None:
        """A new version or a deletion: its members no longer match; refill for the new version."""
        for member in [m for m in self.members if m.runtime_id == runtime.id]:
            self._stop(member)
        if deleted:
            if (refill := self._refills.pop(runtime.id, None)) is not None:
                refill.cancel()
            if self._wanted is not None and self._wanted.id == runtime.id:
                self._wanted = None
        else:
            self.fill(runtime)

    async def shutdown(self) -> None:
        self.closed = True
        for refill in self._refills.values():
            refill.cancel()
        if self._filler is not None:
            self._filler.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._filler
        for member in list(self.members):
            self._stop(member)
        if self._stops:
            await asyncio.gather(*self._stops, return_exceptions=True)


def tree_usage(pid: int) -> tuple[float, int]:
    """(CPU seconds, resident bytes) of `pid` and its descendants, from /proc (the agent, bwrap,
    sandbox_init; the network stack is serve's child, not the sandbox's, and not counted)."""
    stats: dict[int, tuple[int, float, int]] = {}  # pid -> (ppid, cpu s, rss bytes)
    tick, page = os.sysconf("SC_CLK_TCK"), os.sysconf("SC_PAGE_SIZE")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as file:
                fields = file.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        cpu = (int(fields[11]) + int(fields[12])) / tick  # utime + stime
        stats[int(entry)] = (int(fields[1]), cpu, int(fields[21]) * page)
    tree, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        children = [p for p, (ppid, _, _) in stats.items() if ppid == parent and p not in tree]
        tree.update(children)
        frontier += children
    found = [stats[p] for p in tree if p in stats]
    return sum(cpu for _, cpu, _ in found), sum(rss for _, _, rss in found)
