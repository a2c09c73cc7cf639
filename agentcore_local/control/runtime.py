"""A runtime record: its versions, configuration, endpoints and what DescribeAgentRuntime answers."""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ..errors import ResourceNotFoundException
from .config import effective_lifecycle
from .endpoint import DEFAULT, Endpoint, iso


class Change(StrEnum):
    """What the registry's listeners hear about (the session backend resets or deletes storage)."""

    VERSION = "version"  # UpdateAgentRuntime: a new latest version, which DEFAULT now serves
    DELETED = "deleted"  # DeleteAgentRuntime of the whole runtime
    ENDPOINT_DELETED = "endpoint_deleted"  # DeleteAgentRuntimeEndpoint of a named endpoint


@dataclass
class Runtime:
    """One agent runtime: its versions (the last is the latest), endpoints and tags."""

    id: str
    name: str
    arn: str
    created_at: float
    versions: list[dict[str, Any]]  # {"version": N, "config": {...}, "updatedAt": t}
    ready_at: float
    pending_status: str = "CREATING"  # reported until ready_at, then READY
    endpoints: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    # Set only on the data plane's view (RuntimeRegistry.resolve): the endpoint it was reached through.
    served_through: str = DEFAULT

    def __post_init__(self) -> None:
        self.endpoints = {
            name: e if isinstance(e, Endpoint) else Endpoint(**e) for name, e in self.endpoints.items()
        }
        if DEFAULT not in self.endpoints:
            self.endpoints[DEFAULT] = Endpoint.new(DEFAULT, self.created_at, self.created_at, None)

    def to_json(self) -> dict[str, Any]:
        raw = dataclasses.asdict(self)
        del raw["served_through"]
        return raw

    @property
    def version(self) -> int:
        return self.versions[-1]["version"]

    @property
    def config(self) -> dict[str, Any]:
        return self.versions[-1]["config"]

    @property
    def last_updated_at(self) -> float:
        return self.versions[-1]["updatedAt"]

    def at_version(self, version: int) -> Runtime:
        """A view of this runtime as one version: `.version` and `.config` are that version's."""
        entry = self._version(version)
        return dataclasses.replace(self, versions=[entry])

    def _version(self, version: int) -> dict[str, Any]:
        for entry in self.versions:
            if entry["version"] == version:
                return entry
        raise ResourceNotFoundException(f"Version {version} of agent runtime {self.id} not found")

    def status(self, now: float) -> str:
        return "READY" if now >= self.ready_at else self.pending_status

    def lifecycle(self) -> dict[str, int]:
        return effective_lifecycle(self.config.get("lifecycleConfiguration"))

    def session_storage_mount(self) -> str | None:
        """The sessionStorage mount path, or None when the runtime keeps no session storage."""
        for entry in self.config.get("filesystemConfigurations") or []:
            if "sessionStorage" in entry:
                return entry["sessionStorage"]["mountPath"].rstrip("/")
        return None

    def environment(self) -> dict[str, str]:
        return dict(self.config.get("environmentVariables") or {})

    def describe(self, now: float, version: int | None = None) -> dict[str, Any]:
        """GetAgentRuntime's answer."""
        chosen = self.versions[-1] if version is None else self._version(version)
        config = chosen["config"]
        answer: dict[str, Any] = {
            "agentRuntimeArn": self.arn,
            "agentRuntimeName": self.name,
            "agentRuntimeId": self.id,
            "agentRuntimeVersion": str(chosen["version"]),
            "createdAt": iso(self.created_at),
            "lastUpdatedAt": iso(chosen["updatedAt"]),
            "status": self.status(now) if chosen is self.versions[-1] else "READY",
            "networkConfiguration": {"networkMode": "PUBLIC"},
            "protocolConfiguration": {"serverProtocol": "HTTP"},
            "workloadIdentityDetails": {
                "workloadIdentityArn": self.arn.replace(":runtime/", ":workload-identity-directory/default/")
            },
            **copy.deepcopy(config),
        }
        answer["lifecycleConfiguration"] = effective_lifecycle(config.get("lifecycleConfiguration"))
        return answer

    def summary(self, now: float, entry: dict[str, Any] | None = None) -> dict[str, Any]:
        """An item of ListAgentRuntimes / ListAgentRuntimeVersions."""
        entry = entry or self.versions[-1]
        answer = {
            "agentRuntimeArn": self.arn,
            "agentRuntimeId": self.id,
            "agentRuntimeVersion": str(entry["version"]),
            "agentRuntimeName": self.name,
            "lastUpdatedAt": iso(entry["updatedAt"]),
            "status": self.status(now) if entry is self.versions[-1] else "READY",
        }
        if entry["config"].get("description"):  # the model: 1-4,096 characters, so never ""
            answer["description"] = entry["config"]["description"]
        return answer

    def versions_in_use(self, now: float) -> dict[int, str]:
        """version -> the endpoint that serves (or is moving to) it."""
        used: dict[int, str] = {}
        for endpoint in self.endpoints.values():
            for version in endpoint.versions_in_use(now, self.version):
                used.setdefault(version, endpoint.name)
        return used
