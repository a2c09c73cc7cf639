"""Refuse to deploy an ECR image that is not linux/arm64: AgentCore Runtime only runs arm64 (Graviton).

An image pushed by `docker buildx build --push` is usually an OCI index (one entry per
platform plus attestations); one pushed after `--load` is a single manifest whose platform
is only in its config blob, which ECR serves through a presigned download URL.
"""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

from cloud.errors import DeployError

ECR_IMAGE = re.compile(
    r"(?P<registry>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/"
    r"(?P<repository>[^:@]+)(?::(?P<tag>[^:@]+))?(?:@(?P<digest>.+))?"
)
MANIFEST_TYPES = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
]
WANTED = "linux/arm64"


@dataclass(frozen=True)
class EcrImage:
    registry: str
    region: str
    repository: str
    tag: str | None
    digest: str | None

    @classmethod
    def parse(cls, uri: str) -> EcrImage | None:
        """The parts of a private ECR image URI, or None for any other registry."""
        m = ECR_IMAGE.fullmatch(uri)
        if not m:
            return None
        return cls(m["registry"], m["region"], m["repository"], m["tag"], m["digest"])

    @property
    def image_id(self) -> dict[str, str]:
        return {"imageDigest": self.digest} if self.digest else {"imageTag": self.tag or "latest"}


def fix_command(uri: str) -> str:
    return f"docker buildx build --platform linux/arm64 -t {uri} --push ."


def download(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as response:  # a presigned S3 URL from ECR
        return response.read()


def check_arm64(
    uri: str, ecr_for_region: Callable[[str], object], fetch: Callable[[str], bytes] = download
) -> str:
    """Return a one-line note when the image is fine; raise DeployError with the fix when it is not."""
    image = EcrImage.parse(uri)
    if image is None:
        return f"{uri} is not a private ECR image: architecture not checked"
    ecr = ecr_for_region(image.region)
    repo = {"registryId": image.registry, "repositoryName": image.repository}
    answer = ecr.batch_get_image(**repo, imageIds=[image.image_id], acceptedMediaTypes=MANIFEST_TYPES)
    if not answer.get("images"):
        failure = (answer.get("failures") or [{}])[0]
        why = failure.get("failureReason") or failure.get("failureCode") or "not found"
        raise DeployError(f"image {uri} is not in ECR ({why}): push it first (make build push)")
    manifest = json.loads(answer["images"][0]["imageManifest"])

    if "manifests" in manifest:  # an index / manifest list: accept it when one entry is linux/arm64
        platforms = [
            f"{p.get('os')}/{p.get('architecture')}"
            for p in (entry.get("platform") or {} for entry in manifest["manifests"])
            if p.get("os") != "unknown"  # buildx attestation manifests
        ]
    else:
        layer = ecr.get_download_url_for_layer(**repo, layerDigest=manifest["config"]["digest"])
        config = json.loads(fetch(layer["downloadUrl"]))
        platforms = [f"{config.get('os')}/{config.get('architecture')}"]

    if WANTED in platforms:
        return f"{uri} is {WANTED}"
    found = ", ".join(platforms) or "no platform"
    raise DeployError(
        f"{uri} is built for {found}, but AgentCore runs {WANTED} only; "
        f"rebuild and push it: {fix_command(uri)}"
    )
