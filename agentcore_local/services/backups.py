"""Whose backups are whose in the agent-facing S3: each runtime's sessions key their checkpoints
under `v2/<BACKUP_SCOPE>/<digest of the session id>/` (docs/CONTRACT.md §6), so a runtime's
backups are one prefix, deleted with the runtime (docs/lifecycle.md). The agent's own spelling is
agent/backup/s3.py `prefix`; this package never imports agent/, so the formula is restated here and
tests/unit/agentcore_local/test_backup_scope.py checks they agree."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping

SCOPE_VARIABLE = "BACKUP_SCOPE"
SCOPE_PATTERN = re.compile(
    r"[A-Za-z0-9_-]{1,128}"
)  # one key segment; agent/service/settings.py checks the same
KEY_VERSION = "v2"
DELETE_BATCH = 1000  # DeleteObjects takes at most 1,000 keys


def scope_of(runtime_id: str, environment: Mapping[str, str]) -> str:
    """The runtime's scope: its BACKUP_SCOPE (deploy.py sets a new one at each create), else its id
    (a runtime created without deploy.py), which is new at each create too."""
    scope = environment.get(SCOPE_VARIABLE, "").strip()
    return scope if SCOPE_PATTERN.fullmatch(scope) else runtime_id


def session_prefix(scope: str, session_id: str) -> str:
    """The one prefix a session's backups live under (no trailing slash)."""
    digest = hashlib.sha256(f"agentcore-backup:{session_id}".encode()).hexdigest()
    return f"{KEY_VERSION}/{scope}/{digest}"


def delete_scope(s3, bucket: str, scope: str, batch: int = DELETE_BATCH) -> int:
    """Delete every object under the scope's prefix (ListObjectsV2, DeleteObjects); how many went."""
    deleted = 0
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{KEY_VERSION}/{scope}/")
    for page in pages:
        keys = [item["Key"] for item in page.get("Contents", [])]
        for start in range(0, len(keys), batch):
            objects = [{"Key": key} for key in keys[start : start + batch]]
            answer = s3.delete_objects(Bucket=bucket, Delete={"Objects": objects, "Quiet": True})
            if answer.get("Errors"):
                first = answer["Errors"][0]
                raise OSError(
                    f"S3 kept {len(answer['Errors'])} backup objects ({first.get('Code')}: "
                    f"{first.get('Key')})"
                )
            deleted += len(objects)
    return deleted
