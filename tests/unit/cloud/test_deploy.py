"""deploy.py against botocore Stubber: every request is checked against the real service model."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import NoCredentialsError, ParamValidationError
from botocore.stub import Stubber

import deploy
from cloud import agent_runtime as rt
from cloud import clients, deploy_context, image_arch
from cloud.errors import explain

ACCOUNT, REGION, NAME = "123456789012", "us-west-2", "coding_agent"
RUNTIME_ID = "coding_agent-AbCdEf1234"  # AWS appends 10 random characters to the name
ARN = f"arn:aws:bedrock-agentcore:{REGION}:{ACCOUNT}:runtime/{RUNTIME_ID}"
IMAGE = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/coding-agent:v1"
IMAGE_V2 = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/coding-agent:v2"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/AgentCoreRuntime-coding_agent"
TOKEN = "deploy-0123456789abcdef0123456789abcdef"
NOW = datetime(2026, 11, 24, tzinfo=UTC)
SESSION_STORAGE = [{"sessionStorage": {"mountPath": "/mnt/workspace"}}]
SCOPE = "0f" * 16  # the BACKUP_SCOPE a create made (Context.new_scope)
SCOPED = {"BACKUP_SCOPE": SCOPE}


def runtime(status: str = "READY", version: str = "1", **config: Any) -> dict[str, Any]:
    """A GetAgentRuntime answer."""
    base = {
        "agentRuntimeArn": ARN,
        "agentRuntimeName": NAME,
        "agentRuntimeId": RUNTIME_ID,
        "agentRuntimeVersion": version,
        "createdAt": NOW,
        "lastUpdatedAt": NOW,
        "roleArn": ROLE,
        "status": status,
        "agentRuntimeArtifact": {"containerConfiguration": {"containerUri": IMAGE}},
        "networkConfiguration": {"networkMode": "PUBLIC"},
        "protocolConfiguration": {"serverProtocol": "HTTP"},
        "lifecycleConfiguration": {"idleRuntimeSessionTimeout": 900, "maxLifetime": 28800},
        "filesystemConfigurations": SESSION_STORAGE,
        "environmentVariables": SCOPED,
    }
    return {**base, **config}


def listed(name: str, runtime_id: str) -> dict[str, Any]:
    """A ListAgentRuntimes entry."""
    return {
        "agentRuntimeArn": f"arn:aws:bedrock-agentcore:{REGION}:{ACCOUNT}:runtime/{runtime_id}",
        "agentRuntimeId": runtime_id,
        "agentRuntimeVersion": "1",
        "agentRuntimeName": name,
        "description": "-",
        "lastUpdatedAt": NOW,
        "status": "READY",
    }


def created(version: str = "1", status: str = "CREATING") -> dict[str, Any]:
    return {
        "agentRuntimeArn": ARN,
        "agentRuntimeId": RUNTIME_ID,
        "agentRuntimeVersion": version,
        "createdAt": NOW,
        "status": status,
    }


def updated(version: str = "2") -> dict[str, Any]:
    return {**created(version, "UPDATING"), "lastUpdatedAt": NOW}


CREATE_REQUEST = {
    "agentRuntimeName": NAME,
    "agentRuntimeArtifact": {"containerConfiguration": {"containerUri": IMAGE}},
    "roleArn": ROLE,
    "networkConfiguration": {"networkMode": "PUBLIC"},
    "protocolConfiguration": {"serverProtocol": "HTTP"},
    "filesystemConfigurations": SESSION_STORAGE,
    "environmentVariables": SCOPED,
    "clientToken": TOKEN,
}


@dataclass
class FakeClock:
    now: float = 0.0
    sleeps: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@dataclass
class Harness:
    ctx: deploy.Context
    control: Stubber
    ecr: Stubber
    clock: FakeClock
    out: io.StringIO
    blobs: dict[str, bytes]
    confirmations: list[str]

    @property
    def record(self) -> dict[str, str] | None:
        path = self.ctx.record_path
        return json.loads(path.read_text()) if path.exists() else None

    def run(self, *argv: str) -> int:
        return deploy.main(list(argv), self.ctx)


@pytest.fixture
def aws(tmp_path: Path):
    control_client = clients.control_plane(REGION)
    ecr_client = clients.aws("ecr", REGION)
    control, ecr = Stubber(control_client), Stubber(ecr_client)
    clock, out, blobs, confirmations = FakeClock(), io.StringIO(), {}, []

    def confirm(question: str) -> bool:
        confirmations.append(question)
        return True

    ctx = deploy.Context(
        region=REGION,
        control=control_client,
        client=lambda service, region: {"ecr": ecr_client}[service],
        out=out,
        confirm=confirm,
        sleep=clock.sleep,
        clock=clock,
        fetch=blobs.__getitem__,
        record_path=tmp_path / ".agentcore" / "runtime.json",
        new_token=lambda: TOKEN,
        new_scope=lambda: SCOPE,
    )
    with control, ecr:
        yield Harness(ctx, control, ecr, clock, out, blobs, confirmations)
        control.assert_no_pending_responses()
        ecr.assert_no_pending_responses()


# --- create -------------------------------------------------------------------------------------------


def test_create_sends_session_storage_http_protocol_and_a_client_token(aws: Harness) -> None:
    aws.control.add_response("create_agent_runtime", created(), CREATE_REQUEST)
    aws.control.add_response("get_agent_runtime", runtime(), {"agentRuntimeId": RUNTIME_ID})

    assert aws.run("create", "--image", IMAGE, "--role-arn", ROLE, "--skip-arch-check") == 0
    assert aws.record == {"agentRuntimeArn": ARN, "agentRuntimeId": RUNTIME_ID, "region": REGION}


def test_seed_create_flag_still_creates(aws: Harness) -> None:
    aws.control.add_response("create_agent_runtime", created(), CREATE_REQUEST)
    aws.control.add_response("get_agent_runtime", runtime(), {"agentRuntimeId": RUNTIME_ID})

    assert aws.run("--create", "--image", IMAGE, "--role-arn", ROLE, "--skip-arch-check") == 0
    assert aws.record["agentRuntimeArn"] == ARN


def test_create_with_another_mount_path_points_workspace_dir_at_it(aws: Harness) -> None:
    request = {
        **CREATE_REQUEST,
        "filesystemConfigurations": [{"sessionStorage": {"mountPath": "/mnt/data"}}],
        "environmentVariables": {"WORKSPACE_DIR": "/mnt/data", **SCOPED},
        "lifecycleConfiguration": {"idleRuntimeSessionTimeout": 600, "maxLifetime": 3600},
    }
    aws.control.add_response("create_agent_runtime", created(), request)

    argv = ["create", "--image", IMAGE, "--role-arn", ROLE, "--skip-arch-check", "--no-wait"]
    assert aws.run(*argv, "--mount-path", "/mnt/data", "--idle-timeout", "600", "--max-lifetime", "3600") == 0
    assert aws.record["agentRuntimeId"] == RUNTIME_ID  # known from the create answer, even without waiting


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--name", "coding-agent"], "no hyphens"),
        (["--idle-timeout", "30"], "between 60 and 28800"),
        (["--idle-timeout", "7200", "--max-lifetime", "3600"], "cannot exceed the max lifetime"),
        (["--mount-path", "/mnt/workspace/deeper"], "one level under /mnt"),
    ],
)
def test_create_refuses_what_aws_would_reject_before_any_call(
    aws: Harness, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    assert aws.run("create", "--image", IMAGE, "--role-arn", ROLE, "--skip-arch-check", *extra) == 1
    assert message in capsys.readouterr().err


def test_create_without_image_says_which_option_is_missing(
    aws: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    assert aws.run("create", "--role-arn", ROLE) == 1
    assert "--image" in capsys.readouterr().err


# --- update -------------------------------------------------------------------------------------------


def test_update_keeps_environment_and_lifecycle_it_was_not_asked_to_change(aws: Harness) -> None:
    current = runtime(
        environmentVariables={"MODEL_PROVIDER": "bedrock", "LOG_LEVEL": "info", **SCOPED},
        lifecycleConfiguration={"idleRuntimeSessionTimeout": 600, "maxLifetime": 3600},
        description="the coding agent",
    )
    aws.control.add_response("get_agent_runtime", current, {"agentRuntimeId": RUNTIME_ID})
    expected = {
        "agentRuntimeId": RUNTIME_ID,
        "agentRuntimeArtifact": {"containerConfiguration": {"containerUri": IMAGE_V2}},
        "roleArn": ROLE,
        "networkConfiguration": {"networkMode": "PUBLIC"},
        "protocolConfiguration": {"serverProtocol": "HTTP"},
        "filesystemConfigurations": SESSION_STORAGE,
        "environmentVariables": {"MODEL_PROVIDER": "bedrock", "LOG_LEVEL": "debug", **SCOPED},
        "lifecycleConfiguration": {"idleRuntimeSessionTimeout": 600, "maxLifetime": 3600},
        "description": "the coding agent",
    }
    aws.control.add_response("update_agent_runtime", updated(), expected)
    aws.control.add_response("get_agent_runtime", runtime(version="2"), {"agentRuntimeId": RUNTIME_ID})

    argv = [
        "update",
        RUNTIME_ID,
        "--image",
        IMAGE_V2,
        "--env",
        "LOG_LEVEL=debug",
        "--skip-arch-check",
        "--yes",
    ]
    assert aws.run(*argv) == 0
    assert "agentRuntimeArtifact, environmentVariables" in aws.out.getvalue()


def test_seed_update_flag_repeats_artifact_and_role_and_adds_session_storage(aws: Harness) -> None:
    # The seed's runtime had no session storage; its update sent only filesystemConfigurations,
    # which botocore rejects (agentRuntimeArtifact and roleArn are required).
    seed_runtime = runtime()
    del seed_runtime["filesystemConfigurations"]
    aws.control.add_response("get_agent_runtime", seed_runtime, {"agentRuntimeId": RUNTIME_ID})
    expected = {
        "agentRuntimeId": RUNTIME_ID,
        **{k: v for k, v in runtime().items() if k in deploy.rt.updatable_fields(aws.ctx.control)},
    }
    aws.control.add_response("update_agent_runtime", updated(), expected)
    aws.control.add_response("get_agent_runtime", runtime(version="2"), {"agentRuntimeId": RUNTIME_ID})

    assert aws.run("--update", RUNTIME_ID, "--yes") == 0
    assert "filesystemConfigurations" in aws.out.getvalue()


def test_update_warns_that_every_sessions_storage_resets_and_asks_first(aws: Harness) -> None:
    aws.control.add_response("get_agent_runtime", runtime(), {"agentRuntimeId": RUNTIME_ID})
    aws.control.add_response("update_agent_runtime", updated(), None)
    aws.control.add_response("get_agent_runtime", runtime(version="2"), {"agentRuntimeId": RUNTIME_ID})

    assert aws.run("update", RUNTIME_ID, "--image", IMAGE_V2, "--skip-arch-check") == 0
    assert "EVERY session of this runtime resets" in aws.out.getvalue()
    assert aws.confirmations == ["update the runtime?"]


def test_update_without_a_terminal_refuses_and_says_to_pass_yes(
    aws: Harness, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    aws.ctx.confirm = deploy_context.ask
    aws.control.add_response("get_agent_runtime", runtime(), {"agentRuntimeId": RUNTIME_ID})

    assert aws.run("update", RUNTIME_ID, "--image", IMAGE_V2, "--skip-arch-check") == 1
    err = capsys.readouterr().err
    assert "pass --yes" in err and err.count("\n") == 1


def test_update_that_fails_prints_the_failure_reason_in_one_line(
    aws: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    aws.control.add_response("get_agent_runtime", runtime(), {"agentRuntimeId": RUNTIME_ID})
    aws.control.add_response("update_agent_runtime", updated(), None)
    aws.control.add_response("get_agent_runtime", runtime("UPDATING", "2"), {"agentRuntimeId": RUNTIME_ID})
    reason = "Image pull failed:\n  manifest for coding-agent:v2 not found"
    failed = runtime("UPDATE_FAILED", "2", failureReason=reason)
    aws.control.add_response("get_agent_runtime", failed, {"agentRuntimeId": RUNTIME_ID})

    assert aws.run("update", RUNTIME_ID, "--image", IMAGE_V2, "--skip-arch-check", "--yes") == 1
    err = capsys.readouterr().err
    assert err == (
        f"deploy.py: error: runtime {RUNTIME_ID} is UPDATE_FAILED: "
        "Image pull failed: manifest for coding-agent:v2 not found\n"
    )
    assert aws.record is None


# --- ensure, lookup by name, waiting ------------------------------------------------------------------


def test_ensure_twice_changes_nothing_the_second_time(aws: Harness) -> None:
    aws.control.add_response("list_agent_runtimes", {"agentRuntimes": []}, {})
    aws.control.add_response("create_agent_runtime", created(), CREATE_REQUEST)
    aws.control.add_response("get_agent_runtime", runtime(), {"agentRuntimeId": RUNTIME_ID})
    argv = ["ensure", "--image", IMAGE, "--role-arn", ROLE, "--skip-arch-check"]
    assert aws.run(*argv) == 0

    # Second run: found by name, read, compared; no UpdateAgentRuntime is stubbed, so one would fail.
    aws.control.add_response("list_agent_runtimes", {"agentRuntimes": [listed(NAME, RUNTIME_ID)]}, {})
    aws.control.add_response("get_agent_runtime", runtime(), {"agentRuntimeId": RUNTIME_ID})
    assert aws.run(*argv) == 0
    assert "up to date (version 1, READY): nothing to change" in aws.out.getvalue()
    assert aws.confirmations == []


def test_no_command_means_ensure(aws: Harness) -> None:
    aws.control.add_response("list_agent_runtimes", {"agentRuntimes": [listed(NAME, RUNTIME_ID)]}, {})
    aws.control.add_response("get_agent_runtime", runtime(), {"agentRuntimeId": RUNTIME_ID})
    assert aws.run() == 0
    assert "nothing to change" in aws.out.getvalue()


def test_lookup_by_name_follows_next_token_to_the_suffixed_arn(aws: Harness) -> None:
    page1 = {"agentRuntimes": [listed("other_agent", "other_agent-ZZZZZZZZZZ")], "nextToken": "page-2"}
    page2 = {
        "agentRuntimes": [listed("coding_agent_v0", "coding_agent_v0-YYYYYYYYYY"), listed(NAME, RUNTIME_ID)]
    }
    aws.control.add_response("list_agent_runtimes", page1, {})
    aws.control.add_response("list_agent_runtimes", page2, {"nextToken": "page-2"})
    aws.control.add_response("get_agent_runtime", runtime(), {"agentRuntimeId": RUNTIME_ID})
    assert aws.run("ensure") == 0
    assert aws.record["agentRuntimeArn"] == ARN  # runtime/coding_agent-AbCdEf1234, not runtime/coding_agent


def test_status_of_a_missing_runtime_says_how_to_create_it(
    aws: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    aws.control.add_response(
        "list_agent_runtimes", {"agentRuntimes": [listed("other", "other-ZZZZZZZZZZ")]}, {}
    )
    assert aws.run("status") == 1
    assert "no runtime named coding_agent" in capsys.readouterr().err


def test_status_shows_environment_names_but_not_their_values(aws: Harness) -> None:
    secret = runtime(environmentVariables={"OPENAI_API_KEY": "sk-very-secret"}, failureReason="none\nreally")
    aws.control.add_response("get_agent_runtime", secret, {"agentRuntimeId": RUNTIME_ID})
    assert aws.run("status", RUNTIME_ID) == 0
    out = aws.out.getvalue()
    assert "OPENAI_API_KEY" in out and "sk-very-secret" not in out
    assert f"arn:             {ARN}" in out and "session storage: /mnt/workspace" in out


def test_wait_polls_until_ready_and_shows_each_status(aws: Harness) -> None:
    aws.control.add_response("create_agent_runtime", created(), CREATE_REQUEST)
    for status in ("CREATING", "CREATING", "READY"):
        aws.control.add_response("get_agent_runtime", runtime(status), {"agentRuntimeId": RUNTIME_ID})

    assert aws.run("create", "--image", IMAGE, "--role-arn", ROLE, "--skip-arch-check") == 0
    lines = [line.strip() for line in aws.out.getvalue().splitlines() if "status:" in line]
    assert lines == ["status: CREATING (0 s)", "status: READY (10 s)"]
    assert aws.clock.sleeps == [5.0, 5.0]


def test_wait_gives_up_after_the_time_limit(aws: Harness, capsys: pytest.CaptureFixture[str]) -> None:
    aws.control.add_response("create_agent_runtime", created(), CREATE_REQUEST)
    for _ in range(4):  # at 0, 5, 10 and 15 s
        aws.control.add_response("get_agent_runtime", runtime("CREATING"), {"agentRuntimeId": RUNTIME_ID})

    argv = ["create", "--image", IMAGE, "--role-arn", ROLE, "--skip-arch-check", "--wait-timeout", "12"]
    assert aws.run(*argv) == 1
    assert "still CREATING after 12 s" in capsys.readouterr().err


def test_create_failed_prints_the_reason_and_records_nothing(
    aws: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    aws.control.add_response("create_agent_runtime", created(), CREATE_REQUEST)
    failed = runtime("CREATE_FAILED", failureReason="Role cannot be assumed by bedrock-agentcore")
    aws.control.add_response("get_agent_runtime", failed, {"agentRuntimeId": RUNTIME_ID})
    assert aws.run("create", "--image", IMAGE, "--role-arn", ROLE, "--skip-arch-check") == 1
    assert "CREATE_FAILED: Role cannot be assumed by bedrock-agentcore" in capsys.readouterr().err
    assert aws.record is None


# --- delete -------------------------------------------------------------------------------------------


def test_delete_waits_until_gone_and_forgets_the_record(aws: Harness) -> None:
    deploy.runtime_record.write_record(ARN, RUNTIME_ID, REGION, aws.ctx.record_path)
    aws.control.add_response("list_agent_runtimes", {"agentRuntimes": [listed(NAME, RUNTIME_ID)]}, {})
    aws.control.add_response("get_agent_runtime", runtime(), {"agentRuntimeId": RUNTIME_ID})
    aws.control.add_response("delete_agent_runtime", {"status": "DELETING"}, {"agentRuntimeId": RUNTIME_ID})
    aws.control.add_response("get_agent_runtime", runtime("DELETING"), {"agentRuntimeId": RUNTIME_ID})
    aws.control.add_client_error(
        "get_agent_runtime", service_error_code="ResourceNotFoundException", http_status_code=404
    )
    assert aws.run("delete", "--yes") == 0
    assert aws.record is None
    assert "deleted runtime coding_agent-AbCdEf1234" in aws.out.getvalue()


def test_a_delete_that_fails_says_why_and_keeps_the_record(
    aws: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    deploy.runtime_record.write_record(ARN, RUNTIME_ID, REGION, aws.ctx.record_path)
    aws.control.add_response("get_agent_runtime", runtime(), {"agentRuntimeId": RUNTIME_ID})
    aws.control.add_response("delete_agent_runtime", {"status": "DELETING"}, {"agentRuntimeId": RUNTIME_ID})
    failed = runtime("DELETE_FAILED", failureReason="endpoint still in use")
    aws.control.add_response("get_agent_runtime", failed, {"agentRuntimeId": RUNTIME_ID})
    assert aws.run("delete", RUNTIME_ID, "--yes") == 1
    assert capsys.readouterr().err == (
        f"deploy.py: error: runtime {RUNTIME_ID} is DELETE_FAILED: endpoint still in use\n"
    )
    assert aws.record is not None


# --- architecture check -------------------------------------------------------------------------------

ECR_REQUEST = {
    "registryId": ACCOUNT,
    "repositoryName": "coding-agent",
    "imageIds": [{"imageTag": "v1"}],
    "acceptedMediaTypes": image_arch.MANIFEST_TYPES,
}


def ecr_image(manifest: dict[str, Any]) -> dict[str, Any]:
    return {
        "images": [
            {
                "registryId": ACCOUNT,
                "repositoryName": "coding-agent",
                "imageId": {"imageTag": "v1"},
                "imageManifest": json.dumps(manifest),
                "imageManifestMediaType": manifest["mediaType"],
            }
        ],
        "failures": [],
    }


def index(*platforms: tuple[str, str]) -> dict[str, Any]:
    return {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": f"sha256:{i}",
                "size": 1,
                "platform": {"os": os_, "architecture": arch},
            }
            for i, (os_, arch) in enumerate(platforms)
        ],
    }


SINGLE = {
    "schemaVersion": 2,
    "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
    "config": {
        "mediaType": "application/vnd.docker.container.image.v1+json",
        "digest": "sha256:cfg",
        "size": 1,
    },
    "layers": [],
}


def test_arch_check_refuses_an_amd64_image_with_the_buildx_fix(
    aws: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    aws.ecr.add_response(
        "batch_get_image", ecr_image(index(("linux", "amd64"), ("unknown", "unknown"))), ECR_REQUEST
    )
    assert aws.run("create", "--image", IMAGE, "--role-arn", ROLE) == 1  # and no CreateAgentRuntime
    err = capsys.readouterr().err
    assert "is built for linux/amd64, but AgentCore runs linux/arm64 only" in err
    assert f"docker buildx build --platform linux/arm64 -t {IMAGE} --push ." in err


def test_arch_check_accepts_an_index_with_an_arm64_entry(aws: Harness) -> None:
    aws.ecr.add_response(
        "batch_get_image", ecr_image(index(("linux", "amd64"), ("linux", "arm64"))), ECR_REQUEST
    )
    aws.control.add_response("create_agent_runtime", created(), CREATE_REQUEST)
    assert aws.run("create", "--image", IMAGE, "--role-arn", ROLE, "--no-wait") == 0
    assert f"{IMAGE} is linux/arm64" in aws.out.getvalue()


@pytest.mark.parametrize(("arch", "code"), [("arm64", 0), ("amd64", 1)])
def test_arch_check_reads_the_config_blob_of_a_single_manifest(aws: Harness, arch: str, code: int) -> None:
    aws.ecr.add_response("batch_get_image", ecr_image(SINGLE), ECR_REQUEST)
    layer = {"registryId": ACCOUNT, "repositoryName": "coding-agent", "layerDigest": "sha256:cfg"}
    blob = {"downloadUrl": "https://blob/cfg", "layerDigest": "sha256:cfg"}
    aws.ecr.add_response("get_download_url_for_layer", blob, layer)
    aws.blobs["https://blob/cfg"] = json.dumps({"os": "linux", "architecture": arch}).encode()
    if code == 0:
        aws.control.add_response("create_agent_runtime", created(), CREATE_REQUEST)
    assert aws.run("create", "--image", IMAGE, "--role-arn", ROLE, "--no-wait") == code


def test_arch_check_says_to_push_an_image_ecr_does_not_have(
    aws: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = {
        "images": [],
        "failures": [
            {"imageId": {"imageTag": "v1"}, "failureCode": "ImageNotFound", "failureReason": "not found"}
        ],
    }
    aws.ecr.add_response("batch_get_image", missing, ECR_REQUEST)
    assert aws.run("create", "--image", IMAGE, "--role-arn", ROLE) == 1
    assert "push it first" in capsys.readouterr().err


def test_arch_check_is_skipped_against_a_local_control_plane(
    aws: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "AWS_ENDPOINT_URL_BEDROCK_AGENTCORE_CONTROL", "http://127.0.0.1:8787"
    )  # as agentcore_local
    local = clients.control_plane(REGION)
    aws.ctx.control = local
    with Stubber(local) as stub:  # no ECR response is stubbed: a call to it would fail the test
        stub.add_response("create_agent_runtime", created(), CREATE_REQUEST)
        assert aws.run("create", "--image", IMAGE, "--role-arn", ROLE, "--no-wait") == 0
        stub.assert_no_pending_responses()
    assert "control plane at http://127.0.0.1:8787 is not AWS" in aws.out.getvalue()


# --- errors -------------------------------------------------------------------------------------------


def test_aws_errors_become_one_line_without_a_traceback(
    aws: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    aws.control.add_client_error(
        "create_agent_runtime",
        service_error_code="AccessDeniedException",
        service_message="User: arn:aws:iam::123456789012:user/dev is not authorized\nto perform this action",
        http_status_code=403,
    )
    assert aws.run("create", "--image", IMAGE, "--role-arn", ROLE, "--skip-arch-check") == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "CreateAgentRuntime failed: AccessDeniedException" in err and "lacks this permission" in err


def test_missing_credentials_are_one_actionable_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)  # it caches the credentials earlier tests resolved
    # Belt and braces: even a request that somehow got signed would go nowhere.
    monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_AGENTCORE_CONTROL", "http://127.0.0.1:9")
    assert deploy.main(["status"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("deploy.py: error: no AWS credentials found: run `aws configure`")
    assert err.count("\n") == 1


def test_every_layer_restates_the_same_mount_path() -> None:
    from agent.service.settings import Settings
    from agentcore_local.settings import DEFAULT_MOUNT_PATH as EMULATED

    assert rt.DEFAULT_MOUNT_PATH == EMULATED == str(Settings().workspace) == "/mnt/workspace"


def test_explain_flattens_parameter_errors_into_one_line() -> None:
    error = ParamValidationError(report='Missing required parameter in input: "roleArn"\nInvalid type')
    assert explain(error) == 'invalid request: Missing required parameter in input: "roleArn" Invalid type'
    assert "aws configure" in explain(NoCredentialsError())


def test_ctrl_c_exits_130_in_one_line(aws: Harness, capsys: pytest.CaptureFixture[str]) -> None:
    def interrupted(question: str) -> bool:
        raise KeyboardInterrupt

    aws.ctx.confirm = interrupted
    aws.control.add_response("get_agent_runtime", runtime(), {"agentRuntimeId": RUNTIME_ID})
    # No DeleteAgentRuntime is stubbed: had it been sent, the Stubber would fail the test.
    assert aws.run("delete", RUNTIME_ID) == 130
    assert capsys.readouterr().err == "deploy.py: interrupted\n"


# --- the seed's flags ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], ["ensure"]),
        (["--image", "x"], ["ensure", "--image", "x"]),
        (["--create", "--image", "x"], ["create", "--image", "x"]),
        (
            ["--region", "eu-west-1", "--update", "rt-0123456789"],
            ["update", "rt-0123456789", "--region", "eu-west-1"],
        ),
        (["--update=rt-0123456789", "--yes"], ["update", "rt-0123456789", "--yes"]),
        (["--help"], ["--help"]),
        (["status"], ["status"]),
    ],
)
def test_seed_flags_become_commands(argv: list[str], expected: list[str]) -> None:
    assert deploy.seed_flags(argv) == expected
