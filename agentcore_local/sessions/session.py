"""One runtime session as the backend keeps it: its lifecycle, paths, compute, and what meta.json
saves across restarts of serve; and AWS's rule for a runtime session id. No rules of when things
happen here (runner.py, changes.py); no HTTP.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..control import DEFAULT
from ..errors import ValidationException
from ..sandbox import Compute
from ..storage import SessionStorage
from .agent_proxy import SESSION_HEADER
from .lifecycle import LifecyclePolicy, SessionLifecycle

SESSION_ID_MIN, SESSION_ID_MAX = 33, 256
# The alphabet of the SessionId shape in AgentCore's answers: an id outside it (a slash, a dot, a
# space) could never be echoed back by AWS, so it is refused here rather than accepted locally only.
SESSION_ID_CHARS = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_-]*")


def validate_session_id(session_id: str | None) -> str:
    """AWS's rule for runtimeSessionId (33 to 256 characters), checked here as the service does."""
    if not session_id:
        raise ValidationException(f"{SESSION_HEADER} header is required", "runtimeSessionId")
    if not SESSION_ID_MIN <= len(session_id) <= SESSION_ID_MAX:
        raise ValidationException(
            f"runtimeSessionId has {len(session_id)} characters; "
            f"it must have {SESSION_ID_MIN} to {SESSION_ID_MAX}",
            "runtimeSessionId",
        )
    if not SESSION_ID_CHARS.fullmatch(session_id):
        raise ValidationException(
            "runtimeSessionId may hold only letters, digits, '-' and '_', starting with a letter or digit "
            "(no '/', '.', spaces or control characters); make one with: python client.py new-session-id",
            "runtimeSessionId",
        )
    return session_id


@dataclass
class Session:
    """A session's lifecycle, its paths, and its compute while it has one."""

    runtime_id: str
    lifecycle: SessionLifecycle
    root: Path  # state_dir/sessions/RUNTIME_ID/KEY: storage/, meta.json, agent.log
    storage_version: int | None = None
    # The endpoint (qualifier) of its latest invocation: the session's storage goes with it
    # (DeleteAgentRuntimeEndpoint), and its compute runs the version that endpoint served then.
    endpoint: str = DEFAULT
    compute: Compute | None = None
    compute_version: int | None = None
    policy: LifecyclePolicy | None = None  # the lifecycleConfiguration of compute_version
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    stop_task: asyncio.Task | None = None
    saved_at: float = float("-inf")  # clock time of the last acquire that wrote meta.json
    storage_warning: str | None = None  # what AWS's session storage would not keep, found at the last stop
    usage: int = 0  # bytes in storage at the last measure: at compute start, then after each call
    measuring: bool = False
    from_pool: bool = False  # the current compute was a warm pool member, started before the call
    lost: str | None = None  # why the kernel ended its last compute (OOM): the next call says it once
    announced: Compute | None = None  # the compute that was told the session id before a command

    @classmethod
    def load(cls, runtime_id: str, session_id: str, root: Path, meta: dict[str, Any] | None) -> Session:
        """A session as meta.json saved it (or a new one, without meta)."""
        session = cls(runtime_id, SessionLifecycle(session_id), root)
        if meta:
            session.storage_version = meta.get("storageVersion")
            session.endpoint = meta.get("endpoint") or DEFAULT
            session.lifecycle.last_invocation_at = meta.get("lastInvocationAt")
        return session

    @property
    def session_id(self) -> str:
        return self.lifecycle.session_id

    @property
    def storage(self) -> Path:
        return SessionStorage.files(self.root)

    def meta(self) -> dict[str, Any]:
        """What meta.json keeps across restarts of serve."""
        return {
            "runtimeSessionId": self.session_id,
            "storageVersion": self.storage_version,
            "endpoint": self.endpoint,
            "lastInvocationAt": self.lifecycle.last_invocation_at,
        }

    def describe(self) -> dict[str, Any]:
        return {
            "agentRuntimeId": self.runtime_id,
            "runtimeSessionId": self.session_id,
            "endpoint": self.endpoint,
            "state": self.lifecycle.state.value,
            "inFlight": self.lifecycle.in_flight,
            "startedAt": self.lifecycle.started_at,
            "lastInvocationAt": self.lifecycle.last_invocation_at,
            "storageVersion": self.storage_version,
            "computeVersion": self.compute_version if self.compute else None,
            "pid": self.compute.pid if self.compute else None,
            # Where the emulator reaches the agent in a private network (None: a host port, compute.url).
            "agentSocket": str(self.compute.socket_path)
            if self.compute and self.compute.socket_path
            else None,
            "agentUrl": self.compute.url if self.compute else None,
            "fromPool": self.from_pool if self.compute else None,
            "computeStartedAt": self.compute.started_at if self.compute else None,
            "storageWarning": self.storage_warning,
            "computeLost": self.lost,
            # Its cgroup's limits and what it holds of them (None: no compute, or no cgroups here).
            "limits": self.compute.confinement.now() if self.compute and self.compute.confinement else None,
            "storageBytes": self.usage,  # at the last measure: after each call
        }
