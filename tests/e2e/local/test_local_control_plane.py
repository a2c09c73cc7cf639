"""agentcore_local's control plane through real boto3: CreateAgentRuntime and friends, AWS's rules."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.support.local_runtime import IMAGE, ROLE, LocalRuntime, local_runtime

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


# --- issue 10's findings: each test failed on the emulator before the fix ----------------------


def created(control, name: str, **extra) -> str:
    return control.create_agent_runtime(
        agentRuntimeName=name, agentRuntimeArtifact=ARTIFACT, roleArn=ROLE, **extra
    )["agentRuntimeId"]


def test_delete_with_a_version_deletes_only_that_version(control, runtime) -> None:
    runtime_id = created(control, "three_versions")
    for _ in range(2):
        runtime.clock.advance(31)
        control.update_agent_runtime(agentRuntimeId=runtime_id, agentRuntimeArtifact=ARTIFACT, roleArn=ROLE)
    runtime.clock.advance(31)
    answer = control.delete_agent_runtime(agentRuntimeId=runtime_id, agentRuntimeVersion="2")
    assert (answer["status"], answer["agentRuntimeVersion"]) == ("DELETING", "2")
    versions = control.list_agent_runtime_versions(agentRuntimeId=runtime_id)["agentRuntimes"]
    assert [v["agentRuntimeVersion"] for v in versions] == ["3", "1"]
    assert control.get_agent_runtime(agentRuntimeId=runtime_id)["agentRuntimeVersion"] == "3"
    code, _ = error_of(lambda: control.get_agent_runtime(agentRuntimeId=runtime_id, agentRuntimeVersion="2"))
    assert code == "ResourceNotFoundException"
    # The latest version is DEFAULT's: deleting it would leave the endpoint nothing to serve.
    code, message = error_of(
        lambda: control.delete_agent_runtime(agentRuntimeId=runtime_id, agentRuntimeVersion="3")
    )
    assert code == "ConflictException" and "DEFAULT" in message


def test_every_answer_carries_a_request_id_errors_included(control, runtime) -> None:
    listed = control.list_agent_runtimes()
    assert re.fullmatch(r"[0-9a-f-]{36}", listed["ResponseMetadata"]["RequestId"])
    with pytest.raises(ClientError) as caught:
        control.get_agent_runtime(agentRuntimeId="ghost-AAAAAAAAAA")
    assert re.fullmatch(r"[0-9a-f-]{36}", caught.value.response["ResponseMetadata"]["RequestId"])
    assert listed["ResponseMetadata"]["RequestId"] != caught.value.response["ResponseMetadata"]["RequestId"]
    unknown = httpx.get(f"{runtime.url}/no/such/operation")
    assert unknown.headers["x-amzn-RequestId"]


def test_default_follows_the_latest_version_and_a_named_endpoint_pins_one(control, runtime) -> None:
    runtime_id = created(control, "with_endpoints")
    runtime.clock.advance(31)
    default = control.get_agent_runtime_endpoint(agentRuntimeId=runtime_id, endpointName="DEFAULT")
    assert (default["liveVersion"], default["status"]) == ("1", "READY")
    made = control.create_agent_runtime_endpoint(
        agentRuntimeId=runtime_id, name="prod", agentRuntimeVersion="1"
    )
    assert made["status"] == "CREATING" and made["agentRuntimeEndpointArn"].endswith(
        ":runtime/" + runtime_id + "/runtime-endpoint/prod"
    )
    runtime.clock.advance(31)
    control.update_agent_runtime(agentRuntimeId=runtime_id, agentRuntimeArtifact=ARTIFACT, roleArn=ROLE)
    runtime.clock.advance(31)
    endpoints = control.list_agent_runtime_endpoints(agentRuntimeId=runtime_id)["runtimeEndpoints"]
    assert {e["name"]: e["liveVersion"] for e in endpoints} == {"DEFAULT": "2", "prod": "1"}
    registry = runtime.app.state.registry
    arn = registry.get(runtime_id).arn
    assert registry.resolve_endpoint(arn, None)[1] == 2
    assert registry.resolve_endpoint(arn, "prod")[1] == 1
    assert registry.resolve(arn, "prod").version == 1  # what sessions see through the endpoint
    # Moving the endpoint: UPDATING until provisioned, still serving the old version meanwhile.
    moved = control.update_agent_runtime_endpoint(
        agentRuntimeId=runtime_id, endpointName="prod", agentRuntimeVersion="2"
    )
    assert (moved["status"], moved["liveVersion"], moved["targetVersion"]) == ("UPDATING", "1", "2")
    runtime.clock.advance(31)
    got = control.get_agent_runtime_endpoint(agentRuntimeId=runtime_id, endpointName="prod")
    assert (got["status"], got["liveVersion"]) == ("READY", "2")
    assert (
        control.delete_agent_runtime_endpoint(agentRuntimeId=runtime_id, endpointName="prod")["status"]
        == "DELETING"
    )
    code, _ = error_of(
        lambda: control.get_agent_runtime_endpoint(agentRuntimeId=runtime_id, endpointName="prod")
    )
    assert code == "ResourceNotFoundException"
    code, _ = error_of(
        lambda: control.delete_agent_runtime_endpoint(agentRuntimeId=runtime_id, endpointName="DEFAULT")
    )
    assert code == "ValidationException"


def test_a_version_a_named_endpoint_serves_cannot_be_deleted(control, runtime) -> None:
    runtime_id = created(control, "pinned_version")
    runtime.clock.advance(31)
    control.create_agent_runtime_endpoint(agentRuntimeId=runtime_id, name="stable")
    control.update_agent_runtime(agentRuntimeId=runtime_id, agentRuntimeArtifact=ARTIFACT, roleArn=ROLE)
    code, message = error_of(
        lambda: control.delete_agent_runtime(agentRuntimeId=runtime_id, agentRuntimeVersion="1")
    )
    assert code == "ConflictException" and "stable" in message


def test_an_unknown_qualifier_is_not_found(runtime) -> None:
    code, message = error_of(
        lambda: runtime.data().invoke_agent_runtime(
            agentRuntimeArn=runtime.default_arn, runtimeSessionId="q" * 40, payload=b"{}", qualifier="nope"
        )
    )
    assert code == "ResourceNotFoundException" and "nope" in message


def test_tags_are_kept_added_and_removed(control) -> None:
    runtime_id = created(control, "tagged", tags={"team": "agents"})
    arn = control.get_agent_runtime(agentRuntimeId=runtime_id)["agentRuntimeArn"]
    assert control.list_tags_for_resource(resourceArn=arn)["tags"] == {"team": "agents"}
    control.tag_resource(resourceArn=arn, tags={"stage": "dev", "team": "platform"})
    assert control.list_tags_for_resource(resourceArn=arn)["tags"] == {"team": "platform", "stage": "dev"}
    control.untag_resource(resourceArn=arn, tagKeys=["team"])
    assert control.list_tags_for_resource(resourceArn=arn)["tags"] == {"stage": "dev"}
    endpoint = control.create_agent_runtime_endpoint(
        agentRuntimeId=runtime_id, name="tagged_ep", tags={"a": "b"}
    )
    assert control.list_tags_for_resource(resourceArn=endpoint["agentRuntimeEndpointArn"])["tags"] == {
        "a": "b"
    }
    ghost = arn.replace(runtime_id, "ghost-AAAAAAAAAA")
    assert (
        error_of(lambda: control.list_tags_for_resource(resourceArn=ghost))[0] == "ResourceNotFoundException"
    )


def test_a_retry_with_the_same_client_token_gets_the_first_answer(control, runtime) -> None:
    token = "t" * 40
    request = {"agentRuntimeName": "idempotent", "agentRuntimeArtifact": ARTIFACT, "roleArn": ROLE}
    first = control.create_agent_runtime(clientToken=token, **request)
    again = control.create_agent_runtime(clientToken=token, **request)
    assert again["agentRuntimeId"] == first["agentRuntimeId"]  # not ConflictException
    code, _ = error_of(
        lambda: control.create_agent_runtime(clientToken=token, **{**request, "description": "x"})
    )
    assert code == "ValidationException"
    runtime.clock.advance(31)
    update = {"agentRuntimeId": first["agentRuntimeId"], "agentRuntimeArtifact": ARTIFACT, "roleArn": ROLE}
    v2 = control.update_agent_runtime(clientToken=token, **update)
    assert (
        control.update_agent_runtime(clientToken=token, **update)["agentRuntimeVersion"]
        == v2["agentRuntimeVersion"]
        == "2"
    )
    endpoint = {"agentRuntimeId": first["agentRuntimeId"], "name": "once"}
    made = control.create_agent_runtime_endpoint(clientToken=token, **endpoint)
    assert (
        control.create_agent_runtime_endpoint(clientToken=token, **endpoint)["createdAt"] == made["createdAt"]
    )


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({"maxLifetime": 600}, {"idleRuntimeSessionTimeout": 600, "maxLifetime": 600}),
        ({"maxLifetime": 900}, {"idleRuntimeSessionTimeout": 900, "maxLifetime": 900}),
        ({"maxLifetime": 3600}, {"idleRuntimeSessionTimeout": 900, "maxLifetime": 3600}),
        ({"idleRuntimeSessionTimeout": 120}, {"idleRuntimeSessionTimeout": 120, "maxLifetime": 28800}),
    ],
)
def test_lifecycle_defaults_are_awss(control, given, expected) -> None:
    name = "life_" + "_".join(f"{k[:4]}{v}" for k, v in given.items())
    runtime_id = created(control, name, lifecycleConfiguration=given)
    assert control.get_agent_runtime(agentRuntimeId=runtime_id)["lifecycleConfiguration"] == expected


EFS = {
    "accessPointArn": "arn:aws:elasticfilesystem:us-west-2:123456789012:access-point/fsap-0123456789abcdef0"
}
VPC = {
    "networkMode": "VPC",
    "networkModeConfig": {"securityGroups": ["sg-01234567"], "subnets": ["subnet-01234567"]},
}


@pytest.mark.parametrize(
    ("filesystems", "network", "ok"),
    [
        (
            [{"sessionStorage": {"mountPath": "/mnt/a"}}, {"sessionStorage": {"mountPath": "/mnt/b"}}],
            None,
            False,
        ),
        ([{"efsAccessPoint": {**EFS, "mountPath": "/mnt/efs"}}], {"networkMode": "PUBLIC"}, False),
        ([{"efsAccessPoint": {**EFS, "mountPath": "/mnt/efs"}}], VPC, True),
        ([{"efsAccessPoint": {**EFS, "mountPath": f"/mnt/efs{i}"}} for i in range(3)], VPC, False),
        (
            [{"sessionStorage": {"mountPath": "/mnt/w"}}]
            + [{"efsAccessPoint": {**EFS, "mountPath": f"/mnt/efs{i}"}} for i in range(2)],
            VPC,
            True,
        ),
    ],
)
def test_filesystem_configurations_follow_awss_rules(control, filesystems, network, ok) -> None:
    extra = {"networkConfiguration": network} if network else {}

    def call():
        return created(
            control,
            f"fs_{uuid.uuid4().hex[:12]}",
            filesystemConfigurations=filesystems,
            **extra,
        )

    if ok:
        assert call()
    else:
        assert error_of(call)[0] == "ValidationException"


JWT = "https://issuer.example.com/.well-known/openid-configuration"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"roleArn": "arn:aws:iam::123456789012:role/" + "r" * 2048}, "roleArn"),
        ({"requestHeaderConfiguration": {"requestHeaderAllowlist": []}}, "requestHeaderAllowlist"),
        (
            {"requestHeaderConfiguration": {"requestHeaderAllowlist": [f"X-H{i}" for i in range(21)]}},
            "requestHeaderAllowlist",
        ),
        (
            {"requestHeaderConfiguration": {"requestHeaderAllowlist": ["1bad name"]}},
            "requestHeaderAllowlist[0]",
        ),
        ({"authorizerConfiguration": {"customJWTAuthorizer": {"allowedClients": ["c"]}}}, "discoveryUrl"),
        (
            {"authorizerConfiguration": {"customJWTAuthorizer": {"discoveryUrl": "https://x/y"}}},
            "discoveryUrl",
        ),
        (
            {"authorizerConfiguration": {"customJWTAuthorizer": {"discoveryUrl": JWT, "allowedClients": []}}},
            "allowedClients",
        ),
        ({"protocolConfiguration": {"serverProtocol": "HTTP", "port": 80}}, "port"),
        ({"protocolConfiguration": {"serverProtocol": "HTTP", "path": "no-slash"}}, "path"),
        ({"description": ""}, "description"),
        ({"tags": {"bad#key": "v"}}, "tags"),
    ],
)
def test_the_model_refuses_what_aws_refuses(unchecked, change, field) -> None:
    request = {
        "agentRuntimeName": "model_checked",
        "agentRuntimeArtifact": ARTIFACT,
        "roleArn": ROLE,
        **change,
    }
    with pytest.raises(ClientError) as caught:
        unchecked.create_agent_runtime(**request)
    error = caught.value.response
    assert error["Error"]["Code"] == "ValidationException"
    assert error["reason"] == "FieldValidationFailed"
    assert any(field in f["name"] for f in error["fieldList"]), error["fieldList"]


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.get_agent_runtime(agentRuntimeId="no-pattern"),
        lambda c: c.delete_agent_runtime(agentRuntimeId="bad id AAAAAAAAAA"),
        lambda c: c.get_agent_runtime_endpoint(agentRuntimeId="ghost-AAAAAAAAAA", endpointName="has-hyphen"),
        lambda c: c.get_agent_runtime(agentRuntimeId="ghost-AAAAAAAAAA", agentRuntimeVersion="0"),
    ],
)
def test_ids_off_the_models_patterns_are_validation_errors_not_404(unchecked, call) -> None:
    assert error_of(lambda: call(unchecked))[0] == "ValidationException"


def test_a_summary_never_carries_an_empty_description(control) -> None:
    created(control, "no_description")
    created(control, "described", description="a runtime")
    listed = {r["agentRuntimeName"]: r for r in control.list_agent_runtimes()["agentRuntimes"]}
    assert "description" not in listed["no_description"]
    assert listed["described"]["description"] == "a runtime"


def test_sessions_run_the_version_their_endpoint_serves_and_a_stop_retry_gets_the_first_answer(
    control, runtime
) -> None:
    made = runtime.create_runtime("endpoint_sessions")
    runtime.clock.advance(31)
    runtime_id, arn = made["agentRuntimeId"], made["agentRuntimeArn"]
    control.create_agent_runtime_endpoint(agentRuntimeId=runtime_id, name="v1", agentRuntimeVersion="1")
    control.update_agent_runtime(
        agentRuntimeId=runtime_id,
        **{k: made["request"][k] for k in made["request"] if k != "agentRuntimeName"},
    )
    runtime.clock.advance(31)
    data = runtime.data()
    pinned, latest = "p" * 40, "l" * 40
    for session, qualifier in ((pinned, "v1"), (latest, "DEFAULT")):
        data.invoke_agent_runtime(
            agentRuntimeArn=arn, runtimeSessionId=session, qualifier=qualifier, payload=b'{"prompt": "hi"}'
        )["response"].read()
    versions = {s["runtimeSessionId"]: s["storageVersion"] for s in runtime.sessions()}
    assert (versions[pinned], versions[latest]) == (1, 2)
    token = "s" * 40
    first = data.stop_runtime_session(agentRuntimeArn=arn, runtimeSessionId=latest, clientToken=token)
    again = data.stop_runtime_session(agentRuntimeArn=arn, runtimeSessionId=latest, clientToken=token)
    assert first["runtimeSessionId"] == again["runtimeSessionId"] == latest  # not ResourceNotFoundException
    code, _ = error_of(lambda: data.stop_runtime_session(agentRuntimeArn=arn, runtimeSessionId=latest))
    assert code == "ResourceNotFoundException"  # a new token is a new request
    data.stop_runtime_session(agentRuntimeArn=arn, runtimeSessionId=pinned, qualifier="v1")


def test_env_prints_the_starter_toolkits_endpoint_variables_too() -> None:
    from agentcore_local.__main__ import env_lines

    lines = env_lines("http://127.0.0.1:9999", None, "us-west-2")
    for name in (
        "AWS_ENDPOINT_URL_BEDROCK_AGENTCORE",
        "AWS_ENDPOINT_URL_BEDROCK_AGENTCORE_CONTROL",
        "BEDROCK_AGENTCORE_DP_ENDPOINT",
        "BEDROCK_AGENTCORE_CP_ENDPOINT",
    ):
        assert f"export {name}=http://127.0.0.1:9999" in lines
