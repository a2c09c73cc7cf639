"""The control plane: runtimes, endpoints, configuration rules, idempotency (RuntimeRegistry)."""

from .endpoint import DEFAULT
from .own_agent import agent_request, entry_of
from .runtime import Change, Runtime
from .runtimes import RuntimeRegistry

__all__ = ["DEFAULT", "Change", "Runtime", "RuntimeRegistry", "agent_request", "entry_of"]
