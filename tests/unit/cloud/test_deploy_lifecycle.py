"""What `deploy.py delete` does to a runtime's backups, the scope each create gives a runtime, and
deploy.py against agentcore_local (no made-up image or role, no `deploy.py role`). Every request
is checked against botocore's models by Stubber; nothing reaches AWS."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from cloud import backup_bucket, clients
from tests.unit.cloud.test_backup_deploy import BUCKET, UPDATED, Harness, aws, runtime  # noqa: F401
from tests.unit.cloud.test_deploy import ACCOUNT, NAME, NOW, REGION, RUNTIME_ID, SCOPE, TOKEN, created

ID = {"agentRuntimeId": RUNTIME_ID}
LOCAL = {"status": "ok", "account": ACCOUNT, "region": REGION}
LOCAL_IMAGE = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/coding-agent:latest"
LOCAL_ROLE = f"arn:aws:iam::{ACCOUNT}:role/AgentCoreRuntime-{NAME}"


def deleted(harness: Harness, env: dict[str, str] | None) -> None:
    """GetAgentRuntime, DeleteAgentRuntime, then the wait until it is gone."""
    harness.control.add_response("get_agent_runtime", runtime(env=env), ID)
    harness.control.add_response("delete_agent_runtime", {"status": "DELETING"}, ID)
    harness.control.add_client_error(
        "get_agent_runtime", service_error_code="ResourceNotFoundException", http_status_code=404
    )


def versions(keys: list[str]) -> list[dict[str, Any]]:
    return [
        {"Key": key, "VersionId": f"v{n}", "IsLatest": True, "LastModified": NOW}
        for n, key in enumerate(keys)
    ]


def test_delete_deletes_every_version_of_the_runtimes_backups_after_the_runtime(aws: Harness) -> None:  # noqa: F811
    deleted(aws, {"BACKUP_BUCKET": BUCKET})
    where = f"v2/{SCOPE}/"
    objects, markers = (
        versions([f"{where}abc/latest.json", f"{where}abc/latest.json"]),
        versions([f"{where}x"]),
    )
    aws.s3.add_response(
        "list_object_versions",
        {"Versions": objects, "DeleteMarkers": markers, "IsTruncated": False},
        {"Bucket": BUCKET, "Prefix": where},
    )
    everything = [{"Key": o["Key"], "VersionId": o["VersionId"]} for o in [*objects, *markers]]
    aws.s3.add_response(
        "delete_objects", {}, {"Bucket": BUCKET, "Delete": {"Objects": everything, "Quiet": True}}
    )
    assert aws.run("delete", RUNTIME_ID, "--yes") == 0
    out = aws.out.getvalue()
    assert f"every object under s3://{BUCKET}/{where} (keep them with --keep-backups)" in out  # the warning
    assert f"deleted its backups: 3 objects (every version) under s3://{BUCKET}/{where}" in out


def test_delete_with_keep_backups_touches_no_backup_and_says_they_are_kept(aws: Harness) -> None:  # noqa: F811
    deleted(aws, {"BACKUP_BUCKET": BUCKET})
    assert aws.run("delete", RUNTIME_ID, "--yes", "--keep-backups") == 0  # the S3 stubber: no call at all
    assert f"under s3://{BUCKET}/v2/{SCOPE}/ are kept (--keep-backups)" in aws.out.getvalue()


def test_delete_of_a_runtime_from_before_scopes_says_its_backups_stay(aws: Harness) -> None:  # noqa: F811
    aws.control.add_response(
        "get_agent_runtime", {**runtime(), "environmentVariables": {"BACKUP_BUCKET": BUCKET}}, ID
    )
    aws.control.add_response("delete_agent_runtime", {"status": "DELETING"}, ID)
    assert aws.run("delete", RUNTIME_ID, "--yes", "--no-wait") == 0
    assert f"s3://{BUCKET}/v1/ are keyed by session id alone and are NOT deleted" in aws.out.getvalue()


def test_deleting_a_scope_pages_through_versions_in_batches() -> None:
    from botocore.stub import Stubber

    s3 = clients.aws("s3", REGION)
    keys = [f"v2/s/k{n}" for n in range(3)]
    with Stubber(s3) as stub:
        stub.add_response(
            "list_object_versions",
            {
                "Versions": versions(keys[:2]),
                "IsTruncated": True,
                "NextKeyMarker": keys[1],
                "NextVersionIdMarker": "v1",
            },
            {"Bucket": BUCKET, "Prefix": "v2/s/"},
        )
        for part in ([keys[0]], [keys[1]]):
            objects = [{"Key": k, "VersionId": f"v{keys.index(k)}"} for k in part]
            stub.add_response(
                "delete_objects", {}, {"Bucket": BUCKET, "Delete": {"Objects": objects, "Quiet": True}}
            )
        stub.add_response(
            "list_object_versions",
            {"Versions": versions(keys[2:]), "IsTruncated": False},
            {"Bucket": BUCKET, "Prefix": "v2/s/", "KeyMarker": keys[1], "VersionIdMarker": "v1"},
        )
        objects = [{"Key": keys[2], "VersionId": "v0"}]
        stub.add_response(
            "delete_objects", {}, {"Bucket": BUCKET, "Delete": {"Objects": objects, "Quiet": True}}
        )
        assert backup_bucket.delete_scope(s3, BUCKET, "s", batch=1) == 3
        stub.assert_no_pending_responses()


def test_an_update_of_a_runtime_from_before_scopes_keys_its_backups_by_its_id(aws: Harness) -> None:  # noqa: F811
    before = {**runtime(), "environmentVariables": {"LOG_LEVEL": "info"}}
    aws.control.add_response("get_agent_runtime", before, ID)
    request = {
        key: before[key]
        for key in ("agentRuntimeArtifact", "roleArn", "networkConfiguration", "protocolConfiguration")
    }
    request |= {
        "agentRuntimeId": RUNTIME_ID,
        "filesystemConfigurations": before["filesystemConfigurations"],
        "lifecycleConfiguration": before["lifecycleConfiguration"],
        # its id: what agentcore_local keys a runtime with no scope by, so a local update keeps them
        "environmentVariables": {"LOG_LEVEL": "debug", "BACKUP_SCOPE": RUNTIME_ID},
    }
    aws.control.add_response("update_agent_runtime", UPDATED, request)
    aws.control.add_response("get_agent_runtime", runtime(version="2"), ID)
    assert aws.run("update", RUNTIME_ID, "--env", "LOG_LEVEL=debug", "--yes", "--skip-arch-check") == 0
    assert "backups from before (under v1/) are not restored" in aws.out.getvalue()


# --- against agentcore_local --------------------------------------------------------------------------


def test_ensure_after_a_delete_re_creates_the_local_runtime_with_no_image_or_role(aws: Harness) -> None:  # noqa: F811
    aws.ctx.local = LOCAL
    aws.control.add_response("list_agent_runtimes", {"agentRuntimes": []}, {})
    request = {
        "agentRuntimeName": NAME,
        "agentRuntimeArtifact": {"containerConfiguration": {"containerUri": LOCAL_IMAGE}},
        "roleArn": LOCAL_ROLE,
        "networkConfiguration": {"networkMode": "PUBLIC"},
        "protocolConfiguration": {"serverProtocol": "HTTP"},
        "filesystemConfigurations": [{"sessionStorage": {"mountPath": "/mnt/workspace"}}],
        "environmentVariables": {"BACKUP_SCOPE": SCOPE},  # no BACKUP_BUCKET: serve gives its own
        "clientToken": TOKEN,
    }
    aws.control.add_response("create_agent_runtime", created(), request)
    aws.control.add_response("get_agent_runtime", runtime(), ID)
    assert aws.run("ensure", "--backup-bucket", BUCKET, "--yes") == 0  # no S3 call: the stubber holds none
    out = aws.out.getvalue()
    assert "deploy.py role" not in out and "--backup-bucket is not used locally" in out


def test_a_local_delete_leaves_the_backups_to_agentcore_local(aws: Harness) -> None:  # noqa: F811
    aws.ctx.local = LOCAL
    deleted(aws, {"BACKUP_BUCKET": "agentcore-local-backups"})
    assert aws.run("delete", "--yes", RUNTIME_ID) == 0  # no S3 call
    assert "agentcore_local deletes them with the runtime" in aws.out.getvalue()


def test_role_is_refused_locally_with_what_to_run_instead(
    aws: Harness,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    aws.ctx.local = LOCAL
    assert aws.run("role") == 1
    assert capsys.readouterr().err.startswith("deploy.py: error: `deploy.py role` makes an IAM role in AWS")


@pytest.fixture
def health_server() -> Iterator[str]:
    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps(LOCAL if self.path == "/_local/health" else {}).encode()
            self.send_response(200 if self.path == "/_local/health" else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_local_is_told_by_the_control_endpoint_answering_as_agentcore_local(health_server: str) -> None:
    assert clients.agentcore_local({"AWS_ENDPOINT_URL_BEDROCK_AGENTCORE_CONTROL": health_server}) == LOCAL
    assert clients.agentcore_local({}) is None  # AWS
    assert (
        clients.agentcore_local({"AWS_ENDPOINT_URL_BEDROCK_AGENTCORE_CONTROL": "http://127.0.0.1:9"}) is None
    )
