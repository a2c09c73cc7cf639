"""A second implementation of the AWS APIs against agentcore_local: the AWS SDK for JavaScript v3.

Starts agentcore_local (in this process, real sandboxes) and runs tests/e2e/local/js/conformance.test.js
with `node --test`; the SDK finds the server through AWS_ENDPOINT_URL_BEDROCK_AGENTCORE(_CONTROL),
as it would any endpoint. The pinned SDK packages are installed with `npm ci` when
tests/e2e/local/js/node_modules is missing or older than package-lock.json. Without node and npm the test
is skipped, except in CI, where it fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.local_runtime import PLAN, local_runtime

JS = Path(__file__).resolve().parent / "js"


def npm_ci() -> None:
    """`npm ci` unless node_modules already holds what package-lock.json pins."""
    installed = JS / "node_modules" / ".package-lock.json"
    lock = JS / "package-lock.json"
    if installed.exists() and installed.stat().st_mtime >= lock.stat().st_mtime:
        return
    subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=JS, check=True, timeout=300
    )


@pytest.fixture(scope="module")
def node() -> str:
    found = shutil.which("node")
    if found is None or shutil.which("npm") is None:
        if os.environ.get("CI"):
            pytest.fail("node and npm are needed for the JavaScript SDK conformance run (Node.js 20+)")
        pytest.skip("node and npm are not installed: the JavaScript SDK conformance run needs Node.js 20+")
    npm_ci()
    return found


def test_the_javascript_sdk_drives_agentcore_local_end_to_end(node: str, tmp_path: Path) -> None:
    with local_runtime(tmp_path) as local:
        env = {
            "PATH": os.environ["PATH"],
            "HOME": str(tmp_path),  # no ~/.aws of the machine's user
            "AWS_ENDPOINT_URL_BEDROCK_AGENTCORE": local.url,
            "AWS_ENDPOINT_URL_BEDROCK_AGENTCORE_CONTROL": local.url,
            "AWS_REGION": "us-west-2",
            "AWS_ACCESS_KEY_ID": "agentcore-local",
            "AWS_SECRET_ACCESS_KEY": "agentcore-local",
            "AWS_EC2_METADATA_DISABLED": "true",
            "SCRIPTED_PLAN": str(PLAN),
        }
        done = subprocess.run(
            [node, "--test", "--test-reporter=spec", "conformance.test.js"],
            cwd=JS,
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
        )
    report = done.stdout + done.stderr
    print(report)
    assert done.returncode == 0, report
    assert "# fail 0" in report or "fail 0" in report, report
