"""The docker sandbox: `docker run` of the built image, storage bind-mounted at the mount path."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from ..errors import RuntimeClientError
from .launcher import SANDBOX_INIT, Launcher, LaunchSpec

CONTAINER_PORT = 8080


class DockerLauncher(Launcher):
    """`docker run` of the built image; proven end to end by tests/e2e/local/test_image.py (make test-image).

    /tmp is a private tmpfs that allows exec (HOME, TMPDIR and npm's cache live there, as on AWS).
    A root serve runs the container as root, as AWS does; a non-root serve runs it as its own uid,
    so it can still measure and reset the storage the agent wrote.
    """

    reaches_host_loopback = False  # no agent-facing listener there: run it with MODEL_PROVIDER=scripted
    own_cgroups = False  # docker's own: --pids-limit, --memory, --cpus

    name = "docker"
    isolated = True

    def __init__(self, image: str, docker: str = "docker") -> None:
        super().__init__("python", Path("coding_agent.py"))
        self.image = image
        self.docker = docker

    def agent_environment(self, spec: LaunchSpec) -> dict[str, str]:
        """Sent to sandbox_init over stdin, never through the docker CLI's own environment: a runtime's
        DOCKER_HOST, PATH or LD_PRELOAD must not steer the host's docker."""
        env = self.environment(spec, "/tmp", "/tmp")
        env["PORT"] = str(CONTAINER_PORT)
        env.pop("PATH")  # the image's own
        return env

    def command(self, spec: LaunchSpec) -> tuple[list[str], dict[str, str], str]:
        self.check_image()
        argv = [self.docker, "run", "--rm", "-i", "--pull=never", "--name", f"agentcore-local-{spec.name}"]
        argv += ["-p", f"127.0.0.1:{spec.port}:{CONTAINER_PORT}"]
        argv += self.limit_flags()
        if os.getuid() != 0:
            argv += ["--user", f"{os.getuid()}:{os.getgid()}"]
        argv += [
            "-v",
            f"{spec.storage_dir}:{spec.mount_path}",
            "-v",
            f"{SANDBOX_INIT}:/opt/agentcore_local/init.py:ro",
        ]
        argv += [self.image, "python", "/opt/agentcore_local/init.py", "--cwd", spec.mount_path, "--"]
        argv += ["python", "coding_agent.py"]  # relative to the image's WORKDIR
        return argv, dict(self.host_env), "."

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

    def check_image(self) -> None:
        """Fail at once, in one line, when the engine answers but has no such image (no pull)."""
        try:
            found = subprocess.run(
                [self.docker, "image", "inspect", "--format", "{{.Id}}", self.image],
                capture_output=True,
                text=True,
                timeout=30,
            )
        except (OSError, subprocess.TimeoutExpired):
            return  # no usable docker CLI: `docker run` then fails and its own message is in the log
        if found.returncode != 0 and "no such image" in found.stderr.lower():
            raise RuntimeClientError(
                f"image {self.image} is not on this machine: build it (make build, or make test-image "
                "for a local one) or name another with --docker-image"
            )

    def kill_argv(self, spec: LaunchSpec) -> list[str] | None:
        return [self.docker, "kill", f"agentcore-local-{spec.name}"]
