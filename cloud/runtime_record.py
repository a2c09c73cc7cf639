"""The file deploy.py writes and client.py reads: which runtime to talk to."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import durable

REPO = Path(__file__).resolve().parent.parent
# Beside the checkout, not the working directory: client.py finds what deploy.py wrote from anywhere.
DEFAULT_PATH = REPO / ".agentcore" / "runtime.json"
PATH_VARIABLE = "AGENTCORE_RUNTIME_FILE"


def record_path(env: Mapping[str, str] = os.environ) -> Path:
    """Where the record lives: AGENTCORE_RUNTIME_FILE, else DEFAULT_PATH. The CLIs call it once, in main()."""
    return Path(env[PATH_VARIABLE]).absolute() if env.get(PATH_VARIABLE) else DEFAULT_PATH


def write_record(arn: str, runtime_id: str, region: str, path: Path) -> Path:
    """Record the deployed runtime atomically, so a killed deploy never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = json.dumps({"agentRuntimeArn": arn, "agentRuntimeId": runtime_id, "region": region}, indent=2)
    durable.write_text(path, body + "\n")
    return path


def read_arn(path: Path) -> str | None:
    """The recorded runtime ARN, or None when nothing was deployed from here."""
    try:
        return json.loads(path.read_text())["agentRuntimeArn"]
    except (FileNotFoundError, KeyError, json.JSONDecodeError):
        return None


def forget_record(arn: str, path: Path) -> bool:
    """Remove the record if it names this runtime (after a delete); True when removed."""
    if read_arn(path) != arn:
        return False
    path.unlink()
    return True
