"""Write a `docker load` archive of one layer with the architecture we say, not the host's.

`docker import --platform linux/arm64` records amd64 anyway (Docker 20.10), and a base recorded
with the wrong architecture makes `docker build --platform linux/arm64` pull or refuse it. This
writes the image the way `docker save` does (manifest.json, config, one layer.tar).

    python3 image/docker_archive.py ROOTFS.tar TAG --arch arm64 --env K=V --cmd python3 -o OUT.tar
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import tarfile
import time
from pathlib import Path

ARCHES = {"amd64": ("amd64", None), "arm64": ("arm64", "v8")}


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def image_config(layer_digest: str, arch: str, env: list[str], cmd: list[str]) -> dict:
    architecture, variant = ARCHES[arch]
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    config: dict = {
        "architecture": architecture,
        "os": "linux",
        "created": created,
        "config": {"Env": env, "Cmd": cmd or None},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{layer_digest}"]},
        "history": [{"created": created, "created_by": "image/docker_archive.py"}],
    }
    if variant:
        config["variant"] = variant
    return config


def write_archive(rootfs: Path, tag: str, arch: str, env: list[str], cmd: list[str], out: Path) -> str:
    """Write the archive; returns the image id (sha256 of its config)."""
    layer_digest = sha256_of(rootfs)
    config = json.dumps(image_config(layer_digest, arch, env, cmd), sort_keys=True).encode()
    image_id = hashlib.sha256(config).hexdigest()
    manifest = [{"Config": f"{image_id}.json", "RepoTags": [tag], "Layers": [f"{layer_digest}/layer.tar"]}]
    with tarfile.open(out, "w") as archive:
        for name, data in ((f"{image_id}.json", config), ("manifest.json", json.dumps(manifest).encode())):
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), int(time.time())
            archive.addfile(info, io.BytesIO(data))
        archive.add(rootfs, arcname=f"{layer_digest}/layer.tar")
    return image_id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rootfs", type=Path, help="the layer: an uncompressed tar of the root filesystem")
    parser.add_argument("tag", help="repository:tag the loaded image gets")
    parser.add_argument("--arch", choices=sorted(ARCHES), required=True)
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--cmd", nargs="*", default=[], help="the image's default command")
    parser.add_argument("-o", "--output", type=Path, required=True, help="where to write the archive")
    args = parser.parse_args()
    if not tarfile.is_tarfile(args.rootfs):
        parser.error(f"{args.rootfs} is not a tar archive: give the rootfs as an uncompressed .tar")
    bad = [item for item in args.env if "=" not in item]
    if bad:
        parser.error(f"--env wants KEY=VALUE, got {bad[0]!r}")
    print(write_archive(args.rootfs, args.tag, args.arch, args.env, args.cmd, args.output))


if __name__ == "__main__":
    main()
