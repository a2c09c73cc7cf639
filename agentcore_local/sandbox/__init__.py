"""Compute launchers (process, bwrap, docker), compute, private network, slots, sandbox_init."""

from .artifacts import CodeArtifacts, s3_client
from .choice import SandboxUnavailable, choose
from .compute import Compute, free_port
from .images import ecr_uri
from .launcher import Launcher, LaunchSpec
from .protocols import protocol_of

__all__ = [
    "CodeArtifacts",
    "Compute",
    "LaunchSpec",
    "Launcher",
    "SandboxUnavailable",
    "choose",
    "ecr_uri",
    "free_port",
    "protocol_of",
    "s3_client",
]
