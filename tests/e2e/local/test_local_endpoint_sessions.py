"""Sessions and the endpoint they are invoked through, over real HTTP (boto3 -> agentcore_local ->
sandbox -> coding_agent.py): each session is judged by the version its own endpoint serves, for
its storage, its compute and its lifecycle limits; deleting a named endpoint takes its sessions.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from cloud.session_calls import read_command_stream
from tests.support.local_runtime import LocalRuntime, local_runtime, wait_for

MARKER = 'test -e "$TMPDIR/compute-marker"'  # the compute's own scratch: gone with the compute


def new_id() -> str:
    return f"endpoint-{uuid.uuid4().hex}"


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRuntime]:
    with local_runtime(tmp_path_factory.mktemp("endpoints")) as runtime:
        yield runtime


@pytest.fixture
def data(local: LocalRuntime, _isolated_aws: None) -> Iterator[Any]:
    """A data-plane client; afterwards, no session of the shared server is left running."""
    yield local.data()
    local.stop_sessions()


def run(data, arn: str, session: str, command: str, qualifier: str = "DEFAULT") -> tuple[int, str]:
    """(exit code, stdout) of a command in the session, through the endpoint `qualifier`."""
    answer = data.invoke_agent_runtime_command(
        agentRuntimeArn=arn,
        runtimeSessionId=session,
        qualifier=qualifier,
        body={"command": command, "timeout": 60},
    )
    code, _, out, _ = read_command_stream(answer["stream"])
    return code, out


def with_endpoint(local: LocalRuntime, name: str, endpoint: str, **config: Any) -> dict[str, Any]:
    """A READY runtime at version 1 with a named endpoint pinned to version 1."""
    made = local.create_runtime(name, **config)
    local.control().create_agent_runtime_endpoint(
        agentRuntimeId=made["agentRuntimeId"], name=endpoint, agentRuntimeVersion="1"
    )
    local.clock.advance(5)
    return made


def new_version(local: LocalRuntime, made: dict[str, Any], **config: Any) -> None:
    """UpdateAgentRuntime with the runtime's request (and `config` over it): the next version."""
    request = {k: v for k, v in made["request"].items() if k != "agentRuntimeName"} | config
    local.control().update_agent_runtime(agentRuntimeId=made["agentRuntimeId"], **request)
    local.clock.advance(5)


def state(local: LocalRuntime, session: str) -> str | None:
    return local.session_state(session)


def test_a_session_on_a_pinned_endpoint_keeps_compute_and_storage_when_default_moves(
    local: LocalRuntime, data
) -> None:
    made = with_endpoint(local, "pinned_keeps", "pinned")
    arn, pinned, latest = made["agentRuntimeArn"], new_id(), new_id()
    run(data, arn, pinned, 'echo v1 > kept.txt; touch "$TMPDIR/compute-marker"', "pinned")
    run(data, arn, latest, "echo v1 > gone.txt")
    new_version(local, made)
    wait_for(lambda: state(local, latest) == "STOPPED", 20, "DEFAULT's old compute to stop")
    assert state(local, pinned) == "READY"
    assert run(data, arn, pinned, f"cat kept.txt && {MARKER}", "pinned") == (0, "v1\n")  # same compute
    assert run(data, arn, latest, "ls -A") == (0, "")  # DEFAULT serves version 2: fresh storage


def test_the_reaper_holds_each_session_to_the_lifecycle_of_its_endpoints_version(
    local: LocalRuntime, data
) -> None:
    short = {"idleRuntimeSessionTimeout": 60, "maxLifetime": 600}
    made = with_endpoint(local, "pinned_idle", "short", lifecycleConfiguration=short)
    new_version(local, made, lifecycleConfiguration={"idleRuntimeSessionTimeout": 900, "maxLifetime": 3600})
    arn, pinned, latest = made["agentRuntimeArn"], new_id(), new_id()
    run(data, arn, pinned, "true", "short")
    run(data, arn, latest, "true")
    local.clock.advance(61)  # past version 1's idle timeout, well within version 2's
    wait_for(lambda: state(local, pinned) == "STOPPED", 20, "version 1's idle timeout to stop it")
    assert state(local, latest) == "READY"


def test_deleting_a_named_endpoint_stops_its_sessions_and_deletes_their_storage(
    local: LocalRuntime, data
) -> None:
    made = with_endpoint(local, "endpoint_deleted", "doomed")
    arn, running, stopped, other = made["agentRuntimeArn"], new_id(), new_id(), new_id()
    for session in (running, stopped):
        run(data, arn, session, "echo doomed > doomed.txt", "doomed")
    data.stop_runtime_session(agentRuntimeArn=arn, runtimeSessionId=stopped, qualifier="doomed")
    run(data, arn, other, "echo kept > kept.txt")
    local.control().delete_agent_runtime_endpoint(
        agentRuntimeId=made["agentRuntimeId"], endpointName="doomed"
    )
    for session in (running, stopped):
        storage = local.storage(arn, session)
        wait_for(lambda s=storage: not s.exists(), 20, f"the storage of {session} to be deleted")
    assert state(local, running) is None  # stopped and forgotten
    assert run(data, arn, other, "cat kept.txt") == (0, "kept\n")  # DEFAULT's session untouched
    assert run(data, arn, running, "ls -A") == (0, "")  # the same id again: a new, empty session


def test_a_session_whose_endpoint_moves_to_another_version_starts_afresh_on_its_next_call(
    local: LocalRuntime, data
) -> None:
    made = with_endpoint(local, "endpoint_moves", "moving")
    new_version(local, made)
    arn, session = made["agentRuntimeArn"], new_id()
    run(data, arn, session, 'echo v1 > v1.txt; touch "$TMPDIR/compute-marker"', "moving")
    local.control().update_agent_runtime_endpoint(
        agentRuntimeId=made["agentRuntimeId"], endpointName="moving", agentRuntimeVersion="2"
    )
    assert run(data, arn, session, "cat v1.txt", "moving") == (0, "v1\n")  # still version 1 until READY
    local.clock.advance(5)
    assert run(data, arn, session, f"ls -A; {MARKER}", "moving") == (1, "")  # new compute, empty storage
    sessions = {s["runtimeSessionId"]: s for s in local.sessions()}
    assert (sessions[session]["storageVersion"], sessions[session]["computeVersion"]) == (2, 2)
