"""The runtime's execution role, made from the templates in iam/: get-or-create, then bring up to date."""

from __future__ import annotations

import json
import string
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from cloud.errors import error_code

IAM_DIR = Path(__file__).resolve().parent.parent / "iam"
POLICY_NAME = "agentcore-runtime"


def render(template: Path, *, account_id: str, region: str, repository: str) -> dict[str, Any]:
    """A policy template with ${ACCOUNT_ID}, ${REGION} and ${ECR_REPOSITORY} filled in."""
    text = string.Template(template.read_text()).substitute(
        ACCOUNT_ID=account_id, REGION=region, ECR_REPOSITORY=repository
    )
    return json.loads(text)


def with_backup_bucket(permissions: dict[str, Any], bucket: str) -> dict[str, Any]:
    """The permissions plus iam/backup-policy-statement.json for `bucket`: GetObject and PutObject
    under v2/ only, where runtimes keep their backups (v2/<BACKUP_SCOPE>/...; not the older v1/
    layout). No ListBucket: a session cannot enumerate others' prefixes; no DeleteObject."""
    template = (IAM_DIR / "backup-policy-statement.json").read_text()
    statement = json.loads(string.Template(template).substitute(BACKUP_BUCKET=bucket))
    return {**permissions, "Statement": [*permissions["Statement"], statement]}


def _missing(e: ClientError) -> bool:
    return error_code(e) == "NoSuchEntity"


def ensure_role(iam, role_name: str, trust: dict, permissions: dict) -> tuple[str, list[str]]:
    """Create the role or bring its trust and inline policy up to date; return its ARN and what changed."""
    changed: list[str] = []
    try:
        role = iam.get_role(RoleName=role_name)["Role"]
    except ClientError as e:
        if not _missing(e):
            raise
        role = iam.create_role(
            RoleName=role_name,
            AssumeRolePolicyDocument=json.dumps(trust),
            Description="Execution role of the coding agent's AgentCore runtime (deploy.py role)",
        )["Role"]
        changed.append("created role")
    else:
        if role["AssumeRolePolicyDocument"] != trust:  # boto3 hands back the decoded JSON
            iam.update_assume_role_policy(RoleName=role_name, PolicyDocument=json.dumps(trust))
            changed.append("updated trust policy")

    try:
        current = iam.get_role_policy(RoleName=role_name, PolicyName=POLICY_NAME)["PolicyDocument"]
    except ClientError as e:
        if not _missing(e):
            raise
        current = None
    if current != permissions:
        iam.put_role_policy(
            RoleName=role_name, PolicyName=POLICY_NAME, PolicyDocument=json.dumps(permissions)
        )
        changed.append(f"{'updated' if current else 'added'} permissions policy {POLICY_NAME}")
    return role["Arn"], changed
