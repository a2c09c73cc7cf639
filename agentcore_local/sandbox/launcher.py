"""Sandboxes for a session's compute: how to launch `sandbox_init.py` + the agent for one session.

- `bwrap` (bubblewrap, `bwrap.py`): the isolated default.
- `process` (here): a plain child process whose workspace is the storage directory itself. NOT
  isolated: a session can read anything the user can, other sessions included.
- `docker` (`docker.py`): the runtime's image with its own entrypoint, storage bind-mounted.

Launchers only build command lines and environments; `compute.py` runs them. Two environments
are kept apart: the host process's own (serve's PATH and locale, taken once when the launcher is
built) and the agent's (a runtime's environmentVariables among it), which `compute.py` sends to
sandbox_init over its stdin, so no runtime setting ever steers a process outside the sandbox.
"""

from __future__ import annotations

import logging
import os
import shutil
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..session_limits import SessionLimits
from .artifacts import AgentCommand
from .cgroup_tree import CgroupTree

log = logging.getLogger("agentcore_local.sandbox")
SANDBOX_INIT = Path(__file__).resolve().with_name("sandbox_init.py")
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"


@dataclass(frozen=True)
class LaunchSpec:
    """One compute: whose storage, seen where, with which environment, answering on which port."""

    name: str  # unique and filesystem-safe (runtime id + session key)
    storage_dir: Path  # host path of the session's storage
    mount_path: str  # where the agent sees it (WORKSPACE_DIR)
    port: int  # the port the agent answers on: on the host, or inside a private network namespace
    env: dict[str, str]  # from the runtime and serve's environment: for the agent only
    scratch_dir: Path  # host directory for HOME and TMPDIR when the sandbox has no private /tmp
    # Agent-facing host services: (port on the sandbox's 127.0.0.1, host unix socket). sandbox_init
    # listens on each port and forwards every connection to the socket, bound into the sandbox.
    forwards: tuple[tuple[int, Path], ...] = ()
    run_dir: Path | None = None  # host directory, private to this compute, for its sockets
    tmp_bytes: int | None = None  # the size of a private /tmp (a tmpfs of host RAM); None: no cap
    info_fd: int | None = None  # where bwrap writes its child's pid (set by compute.py)
    # Host directory bound read-only at the mount path's parent; the storage is mounted on its entry
    # at the first call (Launcher.attach), as on AWS. None: the storage is bound from the start.
    slot_dir: Path | None = None
    agent: AgentCommand | None = None  # a code-zip agent (artifacts.py); None: this checkout's coding agent
    readiness: str = "ping"  # protocols.py: "ping" (GET /ping says Healthy) or "connect" (the port answers)
    protocol_port: int = 8080  # where the agent listens in its own network (protocolConfiguration's port)
    image: str | None = None  # the version's containerUri (docker.py runs it); None: the launcher's own


def host_environment(env: dict[str, str] | os._Environ = os.environ) -> dict[str, str]:
    """What a host-side process of a compute (bwrap, sandbox_init outside a sandbox) runs with."""
    return {"PATH": env.get("PATH") or DEFAULT_PATH, "LANG": "C.UTF-8"}


class Launcher(ABC):
    """Base: what every sandbox shares. Subclasses say how to wrap the command."""

    name = "base"
    isolated = False
    private_network = False  # True: the agent is reached over a unix socket, not a host port
    reaches_host_loopback = True  # False: the agent cannot reach the host's 127.0.0.1 (docker's bridge)
    own_cgroups = True  # False: the sandbox makes its own (docker's --memory and friends)

    def __init__(self, python: str, agent_script: Path, hidden: tuple[Path, ...] = ()) -> None:
        self.python = python
        self.agent_script = agent_script
        self.hidden = hidden
        self.host_env = host_environment()  # serve's own, once: nothing a runtime sets reaches it
        self.limits: SessionLimits | None = None  # per compute (choice.py sets them)
        self.cgroups: CgroupTree | None = None  # where computes get their cgroups; None: they get none

    def workspace(self, spec: LaunchSpec) -> str:
        """WORKSPACE_DIR as the agent sees it, also the working directory of commands."""
        return spec.mount_path

    def agent_port(self) -> int | None:
        """The port the agent listens on in its own network namespace; None: pick a free host port."""
        return None

    def network_argv(self, child_pid: int, ready_fd: int, exit_fd: int, userns: str) -> list[str]:
        """The user-mode network stack for a private network namespace (only if `private_network`)."""
        raise RuntimeError(f"the {self.name} sandbox has no private network (private_network is False)")

    def environment(self, spec: LaunchSpec, home: str, tmp: str) -> dict[str, str]:
        """The agent's environment: defaults, then serve's and the runtime's, then the platform's own."""
        return {
            "PATH": self.host_env["PATH"],
            "LANG": "C.UTF-8",
            "HOME": home,
            "TMPDIR": tmp,
            "npm_config_cache": f"{tmp}/.npm",
            "npm_config_update_notifier": "false",
            **spec.env,
            "PORT": str(spec.port),
            "WORKSPACE_DIR": self.workspace(spec),
            "PYTHONUNBUFFERED": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            **self.code_path(spec),
        }

    def code_root(self, spec: LaunchSpec) -> str:
        """Where the agent sees a code zip's tree (its working directory)."""
        assert spec.agent is not None
        return str(spec.agent.code_dir)

    def code_path(self, spec: LaunchSpec) -> dict[str, str]:
        """The zip's root on the interpreter's path: its dependencies live there (direct code deployment)."""
        if spec.agent is None:
            return {}
        return {"PYTHONPATH" if spec.agent.language == "python" else "NODE_PATH": self.code_root(spec)}

    def agent_environment(self, spec: LaunchSpec) -> dict[str, str] | None:
        """The environment sandbox_init gives the agent and commands (sent over stdin); None: its own."""
        return None

    def init_argv(self, workspace: str, agent: AgentCommand | None = None) -> list[str]:
        # -I: no PYTHON* variable, user site or script directory steers the interpreter of sandbox_init.
        init = [self.python, "-I", str(SANDBOX_INIT), "--cwd", workspace]
        return [*init, "--", *(agent.argv if agent else (self.python, str(self.agent_script)))]

    def agent_dir(self, spec: LaunchSpec) -> str:
        """The agent's working directory: its code."""
        return self.code_root(spec) if spec.agent else str(self.agent_script.parent)

    def inside(self, spec: LaunchSpec) -> dict[str, object]:
        """How sandbox_init sees its sockets: {"listen": path or None, "forwards": [[port, path]]}."""
        return {"forwards": [[port, str(path)] for port, path in spec.forwards]}

    @abstractmethod
    def command(self, spec: LaunchSpec) -> tuple[list[str], dict[str, str], str]:
        """(argv, environment of the host process, working directory) that start this compute."""

    def attaches_later(self) -> bool:
        """True when this sandbox starts without the storage and gets it at the first call (attach)."""
        return False

    # docker: a containerUri -> its local image (images.MissingImage); None: a runtime runs no image
    find_image: Callable[[str], str] | None = None

    def kill_argv(self, spec: LaunchSpec) -> list[str] | None:
        """A command that kills the compute when its process will not die (docker), else None."""
        return None

    def close(self) -> None:
        """serve is stopping and every compute has ended: what the launcher made for them goes."""
        if self.cgroups is not None:
            self.cgroups.close()


class ProcessLauncher(Launcher):
    name = "process"
    isolated = False

    def workspace(self, spec: LaunchSpec) -> str:
        return str(spec.storage_dir)  # no mount namespace: the agent uses the storage directory itself

    def _scratch(self, spec: LaunchSpec) -> tuple[Path, Path]:
        return spec.scratch_dir / "home", spec.scratch_dir / "tmp"

    def agent_environment(self, spec: LaunchSpec) -> dict[str, str]:
        home, tmp = self._scratch(spec)
        return self.environment(spec, str(home), str(tmp))

    def command(self, spec: LaunchSpec) -> tuple[list[str], dict[str, str], str]:
        shutil.rmtree(spec.scratch_dir, ignore_errors=True)  # fresh compute: nothing left from the last one
        for path in self._scratch(spec):
            path.mkdir(parents=True, exist_ok=True)
        return self.init_argv(self.workspace(spec), spec.agent), dict(self.host_env), self.agent_dir(spec)
