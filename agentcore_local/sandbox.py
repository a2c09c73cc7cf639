"""Sandboxes for a session's compute: how to launch `sandbox_init.py` + the agent for one session.

- `bwrap` (bubblewrap, `bwrap_sandbox.py`): the isolated default.
- `process` (here): a plain child process whose workspace is the storage directory itself. NOT
  isolated: a session can read anything the user can, other sessions included.
- `docker` (`docker_sandbox.py`): the built image, storage bind-mounted at the mount path.

Launchers only build command lines and environments; `compute.py` runs them.
"""

from __future__ import annotations

import logging
import os
import shutil
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("agentcore_local.sandbox")
SANDBOX_INIT = Path(__file__).resolve().with_name("sandbox_init.py")


@dataclass(frozen=True)
class LaunchSpec:
    """One compute: whose storage, seen where, with which environment, answering on which port."""

    name: str  # unique and filesystem-safe (runtime id + session key)
    storage_dir: Path  # host path of the session's storage
    mount_path: str  # where the agent sees it (WORKSPACE_DIR)
    port: int  # host port the agent answers on
    env: dict[str, str]  # from the runtime and serve's environment
    scratch_dir: Path  # host directory for HOME and TMPDIR when the sandbox has no private /tmp


class Launcher(ABC):
    """Base: what every sandbox shares. Subclasses say how to wrap the command."""

    name = "base"
    isolated = False

    def __init__(self, python: str, agent_script: Path, hidden: tuple[Path, ...] = ()) -> None:
        self.python = python
        self.agent_script = agent_script
        self.hidden = hidden

    def workspace(self, spec: LaunchSpec) -> str:
        """WORKSPACE_DIR as the agent sees it, also the working directory of commands."""
        return spec.mount_path

    def environment(self, spec: LaunchSpec, home: str, tmp: str) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            **spec.env,
            "PORT": str(spec.port),
            "WORKSPACE_DIR": self.workspace(spec),
            "HOME": home,
            "TMPDIR": tmp,
            "npm_config_cache": f"{tmp}/.npm",
            "npm_config_update_notifier": "false",
            "BYPASS_TOOL_CONSENT": "true",
            "STRANDS_NON_INTERACTIVE": "true",
            "PYTHONUNBUFFERED": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
        }

    def init_argv(self, workspace: str) -> list[str]:
        return [self.python, str(SANDBOX_INIT), "--cwd", workspace, "--", self.python, str(self.agent_script)]

    @abstractmethod
    def command(self, spec: LaunchSpec) -> tuple[list[str], dict[str, str], str]:
        """(argv, environment, working directory) that start this compute."""

    def kill_argv(self, spec: LaunchSpec) -> list[str] | None:
        """A command that kills the compute when its process will not die (docker), else None."""
        return None


class ProcessLauncher(Launcher):
    name = "process"
    isolated = False

    def workspace(self, spec: LaunchSpec) -> str:
        return str(spec.storage_dir)  # no mount namespace: the agent uses the storage directory itself

    def command(self, spec: LaunchSpec) -> tuple[list[str], dict[str, str], str]:
        shutil.rmtree(spec.scratch_dir, ignore_errors=True)  # fresh compute: nothing left from the last one
        home, tmp = spec.scratch_dir / "home", spec.scratch_dir / "tmp"
        home.mkdir(parents=True, exist_ok=True)
        tmp.mkdir(parents=True, exist_ok=True)
        env = self.environment(spec, str(home), str(tmp))
        return self.init_argv(self.workspace(spec)), env, str(self.agent_script.parent)


class SandboxUnavailable(RuntimeError):
    """The --sandbox asked for cannot run here; serve's CLI prints it as one line."""


def choose(
    kind: str, python: str, agent_script: Path, hidden: tuple[Path, ...], docker_image: str
) -> Launcher:
    """The launcher for --sandbox KIND; `auto` is bwrap where it works, else process (with a warning)."""
    if kind == "docker":
        from .docker_sandbox import DockerLauncher

        return DockerLauncher(docker_image)
    if kind in ("auto", "bwrap"):
        from .bwrap_sandbox import BwrapLauncher, bwrap_works

        if bwrap_works():
            return BwrapLauncher(python, agent_script, hidden)
        if kind == "bwrap":
            raise SandboxUnavailable(
                "--sandbox bwrap: bubblewrap is missing or cannot create namespaces here "
                "(install bubblewrap, or use --sandbox process, which is NOT isolated)"
            )
        log.warning("bubblewrap unavailable: sessions run as plain processes, NOT isolated from each other")
    if kind not in ("auto", "process"):
        raise SandboxUnavailable(f"unknown sandbox {kind!r}: use auto, bwrap, process or docker")
    return ProcessLauncher(python, agent_script, hidden)
