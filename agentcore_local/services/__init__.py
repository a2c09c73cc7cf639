"""The agent-facing listener: the S3 gate, bedrock-runtime (scripted or OpenAI-backed)."""

from .backups import SCOPE_VARIABLE, delete_scope, scope_of, session_prefix
from .forwarder import Forwarder
from .listener import backend_from_spec, start_agent_services

__all__ = [
    "SCOPE_VARIABLE",
    "Forwarder",
    "backend_from_spec",
    "delete_scope",
    "scope_of",
    "session_prefix",
    "start_agent_services",
]
