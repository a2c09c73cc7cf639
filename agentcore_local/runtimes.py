"""The control plane's backend: agent runtimes, their versions and their rules (no HTTP here).

Create/Get/Update/List/Delete behave as `bedrock-agentcore-control` documents them: ids
NAME-<10 letters or digits>, ARNs arn:aws:bedrock-agentcore:REGION:ACCOUNT:runtime/ID, a new version on
every update, CREATING/UPDATING then READY after `provision_seconds`. Update is a PUT: what it
omits is reset, as on AWS. The registry is saved to `runtimes.json` in the state directory.
"""

from __future__ import annotations

import copy
import json
import os
import re
import secrets
import string
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .exceptions import ConflictException, ResourceNotFoundException, ValidationException
from .lifecycle import LifecyclePolicy

Clock = Callable[[], float]

NAME = re.compile(r"[a-zA-Z][a-zA-Z0-9_]{0,47}")
RUNTIME_ID = re.compile(r"[a-zA-Z][a-zA-Z0-9_]{0,99}-[a-zA-Z0-9]{10}")
RUNTIME_ARN = re.compile(
    r"arn:aws(-[^:]+)?:bedrock-agentcore:(?P<region>[a-z0-9-]+):(?P<account>[0-9]{12}):runtime/(?P<id>"
    + RUNTIME_ID.pattern
    + ")"
)
ROLE_ARN = re.compile(r"arn:aws(-[^:]+)?:iam::([0-9]{12})?:role/.+")
CONTAINER_URI = re.compile(
    r"(([0-9]{12})\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com(\.cn)?|public\.ecr\.aws)/"
    r"((?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*)(?::([^:@]{1,300}))?(?:@(.+))?"
)
MOUNT_PATH = re.compile(r"/mnt/[a-zA-Z0-9._-]+/?")
# Lifecycle limits of microVM runtimes (AWS documentation: 60 to 28,800 seconds).
LIFECYCLE_MIN, LIFECYCLE_MAX = 60, 28_800
DEFAULT_LIFECYCLE = {"idleRuntimeSessionTimeout": 900, "maxLifetime": 28_800}

# The members of Create/UpdateAgentRuntime that make up a version's configuration.
CONFIG_MEMBERS = (
    "agentRuntimeArtifact",
    "roleArn",
    "networkConfiguration",
    "description",
    "authorizerConfiguration",
    "requestHeaderConfiguration",
    "protocolConfiguration",
    "lifecycleConfiguration",
    "hooksConfiguration",
    "metadataConfiguration",
    "environmentVariables",
    "filesystemConfigurations",
    "capacityProviderConfiguration",
    "platformVersion",
    "allowedPorts",
    "resourceConfigurations",
)


def iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat().replace("+00:00", "Z")


def _union(value: Any, field_name: str, members: tuple[str, ...]) -> str:
    """The one member set in a tagged union, or ValidationException."""
    if not isinstance(value, dict):
        raise ValidationException(f"{field_name} must be an object", field_name)
    present = [key for key in value if key in members]
    if len(present) != 1 or len(value) != 1:
        raise ValidationException(f"{field_name} must set exactly one of {', '.join(members)}", field_name)
    return present[0]


def validate_config(body: dict[str, Any]) -> dict[str, Any]:
    """Check a Create/Update body as AWS does; return the configuration it describes."""
    for required in ("agentRuntimeArtifact", "roleArn"):
        if required not in body:
            raise ValidationException(f"{required} is required", required)
    artifact = body["agentRuntimeArtifact"]
    kind = _union(artifact, "agentRuntimeArtifact", ("containerConfiguration", "codeConfiguration"))
    if kind == "containerConfiguration":
        uri = (artifact[kind] or {}).get("containerUri")
        if not isinstance(uri, str) or not CONTAINER_URI.fullmatch(uri):
            raise ValidationException(
                f"containerUri {uri!r} is not an ECR image URI "
                "(ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPO:TAG)",
                "agentRuntimeArtifact.containerConfiguration.containerUri",
            )
    role = body["roleArn"]
    if not isinstance(role, str) or not ROLE_ARN.fullmatch(role):
        raise ValidationException(f"roleArn {role!r} is not an IAM role ARN", "roleArn")
    network = body.get("networkConfiguration")
    if network is not None and (
        not isinstance(network, dict) or network.get("networkMode") not in ("PUBLIC", "VPC")
    ):
        raise ValidationException(
            "networkConfiguration.networkMode must be PUBLIC or VPC", "networkConfiguration"
        )
    protocol = body.get("protocolConfiguration")
    if protocol is not None and (
        not isinstance(protocol, dict) or protocol.get("serverProtocol") not in ("MCP", "HTTP", "A2A", "AGUI")
    ):
        raise ValidationException(
            "protocolConfiguration.serverProtocol must be MCP, HTTP, A2A or AGUI", "protocolConfiguration"
        )
    description = body.get("description")
    if description is not None and (not isinstance(description, str) or not 1 <= len(description) <= 4096):
        raise ValidationException("description must be 1 to 4096 characters", "description")
    _validate_lifecycle(body.get("lifecycleConfiguration"))
    _validate_environment(body.get("environmentVariables"))
    _validate_filesystems(body.get("filesystemConfigurations"))
    return {key: copy.deepcopy(body[key]) for key in CONFIG_MEMBERS if key in body}


def _validate_lifecycle(lifecycle: Any) -> None:
    if lifecycle is None:
        return
    if not isinstance(lifecycle, dict):
        raise ValidationException("lifecycleConfiguration must be an object", "lifecycleConfiguration")
    for key in ("idleRuntimeSessionTimeout", "maxLifetime"):
        value = lifecycle.get(key)
        if value is not None and (not isinstance(value, int) or not LIFECYCLE_MIN <= value <= LIFECYCLE_MAX):
            raise ValidationException(
                f"lifecycleConfiguration.{key} must be {LIFECYCLE_MIN} to {LIFECYCLE_MAX} seconds, "
                f"got {value!r}",
                f"lifecycleConfiguration.{key}",
            )
    idle = lifecycle.get("idleRuntimeSessionTimeout", DEFAULT_LIFECYCLE["idleRuntimeSessionTimeout"])
    life = lifecycle.get("maxLifetime", DEFAULT_LIFECYCLE["maxLifetime"])
    if idle > life:
        raise ValidationException(
            f"idleRuntimeSessionTimeout ({idle}) must not exceed maxLifetime ({life})",
            "lifecycleConfiguration",
        )


def _validate_environment(env: Any) -> None:
    if env is None:
        return
    if not isinstance(env, dict) or len(env) > 50:
        raise ValidationException(
            "environmentVariables must be a map of at most 50 entries", "environmentVariables"
        )
    for key, value in env.items():
        if not 1 <= len(key) <= 100 or not isinstance(value, str) or len(value) > 5000:
            raise ValidationException(
                f"environment variable {key!r}: names are 1-100 characters, values at most 5000",
                "environmentVariables",
            )


def _validate_filesystems(filesystems: Any) -> None:
    if filesystems is None:
        return
    if not isinstance(filesystems, list) or len(filesystems) > 5:
        raise ValidationException(
            "filesystemConfigurations holds at most 5 entries", "filesystemConfigurations"
        )
    seen: set[str] = set()
    members = ("sessionStorage", "s3FilesAccessPoint", "efsAccessPoint", "capacityProviderVolume")
    for index, entry in enumerate(filesystems):
        name = f"filesystemConfigurations[{index}]"
        kind = _union(entry, name, members)
        mount = (entry[kind] or {}).get("mountPath")
        if not isinstance(mount, str) or not 6 <= len(mount) <= 200 or not MOUNT_PATH.fullmatch(mount):
            raise ValidationException(
                f"{name}.{kind}.mountPath {mount!r} must match /mnt/[a-zA-Z0-9._-]+/? "
                "(one directory directly under /mnt, e.g. /mnt/workspace)",
                f"{name}.{kind}.mountPath",
            )
        if mount.rstrip("/") in seen:
            raise ValidationException(f"mount path {mount} is used twice", name)
        seen.add(mount.rstrip("/"))


@dataclass
class Runtime:
    """One agent runtime and all its versions (the last is current)."""

    id: str
    name: str
    arn: str
    created_at: float
    versions: list[dict[str, Any]]  # {"version": N, "config": {...}, "updatedAt": t}
    ready_at: float
    pending_status: str = "CREATING"  # reported until ready_at, then READY

    @property
    def version(self) -> int:
        return self.versions[-1]["version"]

    @property
    def config(self) -> dict[str, Any]:
        return self.versions[-1]["config"]

    @property
    def last_updated_at(self) -> float:
        return self.versions[-1]["updatedAt"]

    def status(self, now: float) -> str:
        return "READY" if now >= self.ready_at else self.pending_status

    def lifecycle(self) -> dict[str, int]:
        return {**DEFAULT_LIFECYCLE, **(self.config.get("lifecycleConfiguration") or {})}

    def policy(self) -> LifecyclePolicy:
        lifecycle = self.lifecycle()
        return LifecyclePolicy(
            idle_timeout=float(lifecycle["idleRuntimeSessionTimeout"]),
            max_lifetime=float(lifecycle["maxLifetime"]),
        )

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
        chosen = self.versions[-1]
        if version is not None:
            matches = [v for v in self.versions if v["version"] == version]
            if not matches:
                raise ResourceNotFoundException(f"Version {version} of agent runtime {self.id} not found")
            chosen = matches[0]
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
        answer["lifecycleConfiguration"] = {
            **DEFAULT_LIFECYCLE,
            **(config.get("lifecycleConfiguration") or {}),
        }
        return answer

    def summary(self, now: float) -> dict[str, Any]:
        return {
            "agentRuntimeArn": self.arn,
            "agentRuntimeId": self.id,
            "agentRuntimeVersion": str(self.version),
            "agentRuntimeName": self.name,
            "description": self.config.get("description", ""),
            "lastUpdatedAt": iso(self.last_updated_at),
            "status": self.status(now),
        }


@dataclass
class RuntimeRegistry:
    """All runtimes of the local account. `listeners` hear about every version change and deletion."""

    region: str
    account: str
    clock: Clock
    provision_seconds: float = 1.0
    path: Path | None = None
    runtimes: dict[str, Runtime] = field(default_factory=dict)
    listeners: list[Callable[[str, Runtime], None]] = field(default_factory=list)

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
        body = json.dumps({"runtimes": [vars(r) for r in self.runtimes.values()]}, indent=1)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".runtimes-")
        with os.fdopen(fd, "w") as f:
            f.write(body)
        os.replace(tmp, self.path)

    def _notify(self, change: str, runtime: Runtime) -> None:
        for listener in self.listeners:
            listener(change, runtime)

    # --- the operations ------------------------------------------------------------------

    def create(self, body: dict[str, Any], ready_now: bool = False) -> Runtime:
        name = body.get("agentRuntimeName")
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise ValidationException(
                f"agentRuntimeName {name!r} must match [a-zA-Z][a-zA-Z0-9_]{{0,47}} "
                "(letters, digits and underscores; no hyphens)",
                "agentRuntimeName",
            )
        if any(r.name == name for r in self.runtimes.values()):
            raise ConflictException(f"An agent runtime named {name} already exists")
        config = validate_config(body)
        now = self.clock()
        suffix = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(10))
        runtime_id = f"{name}-{suffix}"
        runtime = Runtime(
            id=runtime_id,
            name=name,
            arn=f"arn:aws:bedrock-agentcore:{self.region}:{self.account}:runtime/{runtime_id}",
            created_at=now,
            versions=[{"version": 1, "config": config, "updatedAt": now}],
            ready_at=now if ready_now else now + self.provision_seconds,
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
        self._notify("version", runtime)
        return runtime

    def delete(self, runtime_id: str) -> Runtime:
        runtime = self.runtimes.pop(runtime_id, None)
        if runtime is None:
            raise ResourceNotFoundException(f"Agent runtime {runtime_id} not found")
        self.save()
        self._notify("deleted", runtime)
        return runtime

    def page(
        self, items: list[Any], max_results: int | None, next_token: str | None
    ) -> tuple[list[Any], str | None]:
        """One page of a list, with AWS's maxResults (1-100) and an opaque nextToken."""
        size = 100 if max_results is None else max_results
        if not 1 <= size <= 100:
            raise ValidationException("maxResults must be 1 to 100", "maxResults")
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
        summaries = []
        for version in reversed(runtime.versions):
            summary = runtime.summary(now)
            summary["agentRuntimeVersion"] = str(version["version"])
            summary["lastUpdatedAt"] = iso(version["updatedAt"])
            summary["description"] = version["config"].get("description", "")
            if version is not runtime.versions[-1]:
                summary["status"] = "READY"
            summaries.append(summary)
        return self.page(summaries, max_results, next_token)

    # --- the data plane's view -----------------------------------------------------------

    def resolve(self, arn_or_id: str, qualifier: str | None = None, account_id: str | None = None) -> Runtime:
        """The runtime an InvokeAgentRuntime/StopRuntimeSession/Command path names."""
        match = RUNTIME_ARN.fullmatch(arn_or_id)
        if match:
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
        if qualifier not in (None, "", "DEFAULT"):
            raise ResourceNotFoundException(f"Endpoint {qualifier} of agent runtime {runtime_id} not found")
        return runtime
