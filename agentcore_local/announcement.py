"""What serve tells the world once it listens: STATE_DIR/endpoint.json (what `agentcore_local env
--state-dir` reads) and the console lines; and the file removed again when serve stops."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

import durable

from .state_lock import ENDPOINT_FILE


def write_endpoint(state_dir: Path, url: str, arn: str | None, aws_url: str | None = None) -> None:
    """What `agentcore_local env --state-dir` reads: the URL, the default runtime's ARN, and the
    moto server's (S3, IAM, STS for the host side: uploading a code zip, the toolkit's role)."""
    body = {"url": url, "agentRuntimeArn": arn, "awsUrl": aws_url, "pid": os.getpid()}
    durable.write_json(state_dir / ENDPOINT_FILE, body)


def remove_endpoint(state_dir: Path) -> None:
    """endpoint.json gone, if this serve wrote it (another serve's is left alone)."""
    endpoint = state_dir / ENDPOINT_FILE
    with contextlib.suppress(OSError, ValueError, KeyError):
        if json.loads(endpoint.read_text())["pid"] == os.getpid():
            endpoint.unlink()


def announce(state: Any, url: str) -> None:
    """endpoint.json and the console lines for the app whose `state` (Starlette's app.state) is given."""
    arn = state.default_runtime.arn if state.default_runtime else None
    write_endpoint(state.settings.state_dir, url, arn, state.agent_services.s3_url)
    launcher = state.sessions.launcher
    if not launcher.isolated:
        isolation = "NOT isolated: sessions can see each other's files"
    elif launcher.private_network:
        isolation = "isolated, each session on its own network"
    else:
        isolation = "isolated files and processes, but sessions SHARE the network"
    print(f"agentcore_local listening on {url} (sandbox: {launcher.name}, {isolation})", flush=True)
    if launcher.limits is not None and (launcher.cgroups or not launcher.own_cgroups):
        kernel = launcher.cgroups.describe() if launcher.cgroups else launcher.name
        print(f"each session's compute: {launcher.limits.describe()} ({kernel})", flush=True)
    if arn:
        print(f"default runtime {state.default_runtime.name}: {arn}", flush=True)
        print(f"export AGENT_ARN={arn}", flush=True)
    if state.own_agent is not None:
        print(f"your agent {state.own_agent.name}: {state.own_agent.arn}", flush=True)
