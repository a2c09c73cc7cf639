"""`serve --agent PATH`: a directory on this machine registered as a code-zip runtime, for the quick
loop. The directory is zipped into the S3 serve runs and deployed as any direct-code-deployment
zip is (artifacts.py), so what runs is what a CreateAgentRuntime of that zip would run."""

from __future__ import annotations

import io
import os
import sys
import zipfile
from pathlib import Path
from typing import Any

ENTRY_FILES = ("main.py", "agent.py", "app.py", "index.js", "main.js")  # the first present is the entry
BUCKET = "agentcore-local-agents"


def entry_of(path: Path) -> tuple[Path, str]:
    """(the directory, its entry file): PATH may name the file itself; ValueError when none is found."""
    if path.is_file():
        return path.parent, path.name
    for name in ENTRY_FILES:
        if (path / name).is_file():
            return path, name
    raise ValueError(f"--agent {path}: no entry file there (one of {', '.join(ENTRY_FILES)})")


def zip_dir(root: Path) -> bytes:
    """The directory as a zip, its POSIX modes kept; hidden entries (.git, .venv) left out."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for top, dirs, files in os.walk(root):
            dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "__pycache__")
            for name in sorted(files):
                if not name.startswith("."):
                    file = Path(top, name)
                    archive.write(file, file.relative_to(root).as_posix())
    return buffer.getvalue()


def agent_request(path: Path, s3: Any, account: str, mount_path: str) -> dict[str, Any]:
    """Upload PATH's zip with `s3` (a boto3 client on serve's S3); the CreateAgentRuntime body."""
    root, entry = entry_of(path)
    name = "".join(c if c.isalnum() else "_" for c in root.resolve().name)[:40] or "agent"
    key = f"{name}/code.zip"
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key=key, Body=zip_dir(root))
    runtime = f"PYTHON_3_{sys.version_info.minor}" if entry.endswith(".py") else "NODE_22"
    return {
        "agentRuntimeName": name if name[0].isalpha() else f"agent_{name}",
        "agentRuntimeArtifact": {
            "codeConfiguration": {
                "code": {"s3": {"bucket": BUCKET, "prefix": key}},
                "runtime": runtime,
                "entryPoint": [entry],
            }
        },
        "roleArn": f"arn:aws:iam::{account}:role/AgentCoreRuntimeRole",
        "networkConfiguration": {"networkMode": "PUBLIC"},
        "protocolConfiguration": {"serverProtocol": "HTTP"},
        "filesystemConfigurations": [{"sessionStorage": {"mountPath": mount_path}}],
        "description": f"{root} (serve --agent)",
    }
