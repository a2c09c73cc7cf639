"""agentcore_local's control plane through real boto3: CreateAgentRuntime and friends, AWS's rules."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from local_runtime import IMAGE, ROLE, LocalRuntime, local_runtime

ARTIFACT = {"containerConfiguration": {"containerUri": IMAGE}}


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRuntime]:
    with local_runtime(tmp_path_factory.mktemp("control"), provision_seconds=30.0) as local:
        yield local


@pytest.fixture
def control(runtime: LocalRuntime, _isolated_aws: None):
    return runtime.control()


@pytest.fixture
def unchecked(runtime: LocalRuntime, _isolated_aws: None):
    """A client that skips botocore's own checks, so every rule below is the server's."""
    config = Config(parameter_validation=False, retries={"total_max_attempts": 1})
    return boto3.client(
        "bedrock-agentcore-control", endpoint_url=runtime.url, region_name="us-west-2", config=config
    )


def error_of(call) -> tuple[str, str]:
    with pytest.raises(ClientError) as caught:
        call()
    return caught.value.response["Error"]["Code"], caught.value.response["Error"]["Message"]


def test_create_returns_a_suffixed_id_and_arn_and_is_creating_until_provisioned(control, runtime) -> None:
    created = control.create_agent_runtime(
        agentRuntimeName="fresh_agent",
        agentRuntimeArtifact=ARTIFACT,
        roleArn=ROLE,
        filesystemConfigurations=[{"sessionStorage": {"mountPath": "/mnt/data"}}],
        lifecycleConfiguration={"idleRuntimeSessionTimeout": 120, "maxLifetime": 3600},
    )
    assert re.fullmatch(r"fresh_agent-[A-Za-z0-9]{10}", created["agentRuntimeId"])
    assert created["agentRuntimeArn"] == (
        f"arn:aws:bedrock-agentcore:us-west-2:123456789012:runtime/{created['agentRuntimeId']}"
    )
    assert (created["status"], created["agentRuntimeVersion"]) == ("CREATING", "1")
    assert control.get_agent_runtime(agentRuntimeId=created["agentRuntimeId"])["status"] == "CREATING"
    runtime.clock.advance(31)
    got = control.get_agent_runtime(agentRuntimeId=created["agentRuntimeId"])
    assert got["status"] == "READY"
    assert got["filesystemConfigurations"] == [{"sessionStorage": {"mountPath": "/mnt/data"}}]
    assert got["lifecycleConfiguration"] == {"idleRuntimeSessionTimeout": 120, "maxLifetime": 3600}


def test_every_update_adds_a_version_and_replaces_the_configuration(control, runtime) -> None:
    created = control.create_agent_runtime(
        agentRuntimeName="versioned",
        agentRuntimeArtifact=ARTIFACT,
        roleArn=ROLE,
        environmentVariables={"A": "1"},
        filesystemConfigurations=[{"sessionStorage": {"mountPath": "/mnt/workspace"}}],
    )
    runtime_id = created["agentRuntimeId"]
    runtime.clock.advance(31)
    updated = control.update_agent_runtime(
        agentRuntimeId=runtime_id, agentRuntimeArtifact=ARTIFACT, roleArn=ROLE
    )
    assert (updated["agentRuntimeVersion"], updated["status"]) == ("2", "UPDATING")
    assert updated["agentRuntimeArn"] == created["agentRuntimeArn"]  # the ARN is stable across versions
    runtime.clock.advance(31)
    got = control.get_agent_runtime(agentRuntimeId=runtime_id)
    assert (got["agentRuntimeVersion"], got["status"]) == ("2", "READY")
    assert "environmentVariables" not in got and "filesystemConfigurations" not in got  # PUT: omitted = reset
    assert control.get_agent_runtime(agentRuntimeId=runtime_id, agentRuntimeVersion="1")[
        "environmentVariables"
    ] == {"A": "1"}
    versions = control.list_agent_runtime_versions(agentRuntimeId=runtime_id)["agentRuntimes"]
    assert [v["agentRuntimeVersion"] for v in versions] == ["2", "1"]


def test_update_while_updating_is_a_conflict(control, runtime) -> None:
    runtime_id = control.create_agent_runtime(
        agentRuntimeName="busy", agentRuntimeArtifact=ARTIFACT, roleArn=ROLE
    )["agentRuntimeId"]
    code, _ = error_of(
        lambda: control.update_agent_runtime(
            agentRuntimeId=runtime_id, agentRuntimeArtifact=ARTIFACT, roleArn=ROLE
        )
    )
    assert code == "ConflictException"


def test_list_paginates_with_max_results_and_next_token(control) -> None:
    for index in range(3):
        control.create_agent_runtime(
            agentRuntimeName=f"paged_{index}", agentRuntimeArtifact=ARTIFACT, roleArn=ROLE
        )
    names, token, pages = [], None, 0
    while True:
        page = control.list_agent_runtimes(maxResults=2, **({"nextToken": token} if token else {}))
        names += [r["agentRuntimeName"] for r in page["agentRuntimes"]]
        pages += 1
        token = page.get("nextToken")
        if not token:
            break
    assert {"coding_agent", "paged_0", "paged_1", "paged_2"} <= set(names)
    assert pages == (len(names) + 1) // 2
    paginated = control.get_paginator("list_agent_runtimes").paginate(PaginationConfig={"PageSize": 1})
    assert [r["agentRuntimeName"] for p in paginated for r in p["agentRuntimes"]] == names


def test_delete_removes_the_runtime(control) -> None:
    runtime_id = control.create_agent_runtime(
        agentRuntimeName="doomed", agentRuntimeArtifact=ARTIFACT, roleArn=ROLE
    )["agentRuntimeId"]
    assert control.delete_agent_runtime(agentRuntimeId=runtime_id)["status"] == "DELETING"
    assert (
        error_of(lambda: control.get_agent_runtime(agentRuntimeId=runtime_id))[0]
        == "ResourceNotFoundException"
    )
    assert (
        error_of(lambda: control.delete_agent_runtime(agentRuntimeId=runtime_id))[0]
        == "ResourceNotFoundException"
    )


def test_duplicate_names_are_a_conflict(control) -> None:
    control.create_agent_runtime(agentRuntimeName="twin", agentRuntimeArtifact=ARTIFACT, roleArn=ROLE)
    code, message = error_of(
        lambda: control.create_agent_runtime(
            agentRuntimeName="twin", agentRuntimeArtifact=ARTIFACT, roleArn=ROLE
        )
    )
    assert code == "ConflictException" and "twin" in message


@pytest.mark.parametrize(
    "change,field",
    [
        ({"agentRuntimeName": "coding-agent"}, "agentRuntimeName"),  # hyphens are not allowed
        ({"agentRuntimeName": "9lives"}, "agentRuntimeName"),
        ({"agentRuntimeName": "x" * 49}, "agentRuntimeName"),
        ({"roleArn": "not-a-role"}, "roleArn"),
        (
            {"agentRuntimeArtifact": {"containerConfiguration": {"containerUri": "nginx:latest"}}},
            "containerUri",
        ),
        ({"filesystemConfigurations": [{"sessionStorage": {"mountPath": "/opt/workspace"}}]}, "mountPath"),
        ({"filesystemConfigurations": [{"sessionStorage": {"mountPath": "/mnt/a/b"}}]}, "mountPath"),
        ({"lifecycleConfiguration": {"idleRuntimeSessionTimeout": 30}}, "idleRuntimeSessionTimeout"),
        ({"lifecycleConfiguration": {"idleRuntimeSessionTimeout": 900, "maxLifetime": 600}}, "maxLifetime"),
        ({"networkConfiguration": {"networkMode": "BOGUS"}}, "networkMode"),
    ],
)
def test_create_rejects_what_aws_rejects_with_a_validation_exception(unchecked, change, field) -> None:
    request = {"agentRuntimeName": "valid_name", "agentRuntimeArtifact": ARTIFACT, "roleArn": ROLE, **change}
    code, message = error_of(lambda: unchecked.create_agent_runtime(**request))
    assert code == "ValidationException"
    assert field in message


def test_required_members_are_checked_by_the_server_too(unchecked) -> None:
    code, message = error_of(
        lambda: unchecked.create_agent_runtime(agentRuntimeName="no_role", agentRuntimeArtifact=ARTIFACT)
    )
    assert code == "ValidationException" and "roleArn" in message
    code, message = error_of(
        lambda: unchecked.create_agent_runtime(
            agentRuntimeName="two_kinds",
            roleArn=ROLE,
            agentRuntimeArtifact={**ARTIFACT, "codeConfiguration": {}},
        )
    )
    assert code == "ValidationException" and "exactly one" in message


def test_unknown_runtime_ids_are_not_found(control) -> None:
    assert (
        error_of(lambda: control.get_agent_runtime(agentRuntimeId="ghost-AAAAAAAAAA"))[0]
        == "ResourceNotFoundException"
    )


def test_runtimes_survive_a_restart_of_the_server(tmp_path: Path) -> None:
    with local_runtime(tmp_path) as first:
        runtime_id = first.create_runtime("durable")["agentRuntimeId"]
        default_arn = first.default_arn
    with local_runtime(tmp_path) as second:
        assert second.default_arn == default_arn
        assert second.control().get_agent_runtime(agentRuntimeId=runtime_id)["agentRuntimeName"] == "durable"
