"""The local runtime's configuration, built once at the edge (the CLI) and passed inward."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_PORT = 8787
DEFAULT_ACCOUNT = "123456789012"
DEFAULT_REGION = "us-west-2"
DEFAULT_MOUNT_PATH = "/mnt/workspace"
GIB = 1024**3
DOCKER_START_TIMEOUT = 180.0  # an emulated arm64 image took ~40 s to answer /ping; 60 s is too close

# Variables of serve's environment that the agent gets (the runtime's environmentVariables win).
PASSTHROUGH = (
    "MODEL_PROVIDER",
    "MODEL_ID",
    "SCRIPTED_PLAN",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "OPENAI_BASE_URL",
    "OPENAI_API_KEY",
    "OLLAMA_HOST",
    "SHELL_TIMEOUT",
    "LANG",
    "NODE_EXTRA_CA_CERTS",
)


def parse_size(text: str) -> int:
    """'1G', '512M', '1048576' -> bytes."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*", text, re.IGNORECASE)
    if not match:
        raise ValueError(f"not a size: {text!r} (examples: 1G, 512M, 1048576)")
    number, unit = float(match.group(1)), match.group(2).upper()
    return int(number * 1024 ** " KMGT".index(unit or " "))


@dataclass(frozen=True)
class Settings:
    """Everything `serve` needs; `from_env` reads the environment, nothing else does."""

    state_dir: Path = Path(".agentcore/local")
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    sandbox: str = "auto"  # auto | bwrap | process | docker
    region: str = DEFAULT_REGION
    account: str = DEFAULT_ACCOUNT
    agent_script: Path = REPO / "coding_agent.py"
    python: str = "python3"  # the interpreter that runs the agent (serve's own by default)
    docker_image: str = "coding-agent:latest"
    storage_quota_bytes: int = GIB  # AWS reports about 1 GB per session (unconfirmed)
    start_timeout: float = 60.0  # seconds for a new compute to answer /ping (docker: DOCKER_START_TIMEOUT)
    stop_grace: float = 10.0  # seconds between SIGTERM and SIGKILL
    provision_seconds: float = 1.0  # CREATING/UPDATING -> READY
    reaper_interval: float = 1.0  # how often idle timeout and max lifetime are checked
    default_runtime: str | None = "coding_agent"  # registered at start; None: none
    agent_env: Mapping[str, str] = field(default_factory=dict)  # from serve's environment

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ, **overrides: object) -> Settings:
        import sys

        region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or DEFAULT_REGION
        values: dict[str, object] = {
            "region": region,
            "python": sys.executable,
            "agent_env": {name: env[name] for name in PASSTHROUGH if env.get(name)},
        }
        if env.get("AGENTCORE_LOCAL_STORAGE_QUOTA"):
            values["storage_quota_bytes"] = parse_size(env["AGENTCORE_LOCAL_STORAGE_QUOTA"])
        values.update({key: value for key, value in overrides.items() if value is not None})
        if values.get("sandbox") == "docker" and "start_timeout" not in values:
            values["start_timeout"] = DOCKER_START_TIMEOUT
        return cls(**values)  # type: ignore[arg-type]
