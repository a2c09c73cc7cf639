"""The warm pool and the mount at the first invocation, through boto3 against agentcore_local
(real bwrap sandboxes; skipped where serve may not mount, i.e. not root, or bwrap is missing)."""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

import boto3
import pytest

from agent.backup.s3 import prefix
from agentcore_local.sandbox.bwrap import bwrap_works
from agentcore_local.sandbox.slots import slots_work
from tests.support.local_runtime import LocalRuntime, invoke, local_runtime, run, wait_for

pytestmark = pytest.mark.skipif(
    os.environ.get("AGENTCORE_LOCAL_TEST_SANDBOX") == "process" or not (bwrap_works() and slots_work()),
    reason="the pool and the mount at first call need bwrap and a serve that may mount (root)",
)

# A stand-in agent (standard library only) that tries the workspace at import, as a careless agent
# would, and reports what happened there and at its first call.
IMPORT_TIME_WRITER = """
import json, os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

WORKSPACE = os.environ["WORKSPACE_DIR"]
def attempt(action):
    try:
        action()
        return "ok"
    except OSError as error:
        return f"{type(error).__name__}: {error.strerror}"

AT_IMPORT = {
    "write": attempt(lambda: open(os.path.join(WORKSPACE, "import-time.txt"), "w").close()),
    "mkdir_beside": attempt(lambda: os.mkdir(os.path.join(os.path.dirname(WORKSPACE), "other"))),
    "listing": sorted(os.listdir(WORKSPACE)),
}

class Agent(BaseHTTPRequestHandler):
    def do_GET(self):
        self.answer({"status": "Healthy"})

    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length") or 0))
        at_call = attempt(lambda: open(os.path.join(WORKSPACE, "first-call.txt"), "w").close())
        self.answer({"at_import": AT_IMPORT, "at_first_call": at_call})

    def answer(self, body):
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass

ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Agent).serve_forever()
"""


def new_id() -> str:
    return f"pool-{uuid.uuid4()}"


def members(local: LocalRuntime) -> list[dict]:
    return [m for m in local.app.state.sessions.pool.describe()["members"] if m["running"]]


def wait_for_member(local: LocalRuntime, other_than: set[int] = frozenset()) -> dict:  # type: ignore[assignment]
    def found() -> dict | None:
        return next((m for m in members(local) if m["pid"] not in other_than), None)

    return wait_for(found, 60, "a warm pool member")


def session_info(local: LocalRuntime, session: str) -> dict:
    return next(s for s in local.sessions() if s["runtimeSessionId"] == session)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").exists() and Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def mounts_under(path: Path) -> list[str]:
    prefix = str(path.resolve())
    return [
        line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines() if prefix in line
    ]


def test_an_import_time_write_to_the_workspace_fails_and_the_storage_is_there_at_the_first_call(
    tmp_path: Path,
) -> None:
    agent = tmp_path / "agent" / "writer.py"
    agent.parent.mkdir()
    agent.write_text(IMPORT_TIME_WRITER)
    with local_runtime(tmp_path, agent_script=agent) as local:
        data, session = local.data(), new_id()
        storage = local.storage(local.default_arn, session)
        answer = invoke(data, local.default_arn, session, "hello")
        assert answer["at_import"]["write"].startswith("OSError: Read-only file system"), answer
        assert answer["at_import"]["mkdir_beside"].startswith("OSError: Read-only"), answer
        assert answer["at_import"]["listing"] == []
        assert answer["at_first_call"] == "ok"
        assert (storage / "first-call.txt").exists() and not (storage / "import-time.txt").exists()


def test_a_new_sessions_first_call_is_served_by_a_pool_member_with_only_its_own_storage(
    tmp_path: Path,
) -> None:
    with local_runtime(tmp_path, pool=1) as local:
        data, arn, first, second = local.data(), local.default_arn, new_id(), new_id()
        member = wait_for_member(local)
        started = time.monotonic()
        assert invoke(data, arn, first, "hello")  # the scripted plan answers
        assert time.monotonic() - started < 5.0  # a fresh start imports the agent (~1 s); a member not
        info = session_info(local, first)
        assert info["fromPool"] is True and info["pid"] == member["pid"]
        assert run(data, arn, first, "echo mine > first.txt")[0] == 0
        assert (local.storage(arn, first) / "first.txt").read_text() == "mine\n"

        refill = wait_for_member(local, other_than={member["pid"]})  # refilled in the background
        _, _, listing, _ = run(data, arn, second, "ls -A /mnt/workspace; echo two > second.txt")
        info = session_info(local, second)
        assert info["fromPool"] is True and info["pid"] == refill["pid"]
        assert "first.txt" not in listing
        assert not (local.storage(arn, first) / "second.txt").exists()
        assert (local.storage(arn, second) / "second.txt").read_text() == "two\n"


def test_a_pool_member_never_serves_another_environment_or_version(tmp_path: Path) -> None:
    with local_runtime(tmp_path, pool=1) as local:
        data = local.data()
        default_member = wait_for_member(local)
        created = local.create_runtime("pool_other_env")
        arn = created["agentRuntimeArn"]
        session = new_id()
        run(data, arn, session, "true")
        assert session_info(local, session)["fromPool"] is False  # the member is the default runtime's
        # The pool follows the runtime used last: its member is replaced by one for this runtime.
        member = wait_for_member(local, other_than={default_member["pid"]})
        assert member["agentRuntimeId"] == created["agentRuntimeId"]
        wait_for(lambda: not alive(default_member["pid"]), 20, "the other runtime's member to stop")

        request = {k: v for k, v in created["request"].items() if k != "agentRuntimeName"}
        request["environmentVariables"] = {**request["environmentVariables"], "POOL_TEST": "v2"}
        local.control().update_agent_runtime(agentRuntimeId=created["agentRuntimeId"], **request)
        local.clock.advance(5)
        wait_for(lambda: not alive(member["pid"]), 20, "version 1's member to stop")
        v2_member = wait_for_member(local, other_than={member["pid"]})
        later = new_id()
        assert run(data, arn, later, 'echo "$POOL_TEST"')[2] == "v2\n"
        info = session_info(local, later)
        assert info["fromPool"] is True and info["pid"] == v2_member["pid"]


def test_pool_zero_starts_every_session_fresh(tmp_path: Path) -> None:
    with local_runtime(tmp_path, pool=0) as local:
        data, session = local.data(), new_id()
        run(data, local.default_arn, session, "true")
        assert session_info(local, session)["fromPool"] is False
        assert local.app.state.sessions.pool.describe()["refills"] == 0


def test_shutdown_stops_every_pool_member_and_leaves_no_mount(tmp_path: Path) -> None:
    with local_runtime(tmp_path, pool=1) as local:
        data, session = local.data(), new_id()
        wait_for_member(local)
        run(data, local.default_arn, session, "true")
        pids = [m["pid"] for m in [wait_for_member(local)]] + [session_info(local, session)["pid"]]
        state_dir = local.state_dir
        assert mounts_under(state_dir)  # the session's storage is mounted in its slot
    assert not [pid for pid in pids if alive(pid)]
    assert mounts_under(state_dir) == []


def test_serve_rejects_a_negative_pool() -> None:
    from agentcore_local.__main__ import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--pool", "-1"])
    assert build_parser().parse_args(["serve", "--pool", "0"]).pool == 0
    assert json.dumps(build_parser().parse_args(["serve"]).pool) == "1"


def member_log(local: LocalRuntime, pid: int) -> str:
    """What a pool member's agent has logged so far (its log moves to the session's directory when taken)."""
    member = next(m for m in local.app.state.sessions.pool.members if m.compute.pid == pid)
    return member.compute.log_path.read_text(errors="replace")


def test_successive_members_warm_up_before_their_session_and_each_session_sees_only_its_own_state(
    tmp_path: Path,
) -> None:
    """The warm-up (agent/service/warmup.py) runs in each member before any session is assigned to it, and
    it holds nothing of a session: the second session, served by the next member after the first
    session's backup exists, starts with an empty history, restores no backup, and sees no file
    of the first; each session's backup is under its own prefix."""
    with local_runtime(tmp_path, pool=1) as local:
        data, arn, seen, answers = local.data(), local.default_arn, set(), {}
        sessions = {"one": new_id(), "two": new_id()}
        for name, session in sessions.items():
            pid = wait_for_member(local, other_than=seen)["pid"]
            seen.add(pid)
            wait_for(lambda: "warm-up | done" in member_log(local, pid), 60, "its warm-up")  # noqa: B023
            assert session not in member_log(local, pid)  # nothing of the session before its call
            answers[name] = invoke(data, arn, session, f"hello from {name}")
            assert session_info(local, session)["pid"] == pid
            log = (local.storage(arn, session).parent / "agent.log").read_text(errors="replace")
            turn = log.index("Async task started: turn")
            assert log.index("warm-up | done") < turn
            assert "Found credentials" not in log[turn:]  # the S3 client was made and has signed already
            assert run(data, arn, session, f"echo {name} > {name}.txt")[0] == 0
            data.stop_runtime_session(agentRuntimeArn=arn, runtimeSessionId=session)  # its backup is uploaded

        for name in sessions:
            assert answers[name]["history"]["messages_before"] == 0, answers[name]
            assert answers[name]["workspace"]["restored_from"] is None, answers[name]
            assert f"hello from {name}" in answers[name]["response"]
        assert not (local.storage(arn, sessions["two"]) / "one.txt").exists()
        s3 = boto3.client(
            "s3",
            endpoint_url=local.app.state.agent_services.s3_url,
            region_name="us-west-2",
            aws_access_key_id="agentcore-local",
            aws_secret_access_key="agentcore-local",
        )
        bucket = local.app.state.settings.backup_bucket
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
        for session in sessions.values():  # (moto is shared by this process's servers: other tests' keys too)
            assert f"{prefix(session, local.app.state.default_runtime.id)}/latest.json" in keys
