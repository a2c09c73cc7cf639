"""An AgentCore runtime as deploy.py sees it: the request to send, lookup by name, waiting for READY.

Facts from the bedrock-agentcore-control model (botocore 1.44.5) this relies on:
UpdateAgentRuntime is a PUT that requires agentRuntimeArtifact and roleArn and replaces
the whole configuration, so an update re-sends everything GetAgentRuntime returned; the
name must match [a-zA-Z][a-zA-Z0-9_]{0,47} (botocore does not check patterns); there is
no waiter for runtimes, so waiting is polling.
"""

from __future__ import annotations

import copy
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from cloud.errors import DeployError, error_code

# The session-storage mount a new runtime gets. Restated on purpose, one per layer, so no layer
# imports another: agent/service/settings.py (WORKSPACE_DIR's default), agentcore_local/settings.py (what
# the emulator mounts) and the Dockerfile; tests/unit/cloud/test_dockerfile.py and test_deploy.py
# check they agree.
DEFAULT_MOUNT_PATH = "/mnt/workspace"
DEFAULT_NETWORK_MODE = "PUBLIC"
# A runtime's own backup prefix (agent/backup/s3.py prefix): set at create, kept by every update.
SCOPE_VARIABLE = "BACKUP_SCOPE"
NAME_PATTERN = re.compile(r"[a-zA-Z][a-zA-Z0-9_]{0,47}")
MOUNT_PATTERN = re.compile(r"/mnt/[a-zA-Z0-9._-]+/?")
# AWS documents 60 s to 8 h for microVM runtimes; the API model alone would allow 14 days.
LIFECYCLE_RANGE = (60, 28_800)
FAILED = {"CREATE_FAILED", "UPDATE_FAILED", "DELETE_FAILED"}
SETTLED = {"READY", *FAILED}

Runtime = dict[str, Any]


@dataclass(frozen=True)
class Changes:
    """What the user asked for. None (or empty) means: keep the runtime's value, or the default on create."""

    image: str | None = None
    role_arn: str | None = None
    mount_path: str | None = None
    network_mode: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    unset_env: tuple[str, ...] = ()
    idle_timeout: int | None = None
    max_lifetime: int | None = None


def check_name(name: str) -> None:
    """Refuse a runtime name AWS would reject (botocore does not check the pattern client-side)."""
    if not NAME_PATTERN.fullmatch(name):
        raise DeployError(
            f"invalid runtime name {name!r}: use a letter, then up to 47 letters, digits or underscores "
            "(no hyphens)"
        )


def updatable_fields(client) -> set[str]:
    """The members UpdateAgentRuntime accepts, read from the service model so new ones are carried too."""
    members = client.meta.service_model.operation_model("UpdateAgentRuntime").input_shape.members
    return set(members) - {"agentRuntimeId", "clientToken"}


def current_config(runtime: Runtime, fields: set[str]) -> Runtime:
    """The part of a GetAgentRuntime answer that an update must send back."""
    return {k: copy.deepcopy(v) for k, v in runtime.items() if k in fields}


def create_request(name: str, changes: Changes, client_token: str) -> Runtime:
    """The CreateAgentRuntime request: container image, role, session storage, HTTP protocol."""
    check_name(name)
    if not changes.image:
        raise DeployError(
            "creating a runtime needs an image: pass --image ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPO:TAG"
        )
    if not changes.role_arn:
        raise DeployError(
            "creating a runtime needs an execution role: pass --role-arn (python deploy.py role prints it)"
        )
    base: Runtime = {
        "networkConfiguration": {"networkMode": DEFAULT_NETWORK_MODE},
        "protocolConfiguration": {"serverProtocol": "HTTP"},
    }
    request = _apply(base, changes)
    return {"agentRuntimeName": name, **request, "clientToken": client_token}


def local_defaults(name: str, local: dict[str, Any]) -> tuple[str, str]:
    """The image and role a create sends to agentcore_local when none is given: it runs this
    checkout's agent whatever the image says, and assumes no role (the account is its own)."""
    account, region = local.get("account", "123456789012"), local.get("region", "us-west-2")
    return (
        f"{account}.dkr.ecr.{region}.amazonaws.com/coding-agent:latest",
        f"arn:aws:iam::{account}:role/AgentCoreRuntime-{name}",
    )


def update_request(runtime: Runtime, changes: Changes, fields: set[str]) -> Runtime:
    """The UpdateAgentRuntime body: the runtime's whole configuration with only the changes applied."""
    request = _apply(current_config(runtime, fields), changes)
    if not request.get("agentRuntimeArtifact") or not request.get("roleArn"):
        raise DeployError("the runtime has no container image or role on record: pass --image and --role-arn")
    return request


def _apply(config: Runtime, changes: Changes) -> Runtime:
    out = copy.deepcopy(config)
    if changes.image:
        out["agentRuntimeArtifact"] = {"containerConfiguration": {"containerUri": changes.image}}
    if changes.role_arn:
        out["roleArn"] = changes.role_arn

    network = out.get("networkConfiguration") or {"networkMode": DEFAULT_NETWORK_MODE}
    if changes.network_mode and changes.network_mode != network["networkMode"]:
        if changes.network_mode == "VPC":
            raise DeployError(
                "VPC mode needs subnets and security groups, which deploy.py does not set: use PUBLIC"
            )
        out["networkConfiguration"] = {"networkMode": changes.network_mode}

    mount = _set_session_storage(out, changes.mount_path)

    env = dict(out.get("environmentVariables") or {})
    env.update(changes.env)
    for key in changes.unset_env:
        env.pop(key, None)
    # The agent writes where WORKSPACE_DIR points (the image sets DEFAULT_MOUNT_PATH): keep them together.
    if "WORKSPACE_DIR" not in changes.env and (mount != DEFAULT_MOUNT_PATH or "WORKSPACE_DIR" in env):
        env["WORKSPACE_DIR"] = mount
    if env or "environmentVariables" in out:
        out["environmentVariables"] = env

    lifecycle = dict(out.get("lifecycleConfiguration") or {})
    if changes.idle_timeout is not None:
        lifecycle["idleRuntimeSessionTimeout"] = changes.idle_timeout
    if changes.max_lifetime is not None:
        lifecycle["maxLifetime"] = changes.max_lifetime
    _check_lifecycle(lifecycle)
    if lifecycle:
        out["lifecycleConfiguration"] = lifecycle
    return out


def _set_session_storage(config: Runtime, mount_path: str | None) -> str:
    """Put session storage at mount_path (or keep the runtime's, or the default); keep other file systems."""
    filesystems = list(config.get("filesystemConfigurations") or [])
    existing = [fs for fs in filesystems if "sessionStorage" in fs]
    mount = mount_path or (existing[0]["sessionStorage"]["mountPath"] if existing else DEFAULT_MOUNT_PATH)
    if not MOUNT_PATTERN.fullmatch(mount):
        raise DeployError(
            f"invalid mount path {mount!r}: it must be one level under /mnt, like {DEFAULT_MOUNT_PATH}"
        )
    others = [fs for fs in filesystems if "sessionStorage" not in fs]
    config["filesystemConfigurations"] = [{"sessionStorage": {"mountPath": mount}}, *others]
    return mount


def _check_lifecycle(lifecycle: dict[str, int]) -> None:
    low, high = LIFECYCLE_RANGE
    for key, value in lifecycle.items():
        if not low <= value <= high:
            raise DeployError(f"{key} must be between {low} and {high} seconds, not {value}")
    idle, most = lifecycle.get("idleRuntimeSessionTimeout"), lifecycle.get("maxLifetime", high)
    if idle is not None and idle > most:
        raise DeployError(f"the idle timeout ({idle} s) cannot exceed the max lifetime ({most} s)")


def changed_fields(before: Runtime, after: Runtime) -> list[str]:
    """The top-level fields whose value differs: what an update would change."""
    return sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))


def summary(r: Runtime) -> dict[str, str]:
    """What `deploy.py status` shows, one row per setting (environment names only: values may be secret)."""
    storage = [
        fs["sessionStorage"]["mountPath"]
        for fs in r.get("filesystemConfigurations", [])
        if "sessionStorage" in fs
    ]
    rows = {
        "name": r["agentRuntimeName"],
        "id": r["agentRuntimeId"],
        "arn": r["agentRuntimeArn"],
        "version": r["agentRuntimeVersion"],
        "status": r["status"],
        "image": r.get("agentRuntimeArtifact", {}).get("containerConfiguration", {}).get("containerUri", "-"),
        "role": r["roleArn"],
        "network": r.get("networkConfiguration", {}).get("networkMode", "-"),
        "session storage": ", ".join(storage) or "none (files do not survive a stop)",
        "lifecycle": ", ".join(f"{k}={v}" for k, v in r.get("lifecycleConfiguration", {}).items()) or "-",
        "environment": ", ".join(sorted(r.get("environmentVariables", {}))) or "-",
    }
    if r.get("failureReason"):
        rows["failure"] = " ".join(r["failureReason"].split())
    return rows


def find_by_name(client, name: str) -> Runtime | None:
    """The runtime summary whose name is exactly `name`, following nextToken through every page.

    AWS appends a random suffix to the name to make the id and ARN, so the ARN cannot be guessed.
    """
    matches = [
        summary
        for page in client.get_paginator("list_agent_runtimes").paginate()
        for summary in page["agentRuntimes"]
        if summary["agentRuntimeName"] == name
    ]
    if len(matches) > 1:
        ids = ", ".join(m["agentRuntimeId"] for m in matches)
        raise DeployError(f"several runtimes are named {name}: {ids}; pass the RUNTIME_ID to use")
    return matches[0] if matches else None


# What each wait ends on, and the statuses that end it in failure. DELETED: GetAgentRuntime says
# ResourceNotFoundException.
WAIT_FAILS = {"READY": FAILED, "DELETED": {"DELETE_FAILED"}}


def wait_for(
    client,
    runtime_id: str,
    wanted: str,
    *,
    timeout: float,
    report: Callable[[str, float], None],
    interval: float = 5.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Runtime:
    """Poll GetAgentRuntime, reporting each status, until `wanted`: READY (the runtime) or DELETED ({}).

    Raises DeployError with the runtime's failureReason when it fails, or when `timeout` passes.
    """
    start = clock()
    while True:
        try:
            runtime: Runtime | None = client.get_agent_runtime(agentRuntimeId=runtime_id)
        except ClientError as e:
            if wanted != "DELETED" or error_code(e) != "ResourceNotFoundException":
                raise
            runtime = None
        status = runtime["status"] if runtime else "DELETED"
        report(status, clock() - start)
        if status == wanted:
            return runtime or {}
        if status in WAIT_FAILS[wanted]:
            reason = " ".join(str((runtime or {}).get("failureReason") or "no reason given").split())
            raise DeployError(f"runtime {runtime_id} is {status}: {reason}")
        if clock() - start >= timeout:
            raise DeployError(
                f"runtime {runtime_id} is still {status} after {timeout:.0f} s; "
                "check it later with: python deploy.py status"
            )
        sleep(interval)
