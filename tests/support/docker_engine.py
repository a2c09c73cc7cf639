"""The Docker engine and the local bases for the engine-gated tests (pytest -m image, make test-image):
image/engine.sh starts dockerd from Debian's packages, image/make_bases.sh makes the bases from
Debian and npm (no Docker Hub). Where neither can run the tests skip in one line, except under
CI=true, where that is a failure."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.support import REPO


def cannot(reason: str) -> None:
    """Skip with the one-line reason; under CI an image check that cannot run is a failure."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true and the image check cannot run: {reason}", pytrace=False)
    pytest.skip(reason)


def start_engine(arch: str) -> None:
    """An engine answers afterwards (started when none does), or the test skips (cannot)."""
    engine = subprocess.run([str(REPO / "image" / "engine.sh"), arch], capture_output=True, text=True)
    if engine.returncode == 3:
        cannot(engine.stderr.strip().splitlines()[-1])
    assert engine.returncode == 0, engine.stderr


def make_bases(arch: str) -> dict[str, str]:
    """{"PYTHON_BASE": tag, "NODE_BASE": tag}, made when missing (image/make_bases.sh)."""
    bases = subprocess.run(
        [str(REPO / "image" / "make_bases.sh"), arch], capture_output=True, text=True, timeout=3600
    )
    assert bases.returncode == 0, bases.stderr[-3000:]
    return dict(line.split("=", 1) for line in bases.stdout.split())
