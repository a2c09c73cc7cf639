"""Compute launchers (process, bwrap, docker), compute, private network, slots, sandbox_init."""

from .choice import SandboxUnavailable, choose
from .compute import Compute, free_port
from .launcher import Launcher, LaunchSpec

__all__ = ["Compute", "LaunchSpec", "Launcher", "SandboxUnavailable", "choose", "free_port"]
