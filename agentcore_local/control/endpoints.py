"""A runtime's endpoints, as agent-runtime-versioning describes them: every runtime has a DEFAULT
endpoint that follows its latest version; a named endpoint points at (pins) one version until it is
updated. The data plane's `qualifier` names the endpoint. Plain records, no HTTP.
"""

from __future__ import annotations

import re
import secrets
import string
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ..errors import ConflictException, ResourceNotFoundException, ValidationException

if TYPE_CHECKING:
    from .runtimes import Runtime

DEFAULT = "DEFAULT"
RUNTIME_ID = re.compile(r"[a-zA-Z][a-zA-Z0-9_]{0,99}-[a-zA-Z0-9]{10}")
RUNTIME_ARN = re.compile(
    r"arn:aws(-[^:]+)?:bedrock-agentcore:(?P<region>[a-z0-9-]+):(?P<account>[0-9]{12}):runtime/(?P<id>"
    + RUNTIME_ID.pattern
    + r")(/runtime-endpoint/(?P<endpoint>[a-zA-Z][a-zA-Z0-9_]{0,47}))?"
)
MAX_TAGS = 50  # TagsMap's limit in the model, held for the merged set too (inferred)


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


class EndpointsAndTags(ABC):
    """RuntimeRegistry's endpoint and tag operations (the registry supplies get/clock/save)."""

    provision_seconds: float
    runtimes: dict[str, Runtime]
    clock: Callable[[], float]

    @abstractmethod
    def get(self, runtime_id: str) -> Runtime:
        """The runtime, or ResourceNotFoundException."""

    @abstractmethod
    def save(self) -> None:
        """Persist the registry."""

    @abstractmethod
    def page(
        self, items: list[Any], max_results: int | None, next_token: str | None
    ) -> tuple[list, str | None]:
        """One page of `items` and the next token."""

    # --- endpoints -----------------------------------------------------------------------

    def endpoint(self, runtime_id: str, name: str) -> tuple[Runtime, Endpoint]:
        runtime = self.get(runtime_id)
        if name not in runtime.endpoints:
            raise ResourceNotFoundException(f"Endpoint {name} of agent runtime {runtime_id} not found")
        return runtime, runtime.endpoints[name]

    def describe_endpoint(self, runtime: Runtime, endpoint: Endpoint) -> dict[str, Any]:
        now = self.clock()
        return endpoint.describe(runtime.arn, now, runtime.version, runtime.status(now))

    def create_endpoint(self, runtime_id: str, body: dict[str, Any]) -> tuple[Runtime, Endpoint]:
        runtime = self.get(runtime_id)
        name = body["name"]
        if name in runtime.endpoints:
            raise ConflictException(f"Agent runtime {runtime_id} already has an endpoint named {name}")
        version = int(body.get("agentRuntimeVersion") or runtime.version)  # default: the latest, pinned
        runtime._version(version)
        now = self.clock()
        endpoint = Endpoint.new(
            name,
            now,
            now + self.provision_seconds,
            version,
            description=body.get("description"),
            tags=dict(body.get("tags") or {}),
        )
        runtime.endpoints[name] = endpoint
        self.save()
        return runtime, endpoint

    def update_endpoint(self, runtime_id: str, name: str, body: dict[str, Any]) -> tuple[Runtime, Endpoint]:
        runtime, endpoint = self.endpoint(runtime_id, name)
        if name == DEFAULT:
            raise ValidationException("The DEFAULT endpoint always serves the latest version", "endpointName")
        now = self.clock()
        if endpoint.status(now, runtime.status(now)) != "READY":
            raise ConflictException(f"Endpoint {name} is {endpoint.pending_status}; update it once READY")
        version = int(body.get("agentRuntimeVersion") or runtime.version)
        runtime._version(version)
        endpoint.live_version = endpoint.served_version(now, runtime.version)
        endpoint.target_version, endpoint.updated_at = version, now
        endpoint.pending_status, endpoint.ready_at = "UPDATING", now + self.provision_seconds
        if "description" in body:
            endpoint.description = body["description"]
        self.save()
        return runtime, endpoint

    def delete_endpoint(self, runtime_id: str, name: str) -> tuple[Runtime, Endpoint]:
        runtime, endpoint = self.endpoint(runtime_id, name)
        if name == DEFAULT:
            raise ValidationException(
                "The DEFAULT endpoint goes only with its runtime (DeleteAgentRuntime)", "endpointName"
            )
        del runtime.endpoints[name]
        self.save()
        return runtime, endpoint

    def list_endpoints(self, runtime_id: str, max_results: int | None, next_token: str | None):
        runtime = self.get(runtime_id)
        items = [self.describe_endpoint(runtime, e) for e in runtime.endpoints.values()]
        return self.page(items, max_results, next_token)

    # --- tags ----------------------------------------------------------------------------

    def _taggable(self, arn: str) -> Runtime | Endpoint:
        match = RUNTIME_ARN.fullmatch(arn)
        runtime = self.runtimes.get(match.group("id")) if match else None
        if runtime is None or runtime.arn != arn.split("/runtime-endpoint/")[0]:
            raise ResourceNotFoundException(f"No taggable resource {arn} in this account and region")
        if match.group("endpoint"):
            return self.endpoint(runtime.id, match.group("endpoint"))[1]
        return runtime

    def tag(self, arn: str, tags: dict[str, str]) -> None:
        resource = self._taggable(arn)
        merged = {**resource.tags, **tags}
        if len(merged) > MAX_TAGS:
            raise ValidationException(f"A resource holds at most {MAX_TAGS} tags", "tags")
        resource.tags = merged
        self.save()

    def untag(self, arn: str, keys: list[str]) -> None:
        resource = self._taggable(arn)
        resource.tags = {k: v for k, v in resource.tags.items() if k not in keys}
        self.save()

    def list_tags(self, arn: str) -> dict[str, str]:
        return dict(self._taggable(arn).tags)
