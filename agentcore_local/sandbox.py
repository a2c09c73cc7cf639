"""Sandboxes for a session's compute: how to launch `sandbox_init.py` + the agent for one session.

- `bwrap` (bubblewrap): read-only view of the host, private /tmp, /proc and PID namespace, the
  session's storage bound read-write at the mount path, the state directory (every other
  session's storage) and the serve user's home hidden. The network is shared: the agent runs
  `npm install`.
- `process`: a plain child process whose workspace is the storage directory itself. NOT
  isolated: a session can read anything the user can, other sessions included.
- `docker`: the built image, storage bind-mounted at the mount path. Small and untested here.

Launchers only build command lines and environments; `compute.py` runs them.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("agentcore_local.sandbox")
SANDBOX_INIT = Path(__file__).resolve().with_name("sandbox_init.py")
CONTAINER_PORT = 8080


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


class BwrapLauncher(Launcher):
    name = "bwrap"
    isolated = True

    def __init__(
        self, python: str, agent_script: Path, hidden: tuple[Path, ...] = (), bwrap: str = "bwrap"
    ) -> None:
        super().__init__(python, agent_script, hidden)
        self.bwrap = bwrap

    def needed_paths(self) -> list[Path]:
        """What the agent must still see when a hidden directory contains it."""
        paths = {self.agent_script.parent, Path(sys.prefix), Path(sys.base_prefix), Path(self.python).parent}
        for tool in ("node", "npm"):
            if found := shutil.which(tool):
                paths.add(Path(found).resolve().parent.parent)
        return sorted(p.resolve() for p in paths)

    def command(self, spec: LaunchSpec) -> tuple[list[str], dict[str, str], str]:
        argv = [self.bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
        # A private /tmp and the hidden directories (the state dir, the user's home) become empty...
        covered = [Path("/tmp"), *(h.resolve() for h in self.hidden if h.resolve().is_dir())]
        covered = [c for c in covered if c != Path("/")]
        for path in covered:
            argv += ["--tmpfs", str(path)]
        # ...then what the agent needs from inside them (a checkout in /tmp or in a home) comes back
        # read-only, and a hidden directory inside such a path (the state dir in the checkout) goes again.
        shown = [p for p in self.needed_paths() if any(p != c and p.is_relative_to(c) for c in covered)]
        shown = [p for p in shown if not any(p != q and p.is_relative_to(q) for q in shown)]
        for path in shown:
            argv += ["--ro-bind", str(path), str(path)]
        for path in covered[1:]:
            if any(path.is_relative_to(p) for p in shown):
                argv += ["--tmpfs", str(path)]
        mount_root = Path(spec.mount_path).parent
        if mount_root.is_dir():
            argv += ["--tmpfs", str(mount_root)]  # nothing of the host's /mnt, only this session's storage
        argv += ["--bind", str(spec.storage_dir), spec.mount_path]
        argv += ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
        argv += ["--die-with-parent", "--chdir", str(self.agent_script.parent), "--"]
        env = self.environment(spec, "/tmp", "/tmp")
        return argv + self.init_argv(spec.mount_path), env, str(self.agent_script.parent)


class DockerLauncher(Launcher):
    """`docker run` of the built image (make build); untested here: no Docker daemon in CI."""

    name = "docker"
    isolated = True

    def __init__(self, image: str, docker: str = "docker") -> None:
        super().__init__("python", Path("coding_agent.py"))
        self.image = image
        self.docker = docker

    def command(self, spec: LaunchSpec) -> tuple[list[str], dict[str, str], str]:
        env = self.environment(spec, "/tmp", "/tmp")
        env["PORT"] = str(CONTAINER_PORT)
        env.pop("PATH")  # the image's own
        argv = [self.docker, "run", "--rm", "-i", "--name", f"agentcore-local-{spec.name}"]
        argv += ["-p", f"127.0.0.1:{spec.port}:{CONTAINER_PORT}", "--tmpfs", "/tmp"]
        argv += [
            "-v",
            f"{spec.storage_dir}:{spec.mount_path}",
            "-v",
            f"{SANDBOX_INIT}:/opt/agentcore_local/init.py:ro",
        ]
        for key in env:
            argv += ["-e", key]  # values come from our environment, not the command line
        argv += [self.image, "python", "/opt/agentcore_local/init.py", "--cwd", spec.mount_path, "--"]
        argv += ["python", "coding_agent.py"]  # relative to the image's WORKDIR
        return argv, {**os.environ, **env}, "."

    def kill_argv(self, spec: LaunchSpec) -> list[str] | None:
        return [self.docker, "kill", f"agentcore-local-{spec.name}"]


def bwrap_works(bwrap: str = "bwrap") -> bool:
    """bwrap is installed and may create namespaces here (some containers forbid it)."""
    if not shutil.which(bwrap):
        return False
    probe = [bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--unshare-pid", "--", "true"]
    try:
        return subprocess.run(probe, capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def choose(
    kind: str, python: str, agent_script: Path, hidden: tuple[Path, ...], docker_image: str
) -> Launcher:
    """The launcher for --sandbox KIND; `auto` is bwrap where it works, else process (with a warning)."""
    if kind == "docker":
        return DockerLauncher(docker_image)
    if kind in ("auto", "bwrap"):
        if bwrap_works():
            return BwrapLauncher(python, agent_script, hidden)
        if kind == "bwrap":
            raise SystemExit("--sandbox bwrap: bubblewrap is missing or cannot create namespaces here")
        log.warning("bubblewrap unavailable: sessions run as plain processes, NOT isolated from each other")
    if kind not in ("auto", "process"):
        raise SystemExit(f"unknown sandbox {kind!r}: use auto, bwrap, process or docker")
    return ProcessLauncher(python, agent_script, hidden)
