"""Every environment variable the service reads, in one place, read once at start-up."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from agent.providers import provider_variables

REPO = Path(__file__).resolve().parent.parent
# AgentCore's session-storage mount; restated in the Dockerfile and by deploy (see cloud/agent_runtime.py).
DEFAULT_WORKSPACE = Path("/mnt/workspace")
# The seed's model: Claude Sonnet 4 through its US cross-region inference profile.
DEFAULT_MODEL_ID = "us.anthropic.claude-sonnet-4-20250514-v1:0"


@dataclass(frozen=True)
class Settings:
    """The service's configuration. Build it with `Settings.from_env()` at the edge."""

    workspace: Path = DEFAULT_WORKSPACE
    port: int = 8080
    host: str = "127.0.0.1"
    model_provider: str = "bedrock"
    model_id: str = DEFAULT_MODEL_ID
    scripted_plan: Path = REPO / "demo" / "plan.json"
    # The variables the providers declare (agent/providers.py), as set; may hold secrets: never in reprs.
    provider_env: Mapping[str, str] = field(default_factory=dict, repr=False)
    shell_timeout: int = 120
    max_prompt_chars: int = 100_000
    max_tool_output_chars: int = 20_000
    max_warm_conversations: int = 32
    backup_bucket: str | None = None  # S3 bucket for checkpoint backups (agent/backup.py); None: no backups
    stall_seconds: float = 30.0  # a restore or a stuck turn loop this long makes /ping Unhealthy (503)

    @property
    def sessions_dir(self) -> Path:
        """Where FileSessionManager keeps conversation history: inside session storage."""
        return self.workspace / ".sessions"

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
            stall_seconds=float(env.get("STALL_SECONDS", cls.stall_seconds)),
        )
