"""The local runtime's configuration, built once at the edge (the CLI) and passed inward."""

from __future__ import annotations

import os
import re
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .connection_limits import ConnectionCaps
from .session_limits import SessionLimits, sized_limits

REPO = Path(__file__).resolve().parent.parent
DEFAULT_PORT = 8787
DEFAULT_ACCOUNT = "123456789012"
DEFAULT_REGION = "us-west-2"
DEFAULT_MOUNT_PATH = "/mnt/workspace"  # AgentCore's; restated per layer on purpose (cloud/agent_runtime.py)
GIB = 1024**3
DOCKER_START_TIMEOUT = 180.0  # an emulated arm64 image took ~40 s to answer /ping; 60 s is too close

# Variables of serve's environment that the agent always gets (the runtime's environmentVariables
# win). The model providers' variables are not listed here: the agent's provider registry
# (agent/model/providers.py) declares them, and the serve CLI edge (__main__.py) hands them to from_env,
# so adding a provider touches one module and this package never imports agent/ code.
PASSTHROUGH = ("SHELL_TIMEOUT", "LANG", "NODE_EXTRA_CA_CERTS")


def default_max_sessions() -> int:
    """Sized to the machine: an idle agent holds ~100 MiB and a busy one a core's share, so at most
    one session per 512 MiB of memory and 8 per core (24 GiB, 2 cores: 16)."""
    cores = os.cpu_count() or 1
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        memory = 4 * GIB
    return max(2, min(cores * 8, memory // (512 * 1024**2)))


def parse_size(text: str) -> int:
    """'1G', '512M', '1048576' -> bytes."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*", text, re.IGNORECASE)
    if not match:
        raise ValueError(f"not a size: {text!r} (examples: 1G, 512M, 1048576)")
    number, unit = float(match.group(1)), match.group(2).upper()
    return int(number * 1024 ** " KMGT".index(unit or " "))


# What boto3 is pointed at the API with: their Host headers are the API's own (host_check.py).
ENDPOINT_VARIABLES = (
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_BEDROCK_AGENTCORE",
    "AWS_ENDPOINT_URL_BEDROCK_AGENTCORE_CONTROL",
)


def endpoint_hosts(env: Mapping[str, str]) -> tuple[str, ...]:
    """The Host headers boto3 sends for the endpoint URLs in `env` (netloc, lower case)."""
    found = []
    for name in ENDPOINT_VARIABLES:
        if url := env.get(name, "").strip():
            parsed = urllib.parse.urlsplit(url)
            if parsed.hostname:
                default = 443 if parsed.scheme == "https" else 80
                name = f"[{parsed.hostname}]" if ":" in parsed.hostname else parsed.hostname
                found.append(f"{name}:{parsed.port or default}".lower())
    return tuple(found)


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
    storage_volume: bool = True  # a filesystem of the quota's size per session where serve may mount
    tmp_size_bytes: int = 512 * 2**20  # a bwrap session's private /tmp (tmpfs, host RAM): serve --tmp-size
    start_timeout: float = 60.0  # seconds for a new compute to answer /ping (docker: DOCKER_START_TIMEOUT)
    stop_grace: float = 10.0  # seconds between SIGTERM and SIGKILL
    provision_seconds: float = 1.0  # CREATING/UPDATING -> READY
    reaper_interval: float = 1.0  # how often idle timeout and max lifetime are checked
    default_runtime: str | None = "coding_agent"  # registered at start; None: none
    agent_env: Mapping[str, str] = field(default_factory=dict)  # from serve's environment
    # Agent-facing host services: (port on each sandbox's 127.0.0.1, host unix socket it reaches).
    # The only host services a session with a private network can reach (see LaunchSpec.forwards).
    forwards: tuple[tuple[int, Path], ...] = ()
    max_sessions: int = field(default_factory=default_max_sessions)  # computes at once (--max-sessions)
    pool: int = 1  # serve --pool: warm sandboxes kept started ahead of new sessions (0: none)
    max_starts: int = field(default_factory=lambda: max(2, os.cpu_count() or 1))  # starts at once
    model_backend: str = "scripted"  # serve --model-backend: scripted[=PLAN] | openai=URL | ollama=URL | none
    backend_model: str | None = None  # the model an openai/ollama backend serves (default: the modelId)
    scripted_plan: Path = REPO / "demo" / "plan.json"  # what --model-backend scripted plays
    openai_api_key: str = field(default="none", repr=False)
    # The S3 bucket (in moto, on the agent-facing listener) the agents back their checkpoints up to.
    backup_bucket: str | None = "agentcore-local-backups"  # "" or None: no backups
    agent_dir: Path | None = (
        None  # serve --agent: a directory (or entry file) registered as a code-zip runtime
    )
    connection_caps: ConnectionCaps = field(default_factory=ConnectionCaps)  # per session (forwarder.py)
    allowed_hosts: tuple[str, ...] = ()  # Host headers the API accepts besides its own (host_check.py)
    # pids, memory and CPU per compute (session_limits.py); from_env sizes them to max_sessions.
    session_limits: SessionLimits | None = None

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] = os.environ, passthrough: Sequence[str] = (), **overrides: object
    ) -> Settings:
        """Settings from serve's environment; `passthrough` names more of its variables the agent gets."""
        import sys

        region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or DEFAULT_REGION
        values: dict[str, object] = {
            "region": region,
            "python": sys.executable,
            "agent_env": {name: env[name] for name in (*PASSTHROUGH, *passthrough) if env.get(name)},
            "allowed_hosts": endpoint_hosts(env),
        }
        if env.get("SCRIPTED_PLAN"):
            plan = Path(env["SCRIPTED_PLAN"])
            values["scripted_plan"] = plan if plan.is_absolute() else REPO / plan
        if env.get("OPENAI_API_KEY"):
            values["openai_api_key"] = env["OPENAI_API_KEY"]
        if env.get("AGENTCORE_LOCAL_STORAGE_QUOTA"):
            values["storage_quota_bytes"] = parse_size(env["AGENTCORE_LOCAL_STORAGE_QUOTA"])
        # --session-memory, --session-pids, --session-cpus: each wins over its default.
        figures = {key: overrides.pop(f"session_{key}", None) for key in ("memory_bytes", "pids", "cpus")}
        values.update({key: value for key, value in overrides.items() if value is not None})
        if values.get("session_limits") is None:
            sessions = values.get("max_sessions") or default_max_sessions()
            values["session_limits"] = sized_limits(int(sessions), **figures)  # type: ignore[arg-type]
        if values.get("sandbox") == "docker" and "start_timeout" not in values:
            values["start_timeout"] = DOCKER_START_TIMEOUT
        return cls(**values)  # type: ignore[arg-type]
