"""The docker sandbox: `docker run` of the runtime's image with its own ENTRYPOINT/CMD, storage
bind-mounted at the mount path.

The container runs what AWS runs: the image as it is, nothing of ours inside (an image need not
hold Python, or a shell). sandbox_init stays on the host, as with the process sandbox: its agent
is the `docker run` client (whose output is the session's log), it polls the published port
for readiness, runs InvokeAgentRuntimeCommand's commands with `docker exec` and stops the
container with `docker stop`. Which image a containerUri names: images.py.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..errors import RuntimeClientError
from .images import MissingImage, find_local_image
from .launcher import SANDBOX_INIT, Launcher, LaunchSpec


class DockerLauncher(Launcher):
    """`docker run` of the runtime's image; proven end to end by make test-image (test_image.py,
    test_own_image.py).

    /tmp is a private tmpfs that allows exec (HOME, TMPDIR and npm's cache live there, as on AWS).
    A root serve runs the container as root, as AWS does; a non-root serve runs it as its own uid,
    so it can still measure and reset the storage the agent wrote.
    """

    reaches_host_loopback = False  # no agent-facing listener there: run it with MODEL_PROVIDER=scripted
    own_cgroups = False  # docker's own: --pids-limit, --memory, --cpus

    name = "docker"
    isolated = True

    def __init__(self, image: str, docker: str = "docker", python: str = "python3") -> None:
        super().__init__(python, Path("coding_agent.py"))
        self.image = image  # for a spec that names none (a LaunchSpec built by hand)
        self.docker = docker

    def agent_environment(self, spec: LaunchSpec) -> None:
        """None: the host-side sandbox_init and the docker client keep serve's own environment; the
        agent's goes to the container in an env file (never through the docker CLI's environment,
        where a runtime's DOCKER_HOST or LD_PRELOAD would steer the host's docker)."""
        return None

    def container_environment(self, spec: LaunchSpec) -> dict[str, str]:
        env = self.environment(spec, "/tmp", "/tmp")
        env["PORT"] = str(spec.protocol_port)
        env.pop("PATH")  # the image's own
        return env

    def container_name(self, spec: LaunchSpec) -> str:
        return f"agentcore-local-{spec.name}"

    def command(self, spec: LaunchSpec) -> tuple[list[str], dict[str, str], str]:
        if spec.agent is not None:
            raise RuntimeClientError(
                "a code-zip runtime (codeConfiguration) runs under --sandbox bwrap or process, not docker"
            )
        image = self.local_image(spec.image or self.image)
        shutil.rmtree(spec.scratch_dir, ignore_errors=True)  # fresh compute: nothing left from the last one
        spec.scratch_dir.mkdir(mode=0o700, parents=True)
        env_file = spec.scratch_dir / "env"
        env_file.touch(mode=0o600)
        env_file.write_text(env_lines(self.container_environment(spec)))
        argv = [self.docker, "run", "--rm", "--pull=never", "--name", self.container_name(spec)]
        argv += ["-p", f"127.0.0.1:{spec.port}:{spec.protocol_port}", *self.limit_flags()]
        if os.getuid() != 0:
            argv += ["--user", f"{os.getuid()}:{os.getgid()}"]
        argv += ["-v", f"{spec.storage_dir}:{spec.mount_path}", "--env-file", str(env_file), image]
        init = [self.python, "-I", str(SANDBOX_INIT), "--cwd", str(spec.scratch_dir), "--", *argv]
        return init, dict(self.host_env), str(spec.scratch_dir)

    def limit_flags(self) -> list[str]:
        """The session's limits as docker's own flags; its /tmp as large as its memory, counted in it.
        Docker mounts --tmpfs noexec by default; a binary built or unpacked in /tmp must run."""
        if self.limits is None:
            return ["--tmpfs", "/tmp:exec,mode=1777"]
        memory = str(self.limits.memory_bytes)
        return [
            "--tmpfs",
            f"/tmp:exec,mode=1777,size={memory}",
            f"--pids-limit={self.limits.pids}",
            f"--memory={memory}",
            f"--memory-swap={memory}",  # the same figure: no swap on top
            f"--cpus={self.limits.cpus:g}",
            "--oom-score-adj=1000",
        ]

    def find_image(self, uri: str) -> str:  # type: ignore[override]
        """The local image `uri` names; MissingImage when there is none (no pull)."""
        return find_local_image(uri, self.docker)

    def local_image(self, uri: str) -> str:
        """The local image `uri` names; RuntimeClientError in one line when there is none (no pull)."""
        try:
            return self.find_image(uri)
        except MissingImage as missing:
            raise RuntimeClientError(str(missing)) from None

    def inside(self, spec: LaunchSpec) -> dict[str, object]:
        """No forwards (the agent-facing listener is not reachable from docker's bridge); commands
        run in the container, and a stop is docker's own (SIGTERM to its PID 1, SIGKILL after grace)."""
        name = self.container_name(spec)
        return {
            "forwards": [],
            "exec_argv": [self.docker, "exec", "-w", spec.mount_path, name],
            "stop_argv": [self.docker, "stop", "-t", "{grace}", name],
        }

    def kill_argv(self, spec: LaunchSpec) -> list[str] | None:
        return [self.docker, "kill", self.container_name(spec)]


def env_lines(env: dict[str, str]) -> str:
    """`docker run --env-file` lines; a value holding a newline cannot be said there and is left out."""
    return "".join(f"{key}={value}\n" for key, value in env.items() if "\n" not in value and "\n" not in key)
