"""Which launcher --sandbox KIND means here: bwrap where it works, else a plain process (with a warning)."""

import logging
from pathlib import Path

from ..session_limits import SessionLimits
from .bwrap import BwrapLauncher, bwrap_works, find_tool
from .cgroup_tree import open_tree
from .cgroups import protect_serve
from .docker import DockerLauncher
from .launcher import Launcher, ProcessLauncher

log = logging.getLogger("agentcore_local.sandbox")


class SandboxUnavailable(RuntimeError):
    """The --sandbox asked for cannot run here; serve's CLI prints it as one line."""


def choose(
    kind: str,
    python: str,
    agent_script: Path,
    hidden: tuple[Path, ...],
    docker_image: str,
    limits: SessionLimits | None = None,
) -> Launcher:
    """The launcher for --sandbox KIND with `limits` per compute; `auto` is bwrap where it works,
    else process (with a warning)."""
    launcher = pick(kind, python, agent_script, hidden, docker_image)
    launcher.limits = limits
    if limits is not None and launcher.own_cgroups:
        launcher.cgroups, why = open_tree()
        if launcher.cgroups is None:
            log.warning(
                "no cgroups (%s): sessions have NO pids, memory or CPU limit, and one session can "
                "exhaust the machine for every other and for serve; run serve as root with the pids, "
                "memory and cpu controllers mounted (cgroup v1 or v2)",
                why,
            )
        protect_serve()
    return launcher


def pick(kind: str, python: str, agent_script: Path, hidden: tuple[Path, ...], docker_image: str) -> Launcher:
    """The launcher for --sandbox KIND; `auto` is bwrap where it works, else process (with a warning)."""
    if kind == "docker":
        return DockerLauncher(docker_image, python=python)
    if kind in ("auto", "bwrap"):
        bwrap = find_tool("bwrap")
        if bwrap and bwrap_works(bwrap):
            slirp = find_tool("slirp4netns")
            launcher = BwrapLauncher(python, agent_script, hidden, bwrap=bwrap, slirp=slirp)
            if not launcher.private_network:
                log.warning(
                    "slirp4netns not found: sessions SHARE the host's network (each can reach the "
                    "emulator's API and every other session's agent); install it: make sandbox-tools"
                )
            return launcher
        if kind == "bwrap":
            raise SandboxUnavailable(
                "--sandbox bwrap: bubblewrap is missing or cannot create namespaces here "
                "(install bubblewrap, or use --sandbox process, which is NOT isolated)"
            )
        log.warning("bubblewrap unavailable: sessions run as plain processes, NOT isolated from each other")
    if kind not in ("auto", "process"):
        raise SandboxUnavailable(f"unknown sandbox {kind!r}: use auto, bwrap, process or docker")
    return ProcessLauncher(python, agent_script, hidden)
