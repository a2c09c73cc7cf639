"""One cgroup per compute, made before the sandbox's first process runs and removed when it ends:
its pids, memory and CPU limits enforced by the kernel (session_limits.py holds the figures).

Two backends behind one interface. cgroup v1 (a hierarchy per controller, this project's
machines): the computes nest under serve's own cgroup of each hierarchy, in `agentcore-local-PID`,
so whatever bounds serve bounds them too. cgroup v2 (one unified tree): a cgroup holding a process
may not hand controllers to children, so they go under the tree's root (as docker's cgroupfs
driver does). serve itself stays outside every compute's cgroup.

On an OOM kill the whole compute goes (v2: memory.oom.group; v1: serve, told by an eventfd, kills
the rest), as a microVM that ran out of memory would: a full /tmp would only kill again.
The first process is `sh`, which writes its pid into the cgroup and its oom_score_adj before it
execs the sandbox (Python's subprocess has no way to start a child in a cgroup).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from ..session_limits import SessionLimits

PREFIX = "agentcore-local-"
CONTROLLERS = ("pids", "memory", "cpu")
PERIOD_US = 100_000
SERVE_OOM_SCORE = -500  # the global OOM killer (no cgroups, or the host itself short) spares serve
SANDBOX_OOM_SCORE = 1000  # and takes a sandbox first
SH = shutil.which("sh", path="/usr/bin:/bin") or "/bin/sh"
# $0 names the wrapper in ps; the cgroup.procs files come before "--", the sandbox's argv after.
JOIN = (
    f"echo {SANDBOX_OOM_SCORE} > /proc/self/oom_score_adj || exit 125; "
    'while [ "$1" != -- ]; do echo $$ > "$1" || exit 125; shift; done; shift; unset PWD OLDPWD; exec "$@"'
)


def first_process(argv: list[str], procs: list[Path]) -> list[str]:
    """`argv`, started by a shell that first joins `procs` (cgroup.procs files) and raises its OOM score."""
    return [SH, "-c", JOIN, "agentcore-cgroup", *map(str, procs), "--", *argv]


def protect_serve() -> None:
    """serve's own OOM score lowered (root only; not root: left as it is)."""
    with contextlib.suppress(OSError), open("/proc/self/oom_score_adj", "w") as f:
        f.write(str(SERVE_OOM_SCORE))


@dataclass
class Counters:
    oom_kills: int = 0
    pids_refused: int = 0  # forks refused at pids.max


def read_keyed(path: Path) -> dict[str, int]:
    """A flat-keyed cgroup file ("name value" lines) as a dict; {} when it cannot be read."""
    found: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            key, _, value = line.partition(" ")
            with contextlib.suppress(ValueError):
                found[key] = int(value)
    return found


def read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def write(path: Path, value: object) -> None:
    path.write_text(f"{value}\n")


class Cgroup(ABC):
    """One compute's cgroup (a directory in each hierarchy on v1, one directory on v2)."""

    def __init__(self, dirs: list[Path], limits: SessionLimits) -> None:
        self.dirs, self.limits = dirs, limits
        self.removed = False

    @property
    def procs(self) -> list[Path]:
        return [d / "cgroup.procs" for d in self.dirs]

    def wrap(self, argv: list[str]) -> list[str]:
        return first_process(argv, self.procs)

    @abstractmethod
    def apply(self) -> None:
        """Write the limits (the directories exist)."""

    @abstractmethod
    def counters(self) -> Counters:
        """What the kernel counted: OOM kills, forks refused."""

    @abstractmethod
    def usage(self) -> dict[str, int | None]:
        """memoryBytes, memoryPeakBytes, pids, cpuPeriods and cpuThrottled now (/_local/sessions)."""

    def oom_watch(self) -> int | None:
        """A descriptor readable after an OOM kill in this cgroup (None: the kernel ends it all)."""
        return None

    def members(self) -> list[int]:
        found: set[int] = set()
        for procs in self.procs:
            with contextlib.suppress(OSError, ValueError):
                found |= {int(p) for p in procs.read_text().split()}
        return sorted(found)

    def kill(self) -> None:
        """SIGKILL every process in it; rounds until none is left (a fork bomb forks between them)."""
        for _ in range(100):
            members = self.members()
            if not members:
                return
            for pid in members:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)

    def remove(self, timeout: float = 5.0) -> None:
        """Kill what is left, then remove the directories (a dying process keeps one busy a moment)."""
        deadline = time.monotonic() + timeout
        while not self.removed:
            self.kill()
            try:
                for directory in self.dirs:
                    with contextlib.suppress(FileNotFoundError):
                        directory.rmdir()
                self.removed = True
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.005)


class V1Cgroup(Cgroup):
    def __init__(self, dirs: dict[str, Path], limits: SessionLimits) -> None:
        super().__init__(sorted(set(dirs.values())), limits)
        self.at = dirs  # controller -> its directory (co-mounted controllers share one)

    def apply(self) -> None:
        write(self.at["pids"] / "pids.max", self.limits.pids)
        memory = self.at["memory"]
        write(memory / "memory.limit_in_bytes", self.limits.memory_bytes)
        with contextlib.suppress(OSError):  # no such file without swap accounting: no swap to limit
            write(memory / "memory.memsw.limit_in_bytes", self.limits.memory_bytes)
        cpu = self.at["cpu"]
        write(cpu / "cpu.shares", 1024)  # every compute the same weight as one of serve's threads
        write(cpu / "cpu.cfs_period_us", PERIOD_US)
        write(cpu / "cpu.cfs_quota_us", round(self.limits.cpus * PERIOD_US))

    def counters(self) -> Counters:
        oom = read_keyed(self.at["memory"] / "memory.oom_control")
        pids = read_keyed(self.at["pids"] / "pids.events")
        return Counters(oom.get("oom_kill", 0), pids.get("max", 0))

    def usage(self) -> dict[str, int | None]:
        memory, cpu = self.at["memory"], read_keyed(self.at["cpu"] / "cpu.stat")
        return {
            "memoryBytes": read_int(memory / "memory.usage_in_bytes"),
            "memoryPeakBytes": read_int(memory / "memory.max_usage_in_bytes"),
            "pids": read_int(self.at["pids"] / "pids.current"),
            "cpuPeriods": cpu.get("nr_periods"),  # quota periods it had work in
            "cpuThrottled": cpu.get("nr_throttled"),  # of which it was held back
        }

    def oom_watch(self) -> int | None:
        """An eventfd the memory controller signals on OOM (cgroup.event_control)."""
        memory = self.at["memory"]
        event = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        try:
            control = os.open(memory / "memory.oom_control", os.O_RDONLY | os.O_CLOEXEC)
            try:
                write(memory / "cgroup.event_control", f"{event} {control}")
            finally:
                os.close(control)
        except OSError:
            os.close(event)
            return None
        return event


class V2Cgroup(Cgroup):
    def apply(self) -> None:
        (directory,) = self.dirs
        write(directory / "pids.max", self.limits.pids)
        write(directory / "memory.max", self.limits.memory_bytes)
        with contextlib.suppress(OSError):  # no such file without swap accounting: no swap to limit
            write(directory / "memory.swap.max", 0)
        write(directory / "memory.oom.group", 1)  # an OOM kill ends the whole compute
        write(directory / "cpu.weight", 100)
        write(directory / "cpu.max", f"{round(self.limits.cpus * PERIOD_US)} {PERIOD_US}")

    def counters(self) -> Counters:
        (directory,) = self.dirs
        memory, pids = read_keyed(directory / "memory.events"), read_keyed(directory / "pids.events")
        return Counters(memory.get("oom_kill", 0), pids.get("max", 0))

    def usage(self) -> dict[str, int | None]:
        (directory,) = self.dirs
        cpu = read_keyed(directory / "cpu.stat")
        return {
            "memoryBytes": read_int(directory / "memory.current"),
            "memoryPeakBytes": read_int(directory / "memory.peak"),
            "pids": read_int(directory / "pids.current"),
            "cpuPeriods": cpu.get("nr_periods"),
            "cpuThrottled": cpu.get("nr_throttled"),
        }

    def kill(self) -> None:
        (directory,) = self.dirs
        if (directory / "cgroup.kill").exists():  # Linux 5.14+; else the rounds below
            with contextlib.suppress(OSError):
                write(directory / "cgroup.kill", 1)
        super().kill()
