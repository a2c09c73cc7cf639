"""Compute launchers (process, bwrap, docker), compute, private network, slots, sandbox_init."""

from .artifacts import CodeArtifacts, s3_client
from .choice import SandboxUnavailable, choose
from .compute import Compute, free_port
from .launcher import Launcher, LaunchSpec
from .protocols import protocol_of

__all__ = [
    "CodeArtifacts",
    "Compute",
    "LaunchSpec",
    "Launcher",
    "SandboxUnavailable",
    "choose",
    "free_port",
    "protocol_of",
    "s3_client",
]
