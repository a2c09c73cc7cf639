"""The data plane: lifecycle, session records, reaper and version changes, pool, agent proxy."""

from .agent_proxy import RETURNED, SESSION_HEADER
from .backend import SessionBackend
from .session import validate_session_id

__all__ = ["RETURNED", "SESSION_HEADER", "SessionBackend", "validate_session_id"]
