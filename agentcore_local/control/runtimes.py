"""The control plane's backend: agent runtimes, their versions, endpoints and tags (no HTTP here).

Create/Get/Update/List/Delete behave as `bedrock-agentcore-control` documents them: ids
NAME-<10 letters or digits>, ARNs arn:aws:bedrock-agentcore:REGION:ACCOUNT:runtime/ID, a new version on
every update, CREATING/UPDATING then READY after `provision_seconds`. Update is a PUT: what it
omits is reset, as on AWS. Requests reach here already checked against the service model
(validation.py); runtime_config.py holds the rules the model cannot express. The registry is saved
to `runtimes.json` in the state directory.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from durable import write_json

from ..errors import ConflictException, ResourceNotFoundException, ValidationException
from .config import validate_config
from .endpoint import DEFAULT, RUNTIME_ARN, RUNTIME_ID, random_suffix
from .endpoints import Endpoints
from .idempotency import IdempotencyCache
from .runtime import Change, Runtime

Clock = Callable[[], float]


@dataclass
class RuntimeRegistry:
    """All runtimes of the local account. `listeners` hear about every version change and deletion."""

    region: str
    account: str
    clock: Clock
    provision_seconds: float = 1.0
    path: Path | None = None
    runtimes: dict[str, Runtime] = field(default_factory=dict)
    # (change, runtime, the endpoint's name for ENDPOINT_DELETED, else None)
    listeners: list[Callable[[Change, Runtime, str | None], None]] = field(default_factory=list)
    tokens: IdempotencyCache | None = None

    def __post_init__(self) -> None:
        if self.tokens is None:
            self.tokens = IdempotencyCache(self.clock)
        self.endpoints = Endpoints(
            self.runtimes,
            self.get,
            self.save,
            self.page,
            self.clock,
            self.provision_seconds,
            self._endpoint_deleted,
        )

    # --- persistence ---------------------------------------------------------------------

    def load(self) -> None:
        if self.path is None or not self.path.exists():
            return
        for raw in json.loads(self.path.read_text())["runtimes"]:
            self.runtimes[raw["id"]] = Runtime(**raw)

    def save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_json(self.path, {"runtimes": [r.to_json() for r in self.runtimes.values()]}, indent=1)

    def _notify(self, change: Change, runtime: Runtime, endpoint: str | None = None) -> None:
        for listener in self.listeners:
            listener(change, runtime, endpoint)

    # --- runtimes ------------------------------------------------------------------------

    def create(self, body: dict[str, Any], ready_now: bool = False) -> Runtime:
        name = body["agentRuntimeName"]
        if any(r.name == name for r in self.runtimes.values()):
            raise ConflictException(f"An agent runtime named {name} already exists")
        config = validate_config(body)
        now = self.clock()
        runtime_id = f"{name}-{random_suffix()}"
        runtime = Runtime(
            id=runtime_id,
            name=name,
            arn=f"arn:aws:bedrock-agentcore:{self.region}:{self.account}:runtime/{runtime_id}",
            created_at=now,
            versions=[{"version": 1, "config": config, "updatedAt": now}],
            ready_at=now if ready_now else now + self.provision_seconds,
            tags=dict(body.get("tags") or {}),
        )
        self.runtimes[runtime_id] = runtime
        self.save()
        return runtime

    def get(self, runtime_id: str) -> Runtime:
        try:
            return self.runtimes[runtime_id]
        except KeyError:
            raise ResourceNotFoundException(f"Agent runtime {runtime_id} not found") from None

    def find_by_name(self, name: str) -> Runtime | None:
        return next((r for r in self.runtimes.values() if r.name == name), None)

    def update(self, runtime_id: str, body: dict[str, Any]) -> Runtime:
        runtime = self.get(runtime_id)
        config = validate_config(body)
        now = self.clock()
        if runtime.status(now) != "READY":
            raise ConflictException(
                f"Agent runtime {runtime_id} is {runtime.status(now)}; update it once READY"
            )
        runtime.versions.append({"version": runtime.version + 1, "config": config, "updatedAt": now})
        runtime.pending_status, runtime.ready_at = "UPDATING", now + self.provision_seconds
        self.save()
        self._notify(Change.VERSION, runtime)
        return runtime

    def delete(self, runtime_id: str, version: int | None = None) -> Runtime:
        """The whole runtime, or with `version` only that version (the model's DeleteAgentRuntime)."""
        runtime = self.get(runtime_id)
        if version is not None:
            runtime._version(version)  # ResourceNotFoundException when it does not exist
            in_use = runtime.versions_in_use(self.clock())
            if version in in_use:
                raise ConflictException(
                    f"Version {version} of agent runtime {runtime_id} is served by endpoint "
                    f"{in_use[version]}; point the endpoint at another version first"
                )
            runtime.versions = [v for v in runtime.versions if v["version"] != version]
            self.save()
            return runtime
        del self.runtimes[runtime_id]
        self.save()
        self._notify(Change.DELETED, runtime)
        return runtime

    def page(
        self, items: list[Any], max_results: int | None, next_token: str | None
    ) -> tuple[list[Any], str | None]:
        """One page of a list (maxResults 1-100, checked by the model) and an opaque nextToken."""
        size = 100 if max_results is None else max_results
        start = 0
        if next_token:
            if not next_token.isdigit() or int(next_token) > len(items):
                raise ValidationException("nextToken is not valid", "nextToken")
            start = int(next_token)
        end = start + size
        return items[start:end], (str(end) if end < len(items) else None)

    def list(
        self, max_results: int | None = None, next_token: str | None = None
    ) -> tuple[list[dict], str | None]:
        now = self.clock()
        ordered = sorted(self.runtimes.values(), key=lambda r: (r.created_at, r.id))
        items, token = self.page(ordered, max_results, next_token)
        return [r.summary(now) for r in items], token

    def list_versions(self, runtime_id: str, max_results: int | None, next_token: str | None):
        runtime = self.get(runtime_id)
        now = self.clock()
        summaries = [runtime.summary(now, entry) for entry in reversed(runtime.versions)]
        return self.page(summaries, max_results, next_token)

    # --- the data plane's view -----------------------------------------------------------

    def resolve_endpoint(
        self, arn_or_id: str, qualifier: str | None = None, account_id: str | None = None
    ) -> tuple[Runtime, int]:
        """The runtime a data-plane path names, and the version its endpoint (`qualifier`) serves now."""
        match = RUNTIME_ARN.fullmatch(arn_or_id)
        if match and not match.group("endpoint"):
            runtime_id = match.group("id")
            if match.group("account") != self.account or match.group("region") != self.region:
                raise ResourceNotFoundException(f"No agent runtime {arn_or_id} in this account and region")
        elif RUNTIME_ID.fullmatch(arn_or_id):
            if not account_id:
                raise ValidationException(
                    "accountId is required when agentRuntimeArn is a runtime id", "accountId"
                )
            runtime_id = arn_or_id
        else:
            raise ValidationException(
                f"{arn_or_id!r} is not an agent runtime ARN "
                "(arn:aws:bedrock-agentcore:REGION:ACCOUNT:runtime/NAME-<10 letters or digits>)",
                "agentRuntimeArn",
            )
        runtime = self.runtimes.get(runtime_id)
        if runtime is None:
            raise ResourceNotFoundException(f"Agent runtime {arn_or_id} not found")
        name = qualifier or DEFAULT
        if name not in runtime.endpoints:
            raise ResourceNotFoundException(f"Endpoint {name} of agent runtime {runtime_id} not found")
        return runtime, runtime.endpoints[name].served_version(self.clock(), runtime.version)

    def resolve(self, arn_or_id: str, qualifier: str | None = None, account_id: str | None = None) -> Runtime:
        """The runtime as the endpoint `qualifier` serves it: `.version` and `.config` are its version's."""
        runtime, version = self.resolve_endpoint(arn_or_id, qualifier, account_id)
        return dataclasses.replace(runtime.at_version(version), served_through=qualifier or DEFAULT)

    def _endpoint_deleted(self, runtime: Runtime, name: str) -> None:
        """DeleteAgentRuntimeEndpoint: listeners stop the endpoint's sessions and delete their storage."""
        self._notify(Change.ENDPOINT_DELETED, runtime, name)
