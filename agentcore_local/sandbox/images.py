"""Which local image a runtime's `containerUri` names (`--sandbox docker`).

The API takes only what AWS takes: an ECR URI (`ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPO:TAG`,
or `public.ecr.aws/...`). Nothing is pulled: the engine on this machine must hold the image,
under one of two names, tried in this order:

1. the URI itself, which `docker tag IMAGE URI` (or `make push`) leaves on the machine;
2. the repository path and tag without the registry (`REPO:TAG`; `:latest` when neither a tag nor
   a digest is given),
   which is what `docker build -t REPO:TAG` makes: `.../coding-agent:v1` runs `coding-agent:v1`.

A digest (`@sha256:...`) is kept on both names. serve's own runtime names `--docker-image` this
way (`ecr_uri`), so `--docker-image coding-agent:v1` and the URI above mean the same image.
"""

from __future__ import annotations

import re
import subprocess

REGISTRY = re.compile(r"^(?:[0-9]{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com(?:\.cn)?|public\.ecr\.aws)/")


def local_names(uri: str) -> list[str]:
    """The local image names `uri` may mean, in the order they are tried."""
    path = REGISTRY.sub("", uri, count=1)
    if path == uri:
        return [uri]  # no registry: a local name already (serve's own runtime, tests)
    name, at, digest = path.partition("@")
    if not at and ":" not in name.rsplit("/", 1)[-1]:
        name += ":latest"  # docker's default tag; a digest names the image without one
    return [uri, name + at + digest]


def ecr_uri(image: str, account: str, region: str) -> str:
    """A local image name as the ECR URI that names it here (kept when it is a URI already)."""
    return image if REGISTRY.match(image) else f"{account}.dkr.ecr.{region}.amazonaws.com/{image}"


class MissingImage(LookupError):
    """No local image answers to a containerUri; the message says what to do, in one line."""


def find_local_image(uri: str, docker: str = "docker") -> str:
    """The first of `local_names(uri)` the engine holds; MissingImage when none (or no engine answers)."""
    names = local_names(uri)
    for name in names:
        try:
            found = subprocess.run(
                [docker, "image", "inspect", "--format", "{{.Id}}", name],
                capture_output=True,
                text=True,
                timeout=30,
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            raise MissingImage(f"containerUri {uri}: the docker engine cannot be asked ({error})") from None
        if found.returncode == 0:
            return name
        if "no such" not in found.stderr.lower():  # the engine is down, or refused us
            detail = found.stderr.strip().splitlines()[-1:] or ["no answer"]
            raise MissingImage(f"containerUri {uri}: docker image inspect failed: {detail[0]}")
    tried = " or ".join(names)
    raise MissingImage(
        f"containerUri {uri}: no local image {tried} (nothing is pulled): build or tag it, "
        f"e.g. docker build -t {names[-1]} ."
    )
