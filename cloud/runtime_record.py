"""The file deploy.py writes and client.py reads: which runtime to talk to."""

from __future__ import annotations

import json
import os
from pathlib import Path

import durable

RECORD_PATH = Path(os.environ.get("AGENTCORE_RUNTIME_FILE", ".agentcore/runtime.json"))


def write_record(arn: str, runtime_id: str, region: str, path: Path = RECORD_PATH) -> Path:
    """Record the deployed runtime atomically, so a killed deploy never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = json.dumps({"agentRuntimeArn": arn, "agentRuntimeId": runtime_id, "region": region}, indent=2)
    durable.write_text(path, body + "\n")
    return path


def read_arn(path: Path = RECORD_PATH) -> str | None:
    """The recorded runtime ARN, or None when nothing was deployed from here."""
    try:
        return json.loads(path.read_text())["agentRuntimeArn"]
    except (FileNotFoundError, KeyError, json.JSONDecodeError):
        return None


def forget_record(arn: str, path: Path = RECORD_PATH) -> bool:
    """Remove the record if it names this runtime (after a delete); True when removed."""
    if read_arn(path) != arn:
        return False
    path.unlink()
    return True
