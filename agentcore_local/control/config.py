"""The rules of a runtime's configuration that botocore's model cannot express (validation.py checks
everything the model says first). Each rule names its source.

Sources: AWS's AgentCore developer guide, `docs.aws.amazon.com/bedrock-agentcore/latest/devguide/`
pages runtime-lifecycle-settings and runtime-filesystem-configurations.
"""

from __future__ import annotations

import copy
from typing import Any

from ..errors import ValidationException

# runtime-lifecycle-settings: microVM runtimes take 60 to 28,800 s (the model allows 1,209,600,
# the Instances compute type's limit, i.e. runtimes with a capacityProviderConfiguration).
LIFECYCLE_MIN, LIFECYCLE_MAX, INSTANCES_LIFECYCLE_MAX = 60, 28_800, 1_209_600
DEFAULT_LIFECYCLE = {"idleRuntimeSessionTimeout": 900, "maxLifetime": 28_800}
# runtime-filesystem-configurations: at most one sessionStorage, two EFS and two S3 Files access
# points (five entries in all is the model's list limit).
FILESYSTEM_LIMITS = {"sessionStorage": 1, "efsAccessPoint": 2, "s3FilesAccessPoint": 2}
# runtime-filesystem-configurations: the bring-your-own file systems are reached over the VPC.
NEEDS_VPC = ("efsAccessPoint", "s3FilesAccessPoint")

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


def validate_config(body: dict[str, Any]) -> dict[str, Any]:
    """The configuration a (model-valid) Create/Update body describes, after the hand-written rules;
    the lifecycle is stored with AWS's defaults filled in."""
    config = {key: copy.deepcopy(body[key]) for key in CONFIG_MEMBERS if key in body}
    config["lifecycleConfiguration"] = effective_lifecycle(
        body.get("lifecycleConfiguration"), instances="capacityProviderConfiguration" in body
    )
    network = (body.get("networkConfiguration") or {}).get("networkMode", "PUBLIC")
    _validate_filesystems(body.get("filesystemConfigurations") or [], network)
    return config


def effective_lifecycle(lifecycle: dict[str, Any] | None, instances: bool = False) -> dict[str, int]:
    """The lifecycle AWS applies: defaults 900/28,800, and with only maxLifetime given at or under
    900 s the idle timeout becomes maxLifetime (runtime-lifecycle-settings)."""
    given = dict(lifecycle or {})
    top = INSTANCES_LIFECYCLE_MAX if instances else LIFECYCLE_MAX
    for key, value in given.items():
        if not LIFECYCLE_MIN <= value <= top:
            raise ValidationException(
                f"lifecycleConfiguration.{key} must be {LIFECYCLE_MIN} to {top} seconds on this compute "
                f"type, got {value} (runtime-lifecycle-settings)",
                f"lifecycleConfiguration.{key}",
            )
    life = given.get("maxLifetime", DEFAULT_LIFECYCLE["maxLifetime"])
    idle = given.get("idleRuntimeSessionTimeout")
    if idle is None:
        idle = min(DEFAULT_LIFECYCLE["idleRuntimeSessionTimeout"], life)
    if idle > life:
        raise ValidationException(
            f"idleRuntimeSessionTimeout ({idle}) must not exceed maxLifetime ({life})",
            "lifecycleConfiguration.maxLifetime",
        )
    return {"idleRuntimeSessionTimeout": idle, "maxLifetime": life}


def _validate_filesystems(filesystems: list[dict[str, Any]], network_mode: str) -> None:
    counts: dict[str, int] = {}
    seen: set[str] = set()
    for index, entry in enumerate(filesystems):
        name = f"filesystemConfigurations[{index}]"
        kind = next(key for key, value in entry.items() if value is not None)
        counts[kind] = counts.get(kind, 0) + 1
        limit = FILESYSTEM_LIMITS.get(kind)
        if limit is not None and counts[kind] > limit:
            raise ValidationException(
                f"filesystemConfigurations may hold at most {limit} {kind} "
                "(runtime-filesystem-configurations)",
                name,
            )
        if kind in NEEDS_VPC and network_mode != "VPC":
            raise ValidationException(
                f"{name}.{kind} needs networkConfiguration.networkMode VPC "
                "(runtime-filesystem-configurations)",
                name,
            )
        # Two file systems cannot share a directory (inferred: a mount hides the one before it).
        mount = entry[kind]["mountPath"].rstrip("/")
        if mount in seen:
            raise ValidationException(f"mount path {mount} is used twice", f"{name}.{kind}.mountPath")
        seen.add(mount)
