"""Backups through the real service: coding_agent.py (scripted model, a test double) pushes each
checkpoint to a real S3 API (moto in server mode) after its answer, and a new compute on empty
storage (a redeploy, the 14-day expiry) gets files and conversation back before its first turn."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer

from agent.backup.s3 import prefix
from tests.support.agent_process import AgentProcess, message_files

SESSION = "backup-service-" + uuid.uuid4().hex  # 47 characters: a valid runtime session id
HEADER = {"X-Amzn-Bedrock-AgentCore-Runtime-Session-Id": SESSION}


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def bucket(s3_endpoint: str) -> str:
    name = f"svc-backups-{uuid.uuid4().hex[:12]}"
    s3(s3_endpoint).create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "us-west-2"})
    return name


def s3(endpoint: str):
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-west-2",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def agent(workspace: Path, endpoint: str, bucket: str) -> AgentProcess:
    return AgentProcess(
        workspace,
        BACKUP_BUCKET=bucket,
        AWS_ENDPOINT_URL_S3=endpoint,
        AWS_REGION="us-west-2",
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
    )


def wait_for_backup(endpoint: str, bucket: str, timeout: float = 30.0) -> None:
    """latest.json is written last by a push: once it is there, the checkpoint is in S3."""
    client, key = s3(endpoint), f"{prefix(SESSION)}/latest.json"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            client.head_object(Bucket=bucket, Key=key)
            return
        except client.exceptions.ClientError:
            time.sleep(0.05)
    raise AssertionError(f"no backup at s3://{bucket}/{key} after {timeout}s")


def test_a_new_compute_on_empty_storage_restores_files_and_conversation_from_the_backup(
    tmp_path: Path, s3_endpoint: str, bucket: str
) -> None:
    first = agent(tmp_path / "before", s3_endpoint, bucket)
    first.start()
    try:
        answer = first.invoke("make files", headers=HEADER, conversation_id="c1").json()
        assert answer["workspace"]["restored_from"] is None  # a first turn
        wait_for_backup(s3_endpoint, bucket)
        deadline = time.monotonic() + 30
        while first.http.get("/ping").json()["status"] != "Healthy":  # the push holds HealthyBusy
            assert time.monotonic() < deadline, "ping stayed HealthyBusy after the push"
            time.sleep(0.05)
    finally:
        first.stop()
    stored = len(message_files(tmp_path / "before", "c1"))
    assert stored >= 2

    # The platform reset the storage (a new runtime version, or 14 days without an invocation).
    second = agent(tmp_path / "after", s3_endpoint, bucket)
    second.start()
    try:
        answer = second.invoke("make files", headers=HEADER, conversation_id="c1").json()
    finally:
        second.stop()
    workspace = answer["workspace"]
    assert workspace["restored_from"] == "backup"
    assert workspace["restore"]["checkpoint"] and workspace["restore"]["bytes"] > 0
    assert workspace["restore"]["seconds"] >= 0
    assert answer["history"]["messages_before"] == stored  # the conversation came back before the turn
    assert (tmp_path / "after" / "notes" / "a.txt").read_text() == "hello from turn one\n"


def test_another_sessions_id_finds_no_backup(tmp_path: Path, s3_endpoint: str, bucket: str) -> None:
    first = agent(tmp_path / "a", s3_endpoint, bucket)
    first.start()
    try:
        first.invoke("make files", headers=HEADER, conversation_id="c1")
        wait_for_backup(s3_endpoint, bucket)
    finally:
        first.stop()
    other = {"X-Amzn-Bedrock-AgentCore-Runtime-Session-Id": "someone-else-" + uuid.uuid4().hex}
    second = agent(tmp_path / "b", s3_endpoint, bucket)
    second.start()
    try:
        answer = second.invoke("make files", headers=other, conversation_id="c1").json()
    finally:
        second.stop()
    assert answer["workspace"]["restored_from"] is None
    assert answer["history"]["messages_before"] == 0
