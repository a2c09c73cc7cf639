"""Every environment variable the service reads, in one place, read once at start-up."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from agent.model.providers import provider_variables
from agent.session_files import SESSIONS

REPO = Path(__file__).resolve().parents[2]
# AgentCore's session-storage mount; restated in the Dockerfile and by deploy (see cloud/agent_runtime.py).
DEFAULT_WORKSPACE = Path("/mnt/workspace")
# The seed's model: Claude Sonnet 4 through its US cross-region inference profile.
DEFAULT_MODEL_ID = "us.anthropic.claude-sonnet-4-20250514-v1:0"
# What the agent's shell commands inherit from its environment: what a command needs to run, find
# its files and reach the network, never the model's keys or the runtime's credentials. A runtime
# passes more on purpose by naming them in TOOL_ENV (comma-separated).
TOOL_VARIABLES = (
    "PATH", "HOME", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "TERM", "TZ", "USER", "LOGNAME",
    "SHELL", "TMPDIR", "NODE_EXTRA_CA_CERTS", "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE",
    "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
    "npm_config_cache", "npm_config_update_notifier",
)  # fmt: skip


@dataclass(frozen=True)
class Settings:
    """The service's configuration. Build it with `Settings.from_env()` at the edge."""

    workspace: Path = DEFAULT_WORKSPACE
    port: int = 8080
    host: str = "127.0.0.1"
    model_provider: str = "bedrock"
    model_id: str = DEFAULT_MODEL_ID
    scripted_plan: Path = REPO / "demo" / "plan.json"
    # The variables the providers declare (agent/model/providers.py), as set; may hold secrets: not in reprs.
    provider_env: Mapping[str, str] = field(default_factory=dict, repr=False)
    shell_timeout: int = 120
    max_prompt_chars: int = 100_000
    max_tool_output_chars: int = 20_000
    max_warm_conversations: int = 32
    backup_bucket: str | None = None  # S3 bucket for backups (agent/backup/s3.py); None: no backups
    backup_scope: str | None = None  # BACKUP_SCOPE: the runtime's own key prefix (agent/backup/s3.py prefix)
    backup_wait_seconds: float = 8.0  # at a stop, how long a running backup may still take (< the grace)
    stall_seconds: float = 30.0  # a restore or a stuck turn loop this long makes /ping Unhealthy (503)
    # Checkpoints and the turn budget (docs/checkpoints.md).
    checkpoint_keep: int = 20
    checkpoint_max_bytes: int = 256 * 2**20
    storage_quota_bytes: int = 2**30  # AWS reports about 1 GB of session storage per session
    max_turn_seconds: float = 900.0  # AgentCore's limit for a synchronous request: 15 minutes
    max_model_calls: int = 100
    # The shell tool's environment (TOOL_VARIABLES and TOOL_ENV's names, as set); never in reprs.
    tool_env: Mapping[str, str] = field(default_factory=dict, repr=False)

    @property
    def sessions_dir(self) -> Path:
        """Where FileSessionManager keeps conversation history: inside session storage."""
        return self.workspace / SESSIONS

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        """Read the environment. No I/O: the session-storage mount is not ready at import time."""
        plan = Path(env.get("SCRIPTED_PLAN", str(cls.scripted_plan)))
        return cls(
            workspace=Path(env.get("WORKSPACE_DIR", str(cls.workspace))),
            port=int(env.get("PORT", cls.port)),
            # AgentCore reaches the container from outside; locally, stay on loopback.
            host="0.0.0.0" if env.get("DOCKER_CONTAINER") else cls.host,
            model_provider=env.get("MODEL_PROVIDER", cls.model_provider).strip().lower(),
            model_id=env.get("MODEL_ID") or DEFAULT_MODEL_ID,
            scripted_plan=plan if plan.is_absolute() else REPO / plan,
            provider_env={name: env[name] for name in provider_variables() if env.get(name)},
            shell_timeout=int(env.get("SHELL_TIMEOUT", cls.shell_timeout)),
            backup_bucket=env.get("BACKUP_BUCKET", "").strip() or None,
            backup_scope=_backup_scope(env),
            stall_seconds=float(env.get("STALL_SECONDS", cls.stall_seconds)),
            checkpoint_keep=_at_least(env, "CHECKPOINT_KEEP", cls.checkpoint_keep, 2),
            checkpoint_max_bytes=_at_least(env, "CHECKPOINT_MAX_BYTES", cls.checkpoint_max_bytes, 0),
            storage_quota_bytes=_at_least(env, "STORAGE_QUOTA_BYTES", cls.storage_quota_bytes, 1),
            max_turn_seconds=float(_at_least(env, "MAX_TURN_SECONDS", cls.max_turn_seconds, 1)),
            max_model_calls=_at_least(env, "MAX_MODEL_CALLS", cls.max_model_calls, 1),
            tool_env=tool_environment(env),
        )


def tool_environment(env: Mapping[str, str]) -> dict[str, str]:
    """The variables a shell command inherits: TOOL_VARIABLES, and the names TOOL_ENV lists."""
    extra = (name.strip() for name in env.get("TOOL_ENV", "").split(","))
    names = {*TOOL_VARIABLES, *(name for name in extra if name)}
    return {name: env[name] for name in sorted(names) if name in env}


def _backup_scope(env: Mapping[str, str]) -> str | None:
    """BACKUP_SCOPE as one key segment (letters, digits, '_', '-'), or a ValueError that names it."""
    scope = env.get("BACKUP_SCOPE", "").strip()
    if scope and not re.fullmatch(r"[A-Za-z0-9_-]{1,128}", scope):
        raise ValueError(f"BACKUP_SCOPE must be 1-128 letters, digits, '_' or '-', not {scope!r}")
    return scope or None


def _at_least(env: Mapping[str, str], name: str, default: float, minimum: int) -> int:
    """A whole number from the environment, or a ValueError that names the variable."""
    raw = env.get(name)
    if raw is None:
        return int(default)
    try:
        value = int(float(raw))
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number; set it to a whole number >= {minimum}") from None
    if value < minimum:
        raise ValueError(f"{name}={raw!r} is too small; set it to a whole number >= {minimum}")
    return value
