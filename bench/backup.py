"""Restore of the demo's workspace from backup: what a session's first turn after a storage reset costs.

The workspace is the demo's (package.json and index.js from demo/plan.json, then a real
`npm install` of express and dotenv: ~650 files) plus a conversation, checkpointed in the
store's documented layout (docs/CONTRACT.md §6), pushed by agent/backup/s3.py to a real S3 API (moto
in server mode, its own process, as agentcore_local runs it), then restored into empty
storage. The client is made from AWS_ENDPOINT_URL_S3 alone, as in a session. Every file's
bytes, mode and symlink target are checked after each restore.

    python -m bench.backup [--samples N]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from agent.backup.s3 import S3Backup  # noqa: E402
from bench.measure import distribution_ms  # noqa: E402

TARGET_S = 3.0
SESSION = "bench-backup-" + "0" * 32


def project_entries(ws: Path) -> Iterator[tuple[str, Path, os.stat_result]]:
    """Every entry of the workspace outside .sessions/: (relative path, path, lstat)."""
    for folder, dirs, names in os.walk(ws):
        if Path(folder) == ws and ".sessions" in dirs:
            dirs.remove(".sessions")
        for name in [*dirs, *names]:
            path = Path(folder, name)
            yield path.relative_to(ws).as_posix(), path, path.lstat()


def write_checkpoint(ws: Path, messages: int = 0) -> dict:
    """A checkpoint in the store's layout (docs/CONTRACT.md §6): objects, then manifests/<seq>.json."""
    store = ws / ".sessions" / ".checkpoints"
    entries: dict[str, dict] = {}
    for rel, path, st in project_entries(ws):
        if stat.S_ISLNK(st.st_mode):
            entries[rel] = {"type": "symlink", "target": os.readlink(path)}
        elif stat.S_ISDIR(st.st_mode):
            entries[rel] = {"type": "dir", "mode": stat.S_IMODE(st.st_mode)}
        else:
            data = path.read_bytes()
            sha = hashlib.sha256(data).hexdigest()
            obj = store / "objects" / sha[:2] / sha
            obj.parent.mkdir(parents=True, exist_ok=True)
            obj.write_bytes(data)
            mode, size = stat.S_IMODE(st.st_mode), st.st_size
            entries[rel] = {
                "type": "file",
                "size": size,
                "mode": mode,
                "mtime": st.st_mtime,
                "sha256": sha,
            }
    (store / "manifests").mkdir(parents=True, exist_ok=True)
    seq = len(os.listdir(store / "manifests")) + 1
    manifest = {
        "id": f"{seq:06d}",
        "seq": seq,
        "time": time.time(),
        "conversation_id": "bench",
        "messages": messages,
        "prompt": f"turn {seq}",
        "kind": "turn",
        "outcome": "answered",
        "files": entries,
        "changed": {"added": [], "modified": [], "deleted": [], "mode": []},
    }
    (store / "manifests" / f"{seq:06d}.json").write_text(json.dumps(manifest))
    return manifest


def fingerprint(ws: Path, mtimes: bool = False) -> dict[str, tuple]:
    """Every entry outside .sessions/: type, mode, and content hash (and mtime) or link target:
    what a restore must bring back. tests/unit/agent/test_backup.py holds restores to it too."""
    found: dict[str, tuple] = {}
    for rel, path, st in project_entries(ws):
        if stat.S_ISLNK(st.st_mode):
            found[rel] = ("symlink", os.readlink(path))
        elif stat.S_ISDIR(st.st_mode):
            found[rel] = ("dir", stat.S_IMODE(st.st_mode))
        else:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            found[rel] = ("file", stat.S_IMODE(st.st_mode), digest, *([int(st.st_mtime)] if mtimes else []))
    return found


def demo_workspace(ws: Path) -> str | None:
    """The demo's project after its first turn; None, or why it could not be built."""
    plan = json.loads((REPO / "demo" / "plan.json").read_text())
    for rule in plan["rules"]:
        for step in rule["steps"]:
            given = step.get("input", {})
            if given.get("command") == "create":
                path = Path(given["path"].replace("{workspace}", str(ws)))
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(given["file_text"])
    if not shutil.which("npm"):
        return "npm is not installed"
    done = subprocess.run(
        ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=ws,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return None if done.returncode == 0 else f"npm install failed: {done.stderr.strip()[-300:]}"


def conversation(ws: Path, messages: int) -> None:
    from strands.session.file_session_manager import FileSessionManager
    from strands.types.session import SessionAgent, SessionMessage

    sessions = FileSessionManager(session_id="bench", storage_dir=str(ws / ".sessions"))
    sessions.create_agent("bench", SessionAgent(agent_id="default", state={}, conversation_manager_state={}))
    for i in range(messages):
        message = {"role": ("user", "assistant")[i % 2], "content": [{"text": f"message {i} " * 40}]}
        sessions.create_message("bench", "default", SessionMessage.from_message(message, i))


@contextmanager
def s3_server() -> Iterator[str]:
    """moto's S3 in its own process on a free port (what agentcore_local serves to sessions)."""
    from agentcore_local.sandbox import free_port

    port = free_port()
    argv = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    server = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{url}/moto-api/", timeout=1).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto server did not start") from None
                time.sleep(0.05)
        yield url
    finally:
        server.terminate()
        server.wait(10)


def restore_from_backup(samples: int = 5, messages: int = 12) -> dict:
    """Push the demo's workspace once, then restore it `samples` times into empty storage."""
    root = Path(tempfile.mkdtemp(prefix="bench-backup-"))
    try:
        ws = root / "ws"
        ws.mkdir()
        why = demo_workspace(ws)
        if why:
            return {"skipped": why}
        conversation(ws, messages)
        write_checkpoint(ws, messages)
        expected = fingerprint(ws)
        with s3_server() as url:
            saved = {k: os.environ.get(k) for k in ("AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID")}
            os.environ.update(AWS_ENDPOINT_URL_S3=url)
            os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
            os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
            try:
                return _measure(root, ws, expected, samples)
            finally:
                for key, value in saved.items():
                    os.environ.pop(key) if value is None else os.environ.__setitem__(key, value)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _measure(root: Path, ws: Path, expected: dict, samples: int) -> dict:
    import boto3

    bucket = f"bench-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", region_name="us-west-2").create_bucket(
        Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "us-west-2"}
    )
    started = time.perf_counter()
    pushed = S3Backup(bucket, region="us-west-2").push(ws, SESSION)
    push_s = time.perf_counter() - started
    times, mismatches, report = [], 0, None
    for n in range(samples):
        fresh = root / f"restore-{n}"
        fresh.mkdir()
        started = time.perf_counter()
        report = S3Backup(bucket, region="us-west-2").restore_if_empty(
            fresh, SESSION
        )  # a new client each time
        times.append(time.perf_counter() - started)
        mismatches += fingerprint(fresh) != expected
    files = sum(1 for e in expected.values() if e[0] == "file")
    return {
        "files": files,
        "entries": len(expected),
        "bytes": report.bytes if report else 0,
        "downloaded_bytes": report.downloaded_bytes if report else 0,
        "first_push_s": push_s,
        "first_push_requests": pushed.requests,
        "restore": distribution_ms(times),
        "restores_not_identical": mismatches,
        "target_s": TARGET_S,
        "met": sorted(times)[len(times) // 2] <= TARGET_S and mismatches == 0,  # the median, as other rows
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=5)
    result = restore_from_backup(parser.parse_args().samples)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
