"""What deploy.py touches outside itself (AWS clients, the terminal, time, the runtime record), in
one object, so tests hand in stubbed clients and a fake clock."""

from __future__ import annotations

import os
import secrets
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from cloud import agent_runtime as rt
from cloud import clients, image_arch, runtime_record
from cloud.errors import DeployError


def ask(question: str) -> bool:
    """Ask on the terminal; with none (a pipe, CI), say to pass --yes instead of hanging."""
    if not sys.stdin.isatty():
        raise DeployError("no terminal to confirm on: pass --yes to go ahead")
    return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")


@dataclass
class Context:
    """Everything deploy.py touches outside itself, so tests can hand in stubbed clients and a fake clock."""

    region: str
    control: Any
    client: Callable[[str, str], Any] = clients.aws  # (service, region) -> boto3 client
    out: TextIO = field(default_factory=lambda: sys.stdout)
    confirm: Callable[[str], bool] = ask
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    fetch: Callable[[str], bytes] = image_arch.download
    record_path: Path = runtime_record.DEFAULT_PATH
    new_token: Callable[[], str] = lambda: str(uuid.uuid4())
    new_scope: Callable[[], str] = lambda: secrets.token_hex(16)  # a runtime's BACKUP_SCOPE, at create
    # agentcore_local's /_local/health when the control plane is agentcore_local, else None (AWS).
    local: dict[str, Any] | None = None

    @classmethod
    def from_env(cls, region: str | None, env: Mapping[str, str] = os.environ) -> Context:
        """The real context: the environment read once (region, where the runtime record goes,
        whether AWS_ENDPOINT_URL_BEDROCK_AGENTCORE_CONTROL points at agentcore_local)."""
        region = clients.resolve_region(region, env)
        return cls(
            region,
            clients.control_plane(region),
            record_path=runtime_record.record_path(env),
            local=clients.agentcore_local(env),
        )

    def say(self, line: str) -> None:
        print(line, file=self.out, flush=True)

    def status_line(self) -> Callable[[str, float], None]:
        """Show each status as it changes (rewritten in place with the elapsed time on a terminal)."""
        tty, seen = self.out.isatty(), []

        def report(status: str, elapsed: float) -> None:
            line = f"  status: {status} ({elapsed:.0f} s)"
            if tty:
                end = "\n" if status in rt.SETTLED or status == "DELETED" else ""
                print(f"\r{line}\033[K", end=end, file=self.out, flush=True)
            elif not seen or seen[-1] != status:
                self.say(line)
            seen.append(status)

        return report
