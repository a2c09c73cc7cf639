"""A runtime's endpoints, as agent-runtime-versioning describes them: every runtime has a DEFAULT
endpoint that follows its latest version; a named endpoint points at (pins) one version until it is
updated. The data plane's `qualifier` names the endpoint. Plain records, no HTTP.
"""

from __future__ import annotations

import re
import secrets
import string
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

DEFAULT = "DEFAULT"
RUNTIME_ID = re.compile(r"[a-zA-Z][a-zA-Z0-9_]{0,99}-[a-zA-Z0-9]{10}")
RUNTIME_ARN = re.compile(
    r"arn:aws(-[^:]+)?:bedrock-agentcore:(?P<region>[a-z0-9-]+):(?P<account>[0-9]{12}):runtime/(?P<id>"
    + RUNTIME_ID.pattern
    + r")(/runtime-endpoint/(?P<endpoint>[a-zA-Z][a-zA-Z0-9_]{0,47}))?"
)


def iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat().replace("+00:00", "Z")


def random_suffix() -> str:
    return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(10))


@dataclass
class Endpoint:
    """One endpoint. `target_version` None means "the latest" (DEFAULT only)."""

    name: str
    id: str
    created_at: float
    updated_at: float
    target_version: int | None = None
    live_version: int | None = None  # what it served before an update became ready
    ready_at: float = 0.0
    pending_status: str = "CREATING"
    description: str | None = None
    tags: dict[str, str] = field(default_factory=dict)

    @classmethod
    def new(cls, name: str, now: float, ready_at: float, version: int | None, **extra: Any) -> Endpoint:
        return cls(name, f"{name}-{random_suffix()}", now, now, version, version, ready_at, **extra)

    def status(self, now: float, runtime_status: str) -> str:
        if self.target_version is None:  # DEFAULT: as its runtime
            return runtime_status
        return "READY" if now >= self.ready_at else self.pending_status

    def served_version(self, now: float, latest: int) -> int:
        """The version an invocation through this endpoint reaches now."""
        if self.target_version is None:
            return latest
        if now >= self.ready_at or self.live_version is None:
            return self.target_version
        return self.live_version

    def versions_in_use(self, now: float, latest: int) -> set[int]:
        if self.target_version is None:
            return {latest}
        return {v for v in (self.target_version, self.served_version(now, latest)) if v is not None}

    def describe(self, runtime_arn: str, now: float, latest: int, runtime_status: str) -> dict[str, Any]:
        """GetAgentRuntimeEndpoint's answer (ListAgentRuntimeEndpoints' items hold the same keys)."""
        target = latest if self.target_version is None else self.target_version
        answer: dict[str, Any] = {
            "name": self.name,
            "id": self.id,
            "agentRuntimeArn": runtime_arn,
            "agentRuntimeEndpointArn": f"{runtime_arn}/runtime-endpoint/{self.name}",
            "liveVersion": str(self.served_version(now, latest)),
            "targetVersion": str(target),
            "status": self.status(now, runtime_status),
            "createdAt": iso(self.created_at),
            "lastUpdatedAt": iso(self.updated_at),
        }
        if self.description:
            answer["description"] = self.description
        return answer
