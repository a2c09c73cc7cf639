"""A session's compute is a bounded box the kernel enforces, through the whole stack: boto3 ->
agentcore_local -> bwrap sandbox as root, each compute in a cgroup of its own with small limits
(64 pids, 256 MiB, 1 CPU) so every exhaustion stays far inside what the machine has: a fork bomb
stops at pids.max, a memory hog (or a full /tmp) ends only its own compute and the next call says
why, a CPU burn on every core is held to its quota; meanwhile the other session's turns and
commands and the control plane answer."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError, EventStreamError

from agentcore_local.sandbox.bwrap import bwrap_works, find_tool
from agentcore_local.sandbox.cgroups import SANDBOX_OOM_SCORE, SERVE_OOM_SCORE
from agentcore_local.session_limits import MIB, SessionLimits
from agentcore_local.settings import REPO
from bench.limits import BOMB  # the same fork bomb the bench runs
from tests.support.local_runtime import LocalRuntime, invoke, local_runtime, run, shell, wait_for

pytestmark = pytest.mark.skipif(
    os.environ.get("AGENTCORE_LOCAL_TEST_SANDBOX", "auto") not in ("auto", "bwrap")
    or not bwrap_works(find_tool("bwrap") or "bwrap")
    or os.geteuid() != 0,
    reason="needs the bwrap sandbox as root",
)
LIMITS = SessionLimits(pids=64, memory_bytes=256 * MIB, cpus=1.0)
HOG = 1024  # MiB the hogs ask for at most: past the limit, and still harmless where none binds


@pytest.fixture(scope="module")
def local() -> Iterator[LocalRuntime]:
    scratch = REPO / ".agentcore"
    scratch.mkdir(exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="test-limits-", dir=scratch))
    try:
        with local_runtime(tmp, session_limits=LIMITS, max_sessions=4) as runtime:
            if runtime.app.state.sessions.launcher.cgroups is None:
                pytest.skip("no cgroups here (serve said why at start)")
            yield runtime
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def ab(local: LocalRuntime) -> Iterator[tuple[str, str]]:
    """Two sessions with compute: A misbehaves, B must not notice."""
    sessions = f"limits-a-{uuid.uuid4().hex}", f"limits-b-{uuid.uuid4().hex}"
    for session in sessions:
        shell(local.data(), local.default_arn, session, "true")
    yield sessions
    local.stop_sessions()


def may_lower_oom_score() -> bool:
    status = dict(line.split(":\t", 1) for line in Path("/proc/self/status").read_text().splitlines())
    return bool(int(status["CapEff"], 16) & (1 << 24))  # CAP_SYS_RESOURCE


def described(local: LocalRuntime, session: str) -> dict:
    return next(s for s in local.sessions() if s["runtimeSessionId"] == session)


def b_answers(local: LocalRuntime, b: str) -> None:
    data, arn = local.data(), local.default_arn
    assert invoke(data, arn, b, "hello")["response"].startswith("[offline scripted model]")
    assert shell(data, arn, b, "echo fine") == "fine\n"
    assert local.control().list_agent_runtimes()["agentRuntimes"]


def lost_call(local: LocalRuntime, session: str, command: str) -> str:
    """The message of a command that ends the session's compute (its stream error, or its exit)."""
    try:
        code, _, out, err = run(local.data(), local.default_arn, session, command, timeout=60)
    except EventStreamError as error:
        return str(error)
    return f"exit {code}: {out}{err}"


def test_each_compute_gets_its_own_cgroup_at_start_outside_serves_and_it_goes_when_the_compute_ends(
    local: LocalRuntime, ab: tuple[str, str]
) -> None:
    a, _ = ab
    pid = described(local, a)["pid"]
    leaf = {
        line.split(":")[1]: line.split(":")[2].strip()
        for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    }
    tree = local.app.state.sessions.launcher.cgroups
    dirs = [tree.parents[c] / leaf[c].rsplit("/", 1)[1] for c in ("pids", "memory", "cpu")]
    assert all(
        leaf[c].endswith(d.relative_to(tree.parents[c].parent).as_posix())
        for c, d in zip(("pids", "memory", "cpu"), dirs, strict=True)
    )
    assert int((dirs[1] / "memory.limit_in_bytes").read_text()) == 256 * MIB
    assert int((dirs[0] / "pids.max").read_text()) == 64
    assert int((dirs[2] / "cpu.cfs_quota_us").read_text()) == 100_000
    assert "agentcore-local-" not in Path("/proc/self/cgroup").read_text()  # serve stays outside
    assert int(Path(f"/proc/{pid}/oom_score_adj").read_text()) == SANDBOX_OOM_SCORE
    serve = int(Path("/proc/self/oom_score_adj").read_text())
    assert serve == (SERVE_OOM_SCORE if may_lower_oom_score() else 0)  # lowering takes CAP_SYS_RESOURCE
    limits = described(local, a)["limits"]
    assert (limits["pidsMax"], limits["memoryMaxBytes"], limits["cpus"]) == (64, 256 * MIB, 1.0)
    local.data().stop_runtime_session(agentRuntimeArn=local.default_arn, runtimeSessionId=a)
    assert not any(d.exists() for d in dirs)


def test_a_fork_bomb_stops_at_pids_max_while_another_session_and_the_control_plane_answer(
    local: LocalRuntime, ab: tuple[str, str]
) -> None:
    a, b = ab
    arn = local.default_arn
    (local.storage(arn, a) / "bomb.py").write_text(BOMB)
    report: list[str] = []
    bombing = threading.Thread(
        target=lambda: report.append(run(local.data(), arn, a, f"{sys.executable} bomb.py", 90)[2]),
        daemon=True,
    )
    bombing.start()
    try:
        held = wait_for(
            lambda: (described(local, a)["limits"] or {}).get("forksRefused"), 60, "A's refused forks"
        )
        assert held and described(local, a)["limits"]["pids"] == 64
        b_answers(local, b)
    finally:
        (local.storage(arn, a) / "release").touch()
        bombing.join(90)
    seen = json.loads(report[0])
    assert seen["refused"] == 20 and 0 < seen["forked"] < 64, seen  # the kernel said no, not our cap
    mine = described(local, a)
    assert mine["limitsHit"] >= 1 and "pids limit of 64" in mine["lastRefusal"]
    assert described(local, b)["limitsHit"] == 0
    assert shell(local.data(), arn, a, "echo alive") == "alive\n"  # A itself goes on once it lets go


def test_a_memory_hog_ends_only_its_own_compute_and_its_next_call_says_why(
    local: LocalRuntime, ab: tuple[str, str]
) -> None:
    a, b = ab
    data, arn = local.data(), local.default_arn
    a_pid, b_pid = described(local, a)["pid"], described(local, b)["pid"]
    hog = f"{sys.executable} -c 'b = [bytearray(16 << 20) for _ in range({HOG // 16})]'"
    assert lost_call(local, a, hog)  # ended: by the OOM killer, then its whole compute
    with pytest.raises(ClientError) as caught:
        run(data, arn, a, "true")
    error = caught.value.response["Error"]
    assert error["Code"] == "RuntimeClientError" and "ran out of memory" in error["Message"]
    assert "limit of 256 MiB" in error["Message"] and "\n" not in error["Message"]
    mine = described(local, a)
    assert mine["limitsHit"] >= 1 and "ran out of memory" in mine["lastRefusal"]
    assert described(local, b)["pid"] == b_pid and described(local, b)["limitsHit"] == 0
    b_answers(local, b)
    assert shell(data, arn, a, "echo again") == "again\n"  # the next call: new compute, same storage
    assert described(local, a)["pid"] != a_pid and described(local, a)["computeLost"] is None


def test_a_full_tmp_is_charged_to_its_sessions_memory_and_ends_only_that_compute(
    local: LocalRuntime, ab: tuple[str, str]
) -> None:
    a, b = ab
    data, arn = local.data(), local.default_arn
    assert shell(data, arn, a, "df -B1 --output=size /tmp | tail -1").strip() == str(256 * MIB)
    before = described(local, a)["limits"]["memoryBytes"]
    shell(data, arn, a, "head -c 67108864 /dev/zero > /tmp/part")  # 64 MiB in /tmp
    # In its memory, not the host's (less a little the finished command gave back).
    assert described(local, a)["limits"]["memoryBytes"] - before >= 56 * MIB
    lost_call(local, a, f"dd if=/dev/zero of=/tmp/fill bs=1M count={HOG}")
    with pytest.raises(ClientError) as caught:
        run(data, arn, a, "true")
    assert "ran out of memory" in caught.value.response["Error"]["Message"]
    b_answers(local, b)
    # New compute: what the old one wrote to /tmp went with it (the new agent may have its own there).
    assert shell(data, arn, a, "ls /tmp/part /tmp/fill 2>/dev/null | wc -l") == "0\n"


def test_a_cpu_burn_on_every_core_runs_under_its_quota_while_another_session_answers(
    local: LocalRuntime, ab: tuple[str, str]
) -> None:
    """The kernel holds A to its CPU quota while B answers. How fast B answers is the bench's to
    measure (section 9, side by side in one run), not a timed test's: under a parallel suite on
    two cores the latency says more about the neighbours than about the limit."""
    a, b = ab
    arn = local.default_arn
    cores = os.cpu_count() or 1
    burn = f"for i in $(seq {cores}); do timeout 30 sh -c 'while [ ! -e release ]; do :; done' & done; wait"
    burning = threading.Thread(target=lambda: run(local.data(), arn, a, burn, 60), daemon=True)
    burning.start()
    try:
        # Its quota's periods tick while it burns: the CFS quota binds this cgroup.
        wait_for(lambda: described(local, a)["limits"]["cpuPeriods"] >= 10, 30, "A's burn under its quota")
        assert described(local, a)["limits"]["cpus"] == LIMITS.cpus
        b_answers(local, b)
    finally:
        (local.storage(arn, a) / "release").touch()
        burning.join(60)


def test_a_session_cannot_reach_its_cgroup_to_lift_its_limits_nor_lower_its_oom_score(
    local: LocalRuntime, ab: tuple[str, str]
) -> None:
    a, _ = ab
    data, arn = local.data(), local.default_arn
    attempts = {
        "test -e /sys/fs/cgroup": "see the host's cgroupfs",
        "mkdir -p /tmp/cg && mount -t cgroup -o pids none /tmp/cg": "mount a cgroup hierarchy",
        "mkdir -p /tmp/cg2 && mount -t cgroup2 none /tmp/cg2": "mount the unified hierarchy",
        "echo -1000 > /proc/self/oom_score_adj": "lower its OOM score",
        "echo 0 > /proc/self/oom_score_adj": "reset its OOM score",
    }
    for command, what in attempts.items():
        code, _, _, _ = run(data, arn, a, command)
        assert code != 0, f"a session could {what}: {command!r} succeeded"
    assert shell(data, arn, a, "cat /proc/self/oom_score_adj") == f"{SANDBOX_OOM_SCORE}\n"
    limits = described(local, a)["limits"]
    assert (limits["pidsMax"], limits["memoryMaxBytes"]) == (64, 256 * MIB)
    pid = described(local, a)["pid"]
    memory = next(
        line.split(":")[2].strip()
        for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines()
        if line.split(":")[1] == "memory"
    )
    assert memory.rsplit("/", 1)[1].startswith("coding_agent-")  # still its own, as serve made it
