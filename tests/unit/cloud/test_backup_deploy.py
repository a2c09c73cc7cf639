"""`deploy.py --backup-bucket`: S3 calls checked by botocore Stubber, the role's policy by moto's IAM."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from moto import mock_aws
from moto.core.authorization import enable_iam_authentication

import deploy
from agent.backup import s3 as backup
from cloud import backup_bucket, clients
from cloud.execution_role import POLICY_NAME
from tests.unit.cloud.test_deploy import ARN, IMAGE, NAME, NOW, REGION, ROLE, RUNTIME_ID, SCOPE, SCOPED, TOKEN
from tests.unit.cloud.test_deploy import runtime as deployed

BUCKET = "my-agent-backups"
B = {"Bucket": BUCKET}
BLOCKED = backup_bucket.PUBLIC_ACCESS_BLOCK
SSE_S3 = {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]}
UPDATED = {
    "agentRuntimeArn": ARN,
    "agentRuntimeId": RUNTIME_ID,
    "agentRuntimeVersion": "2",
    "createdAt": NOW,
    "lastUpdatedAt": NOW,
    "status": "UPDATING",
}
TLS_POLICY = {"Version": "2012-10-17", "Statement": [backup_bucket.tls_statement(BUCKET)]}


def runtime(version: str = "1", env: dict | None = None) -> dict[str, Any]:
    """test_deploy's GetAgentRuntime answer, with environment variables when given."""
    return deployed(version=version, environmentVariables={**SCOPED, **(env or {})})


def error(code: str, status: int) -> dict[str, Any]:
    return {"service_error_code": code, "http_status_code": status}


class Harness:
    def __init__(self, tmp_path: Path) -> None:
        control_client, s3_client = clients.control_plane(REGION), clients.aws("s3", REGION)
        self.control, self.s3 = Stubber(control_client), Stubber(s3_client)
        self.out = io.StringIO()
        self.ctx = deploy.Context(
            region=REGION,
            control=control_client,
            client=lambda service, region: {"s3": s3_client}[service],
            out=self.out,
            confirm=lambda question: True,
            sleep=lambda seconds: None,
            clock=lambda: 0.0,
            record_path=tmp_path / "runtime.json",
            new_token=lambda: TOKEN,
            new_scope=lambda: SCOPE,
        )

    def run(self, *argv: str) -> int:
        return deploy.main(list(argv), self.ctx)

    def new_bucket(self) -> None:
        """What a bucket that did not exist needs: each S3 request exactly as botocore would send it."""
        self.s3.add_client_error("head_bucket", "404", http_status_code=404, expected_params=B)
        self.s3.add_response(
            "create_bucket", {}, {**B, "CreateBucketConfiguration": {"LocationConstraint": REGION}}
        )
        self.s3.add_response("get_bucket_versioning", {}, B)
        self.s3.add_response(
            "put_bucket_versioning", {}, {**B, "VersioningConfiguration": {"Status": "Enabled"}}
        )
        self.s3.add_client_error(
            "get_public_access_block", **error("NoSuchPublicAccessBlockConfiguration", 404)
        )
        self.s3.add_response("put_public_access_block", {}, {**B, "PublicAccessBlockConfiguration": BLOCKED})
        self.s3.add_response("get_bucket_encryption", {"ServerSideEncryptionConfiguration": SSE_S3}, B)
        self.s3.add_client_error(
            "get_bucket_lifecycle_configuration", **error("NoSuchLifecycleConfiguration", 404)
        )
        rules = {"Rules": backup_bucket.lifecycle_rules(backup_bucket.EXPIRY_DAYS)}
        self.s3.add_response("put_bucket_lifecycle_configuration", {}, {**B, "LifecycleConfiguration": rules})
        self.s3.add_client_error("get_bucket_policy", **error("NoSuchBucketPolicy", 404))
        self.s3.add_response("put_bucket_policy", {}, {**B, "Policy": json.dumps(TLS_POLICY)})

    def bucket_as_set_up(self) -> None:
        self.s3.add_response("head_bucket", {"BucketRegion": REGION}, B)
        self.s3.add_response("get_bucket_versioning", {"Status": "Enabled"}, B)
        self.s3.add_response("get_public_access_block", {"PublicAccessBlockConfiguration": BLOCKED}, B)
        self.s3.add_response("get_bucket_encryption", {"ServerSideEncryptionConfiguration": SSE_S3}, B)
        rules = backup_bucket.lifecycle_rules(backup_bucket.EXPIRY_DAYS)
        self.s3.add_response("get_bucket_lifecycle_configuration", {"Rules": rules}, B)
        self.s3.add_response("get_bucket_policy", {"Policy": json.dumps(TLS_POLICY)}, B)


@pytest.fixture
def aws(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path)
    with harness.control, harness.s3:
        yield harness
        harness.control.assert_no_pending_responses()
        harness.s3.assert_no_pending_responses()


def test_ensure_with_a_backup_bucket_creates_it_protected_and_passes_it_to_the_runtime(aws: Harness) -> None:
    aws.control.add_response("list_agent_runtimes", {"agentRuntimes": []}, {})
    aws.new_bucket()
    create = {
        "agentRuntimeName": NAME,
        "agentRuntimeArtifact": {"containerConfiguration": {"containerUri": IMAGE}},
        "roleArn": ROLE,
        "networkConfiguration": {"networkMode": "PUBLIC"},
        "protocolConfiguration": {"serverProtocol": "HTTP"},
        "filesystemConfigurations": [{"sessionStorage": {"mountPath": "/mnt/workspace"}}],
        "environmentVariables": {"BACKUP_BUCKET": BUCKET, **SCOPED},
        "clientToken": TOKEN,
    }
    answer = {
        "agentRuntimeArn": ARN,
        "agentRuntimeId": RUNTIME_ID,
        "agentRuntimeVersion": "1",
        "createdAt": NOW,
        "status": "CREATING",
    }
    aws.control.add_response("create_agent_runtime", answer, create)
    aws.control.add_response("get_agent_runtime", runtime(), {"agentRuntimeId": RUNTIME_ID})

    argv = ["ensure", "--image", IMAGE, "--role-arn", ROLE, "--skip-arch-check", "--backup-bucket", BUCKET]
    assert aws.run(*argv) == 0
    out = aws.out.getvalue()
    assert (
        f"backup bucket {BUCKET}: created, versioning enabled, public access blocked, "
        "expiry after 90 days (old versions after 7), TLS required" in out
    )
    assert f"python deploy.py role --backup-bucket {BUCKET}" in out


def test_update_with_a_bucket_that_is_set_up_warns_of_the_reset_and_the_restore(aws: Harness) -> None:
    aws.control.add_response("get_agent_runtime", runtime(), {"agentRuntimeId": RUNTIME_ID})
    aws.bucket_as_set_up()  # read and compared; any put would fail the stubber
    expected = {
        "agentRuntimeId": RUNTIME_ID,
        **{k: v for k, v in runtime().items() if k in deploy.rt.updatable_fields(aws.ctx.control)},
        "environmentVariables": {"BACKUP_BUCKET": BUCKET, **SCOPED},
    }
    aws.control.add_response("update_agent_runtime", UPDATED, expected)
    aws.control.add_response("get_agent_runtime", runtime("2"), {"agentRuntimeId": RUNTIME_ID})

    assert aws.run("update", RUNTIME_ID, "--backup-bucket", BUCKET, "--yes") == 0
    out = aws.out.getvalue()
    assert f"backup bucket {BUCKET}: up to date" in out
    assert "EVERY session of this runtime resets" in out
    assert f"backups in s3://{BUCKET}: each session restores its files and conversation" in out


def test_update_of_a_runtime_that_already_backs_up_says_so_without_the_flag(aws: Harness) -> None:
    aws.control.add_response("get_agent_runtime", runtime(env={"BACKUP_BUCKET": BUCKET}), None)
    aws.control.add_response("update_agent_runtime", UPDATED, None)
    aws.control.add_response("get_agent_runtime", runtime("2"), None)

    assert aws.run("update", RUNTIME_ID, "--image", IMAGE + "2", "--skip-arch-check", "--yes") == 0
    assert f"backups in s3://{BUCKET}" in aws.out.getvalue()


def test_a_bucket_that_another_account_owns_is_one_line_that_says_choose_another(
    aws: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    aws.control.add_response("get_agent_runtime", runtime(), None)
    aws.s3.add_client_error("head_bucket", "403", http_status_code=403, expected_params=B)

    assert aws.run("update", RUNTIME_ID, "--backup-bucket", BUCKET, "--yes") == 1
    err = capsys.readouterr().err
    assert err == (
        f"deploy.py: error: bucket {BUCKET} exists but this account cannot use it "
        "(another account may own it): choose another --backup-bucket name\n"
    )


def test_a_bucket_in_another_region_is_refused(aws: Harness, capsys: pytest.CaptureFixture[str]) -> None:
    aws.control.add_response("get_agent_runtime", runtime(), None)
    aws.s3.add_response("head_bucket", {"BucketRegion": "eu-west-1"}, B)

    assert aws.run("update", RUNTIME_ID, "--backup-bucket", BUCKET, "--yes") == 1
    assert "is in eu-west-1, the runtime in us-west-2: use a bucket in us-west-2" in capsys.readouterr().err


def test_someone_elses_lifecycle_rules_and_policy_are_kept(aws: Harness) -> None:
    theirs = {
        "ID": "archive-logs",
        "Filter": {"Prefix": "logs/"},
        "Status": "Enabled",
        "Expiration": {"Days": 5},
    }
    statement = {"Sid": "Theirs", "Effect": "Deny", "Principal": "*", "Action": "s3:DeleteBucket"}
    statement["Resource"] = f"arn:aws:s3:::{BUCKET}"
    aws.control.add_response("get_agent_runtime", runtime(env={"BACKUP_BUCKET": BUCKET}), None)
    aws.s3.add_response("head_bucket", {"BucketRegion": REGION}, B)
    aws.s3.add_response("get_bucket_versioning", {"Status": "Enabled"}, B)
    aws.s3.add_response("get_public_access_block", {"PublicAccessBlockConfiguration": BLOCKED}, B)
    aws.s3.add_response("get_bucket_encryption", {"ServerSideEncryptionConfiguration": SSE_S3}, B)
    aws.s3.add_response("get_bucket_lifecycle_configuration", {"Rules": [theirs]}, B)
    rules = [theirs, *backup_bucket.lifecycle_rules(120)]
    aws.s3.add_response(
        "put_bucket_lifecycle_configuration", {}, {**B, "LifecycleConfiguration": {"Rules": rules}}
    )
    aws.s3.add_response(
        "get_bucket_policy", {"Policy": json.dumps({"Version": "2012-10-17", "Statement": [statement]})}, B
    )
    policy = {"Version": "2012-10-17", "Statement": [statement, backup_bucket.tls_statement(BUCKET)]}
    aws.s3.add_response("put_bucket_policy", {}, {**B, "Policy": json.dumps(policy)})

    argv = ["update", RUNTIME_ID, "--backup-bucket", BUCKET, "--backup-expiry-days", "120", "--yes"]
    assert aws.run(*argv) == 0
    assert "up to date" in aws.out.getvalue()  # the runtime: BACKUP_BUCKET was already set


def test_an_invalid_bucket_name_is_refused_before_any_call(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        deploy.main(["ensure", "--backup-bucket", "My_Bucket"])
    assert "'My_Bucket' is not a valid S3 bucket name" in capsys.readouterr().err


def test_a_short_expiry_is_refused_before_any_s3_call(
    aws: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    aws.control.add_response("get_agent_runtime", runtime(), None)

    assert aws.run("update", RUNTIME_ID, "--backup-bucket", BUCKET, "--backup-expiry-days", "20") == 1
    assert "--backup-expiry-days 20 is too short: at least 45" in capsys.readouterr().err


def test_the_bucket_outlives_the_agents_refresh_and_an_idle_session() -> None:
    assert backup_bucket.MIN_EXPIRY_DAYS > backup.REFRESH_AFTER_DAYS + 14
    assert backup_bucket.EXPIRY_DAYS >= backup_bucket.MIN_EXPIRY_DAYS


# --- the execution role: only GetObject and PutObject, only under v2/ -------------------------------


@pytest.fixture
def iam() -> Iterator[Any]:
    with mock_aws():
        yield boto3.client("iam", region_name="us-east-1")


def backup_statements(iam: Any) -> list[dict]:
    role = "AgentCoreRuntime-coding_agent"
    document = iam.get_role_policy(RoleName=role, PolicyName=POLICY_NAME)["PolicyDocument"]
    return [s for s in document["Statement"] if "s3" in json.dumps(s)]


def test_role_with_a_backup_bucket_may_get_and_put_objects_under_v2_and_nothing_else(iam: Any) -> None:
    assert deploy.main(["role", "--backup-bucket", BUCKET]) == 0

    (statement,) = backup_statements(iam)
    assert statement["Effect"] == "Allow"
    assert sorted(statement["Action"]) == ["s3:GetObject", "s3:PutObject"]  # no ListBucket, no DeleteObject
    assert statement["Resource"] == f"arn:aws:s3:::{BUCKET}/v2/*"  # runtimes' scopes, not the old v1/


def test_role_without_a_backup_bucket_has_no_s3_permission(iam: Any) -> None:
    assert deploy.main(["role"]) == 0
    assert backup_statements(iam) == []


def test_with_the_roles_policy_a_session_can_read_a_key_it_names_but_never_list_or_delete(iam: Any) -> None:
    """moto evaluates IAM policies when authentication is on: a user holding exactly the role's
    S3 statement stands in for a session's shell with the execution role's credentials."""
    s3_admin = boto3.client("s3", region_name=REGION)
    s3_admin.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    assert deploy.main(["role", "--backup-bucket", BUCKET]) == 0
    (statement,) = backup_statements(iam)
    iam.create_user(UserName="session-shell")
    policy = {"Version": "2012-10-17", "Statement": [statement]}
    iam.put_user_policy(UserName="session-shell", PolicyName="backups", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName="session-shell")["AccessKey"]
    shell = boto3.client(
        "s3",
        region_name=REGION,
        aws_access_key_id=key["AccessKeyId"],
        aws_secret_access_key=key["SecretAccessKey"],
    )
    mine = f"{backup.prefix('session-a-' + '0' * 30, SCOPE)}/latest.json"
    unscoped = f"{backup.prefix('session-a-' + '0' * 30)}/latest.json"  # the layout before scopes

    with enable_iam_authentication():
        shell.put_object(Bucket=BUCKET, Key=mine, Body=b'{"seq": 1}')
        assert shell.get_object(Bucket=BUCKET, Key=mine)["Body"].read() == b'{"seq": 1}'
        for call in (
            lambda: shell.list_objects_v2(Bucket=BUCKET),
            lambda: shell.list_objects_v2(Bucket=BUCKET, Prefix="v2/"),
            lambda: shell.list_objects_v2(Bucket=BUCKET, Prefix=f"v2/{SCOPE}/"),
            lambda: shell.put_object(Bucket=BUCKET, Key=unscoped, Body=b"x"),
            lambda: shell.delete_object(Bucket=BUCKET, Key=mine),
            lambda: shell.put_object(Bucket=BUCKET, Key="outside-v2", Body=b"x"),
        ):
            with pytest.raises(ClientError) as denied:
                call()
            assert denied.value.response["Error"]["Code"] == "AccessDenied"
