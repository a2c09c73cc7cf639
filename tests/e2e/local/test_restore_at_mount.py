"""End to end (boto3 -> agentcore_local -> bwrap sandbox -> coding_agent.py, moto behind the
agent-facing listener): issue 18 item 1, exactly. A turn builds a project; UpdateAgentRuntime
makes a new version (the storage resets); the first call is an exec, which must find the project
restored, and whose own file is kept; nothing of the project or its conversation is lost after
another redeploy; and `client.py checkpoints --backup` / `client.py restore` bring back an older
checkpoint, files and conversation.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.local.test_backup_e2e import new_version
from tests.support.local_runtime import LocalRuntime, invoke, local_runtime, shell

REPO = Path(__file__).resolve().parents[3]
PLAN = REPO / "tests" / "support" / "plans" / "checkpoints.json"  # "sh ..." runs the prompt as a command
FILES = 300
BUILD = f"sh -c 'mkdir -p proj/src && for i in $(seq 1 {FILES}); do echo $i > proj/src/f$i.js; done'"
COUNT = "ls proj/src | wc -l"


def new_id() -> str:
    return f"test-{uuid.uuid4().hex}"


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRuntime]:
    with local_runtime(tmp_path_factory.mktemp("restore-at-mount")) as runtime:
        yield runtime


@pytest.fixture
def data(local: LocalRuntime, _isolated_aws: None):
    return local.data()


@pytest.fixture(autouse=True)
def _sandboxed(local: LocalRuntime) -> None:
    if not local.app.state.sessions.launcher.private_network:
        pytest.skip("the forward to the agent-facing listener needs bwrap with slirp4netns")


def act(data, arn: str, session: str, **body) -> dict:
    answer = data.invoke_agent_runtime(
        agentRuntimeArn=arn, runtimeSessionId=session, payload=json.dumps(body)
    )
    return json.loads(answer["response"].read())


def client(local: LocalRuntime, arn: str, session: str, *argv: str) -> str:
    """client.py as a user runs it against agentcore_local; its stdout (it must succeed)."""
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL_BEDROCK_AGENTCORE": local.url,
        "AGENT_ARN": arn,
        "SESSION_ID": session,
    }
    done = subprocess.run(
        [sys.executable, str(REPO / "client.py"), *argv], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_after_a_redeploy_an_exec_first_finds_the_project_restored_and_nothing_is_ever_lost(
    local: LocalRuntime, data
) -> None:
    created = local.create_runtime(
        f"mount_{uuid.uuid4().hex[:8]}",
        environmentVariables={"MODEL_PROVIDER": "scripted", "SCRIPTED_PLAN": str(PLAN)},
    )
    arn, session = created["agentRuntimeArn"], new_id()
    invoke(data, arn, session, BUILD)
    second = invoke(data, arn, session, "sh -c 'echo v2 > proj/version.txt'")
    messages = second["history"]["messages_before"] + 4  # two turns of prompt, tool use, result, answer
    data.stop_runtime_session(agentRuntimeArn=arn, runtimeSessionId=session)  # waits for the upload

    new_version(local, created)  # the storage resets
    seen = shell(data, arn, session, f"{COUNT}; cat proj/version.txt; echo note > NOTES.md")
    assert seen == f"{FILES}\nv2\n", "the exec found the reset storage before its restore"

    after = invoke(data, arn, session, f"sh -c '{COUNT}'")
    assert after["history"]["messages_before"] == messages  # the conversation came back too
    assert f"{FILES}" in after["response"]
    assert shell(data, arn, session, "cat NOTES.md") == "note\n"  # the exec's file was kept
    status = act(data, arn, session, action="status")["backup"]["restore"]
    started, took = status.get("start_after_mount_s"), status.get("restore_s")
    print(f"\nrestore at the mount: started {started} s after it, took {took} s ({FILES} files)")
    assert status["mounted"] and "start_after_mount_s" in status and "restore_s" in status
    data.stop_runtime_session(agentRuntimeArn=arn, runtimeSessionId=session)

    new_version(local, created)  # again: the history that turn pushed still holds the whole project
    again = invoke(data, arn, session, f"sh -c '{COUNT}; cat NOTES.md'")
    assert f"{FILES}" in again["response"] and "note" in again["response"]
    assert again["history"]["messages_before"] == messages + 4

    listing = client(local, arn, session, "checkpoints", "--backup")
    build = [line for line in listing.splitlines() if "mkdir -p proj/src" in line]
    assert build, listing
    wanted = build[0].split()[0]
    restored = client(local, arn, session, "restore", wanted)
    assert f"restored checkpoint {wanted}" in restored
    assert (
        shell(data, arn, session, f"{COUNT}; test -e proj/version.txt || echo no version")
        == f"{FILES}\nno version\n"
    )
    back = invoke(data, arn, session, "sh true")
    assert back["history"]["messages_before"] == 4  # the conversation as the build turn left it


def test_a_deploy_py_update_of_a_runtime_created_without_a_scope_keeps_its_backups(
    local: LocalRuntime, data
) -> None:
    """`make demo`'s redeploy: a runtime made by boto3 alone (agentcore_local keys its backups by
    its id), then `deploy.py update`: the scope it adds is that id, so the reset storage comes back."""
    import deploy

    created = local.create_runtime(
        f"noscope_{uuid.uuid4().hex[:8]}",
        environmentVariables={"MODEL_PROVIDER": "scripted", "SCRIPTED_PLAN": str(PLAN)},
    )
    arn, session, runtime_id = created["agentRuntimeArn"], new_id(), created["agentRuntimeId"]
    invoke(data, arn, session, BUILD)
    data.stop_runtime_session(agentRuntimeArn=arn, runtimeSessionId=session)  # waits for the upload
    out = io.StringIO()
    ctx = deploy.Context(region="us-west-2", control=local.control(), out=out, sleep=local.clock.advance)
    argv = ["update", runtime_id, "--env", "X=1", "--yes", "--skip-arch-check"]
    assert deploy.main(argv, ctx) == 0, out.getvalue()
    again = invoke(data, arn, session, f"sh -c '{COUNT}'")
    assert f"{FILES}" in again["response"], again["response"]
    assert again["history"]["messages_before"] == 4  # the build turn's conversation came back


def test_every_answered_turn_stays_restorable_after_undos_and_restores(local: LocalRuntime, data) -> None:
    """What the model-based test found: turn, undo, restore, turn, undo, then a restore of a
    checkpoint whose conversation sits in a later manifest of its push needed that manifest's
    object locations too ("1 of its objects are no longer in the backup")."""
    created = local.create_runtime(f"again_{uuid.uuid4().hex[:8]}")
    arn, session = created["agentRuntimeArn"], new_id()

    def answered_turns() -> list[dict]:
        data.stop_runtime_session(agentRuntimeArn=arn, runtimeSessionId=session)  # its push is in
        listing = act(data, arn, session, action="checkpoints", backup=True)["checkpoints"]
        return [c for c in listing if c.get("kind") == "turn" and c.get("prompt") == "hello"][::-1]

    new_version(local, created)
    for pick in (0, 1):
        invoke(data, arn, session, "hello")
        act(data, arn, session, action="undo", turns=1)
        turns = answered_turns()
        assert len(turns) == pick + 1, turns
        restored = act(data, arn, session, action="restore", checkpoint=turns[pick]["id"])
        assert restored["action"] == "restore", restored
