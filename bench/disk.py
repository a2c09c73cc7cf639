"""Section 9: what a filesystem of the quota's size costs a session's start. A new session's
first exec (a cold bwrap sandbox, no warm pool) on a serve with a volume per session against one
with --no-storage-volume, interleaved call by call; and the volume's own parts, in this process:
making a 1 GiB image (mkfs + mount) at a session's first start, and mounting it again at a resume.

Run: python -m bench.disk [REPEATS]   (prints one JSON object)
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from agentcore_local.storage import Volumes, unmount_under
from bench.runtime import LocalRuntime, new_session

GIB = 2**30


def volume_parts(repeats: int, scratch: Path) -> dict:
    """mkfs + mount of a fresh 1 GiB image, and the mount of an existing one, in milliseconds."""
    volumes, why = Volumes.probe(GIB, scratch / "probe")
    if volumes is None:
        return {"available": False, "why": why}
    made, remounted = [], []
    try:
        for n in range(repeats):
            root = scratch / f"s{n}"
            started = time.perf_counter()
            volumes.mount(root, root / "storage")
            made.append((time.perf_counter() - started) * 1000)
            volumes.detach(root / "storage")
            started = time.perf_counter()
            volumes.mount(root, root / "storage")
            remounted.append((time.perf_counter() - started) * 1000)
            volumes.detach(root / "storage")
    finally:
        unmount_under(scratch)
    image = scratch / "s0" / "storage.img"
    return {
        "available": True,
        "make_and_mount_ms": statistics.median(made),
        "remount_ms": statistics.median(remounted),
        "image_on_host_bytes": image.stat().st_blocks * 512,
    }


def first_exec(rt: LocalRuntime, client) -> float:
    session = new_session("disk")
    started = time.perf_counter()
    code, _ = rt.command(client, session, "true")
    elapsed = time.perf_counter() - started
    assert code == 0
    rt.stop(client, session)
    return elapsed


def start_cost(repeats: int = 5) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-disk-") as tmp:
        parts = volume_parts(repeats, Path(tmp, "parts"))
        if not parts["available"]:
            return {"volume": parts}
        with_volume = LocalRuntime(Path(tmp, "volume"), pool=0)
        without = LocalRuntime(Path(tmp, "measured"), pool=0, extra=("--no-storage-volume",))
        try:
            clients = with_volume.client(), without.client()
            first_exec(with_volume, clients[0])  # each server's first start warms the page cache
            first_exec(without, clients[1])
            on, off = [], []
            for _ in range(repeats):
                on.append(first_exec(with_volume, clients[0]))
                off.append(first_exec(without, clients[1]))
        finally:
            with_volume.close()
            without.close()
    return {
        "repeats": repeats,
        "volume": parts,
        "first_exec_with_volume_s": statistics.median(on),
        "first_exec_without_s": statistics.median(off),
        "ratio": statistics.median(on) / statistics.median(off),
    }


def rows(d: dict, row) -> list[str]:
    """Section 9 of make bench's table (`row` is bench.py's formatter)."""
    parts = d["volume"]
    if not parts["available"]:
        return [row(9, "a filesystem per session", f"not measured: {parts['why']}")]
    return [
        row(
            9,
            "a new session's first exec, with a volume per session vs a measured quota",
            f"{d['first_exec_with_volume_s'] * 1000:.0f} ms vs {d['first_exec_without_s'] * 1000:.0f} ms = "
            f"**{d['ratio']:.2f} x**",
        ),
        row(
            9,
            "the volume's part: mkfs + mount of a 1 GiB image at a first start, mount at a resume",
            f"{parts['make_and_mount_ms']:.0f} ms, {parts['remount_ms']:.0f} ms "
            f"({parts['image_on_host_bytes'] / 2**20:.1f} MiB on the host)",
        ),
    ]


if __name__ == "__main__":
    print(json.dumps(start_cost(int(sys.argv[1]) if len(sys.argv) > 1 else 5), indent=2))
