"""boto3 clients for AgentCore, configured once, and the one place the region is resolved.

boto3 honours AWS_ENDPOINT_URL_BEDROCK_AGENTCORE(_CONTROL) by itself, so the same
clients reach AWS or agentcore_local without a code change.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import boto3
from botocore.config import Config

DEFAULT_REGION = "us-west-2"
REGION_HELP = f"AWS region (default: AWS_REGION, then AWS_DEFAULT_REGION, else {DEFAULT_REGION})"


def resolve_region(explicit: str | None = None, env: Mapping[str, str] = os.environ) -> str:
    """The region: the argument, else AWS_REGION / AWS_DEFAULT_REGION, else us-west-2.

    The CLIs call it once in main(); the clients below take the resolved region.
    """
    return explicit or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or DEFAULT_REGION


def agentcore_local(env: Mapping[str, str] = os.environ) -> dict | None:
    """What agentcore_local says of itself (`/_local/health`: account, region, ...) when
    AWS_ENDPOINT_URL_BEDROCK_AGENTCORE_CONTROL points at it, else None (AWS, or nothing answers)."""
    import json
    import urllib.parse
    import urllib.request

    url = env.get("AWS_ENDPOINT_URL_BEDROCK_AGENTCORE_CONTROL", "").strip().rstrip("/")
    if not url or urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        return None
    try:
        with urllib.request.urlopen(f"{url}/_local/health", timeout=3) as answer:
            health = json.loads(answer.read())
    except (OSError, ValueError):
        return None
    return health if isinstance(health, dict) and health.get("status") == "ok" else None


def data_plane(region: str, read_timeout: int = 300):
    """A bedrock-agentcore client that never re-sends a request.

    botocore's default retries re-send InvokeAgentRuntime after a read timeout, so a
    slow turn could run two or three times; callers retry only what is safe to retry.
    """
    config = Config(read_timeout=read_timeout, connect_timeout=10, retries={"total_max_attempts": 1})
    return boto3.client("bedrock-agentcore", region_name=region, config=config)


def control_plane(region: str):
    """A bedrock-agentcore-control client; standard retries are safe (idempotent calls, clientToken)."""
    return aws("bedrock-agentcore-control", region)


def aws(service: str, region: str):
    """Any other boto3 client (ecr, iam, sts) in the region, with standard retries."""
    config = Config(retries={"mode": "standard", "max_attempts": 5})
    return boto3.client(service, region_name=region, config=config)
