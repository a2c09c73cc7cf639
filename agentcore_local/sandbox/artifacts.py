"""What a runtime version's agentRuntimeArtifact runs here.

- codeConfiguration (direct code deployment): the zip is fetched from the S3 this emulator serves
  (moto, `AWS_ENDPOINT_URL_S3`), checked and unpacked read-only under the state dir, keyed by its
  content (code_zip.py), and `entryPoint` runs under the managed runtime's interpreter with the
  zip's root on its path (PYTHONPATH, NODE_PATH), in the same sandbox as every session.
  PYTHON_3_x needs that exact Python here (wheels are built per minor version); NODE_22 runs the
  installed node, with a warning when its major version is not 22 (pure-JS dependencies carry over).
- containerConfiguration: under `--sandbox docker`, the local image the containerUri names runs
  with its own ENTRYPOINT/CMD (images.py says which image; a missing one is a ValidationException
  at create, a RuntimeClientError at the first call when it went since); under bwrap and process,
  this checkout's coding agent.

A missing object or a bad zip is a ValidationException at Create/UpdateAgentRuntime (AWS reports
S3 access errors then: runtime-code-deploy-common-issues); a zip that vanished since is a
RuntimeClientError at the first call.
"""

from __future__ import annotations

import functools
import glob
import hashlib
import logging
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import RuntimeClientError, ValidationException
from .code_zip import BadCodeZip, unpack
from .images import MissingImage

log = logging.getLogger("agentcore_local.artifacts")
CODE_INSIDE = "/var/task"  # where a bwrap sandbox shows the code (AWS does not document its own path)


@dataclass(frozen=True)
class AgentCommand:
    """A code-zip agent: `argv` (interpreter, then the entry point relative to `code_dir`)."""

    argv: tuple[str, ...]
    code_dir: Path  # on the host, read-only
    language: str  # "python" | "node"


@functools.cache
def interpreter(runtime: str) -> str:
    """The interpreter for a managed runtime name (looked up once); ValidationException when this
    machine lacks it."""
    if runtime.startswith("PYTHON_3_"):
        minor = runtime.removeprefix("PYTHON_3_")
        pyenv = sorted(glob.glob(str(Path.home() / f".pyenv/versions/3.{minor}.*/bin/python3.{minor}")))
        # The real binary, not a shim (pyenv's are scripts that may refuse): its prefix is what the
        # sandbox binds.
        for found in (*pyenv[-1:], shutil.which(f"python3.{minor}")):
            probe = [found, "-I", "-c", "import sys; print(sys.executable)"] if found else None
            real = probe and subprocess.run(probe, capture_output=True, text=True, timeout=30).stdout.strip()
            if real:
                return real
        raise ValidationException(
            f"runtime {runtime}: no python3.{minor} on this machine (install it, e.g. pyenv install "
            f"3.{minor}, or pick another runtime)",
            "agentRuntimeArtifact.codeConfiguration.runtime",
        )
    node = shutil.which("node")
    if not node:
        raise ValidationException(f"runtime {runtime}: no node on this machine", "agentRuntimeArtifact")
    version = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    if not version.startswith("v22."):
        log.warning("runtime %s runs on the installed node %s, not Node.js 22", runtime, version)
    return str(Path(node).resolve())


class CodeArtifacts:
    """The code zips of runtime versions, fetched from `s3_url()` (moto) and unpacked under `root`."""

    def __init__(
        self, root: Path, s3_url: Callable[[], str | None], find_image: Callable[[str], str] | None = None
    ) -> None:
        self.root = root
        self.s3_url = s3_url
        self.find_image = find_image  # docker: a containerUri -> its local image (MissingImage); else None
        self._unpacked: dict[tuple[str, str, str], Path] = {}  # S3 location -> tree, as last checked

    def check(self, body: dict[str, Any]) -> None:
        """At Create/UpdateAgentRuntime: fetch, check and unpack the zip (ValidationException)."""
        artifact = body.get("agentRuntimeArtifact") or {}
        code, container = artifact.get("codeConfiguration"), artifact.get("containerConfiguration")
        if code is not None:
            interpreter(code["runtime"])
            self._prepare(code, ValidationException)
        if container is not None and self.find_image is not None:
            try:
                self.find_image(container["containerUri"])
            except MissingImage as missing:
                field = "agentRuntimeArtifact.containerConfiguration.containerUri"
                raise ValidationException(str(missing), field) from None

    def image(self, config: dict[str, Any]) -> str | None:
        """A version's containerUri (None for a code zip)."""
        container = (config.get("agentRuntimeArtifact") or {}).get("containerConfiguration")
        return container["containerUri"] if container else None

    def command(self, config: dict[str, Any]) -> AgentCommand | None:
        """What a version runs: None for our coding agent (a containerConfiguration)."""
        code = (config.get("agentRuntimeArtifact") or {}).get("codeConfiguration")
        if code is None:
            return None
        tree = self._prepare(code, RuntimeClientError)
        language = "python" if code["runtime"].startswith("PYTHON") else "node"
        return AgentCommand((interpreter(code["runtime"]), *code["entryPoint"]), tree, language)

    def _prepare(self, code: dict[str, Any], error: type[Exception]) -> Path:
        s3 = code["code"]["s3"]
        location = (s3["bucket"], s3["prefix"], s3.get("versionId") or "")
        where = f"s3://{s3['bucket']}/{s3['prefix']}"
        if (tree := self._unpacked.get(location)) is not None and tree.is_dir():
            return tree
        data = self._fetch(location, where, error)
        tree = self.root / hashlib.sha256(data).hexdigest()[:32]
        try:
            unpack(data, code["entryPoint"][0], tree)
        except BadCodeZip as bad:
            raise _error(error, f"the code at {where} cannot run: {bad}") from None
        self._unpacked[location] = tree
        return tree

    def _fetch(self, location: tuple[str, str, str], where: str, error: type[Exception]) -> bytes:
        import botocore.exceptions

        url = self.s3_url()
        if url is None:
            raise _error(error, "agentcore_local serves no S3 yet: retry once serve has started")
        s3 = s3_client(url)
        bucket, key, version = location
        extra = {"VersionId": version} if version else {}
        try:
            return s3.get_object(Bucket=bucket, Key=key, **extra)["Body"].read()
        except botocore.exceptions.ClientError as failure:
            code = failure.response.get("Error", {}).get("Code", "error")
            raise _error(error, f"the code zip {where} cannot be read ({code}): upload it first") from None


def s3_client(url: str) -> Any:
    """boto3's S3 client on the moto server serve runs (it checks no signature)."""
    import boto3

    keys = {"aws_access_key_id": "agentcore-local", "aws_secret_access_key": "agentcore-local"}
    return boto3.client("s3", endpoint_url=url, region_name="us-east-1", **keys)


def _error(kind: type[Exception], message: str) -> Exception:
    if kind is ValidationException:
        return ValidationException(message, "agentRuntimeArtifact.codeConfiguration.code")
    return kind(message)
