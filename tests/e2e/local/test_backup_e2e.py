"""End to end: boto3 -> agentcore_local -> sandbox -> coding_agent.py (the scripted test double),
with agentcore_local's real S3 API (moto in server mode behind the agent-facing listener).

A new runtime version and 14 days without an invocation each reset a session's storage, as on
AWS; the session's next turn gets files and conversation back from its backup. A shell in
another session can neither list the bucket nor reach anything but object keys it can name, however
it spells the path.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator

import pytest

from tests.support.local_runtime import LocalRuntime, invoke, local_runtime, shell

DAY = 86_400.0
# What a shell in one session tries against the backups, with the session's own credentials:
# every call but GET/PUT of an object under v1/ is refused, as the execution role refuses it on AWS.
PROBE = """
import boto3, botocore.exceptions as x
s3 = boto3.client("s3")
for name, call in [
    ("list", lambda: s3.list_objects_v2(Bucket="agentcore-local-backups")),
    ("versions", lambda: s3.list_object_versions(Bucket="agentcore-local-backups")),
    ("delete", lambda: s3.delete_object(Bucket="agentcore-local-backups", Key="v1/x/latest.json")),
    ("other bucket", lambda: s3.get_object(Bucket="someone-else", Key="v1/x")),
    ("outside v1", lambda: s3.put_object(Bucket="agentcore-local-backups", Key="loot", Body=b"x")),
]:
    try:
        call()
        print(name, "ALLOWED")
    except x.ClientError as e:
        print(name, e.response["Error"]["Code"])
import http.client, os, urllib.parse
where = urllib.parse.urlsplit(os.environ["AWS_ENDPOINT_URL_S3"])
scope = "AWS4-HMAC-SHA256 Credential=a/20261201/us-west-2/s3/aws4_request, SignedHeaders=host, Signature=0"
for name, method, path in [
    ("dotdot list", "GET", "/agentcore-local-backups/v1/.."),
    ("encoded dotdot list", "GET", "/agentcore-local-backups/v1/%2e%2e"),
    ("moto reset", "POST", "/agentcore-local-backups/v1/../../moto-api/reset?uploads"),
]:
    c = http.client.HTTPConnection(where.hostname, where.port, timeout=10)
    c.request(method, path, headers={"Authorization": scope})
    print(name, c.getresponse().status)
"""


def new_id() -> str:
    return f"test-{uuid.uuid4().hex}"


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRuntime]:
    with local_runtime(tmp_path_factory.mktemp("backup-e2e")) as runtime:
        yield runtime


@pytest.fixture
def data(local: LocalRuntime, _isolated_aws: None):
    return local.data()


def new_version(local: LocalRuntime, created: dict) -> None:
    """UpdateAgentRuntime with one more variable: a new version, so every session's storage resets."""
    request = created["request"]
    env = {**request["environmentVariables"], "REDEPLOY": uuid.uuid4().hex[:8]}
    local.control().update_agent_runtime(
        agentRuntimeId=created["agentRuntimeId"],
        agentRuntimeArtifact=request["agentRuntimeArtifact"],
        roleArn=request["roleArn"],
        filesystemConfigurations=request["filesystemConfigurations"],
        environmentVariables=env,
    )
    local.clock.advance(5)


def test_a_redeploy_and_a_14_day_expiry_each_restore_files_and_conversation_from_the_backup(
    local: LocalRuntime, data
) -> None:
    created = local.create_runtime(f"backup_{uuid.uuid4().hex[:8]}")
    arn, session = created["agentRuntimeArn"], new_id()
    shell(data, arn, session, "mkdir -p src && echo v1 > src/app.js && chmod 750 src/app.js")
    first = invoke(data, arn, session, "remember this project")
    assert first["workspace"]["restored_from"] == "storage"  # the files the command made
    data.stop_runtime_session(agentRuntimeArn=arn, runtimeSessionId=session)  # waits for the upload

    new_version(local, created)
    after_redeploy = invoke(data, arn, session, "what is here?")
    workspace = after_redeploy["workspace"]
    assert workspace["restored_from"] == "backup", workspace
    assert workspace["restore"]["files"] >= 1 and workspace["restore"]["bytes"] > 0
    assert after_redeploy["history"]["messages_before"] >= 2  # the first turn came back too
    assert shell(data, arn, session, "cat src/app.js; stat -c %a src/app.js") == "v1\n750\n"
    data.stop_runtime_session(agentRuntimeArn=arn, runtimeSessionId=session)

    local.clock.advance(15 * DAY)  # AgentCore resets storage after 14 days without an invocation
    after_expiry = invoke(data, arn, session, "and now?")
    assert after_expiry["workspace"]["restored_from"] == "backup"
    assert after_expiry["history"]["messages_before"] >= 4
    assert shell(data, arn, session, "cat src/app.js") == "v1\n"


def test_a_shell_in_another_session_cannot_list_or_reach_other_backups(local: LocalRuntime, data) -> None:
    created = local.create_runtime(f"backup_{uuid.uuid4().hex[:8]}")
    arn, owner, other = created["agentRuntimeArn"], new_id(), new_id()
    invoke(data, arn, owner, "a turn that is backed up")
    data.stop_runtime_session(agentRuntimeArn=arn, runtimeSessionId=owner)
    out = shell(data, arn, other, f"{sys.executable} -c '{PROBE}'")  # the venv's boto3, read-only inside
    assert out.splitlines() == [
        "list AccessDenied",
        "versions AccessDenied",
        "delete AccessDenied",
        "other bucket AccessDenied",
        "outside v1 AccessDenied",
        "dotdot list 403",
        "encoded dotdot list 403",
        "moto reset 403",
    ]
    new_version(local, created)  # the owner's backup was not reset: a redeploy brings it back
    assert invoke(data, arn, owner, "still here?")["workspace"]["restored_from"] == "backup"


@pytest.fixture(autouse=True)
def _sandboxed(local: LocalRuntime) -> None:
    if not local.app.state.sessions.launcher.private_network:
        pytest.skip("the forward to the agent-facing listener needs bwrap with slirp4netns")
