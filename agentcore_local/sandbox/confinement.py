"""A compute's cgroup as the compute holds it: made before its first process, watched for an OOM
kill, its limit hits counted, removed when its processes are gone (cgroups.py, cgroup_tree.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from typing import Any

from ..errors import RuntimeClientError
from ..session_limits import MIB, SessionLimits
from .cgroup_tree import CgroupTree
from .cgroups import Cgroup, Counters, first_process

log = logging.getLogger("agentcore_local.compute")


class Confinement:
    """One compute's: `tree` None means no cgroup (only the sandbox's high OOM score)."""

    def __init__(self, name: str, tree: CgroupTree | None, limits: SessionLimits | None) -> None:
        self.name, self.tree, self.limits = name, tree, limits
        self.cgroup: Cgroup | None = None
        self.lost: str | None = None  # why the kernel ended the compute (its memory limit), once it has
        self._oom_fd: int | None = None
        self._seen = Counters()  # the kernel's counts already reported (limit_hits)
        self._final: Counters | None = None  # the counts when the cgroup went
        self._told_lost = False  # limit_hits reported the OOM that ended the compute

    def wrap(self, argv: list[str]) -> list[str]:
        """`argv` started in a new cgroup of its own, with the sandbox's high OOM score."""
        if self.tree is None or self.limits is None:
            return first_process(argv, [])
        try:
            self.cgroup = self.tree.create(self.name, self.limits)
        except OSError as error:
            raise RuntimeClientError(f"The session's cgroup could not be made: {error}") from error
        self._oom_fd = self.cgroup.oom_watch()
        if self._oom_fd is not None:
            asyncio.get_running_loop().add_reader(self._oom_fd, self._on_oom)
        return self.cgroup.wrap(argv)

    def oom_reason(self) -> str:
        limit = self.limits.memory_bytes // MIB if self.limits else 0
        return (
            f"it ran out of memory: the kernel's OOM killer ended it at its limit of {limit} MiB "
            "(serve --session-memory)"
        )

    def _on_oom(self) -> None:
        """cgroup v1 told of an OOM kill: the rest of the compute goes too, as v2's memory.oom.group does."""
        assert self._oom_fd is not None and self.cgroup is not None
        with contextlib.suppress(OSError):
            os.eventfd_read(self._oom_fd)
        # Signalled as the OOM killer starts (before its count moves); the removal of the cgroup
        # signals too, but the watch ends before that.
        self._unwatch()
        self.lost = self.oom_reason()
        log.warning("compute=<%s> | %s", self.name, self.lost)
        self.cgroup.kill()

    def _unwatch(self) -> None:
        if self._oom_fd is not None:
            with contextlib.suppress(ValueError, RuntimeError):
                asyncio.get_running_loop().remove_reader(self._oom_fd)
            os.close(self._oom_fd)
            self._oom_fd = None

    async def end(self) -> None:
        """The compute's processes are gone (or never were): the last counts kept, the cgroup removed."""
        if self.cgroup is None or self.cgroup.removed:
            return
        self._unwatch()
        self._final = self.cgroup.counters()
        if self.lost is None and self._final.oom_kills:
            self.lost = self.oom_reason()
        try:
            await asyncio.to_thread(self.cgroup.remove)
        except OSError as error:
            log.warning("compute=<%s> | its cgroup could not be removed: %s", self.name, error)

    def limit_hits(self) -> list[str]:
        """Each limit the kernel enforced since the last look, as a reason."""
        if self.cgroup is None or self.limits is None:
            return []
        now = self._final if self._final is not None else self.cgroup.counters()
        hits = []
        if now.pids_refused > self._seen.pids_refused:
            hits.append(
                f"its pids limit of {self.limits.pids}: the kernel refused "
                f"{now.pids_refused - self._seen.pids_refused} forks (serve --session-pids)"
            )
        # serve's own kill (v1) may beat the OOM killer to its victim, and then the kernel counts none.
        if now.oom_kills > self._seen.oom_kills or (self.lost is not None and not self._told_lost):
            hits.append(self.oom_reason())
            self._told_lost = self.lost is not None
        self._seen = now
        return hits

    def now(self) -> dict[str, Any] | None:
        """The limits and what the compute holds of them now (for /_local/sessions); None: no cgroup."""
        if self.cgroup is None or self.cgroup.removed or self.limits is None:
            return None
        counters = self.cgroup.counters()
        return {
            "pidsMax": self.limits.pids,
            "memoryMaxBytes": self.limits.memory_bytes,
            "cpus": self.limits.cpus,
            **self.cgroup.usage(),
            "oomKills": counters.oom_kills,
            "forksRefused": counters.pids_refused,
        }
