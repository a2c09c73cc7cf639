"""What the starter toolkit's `agentcore deploy` (direct code deployment) calls, answered here: its
own calls replayed through boto3 (the toolkit is not in this project's lock), against what
`agentcore_local env` exports. STS and IAM (account, execution role) and S3 (the zip) come from
serve's moto; the control plane from agentcore_local (BEDROCK_AGENTCORE_CP_ENDPOINT)."""

from __future__ import annotations

import io
import json
import zipfile

import boto3
import pytest
from botocore.exceptions import ClientError

from agentcore_local.__main__ import env_lines
from agentcore_local.sandbox.code_zip import HOST_MACHINE
from tests.support.local_runtime import LocalRuntime, local_runtime

TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": "bedrock-agentcore.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ],
}


@pytest.fixture(scope="module")
def runtime(tmp_path_factory) -> LocalRuntime:
    with local_runtime(tmp_path_factory.mktemp("toolkit")) as rt:
        yield rt


def exported(rt: LocalRuntime) -> dict[str, str]:
    """What `agentcore_local env` prints for this server, as a dict."""
    lines = env_lines(rt.url, None, "us-west-2", aws_url=rt.app.state.agent_services.s3_url)
    return dict(line.removeprefix("export ").split("=", 1) for line in lines)


def aws(rt: LocalRuntime, service: str):
    """A client the way the toolkit makes one (no endpoint_url: botocore reads AWS_ENDPOINT_URL_*)."""
    env = exported(rt)
    return boto3.client(
        service,
        region_name=env["AWS_REGION"],
        endpoint_url=env[f"AWS_ENDPOINT_URL_{service.upper()}"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )


def toolkit_zip(machine: int | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("main.py", "print('agent')\n")
        if machine is not None:  # an ELF header: what a wheel's extension module starts with
            header = b"\x7fELF\x02\x01\x01" + bytes(9) + b"\x03\x00" + machine.to_bytes(2, "little")
            archive.writestr(
                "pydantic_core/_pydantic_core.cpython-311-aarch64-linux-gnu.so", header + bytes(44)
            )
    return buffer.getvalue()


def deploy_as_the_toolkit_does(rt: LocalRuntime, name: str, data: bytes) -> dict:
    account = aws(rt, "sts").get_caller_identity()["Account"]
    role = aws(rt, "iam").create_role(
        RoleName=f"AmazonBedrockAgentCoreSDKRuntime-us-west-2-{name}",
        AssumeRolePolicyDocument=json.dumps(TRUST),
    )["Role"]["Arn"]
    s3, bucket = aws(rt, "s3"), f"bedrock-agentcore-codebuild-sources-{account}-us-west-2"
    try:
        s3.head_bucket(Bucket=bucket, ExpectedBucketOwner=account)
    except ClientError:
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "us-west-2"})
    key = f"{name}/deployment.zip"
    s3.upload_fileobj(io.BytesIO(data), bucket, key, ExtraArgs={"ExpectedBucketOwner": account})
    control = boto3.client(
        "bedrock-agentcore-control",
        region_name="us-west-2",
        endpoint_url=exported(rt)["BEDROCK_AGENTCORE_CP_ENDPOINT"],
        aws_access_key_id="agentcore-local",
        aws_secret_access_key="agentcore-local",
    )
    created = control.create_agent_runtime(
        agentRuntimeName=name,
        agentRuntimeArtifact={
            "codeConfiguration": {
                "code": {"s3": {"bucket": bucket, "prefix": key}},
                "runtime": "PYTHON_3_11",
                "entryPoint": ["main.py"],
            }
        },
        roleArn=role,
        networkConfiguration={"networkMode": "PUBLIC"},
        protocolConfiguration={"serverProtocol": "HTTP"},
    )
    rt.clock.advance(5)
    endpoint = control.get_agent_runtime_endpoint(
        agentRuntimeId=created["agentRuntimeId"], endpointName="DEFAULT"
    )
    return {"created": created, "endpoint": endpoint, "account": account, "role": role}


def test_env_points_s3_iam_and_sts_at_serves_moto(runtime: LocalRuntime) -> None:
    env = exported(runtime)
    moto = runtime.app.state.agent_services.s3_url
    assert [env[f"AWS_ENDPOINT_URL_{s}"] for s in ("S3", "IAM", "STS")] == [moto] * 3
    assert env["BEDROCK_AGENTCORE_CP_ENDPOINT"] == env["BEDROCK_AGENTCORE_DP_ENDPOINT"] == runtime.url


def test_the_toolkits_direct_code_deploy_calls_are_answered_locally(runtime: LocalRuntime) -> None:
    deployed = deploy_as_the_toolkit_does(runtime, "toolkit_agent", toolkit_zip())
    assert (
        deployed["role"]
        == f"arn:aws:iam::{deployed['account']}:role/AmazonBedrockAgentCoreSDKRuntime-us-west-2-toolkit_agent"
    )
    assert deployed["created"]["agentRuntimeArn"].startswith("arn:aws:bedrock-agentcore:us-west-2:")
    assert deployed["endpoint"]["status"] == "READY"


def test_a_toolkit_zip_of_arm64_wheels_is_refused_at_create_on_another_cpu(runtime: LocalRuntime) -> None:
    if HOST_MACHINE == "aarch64":
        pytest.skip("an arm64 machine runs the toolkit's arm64 wheels")
    with pytest.raises(ClientError) as refused:
        deploy_as_the_toolkit_does(runtime, "toolkit_arm64", toolkit_zip(machine=0xB7))
    error = refused.value.response["Error"]
    assert error["Code"] == "ValidationException"
    assert "native code for aarch64" in error["Message"] and HOST_MACHINE in error["Message"]
