"""End to end: boto3 -> agentcore_local -> bwrap sandbox -> coding_agent.py, as root, on a 40 MiB
quota: each session's storage is a filesystem of the quota's size where serve may mount
(agentcore_local/storage/volume.py), so a disk fill stops at ENOSPC inside the call, while
exec, undo and status keep working; where it may not, the measured quota never refuses them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from botocore.exceptions import ClientError

from agentcore_local.sandbox import free_port
from agentcore_local.storage import Volumes
from agentcore_local.storage.volume import mounts_under
from tests.support import PLANS
from tests.support.local_runtime import LocalRuntime, invoke, local_runtime, run, shell, wait_for

REPO = Path(__file__).resolve().parents[3]
QUOTA = 40 * 2**20
TMP_SIZE = 16 * 2**20
FILL = "head -c 60M /dev/zero > big.bin; echo exit=$?; wc -c < big.bin"


def volumes_here(tmp: Path) -> str | None:
    """Why this machine cannot give sessions a filesystem (None: it can)."""
    volumes, why = Volumes.probe(2**20, tmp / "probe")
    return None if volumes is not None else why


@pytest.fixture(scope="module")
def no_volumes(tmp_path_factory: pytest.TempPathFactory) -> str | None:
    return volumes_here(tmp_path_factory.mktemp("probe"))


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory, no_volumes: str | None) -> Iterator[LocalRuntime]:
    if no_volumes:
        pytest.skip(f"no filesystem per session here: {no_volumes}")
    if os.environ.get("AGENTCORE_LOCAL_TEST_SANDBOX") == "process":
        pytest.skip("the bwrap sandbox is off (AGENTCORE_LOCAL_TEST_SANDBOX=process)")
    state = tmp_path_factory.mktemp("disk")
    with local_runtime(state, storage_quota_bytes=QUOTA, tmp_size_bytes=TMP_SIZE) as runtime:
        yield runtime


@pytest.fixture(scope="module")
def measured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRuntime]:
    """The fallback: no filesystem per session (as where serve may not mount)."""
    state = tmp_path_factory.mktemp("measured")
    with local_runtime(state, storage_quota_bytes=QUOTA, storage_volume=False) as runtime:
        yield runtime


def agent_runtime(local: LocalRuntime) -> str:
    """A runtime whose scripted model runs 'sh ...' prompts in its shell tool; no runtime quota of its own."""
    env = {
        "MODEL_PROVIDER": "scripted",
        "SCRIPTED_PLAN": str(PLANS / "checkpoints.json"),
        "BACKUP_BUCKET": "",
    }
    created = local.create_runtime(f"disk_{uuid.uuid4().hex[:8]}", environmentVariables=env)
    return created["agentRuntimeArn"]


def new_id() -> str:
    return f"disk-{uuid.uuid4().hex}"


def act(data, arn: str, session: str, **body) -> dict:
    answer = data.invoke_agent_runtime(
        agentRuntimeArn=arn, runtimeSessionId=session, payload=json.dumps(body)
    )
    return json.loads(answer["response"].read())


def image_of(local: LocalRuntime, arn: str, session: str) -> Path:
    return local.storage(arn, session).parent / "storage.img"


def allocated(path: Path) -> int:
    return path.stat().st_blocks * 512


def test_a_disk_fill_stops_at_enospc_inside_the_call_and_the_host_holds_at_most_the_quota(
    local: LocalRuntime,
) -> None:
    data, arn = local.data(), agent_runtime(local)
    filler, other = new_id(), new_id()
    assert invoke(data, arn, other, "hello")  # another session, answering before the fill ...
    _, status, out, err = run(data, arn, filler, FILL)
    assert status == "COMPLETED"
    assert "No space left on device" in err and "exit=1" in out
    written = int(out.split()[-1])
    assert 30 * 2**20 < written < QUOTA  # stopped at the filesystem's end, inside the call
    assert allocated(image_of(local, arn, filler)) <= QUOTA  # all the host's disk it took
    assert invoke(data, arn, other, "hello again")["history"]["messages_before"] == 2  # ... and after it
    df = shell(data, arn, filler, "df -B1 --output=size,avail . | tail -1").split()
    assert int(df[0]) <= QUOTA and int(df[1]) < 2**20


def test_two_sessions_filling_at_once_each_stop_at_their_own_quota(local: LocalRuntime) -> None:
    data, arn = local.data(), agent_runtime(local)
    ids = [new_id(), new_id()]
    results: dict[str, tuple] = {}

    def fill(session: str) -> None:
        results[session] = run(data, arn, session, FILL)

    threads = [threading.Thread(target=fill, args=(s,)) for s in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    for session in ids:
        assert "No space left on device" in results[session][3]
        assert int(results[session][2].split()[-1]) < QUOTA


def test_a_full_session_can_still_delete_undo_and_ask_for_status_and_then_works_again(
    local: LocalRuntime,
) -> None:
    data, arn = local.data(), agent_runtime(local)
    session = new_id()
    shell(data, arn, session, "echo keep > keep.txt")
    invoke(data, arn, session, "sh -c 'head -c 8M /dev/urandom > turn.bin'")  # an answered turn
    shell(data, arn, session, "head -c 60M /dev/zero > big.bin || true")  # then full, by a command
    assert int(shell(data, arn, session, "df -B1 --output=avail . | tail -1")) < 64 * 2**10
    assert act(data, arn, session, action="checkpoints")["checkpoints"][-1]["kind"] == "turn"
    assert run(data, arn, session, "rm big.bin")[:2] == (0, "COMPLETED")  # a full filesystem deletes
    undone = act(data, arn, session, action="undo", turns=1)
    assert "turn.bin" in undone["files"]["deleted"]
    assert act(data, arn, session, action="status")["usage"]["quota_bytes"] == QUOTA
    after = invoke(data, arn, session, "sh -c 'echo fine > fine.txt'")
    assert after["workspace"]["usage"]["bytes"] < QUOTA / 2
    assert shell(data, arn, session, "ls").split() == ["fine.txt", "keep.txt"]


def test_status_answers_on_a_full_filesystem_with_unrecorded_changes_and_writes_nothing(
    local: LocalRuntime,
) -> None:
    data, arn = local.data(), agent_runtime(local)
    session = new_id()
    invoke(data, arn, session, "sh -c 'echo one > one.txt'")
    shell(data, arn, session, "head -c 60M /dev/zero > big.bin || true")  # full, and not checkpointed
    store = "du -sb .sessions/.checkpoints | cut -f1"
    kept = shell(data, arn, session, store)
    status = act(data, arn, session, action="status")
    assert status["usage"]["quota_bytes"] == QUOTA and "full" in status["usage"]["warning"]
    assert shell(data, arn, session, store) == kept  # read-only: nothing copied into the store


def test_undo_on_a_full_filesystem_with_unrecorded_changes_is_refused_in_one_line_then_works_after_a_delete(
    local: LocalRuntime,
) -> None:
    data, arn = local.data(), agent_runtime(local)
    session = new_id()
    invoke(data, arn, session, "sh -c 'echo one > one.txt'")
    shell(data, arn, session, "head -c 60M /dev/zero > big.bin || true")
    # The undo would delete big.bin, which no checkpoint holds and none can on a full disk: refused.
    message = refused(lambda: act(data, arn, session, action="undo", turns=1))
    assert "undo refused" in message and "Delete files" in message and "\n" not in message
    assert shell(data, arn, session, "ls").split() == ["big.bin", "one.txt"]  # nothing changed
    assert run(data, arn, session, "rm big.bin")[:2] == (0, "COMPLETED")
    assert act(data, arn, session, action="undo", turns=1)["files"]["deleted"] == ["one.txt"]
    assert "response" in invoke(data, arn, session, "sh -c 'echo fine > fine.txt'")


def refused(call) -> str:
    """The one-line error an agent's refusal reaches boto3 with."""
    with pytest.raises(ClientError) as caught:
        call()
    return caught.value.response["Error"]["Message"]


def test_a_sparse_file_costs_the_host_only_its_written_blocks_on_the_volume(local: LocalRuntime) -> None:
    data, arn = local.data(), agent_runtime(local)
    session = new_id()
    out = shell(
        data, arn, session, "truncate -s 700M sparse.bin && du -k sparse.bin && stat -c %s sparse.bin"
    )
    assert int(out.split()[0]) < 1024 and int(out.split()[-1]) == 700 * 2**20
    assert allocated(image_of(local, arn, session)) <= QUOTA
    assert run(data, arn, session, "rm sparse.bin")[:2] == (0, "COMPLETED")
    assert act(data, arn, session, action="status")["usage"]["quota_bytes"] == QUOTA


def test_usage_is_reported_against_the_quota_serve_enforces(local: LocalRuntime) -> None:
    data, arn = local.data(), agent_runtime(local)
    answer = invoke(data, arn, new_id(), "hello")
    assert answer["workspace"]["usage"]["quota_bytes"] == QUOTA


def test_the_filesystem_is_unmounted_at_stop_and_mounted_again_at_resume_with_the_files(
    local: LocalRuntime,
) -> None:
    data, arn = local.data(), agent_runtime(local)
    session = new_id()
    shell(data, arn, session, "echo kept > kept.txt")
    storage = local.storage(arn, session)
    assert os.path.ismount(storage)
    data.stop_runtime_session(agentRuntimeArn=arn, runtimeSessionId=session)
    assert not os.path.ismount(storage) and not list(storage.iterdir())  # nothing beside the volume
    assert shell(data, arn, session, "cat kept.txt").strip() == "kept"
    assert os.path.ismount(storage)


def test_a_session_cannot_reach_its_image_a_loop_device_or_lift_its_cap(local: LocalRuntime) -> None:
    data, arn = local.data(), agent_runtime(local)
    session, other = new_id(), new_id()
    shell(data, arn, other, "echo theirs > theirs.txt")
    found = shell(
        data,
        arn,
        session,
        "ls /dev | grep -c loop; find / \\( -name storage.img -o -name theirs.txt \\) 2>/dev/null | wc -l; "
        "grep -c ^/dev/loop /proc/self/mounts",
    ).split()
    assert found == ["0", "0", "1"]  # no loop device, no image, no other session's file: its own mount
    for attempt in ("mount -o remount,rw,size=10G /mnt/workspace", "umount -l /mnt/workspace"):
        assert run(data, arn, session, attempt)[0] != 0, attempt
    assert int(shell(data, arn, session, "df -B1 --output=size . | tail -1")) <= QUOTA


def test_a_private_tmp_is_capped_at_the_tmp_size(local: LocalRuntime) -> None:
    data, arn = local.data(), agent_runtime(local)
    _, _, out, err = run(
        data, arn, new_id(), "head -c 64M /dev/zero > /tmp/fill; echo exit=$?; wc -c < /tmp/fill"
    )
    assert "exit=1" in out and "No space left on device" in err
    assert int(out.split()[-1]) <= TMP_SIZE


# --- the fallback: a measured quota that never refuses a way out ------------------------------------


def test_without_a_volume_a_session_over_quota_can_delete_undo_and_ask_for_status(
    measured: LocalRuntime,
) -> None:
    data, arn = measured.data(), agent_runtime(measured)
    session = new_id()
    invoke(data, arn, session, "sh -c 'echo one > one.txt'")
    shell(data, arn, session, "head -c 50M /dev/zero > big.bin")  # past the quota: measured after the call
    wait_for(lambda: measured_bytes(measured, session) > QUOTA, 30, "the measure after the call")
    assert refused_turn(data, arn, session)
    assert act(data, arn, session, action="status")["usage"]["quota_bytes"] == QUOTA
    assert act(data, arn, session, action="checkpoints")["checkpoints"]
    # No checkpoint past the quota: an undo that would have to keep big.bin first is refused ...
    assert "past its quota" in refused(lambda: act(data, arn, session, action="undo", turns=1))
    assert run(data, arn, session, "rm big.bin")[:2] == (0, "COMPLETED")  # ... until it is deleted
    assert "one.txt" in act(data, arn, session, action="undo", turns=1)["files"]["deleted"]
    wait_for(lambda: measured_bytes(measured, session) < QUOTA, 30, "the measure after the rm")
    assert "response" in invoke(data, arn, session, "hello")  # back under the quota


def test_without_a_volume_a_sparse_file_counts_at_its_apparent_size_and_exec_rm_frees_it(
    measured: LocalRuntime,
) -> None:
    data, arn = measured.data(), agent_runtime(measured)
    session = new_id()
    shell(data, arn, session, "truncate -s 700M sparse.bin")
    wait_for(lambda: measured_bytes(measured, session) >= 700 * 2**20, 30, "the sparse file to count")
    assert refused_turn(data, arn, session)
    assert run(data, arn, session, "rm sparse.bin")[:2] == (0, "COMPLETED")
    wait_for(lambda: measured_bytes(measured, session) < QUOTA, 30, "the measure after the rm")
    assert "response" in invoke(data, arn, session, "hello")


def measured_bytes(local: LocalRuntime, session: str) -> int:
    return next(s["storageBytes"] for s in local.sessions() if s["runtimeSessionId"] == session)


def refused_turn(data, arn: str, session: str) -> bool:
    """True when a turn is refused for the quota (ServiceQuotaExceededException)."""
    try:
        invoke(data, arn, session, "hello")
    except data.exceptions.ServiceQuotaExceededException as error:
        return "quota" in str(error)
    return False


# --- a serve killed with SIGKILL -------------------------------------------------------------------


def start_serve(state: Path, port: int) -> subprocess.Popen:
    argv = [sys.executable, "-m", "agentcore_local", "serve", "--state-dir", str(state), "--port", str(port)]
    argv += ["--storage-quota", "8M", "--pool", "0", "--model-backend", "scripted"]
    return subprocess.Popen(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_a_serve_started_after_a_kill_9_finds_no_stale_mount(
    tmp_path: Path, no_volumes: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    if no_volumes:
        pytest.skip(f"no filesystem per session here: {no_volumes}")
    state, port = (tmp_path / "state").resolve(), free_port()
    sessions = state / "sessions"
    url = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_AGENTCORE", url)
    monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_AGENTCORE_CONTROL", url)
    first = start_serve(state, port)
    try:
        wait_for(lambda: answers(url), 60, "serve to answer")
        record = json.loads((state / "runtime.json").read_text())
        local = LocalRuntime(url, None, None, state)  # type: ignore[arg-type]
        data = local.data()
        shell(data, record["agentRuntimeArn"], new_id(), "echo x > x.txt")
        assert mounts_under(sessions)  # the session's filesystem
        first.send_signal(signal.SIGKILL)
        first.wait(30)
        assert mounts_under(sessions)  # left behind by the kill
        (image,) = sessions.glob("*/*/storage.img")
        second = start_serve(state, port)
        try:
            wait_for(lambda: answers(url), 60, "the second serve to answer")
            assert mounts_under(sessions) == []
            # ... and its loop device was released with the mount (autoclear).
            wait_for(lambda: not loop_devices_of(image), 10, "the loop device to be released")
        finally:
            second.terminate()
            second.wait(30)
        assert mounts_under(sessions) == []
    finally:
        if first.poll() is None:
            first.kill()
        for point in mounts_under(sessions):  # never leave the test machine with a mount
            subprocess.run(["umount", "-l", str(point)], check=False)


def loop_devices_of(image: Path) -> str:
    return subprocess.run(["losetup", "-j", str(image)], capture_output=True, text=True).stdout.strip()


def answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/_local/sessions", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
