"""Section 10: what a filesystem of the quota's size costs a session's start. A new session's
first exec (a cold bwrap sandbox, no warm pool) on a serve with a volume per session against one
with --no-storage-volume, interleaved call by call; and the volume's own parts, in this process:
making a 1 GiB image (mkfs + mount) at a session's first start, and mounting it again at a resume.
And what a disk fill costs the others: session B's exec, idle and while session A fills its
64 MiB filesystem over and over, side by side.

Run: python -m bench.disk [REPEATS]   (prints one JSON object)
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from agentcore_local.storage import Volumes, unmount_under
from bench.measure import distribution_ms, timed
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


# Inside A until `stop` appears: fill the filesystem to ENOSPC, delete, again.
FILL = "while [ ! -e stop ]; do head -c 100M /dev/zero > fill 2>/dev/null; rm -f fill; done; echo done"


def under_fill(scratch: Path, samples: int) -> dict:
    """Session B's exec p50, idle and while session A fills its filesystem, on a 64 MiB quota."""
    rt = LocalRuntime(scratch, pool=0, extra=("--storage-quota", "64M"))
    try:
        client, a, b = rt.client(), new_session("fill-a"), new_session("fill-b")
        rt.command(client, b, "true")
        rt.command(client, a, "true")
        idle = [timed(lambda: rt.command(client, b, "true")) for _ in range(samples)]
        filler = threading.Thread(target=rt.command, args=(rt.client(), a, FILL))
        filler.start()
        deadline = time.monotonic() + 30  # the fill under way before B is measured
        while rt.command(client, a, "test -e fill")[0] != 0 and time.monotonic() < deadline:
            pass
        during = [timed(lambda: rt.command(client, b, "true")) for _ in range(samples)]
        rt.command(client, a, "touch stop")
        filler.join(120)
    finally:
        rt.close()
    idle_ms, during_ms = distribution_ms(idle), distribution_ms(during)
    return {"idle": idle_ms, "during": during_ms, "ratio": during_ms["p50_ms"] / idle_ms["p50_ms"]}


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
        fill = under_fill(Path(tmp, "fill"), max(10, 4 * repeats))
    return {
        "under_fill": fill,
        "repeats": repeats,
        "volume": parts,
        "first_exec_with_volume_s": statistics.median(on),
        "first_exec_without_s": statistics.median(off),
        "ratio": statistics.median(on) / statistics.median(off),
    }


def rows(d: dict, row) -> list[str]:
    """Section 10 of make bench's table (`row` is bench.py's formatter)."""
    parts, fill = d["volume"], d.get("under_fill")
    if not parts["available"] or fill is None:
        return [row(10, "a filesystem per session", f"not measured: {parts['why']}")]
    return [
        row(
            10,
            "a new session's first exec, with a volume per session vs a measured quota",
            f"{d['first_exec_with_volume_s'] * 1000:.0f} ms vs {d['first_exec_without_s'] * 1000:.0f} ms = "
            f"**{d['ratio']:.2f} x**",
        ),
        row(
            10,
            "the volume's part: mkfs + mount of a 1 GiB image at a first start, mount at a resume",
            f"{parts['make_and_mount_ms']:.0f} ms, {parts['remount_ms']:.0f} ms "
            f"({parts['image_on_host_bytes'] / 2**20:.1f} MiB on the host)",
        ),
        row(
            10,
            "session B's exec p50, idle vs while A fills its 64 MiB filesystem to ENOSPC, again and again",
            f"{fill['idle']['p50_ms']:.1f} ms vs {fill['during']['p50_ms']:.1f} ms = "
            f"**{fill['ratio']:.2f} x**",
            "<= 2 x",
            fill["ratio"] <= 2,
        ),
    ]


if __name__ == "__main__":
    print(json.dumps(start_cost(int(sys.argv[1]) if len(sys.argv) > 1 else 5), indent=2))
