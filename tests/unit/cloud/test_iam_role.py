"""`deploy.py role` against moto's IAM and STS, and the policies in iam/ read as documents."""

from __future__ import annotations

import json
import string
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from moto import mock_aws

import deploy
from agent.service.settings import DEFAULT_MODEL_ID
from cloud.errors import explain
from cloud.execution_role import IAM_DIR, POLICY_NAME, ensure_role

MOTO_ACCOUNT = "123456789012"
ROLE_NAME = "AgentCoreRuntime-coding_agent"
# Actions that have no resource type in IAM, so "*" is the only resource they accept.
NO_RESOURCE_TYPE = {
    "ecr:GetAuthorizationToken",
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "xray:GetSamplingRules",
    "xray:GetSamplingTargets",
    "cloudwatch:PutMetricData",
}


@pytest.fixture
def iam() -> Iterator[Any]:
    with mock_aws():
        yield boto3.client("iam", region_name="us-east-1")


def role_policies(iam: Any) -> tuple[dict, dict]:
    trust = iam.get_role(RoleName=ROLE_NAME)["Role"]["AssumeRolePolicyDocument"]
    permissions = iam.get_role_policy(RoleName=ROLE_NAME, PolicyName=POLICY_NAME)["PolicyDocument"]
    return trust, permissions


def statements(document: dict) -> list[dict]:
    return document["Statement"]


def as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else value


def test_role_creates_the_execution_role_with_account_and_region_filled_in(
    iam: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    assert deploy.main(["role", "--region", "eu-central-1", "--repository", "my-agents"]) == 0

    trust, permissions = role_policies(iam)
    (assume,) = statements(trust)
    assert assume["Principal"] == {"Service": "bedrock-agentcore.amazonaws.com"}
    assert assume["Condition"]["StringEquals"] == {"aws:SourceAccount": MOTO_ACCOUNT}
    assert assume["Condition"]["ArnLike"] == {
        "aws:SourceArn": f"arn:aws:bedrock-agentcore:eu-central-1:{MOTO_ACCOUNT}:*"
    }
    pull = next(s for s in statements(permissions) if "ecr:BatchGetImage" in as_list(s["Action"]))
    assert pull["Resource"] == f"arn:aws:ecr:eu-central-1:{MOTO_ACCOUNT}:repository/my-agents"
    out = capsys.readouterr().out.splitlines()
    assert out == [
        f"role {ROLE_NAME}: created role, added permissions policy {POLICY_NAME}",
        f"arn:aws:iam::{MOTO_ACCOUNT}:role/{ROLE_NAME}",
    ]


def test_role_twice_changes_nothing_the_second_time(iam: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert deploy.main(["role"]) == 0
    capsys.readouterr()
    assert deploy.main(["role"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == f"role {ROLE_NAME}: up to date"


def test_role_in_another_region_updates_trust_and_permissions_in_place(
    iam: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    assert deploy.main(["role", "--region", "us-west-2"]) == 0
    capsys.readouterr()
    assert deploy.main(["role", "--region", "us-east-1"]) == 0

    assert capsys.readouterr().out.splitlines()[0] == (
        f"role {ROLE_NAME}: updated trust policy, updated permissions policy {POLICY_NAME}"
    )
    trust, permissions = role_policies(iam)
    for document in (trust, permissions):
        assert "us-east-1:" in json.dumps(document)
    assert "us-west-2" not in json.dumps(trust)
    assert len(iam.list_roles()["Roles"]) == 1


# --- the templates themselves -------------------------------------------------------------------------


def rendered(name: str) -> dict:
    text = (IAM_DIR / name).read_text()
    return json.loads(
        string.Template(text).substitute(ACCOUNT_ID="111122223333", REGION="us-west-2", ECR_REPOSITORY="r")
    )


@pytest.mark.parametrize("name", ["trust-policy.json", "permissions-policy.json"])
def test_policies_are_valid_json_with_only_the_documented_placeholders(name: str) -> None:
    raw = json.loads((IAM_DIR / name).read_text())
    assert raw["Version"] == "2012-10-17"
    assert "${" not in json.dumps(rendered(name))


def test_no_wildcard_resource_except_for_actions_that_have_no_resource_type() -> None:
    for statement in statements(rendered("permissions-policy.json")):
        actions = as_list(statement["Action"])
        assert all(not a.endswith("*") for a in actions), statement
        if "*" in as_list(statement["Resource"]):
            assert set(actions) <= NO_RESOURCE_TYPE, statement
        if "cloudwatch:PutMetricData" in actions:
            assert statement["Condition"] == {"StringEquals": {"cloudwatch:namespace": "bedrock-agentcore"}}


def test_bedrock_permissions_cover_the_agents_default_model_and_its_inference_profile() -> None:
    (invoke,) = [
        s for s in statements(rendered("permissions-policy.json")) if "bedrock:InvokeModel" in s["Action"]
    ]
    assert set(invoke["Action"]) == {"bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream"}
    profile_prefix, _, model = DEFAULT_MODEL_ID.partition(".")  # us.anthropic... routes to three US regions
    assert profile_prefix == "us"
    assert set(invoke["Resource"]) == {
        f"arn:aws:bedrock:us-west-2:111122223333:inference-profile/{DEFAULT_MODEL_ID}",
        *(f"arn:aws:bedrock:{r}::foundation-model/{model}" for r in ("us-east-1", "us-east-2", "us-west-2")),
    }


# --- errors IAM answers -------------------------------------------------------------------------------


def test_an_iam_error_other_than_no_such_entity_is_not_taken_for_a_missing_role() -> None:
    client = boto3.client("iam", region_name="us-east-1")
    with Stubber(client) as stub:
        stub.add_client_error("get_role", "AccessDenied", "not authorized to iam:GetRole", 403)
        with pytest.raises(ClientError) as raised:
            ensure_role(client, ROLE_NAME, {}, {})
        stub.assert_no_pending_responses()  # and no CreateRole was sent
    assert "not authorized to iam:GetRole (your AWS identity lacks this permission)" in explain(raised.value)
