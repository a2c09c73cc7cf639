"""Endpoint and tag operations on the registry's runtimes (composition: RuntimeRegistry holds one)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import ConflictException, ResourceNotFoundException, ValidationException
from .endpoint import DEFAULT, RUNTIME_ARN, Endpoint
from .runtime import Runtime

MAX_TAGS = 50  # TagsMap's limit in the model, held for the merged set too (inferred)


@dataclass
class Endpoints:
    """Endpoints and tags of the registry's runtimes; the registry hands over what they need."""

    runtimes: dict[str, Runtime]
    get: Callable[[str], Runtime]  # the runtime, or ResourceNotFoundException
    save: Callable[[], None]
    page: Callable[[list[Any], int | None, str | None], tuple[list, str | None]]
    clock: Callable[[], float]
    provision_seconds: float
    on_delete: Callable[[Runtime, str], None]  # after a named endpoint is deleted

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
        self.on_delete(runtime, name)
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
