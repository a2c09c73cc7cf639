"""The S3 bucket for checkpoint backups: get-or-create, then bring its protection up to date.

Versioning (an overwritten or expired object stays recoverable for NONCURRENT_DAYS), default
encryption (SSE-S3; a KMS key the bucket already uses is kept), public access blocked, TLS
required, and an expiry rule under `v1/` and `v2/`. The agent re-uploads objects it still uses
every 30 days (agent/backup/s3.py REFRESH_AFTER_DAYS), so a backup outlives its session's last
invocation by at least expiry - 30 days.
"""

from __future__ import annotations

import json
import re
from typing import Any

from botocore.exceptions import ClientError

from cloud.errors import DeployError

EXPIRY_DAYS = 90
# agent/backup/s3.py REFRESH_AFTER_DAYS (30) + AgentCore's 14 days without an invocation + a day.
MIN_EXPIRY_DAYS = 45
NONCURRENT_DAYS = 7
# The expiry rules, per key layout: v1/ (keyed by session id only, before runtime scopes) and v2/
# (v2/<the runtime's BACKUP_SCOPE>/...): (prefix, expiry rule id, delete-marker rule id).
RULES = (
    ("v1/", "agentcore-backup-expiry", "agentcore-backup-delete-markers"),
    ("v2/", "agentcore-backup-expiry-v2", "agentcore-backup-delete-markers-v2"),
)
RULE_IDS = tuple(rule for _, *ids in RULES for rule in ids)
SCOPED = "v2"  # agent/backup/s3.py prefix: v2/<scope>/<digest of the session id>
DELETE_BATCH = 1000  # DeleteObjects takes at most 1,000 keys
TLS_SID = "AgentCoreBackupsOnlyOverTLS"
PUBLIC_ACCESS_BLOCK = {
    "BlockPublicAcls": True,
    "IgnorePublicAcls": True,
    "BlockPublicPolicy": True,
    "RestrictPublicBuckets": True,
}
_NAME = re.compile(r"(?!xn--)(?!.*\.\.)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


def check_name(name: str) -> str:
    """The bucket name, or ValueError saying what S3 accepts."""
    if not _NAME.fullmatch(name) or name.endswith("-s3alias"):
        raise ValueError(
            f"{name!r} is not a valid S3 bucket name: 3-63 characters, lowercase letters, digits, '-' and '.'"
        )
    return name


def lifecycle_rules(expiry_days: int) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = []
    for prefix, expiry, markers in RULES:
        rules.append(
            {
                "ID": expiry,
                "Filter": {"Prefix": prefix},
                "Status": "Enabled",
                "Expiration": {"Days": expiry_days},
                "NoncurrentVersionExpiration": {"NoncurrentDays": NONCURRENT_DAYS},
                "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
            }
        )
        # a delete marker left alone once its versions expired
        rules.append(
            {
                "ID": markers,
                "Filter": {"Prefix": prefix},
                "Status": "Enabled",
                "Expiration": {"ExpiredObjectDeleteMarker": True},
            }
        )
    return rules


def scope_prefix(scope: str) -> str:
    """Where every backup of the runtime whose BACKUP_SCOPE is `scope` lives."""
    return f"{SCOPED}/{scope}/"


def delete_scope(s3: Any, bucket: str, scope: str, batch: int = DELETE_BATCH) -> int:
    """Delete every version and delete marker under the scope's prefix (the bucket is versioned:
    a plain delete would leave the old versions restorable for NONCURRENT_DAYS); how many went."""
    deleted = 0
    pages = s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=scope_prefix(scope))
    for page in pages:
        found = [*page.get("Versions", []), *page.get("DeleteMarkers", [])]
        objects = [{"Key": item["Key"], "VersionId": item["VersionId"]} for item in found]
        for start in range(0, len(objects), batch):
            part = objects[start : start + batch]
            answer = s3.delete_objects(Bucket=bucket, Delete={"Objects": part, "Quiet": True})
            if answer.get("Errors"):
                first = answer["Errors"][0]
                raise DeployError(
                    f"S3 kept {len(answer['Errors'])} backup objects of s3://{bucket}/{scope_prefix(scope)} "
                    f"({first.get('Code')}: {first.get('Message')}); run the delete again"
                )
            deleted += len(part)
    return deleted


def tls_statement(bucket: str) -> dict[str, Any]:
    return {
        "Sid": TLS_SID,
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }


def _code(error: ClientError) -> str:
    return error.response["Error"]["Code"]


def _get(call: Any, missing: str, **kwargs: Any) -> dict | None:
    try:
        return call(**kwargs)
    except ClientError as e:
        if _code(e) != missing:
            raise
        return None


def ensure_bucket(s3: Any, name: str, region: str, expiry_days: int = EXPIRY_DAYS) -> list[str]:
    """Create the bucket if missing and bring its settings up to date; return what changed."""
    if expiry_days < MIN_EXPIRY_DAYS:
        raise DeployError(
            f"--backup-expiry-days {expiry_days} is too short: at least {MIN_EXPIRY_DAYS} "
            "(objects in use are re-uploaded every 30 days, and a session may sit idle 14 days)"
        )
    changed = []
    try:
        head = s3.head_bucket(Bucket=name)
    except ClientError as e:
        if _code(e) in ("403", "AccessDenied", "Forbidden"):
            raise DeployError(
                f"bucket {name} exists but this account cannot use it (another account may own it): "
                "choose another --backup-bucket name"
            ) from e
        if _code(e) not in ("404", "NoSuchBucket", "NotFound"):
            raise
        where = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
        s3.create_bucket(Bucket=name, **where)
        changed.append("created")
    else:
        found = head.get("BucketRegion")
        if found and found != region:
            raise DeployError(
                f"bucket {name} is in {found}, the runtime in {region}: use a bucket in {region}, "
                "so backups stay in the runtime's region"
            )

    if s3.get_bucket_versioning(Bucket=name).get("Status") != "Enabled":
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        changed.append("versioning enabled")

    blocked = _get(s3.get_public_access_block, "NoSuchPublicAccessBlockConfiguration", Bucket=name)
    if (blocked or {}).get("PublicAccessBlockConfiguration") != PUBLIC_ACCESS_BLOCK:
        s3.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration=PUBLIC_ACCESS_BLOCK)
        changed.append("public access blocked")

    encryption = _get(s3.get_bucket_encryption, "ServerSideEncryptionConfigurationNotFoundError", Bucket=name)
    rules = (encryption or {}).get("ServerSideEncryptionConfiguration", {}).get("Rules", [])
    if not any(r.get("ApplyServerSideEncryptionByDefault", {}).get("SSEAlgorithm") for r in rules):
        default = {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
        s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={"Rules": [default]})
        changed.append("default encryption SSE-S3")

    lifecycle = _get(s3.get_bucket_lifecycle_configuration, "NoSuchLifecycleConfiguration", Bucket=name)
    current = (lifecycle or {}).get("Rules", [])
    ours = [r for r in current if r.get("ID") in RULE_IDS]
    if _comparable(ours) != _comparable(lifecycle_rules(expiry_days)):
        others = [r for r in current if r.get("ID") not in RULE_IDS]  # someone else's rules stay
        rules = {"Rules": [*others, *lifecycle_rules(expiry_days)]}
        s3.put_bucket_lifecycle_configuration(Bucket=name, LifecycleConfiguration=rules)
        changed.append(f"expiry after {expiry_days} days (old versions after {NONCURRENT_DAYS})")

    found_policy = _get(s3.get_bucket_policy, "NoSuchBucketPolicy", Bucket=name)
    policy = (
        json.loads(found_policy["Policy"]) if found_policy else {"Version": "2012-10-17", "Statement": []}
    )
    if not any(s.get("Sid") == TLS_SID for s in policy["Statement"]):
        policy["Statement"].append(tls_statement(name))
        s3.put_bucket_policy(Bucket=name, Policy=json.dumps(policy))
        changed.append("TLS required")
    return changed


def _comparable(rules: list[dict]) -> list[str]:
    return sorted(json.dumps(r, sort_keys=True, default=str) for r in rules)
