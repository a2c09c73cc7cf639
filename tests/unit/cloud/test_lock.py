"""The build is locked: uv.lock matches pyproject.toml, pins every package with hashes from PyPI alone,
and every requirements*.txt is exactly what `uv export` makes of it (`make lock` rewrites them all).

uv runs offline (UV_OFFLINE) and from the lock alone (--frozen): no network, no resolution."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tests.support import REPO

UV = Path(sys.executable).parent / "uv"  # uv itself is in the lock (group "uv")
PYPI = {"registry": "https://pypi.org/simple"}
FILES = "https://files.pythonhosted.org/"
# Each export and the flags `make lock` writes it with: the container's runtime dependencies, and uv
# for `make setup` to install before anything else.
EXPORTS = {"requirements.txt": ["--no-dev"], "requirements-uv.txt": ["--only-group", "uv"]}


def uv(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "UV_OFFLINE": "1", "UV_NO_PROGRESS": "1"}
    return subprocess.run([str(UV), *args], cwd=REPO, env=env, capture_output=True, text=True)


def locked_packages() -> list[dict]:
    return tomllib.loads((REPO / "uv.lock").read_text())["package"]


def test_the_lock_is_what_pyproject_asks_for() -> None:
    result = uv("lock", "--check")
    assert result.returncode == 0, f"uv.lock is older than pyproject.toml: run make lock\n{result.stderr}"


def test_every_requirements_file_is_an_export_of_the_lock() -> None:
    assert {path.name for path in REPO.glob("requirements*.txt")} == set(EXPORTS)


@pytest.mark.parametrize(("name", "flags"), EXPORTS.items(), ids=list(EXPORTS))
def test_each_export_is_what_the_lock_gives(name: str, flags: list[str]) -> None:
    result = uv("export", "--frozen", "--no-emit-project", "--quiet", *flags)
    assert result.returncode == 0, result.stderr
    assert (REPO / name).read_text() == result.stdout, f"{name} differs from uv.lock's export: run make lock"


@pytest.mark.parametrize("name", EXPORTS)
def test_every_exported_requirement_is_pinned_exactly_with_hashes(name: str) -> None:
    text = (REPO / name).read_text().replace("\\\n", " ")
    requirements = [line for line in text.splitlines() if line[:1].isalpha()]
    assert requirements
    for line in requirements:
        assert "==" in line.split(";")[0] and "--hash=sha256:" in line, line


def test_every_locked_package_comes_from_pypi_with_a_hash_for_each_file() -> None:
    # This machine's pip config names local indexes; a fresh machine (CI, a reader's laptop) has PyPI only.
    for package in locked_packages():
        if package["source"] == {"virtual": "."}:  # the project itself
            continue
        assert package["source"] == PYPI, package["name"]
        files = [package["sdist"]] if "sdist" in package else []
        files += package.get("wheels", [])
        assert files, package["name"]
        for file in files:
            assert file["url"].startswith(FILES) and file["hash"].startswith("sha256:"), file["url"]


def test_the_lock_is_universal_and_must_resolve_for_linux_arm64() -> None:
    lock = tomllib.loads((REPO / "uv.lock").read_text())
    assert lock["requires-python"] == ">=3.11, <3.14"
    assert lock["supported-markers"] == ["sys_platform == 'linux'", "sys_platform == 'darwin'"]
    # AgentCore runs linux/arm64: uv refuses a resolution with no wheel (or sdist) there.
    assert lock["required-markers"] == ["platform_machine == 'aarch64' and sys_platform == 'linux'"]


def test_what_the_project_names_is_pinned_exactly() -> None:
    # Exact pins, so `make lock --upgrade` moves no library whose internals the code leans on
    # (pyproject.toml names where) without someone editing the pin.
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    named = project["project"]["dependencies"] + [
        entry for group in project["dependency-groups"].values() for entry in group if isinstance(entry, str)
    ]
    assert named
    for text in named:
        (specifier,) = Requirement(text).specifier  # exactly one
        assert specifier.operator == "==" and "*" not in specifier.version, text
