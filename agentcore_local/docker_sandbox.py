"""The docker sandbox: `docker run` of the built image, storage bind-mounted at the mount path."""

from __future__ import annotations

import os
from pathlib import Path

from .sandbox import SANDBOX_INIT, Launcher, LaunchSpec

CONTAINER_PORT = 8080


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
