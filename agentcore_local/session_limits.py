"""What the kernel lets one session's compute hold: processes, memory (its private /tmp counted
inside) and CPU, and the defaults sized so `--max-sessions` computes fit this machine.

AgentCore documents one figure for a session's microVM: "Hardware configuration per session:
2vCPU/8GB", not adjustable (the bedrock-agentcore-limits page). The defaults never exceed it; the
pids limit and the headroom kept for serve are this project's own choices (docs/limits.md).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

MIB = 1024**2
GIB = 1024**3
AWS_SESSION_CPUS = 2.0  # documented: 2 vCPU per session
AWS_SESSION_MEMORY = 8 * GIB  # documented: 8 GB per session
MIN_MEMORY = 128 * MIB  # an idle agent holds ~100 MiB: less and it cannot start
MIN_PIDS = 32  # sandbox_init, the agent, its threads and one command pipeline
MAX_PIDS = 4096  # ours: npm and a test runner spawn hundreds of tasks, a fork bomb millions
SERVE_HEADROOM = GIB  # ours: serve, moto and the listener use ~300 MiB; page cache needs the rest


@dataclass(frozen=True)
class SessionLimits:
    """Per compute. `memory_bytes` bounds everything the sandbox holds: processes, kernel memory
    and its /tmp (a tmpfs of the same size, whose pages are charged to the writer's cgroup)."""

    pids: int
    memory_bytes: int
    cpus: float  # a quota in cores; every session also has an equal share when cores are contended

    def __post_init__(self) -> None:
        if self.pids < MIN_PIDS:
            raise ValueError(f"--session-pids {self.pids} is too few: the sandbox needs {MIN_PIDS}")
        if self.memory_bytes < MIN_MEMORY:
            raise ValueError(
                f"--session-memory {self.memory_bytes // MIB} MiB is too little: an agent needs "
                f"{MIN_MEMORY // MIB} MiB"
            )
        if not 0.01 <= self.cpus <= (os.cpu_count() or 1):
            raise ValueError(
                f"--session-cpus {self.cpus:g}: give 0.01 to {os.cpu_count() or 1} (this machine's cores)"
            )

    def describe(self) -> str:
        return f"{self.pids} pids, {self.memory_bytes // MIB} MiB, {self.cpus:g} CPU"


def host_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return 4 * GIB


def pid_max() -> int:
    try:
        with open("/proc/sys/kernel/pid_max") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 32768


def sized_limits(
    max_sessions: int,
    memory_bytes: int | None = None,
    pids: int | None = None,
    cpus: float | None = None,
    memory: int | None = None,
) -> SessionLimits:
    """The defaults for `max_sessions` computes on this machine; a figure given wins.
    Memory: host RAM less serve's headroom, split evenly (at most AWS's 8 GB). Pids: half the
    kernel's pid space split evenly (at most 4096). CPU: AWS's 2 vCPU, at most this machine's cores."""
    total = host_memory() if memory is None else memory
    share = max(MIN_MEMORY, (total - SERVE_HEADROOM) // max(1, max_sessions)) // MIB * MIB
    cores = float(os.cpu_count() or 1)
    return SessionLimits(
        pids=pids or max(MIN_PIDS, min(MAX_PIDS, pid_max() // 2 // max(1, max_sessions))),
        memory_bytes=memory_bytes or min(AWS_SESSION_MEMORY, share),
        cpus=cpus or min(AWS_SESSION_CPUS, cores),
    )
