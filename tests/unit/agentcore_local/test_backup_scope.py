"""Backups belong to a runtime's life: the scope a runtime's sessions key their backups under, the
agent's and the emulator's spelling of a session's prefix agreeing, and a scope deleted whole
(ListObjectsV2 and DeleteObjects in pages, checked against botocore's model by moto)."""

from __future__ import annotations

import boto3
import pytest
from moto import mock_aws

from agent.backup.s3 import prefix
from agent.service.settings import Settings
from agentcore_local.services.backups import delete_scope, scope_of, session_prefix

SESSION = "session-" + "0" * 30


def test_the_emulator_spells_a_sessions_prefix_as_the_agent_does() -> None:
    assert session_prefix("scope_1-x", SESSION) == prefix(SESSION, "scope_1-x")
    assert prefix(SESSION, "a") != prefix(SESSION, "b")  # the same session id, another runtime
    assert prefix(SESSION).startswith("v1/")  # no scope: the layout before scopes


@pytest.mark.parametrize(
    ("environment", "scope"),
    [
        ({"BACKUP_SCOPE": "f00d" * 8}, "f00d" * 8),  # deploy.py's, kept by updates
        ({}, "rt_a-0123456789"),  # created without deploy.py: the runtime's id
        ({"BACKUP_SCOPE": " "}, "rt_a-0123456789"),
        ({"BACKUP_SCOPE": "../other"}, "rt_a-0123456789"),  # never a path out of its own segment
    ],
)
def test_a_runtimes_scope_is_its_backup_scope_or_its_id(environment: dict, scope: str) -> None:
    assert scope_of("rt_a-0123456789", environment) == scope


def test_the_agent_refuses_a_backup_scope_that_is_not_one_key_segment() -> None:
    assert Settings.from_env({"BACKUP_SCOPE": "abc_1-2"}).backup_scope == "abc_1-2"
    assert Settings.from_env({}).backup_scope is None
    with pytest.raises(ValueError, match="BACKUP_SCOPE"):
        Settings.from_env({"BACKUP_SCOPE": "a/../b"})


@mock_aws
def test_deleting_a_scope_deletes_all_of_its_objects_and_nothing_else() -> None:
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="backups")
    gone, kept = session_prefix("gone", SESSION), session_prefix("gone2", SESSION)
    for n in range(5):
        s3.put_object(Bucket="backups", Key=f"{gone}/objects/{n:04d}", Body=b"x")
    s3.put_object(Bucket="backups", Key=f"{kept}/latest.json", Body=b"{}")  # a scope that shares a stem
    assert delete_scope(s3, "backups", "gone", batch=2) == 5  # three DeleteObjects calls
    left = [o["Key"] for o in s3.list_objects_v2(Bucket="backups").get("Contents", [])]
    assert left == [f"{kept}/latest.json"]
    assert delete_scope(s3, "backups", "gone") == 0
