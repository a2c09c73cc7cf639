"""End to end: boto3 -> agentcore_local -> sandbox -> coding_agent.py (the scripted test double).

Checkpoints, undo, the turn budget and the storage figures, through the runtime's own APIs:
InvokeAgentRuntime for turns and actions, InvokeAgentRuntimeCommand to build and inspect
the workspace between turns (so a change of the agent's tools touches few lines here).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

import client as client_cli
from tests.support import PLANS
from tests.support.agent_process import AgentProcess
from tests.support.local_runtime import LocalRuntime, invoke, local_runtime, shell, wait_for

PLAN = PLANS / "checkpoints.json"
QUOTA = 4_000_000
GIT = "git -c user.email=t@example.com -c user.name=t"
# Everything a restore must bring back: type, mode, path, symlink target, and every file's hash.
STATE = (
    "find . -path ./.sessions -prune -o -printf '%y %m %p %l\\n' | sort; "
    "find . -path ./.sessions -prune -o -type f -print0 | sort -z | xargs -0 sha256sum"
)
PROJECT = (
    "mkdir -p proj node_modules/express/lib bin && "
    "echo 'module.exports = 1;' > node_modules/express/lib/index.js && "
    "printf '#!/bin/sh\\necho hi\\n' > bin/run.sh && chmod 755 bin/run.sh && "
    "echo v1 > proj/app.js && echo keep > proj/delete-me.txt && ln -s proj/app.js latest && "
    f"cd proj && git init -q && git add -A && {GIT} commit -qm one"
)


def new_id() -> str:
    return f"test-{uuid.uuid4().hex}"


def runtime_env(**env: str) -> dict:
    return {
        "environmentVariables": {
            "MODEL_PROVIDER": "scripted",
            "SCRIPTED_PLAN": str(PLAN),
            "STORAGE_QUOTA_BYTES": str(QUOTA),
            "BACKUP_BUCKET": "",  # checkpoints alone here; tests/e2e/local/test_backup_e2e.py covers backups
            **env,
        }
    }


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRuntime]:
    with local_runtime(tmp_path_factory.mktemp("undo")) as runtime:
        yield runtime


@pytest.fixture(scope="module")
def arn(local: LocalRuntime) -> Iterator[str]:
    with pytest.MonkeyPatch.context() as env:  # dummy credentials: the autouse fixture is per test
        env.setenv("AWS_ACCESS_KEY_ID", "testing")
        env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        name = f"undo_{uuid.uuid4().hex[:8]}"
        yield local.create_runtime(name, **runtime_env(MAX_MODEL_CALLS="3"))["agentRuntimeArn"]


@pytest.fixture
def data(local: LocalRuntime, _isolated_aws: None):
    return local.data()


def act(data, arn: str, session: str, **body) -> dict:
    answer = data.invoke_agent_runtime(
        agentRuntimeArn=arn, runtimeSessionId=session, payload=json.dumps(body)
    )
    return json.loads(answer["response"].read())


def refused(call) -> str:
    """The runtime turns an agent's error answer into RuntimeClientError carrying its message."""
    with pytest.raises(ClientError) as caught:
        call()
    assert caught.value.response["Error"]["Code"] == "RuntimeClientError"
    return str(caught.value)


def turn(data, arn: str, session: str, command: str) -> dict:
    """A turn whose model (the scripted double) runs `command` in its shell tool."""
    answer = invoke(data, arn, session, f"sh -c '{command}'")
    assert "response" in answer, answer
    return answer


def test_undo_of_one_turn_brings_back_files_deletions_modes_git_and_node_modules_and_the_history(
    local: LocalRuntime, data, arn: str
) -> None:
    session = new_id()
    shell(data, arn, session, PROJECT)
    invoke(data, arn, session, "hello")  # one answered turn before: 2 messages of history
    before = shell(data, arn, session, STATE)
    changed = turn(
        data,
        arn,
        session,
        "echo v2 > proj/app.js; rm proj/delete-me.txt; chmod 700 bin/run.sh; rm latest; "
        "mkdir -p node_modules/dotenv && echo x > node_modules/dotenv/main.js; "
        f"cd proj && git add -A && {GIT} commit -qm two",
    )
    assert changed["history"]["messages_before"] == 2
    assert shell(data, arn, session, STATE) != before

    undone = act(data, arn, session, action="undo", turns=1)
    assert undone["action"] == "undo" and "undid 1 turn" in undone["response"]
    assert "proj/delete-me.txt" in undone["files"]["restored"]
    assert "node_modules/dotenv/main.js" in undone["files"]["deleted"]
    assert "bin/run.sh" in undone["files"]["mode"]
    assert shell(data, arn, session, STATE) == before
    assert (
        shell(data, arn, session, "cd proj && git fsck --no-progress && git log --oneline | wc -l").strip()
        == "1"
    )
    # The warm Agent forgot the turn too: the next turn sees the 2 messages from before it.
    assert invoke(data, arn, session, "hello again")["history"]["messages_before"] == 2


def test_undo_of_three_turns_goes_back_before_all_three_and_lists_them_as_undone(
    local: LocalRuntime, data, arn: str
) -> None:
    session = new_id()
    shell(data, arn, session, PROJECT)
    before = shell(data, arn, session, STATE)
    first = turn(data, arn, session, "mkdir -p src && echo a > src/a.js && echo b > src/b.js")
    turn(data, arn, session, "echo changed >> src/a.js; chmod 600 src/b.js; echo v3 > proj/app.js")
    shell(data, arn, session, "echo between > between.txt")  # a command between turns
    third = turn(data, arn, session, f"rm -r node_modules; cd proj && git add -A && {GIT} commit -qm three")
    assert third["workspace"]["checkpoint"] > first["workspace"]["checkpoint"]

    undone = act(data, arn, session, action="undo", turns=3)
    assert [t["prompt"][:10] for t in undone["turns"]] == ["sh -c 'rm ", "sh -c 'ech", "sh -c 'mkd"]
    assert shell(data, arn, session, STATE) == before
    listing = act(data, arn, session, action="checkpoints")["checkpoints"]
    turns = [c for c in listing if c["kind"] == "turn"]
    assert [c.get("undone", False) for c in turns] == [True, True, True]
    assert listing[-1]["kind"] == "undo"
    assert "(409)" in (error := refused(lambda: act(data, arn, session, action="undo", turns=1)))
    assert "0 can be taken back" in error


def test_a_looping_model_is_stopped_by_the_turn_budget_with_a_closed_history_and_a_checkpoint(
    local: LocalRuntime, data, arn: str
) -> None:
    session = new_id()
    error = refused(lambda: invoke(data, arn, session, "loop"))
    assert "MAX_MODEL_CALLS=3" in error
    listing = act(data, arn, session, action="checkpoints")["checkpoints"]
    assert f"checkpoint {listing[-1]['id']} kept" in error and listing[-1]["outcome"] == "budget"
    after = invoke(data, arn, session, "hello")
    assert "previous_turn_interrupted" not in after["history"]  # closed when the budget ran out
    assert after["history"]["messages_before"] == 8  # prompt, 3 x (call, result), closing note


def test_a_slow_turn_is_stopped_by_the_time_budget(local: LocalRuntime, data) -> None:
    slow = local.create_runtime(f"slow_{uuid.uuid4().hex[:8]}", **runtime_env(MAX_TURN_SECONDS="2"))
    error = refused(lambda: invoke(data, slow["agentRuntimeArn"], new_id(), "slow loop"))
    assert "MAX_TURN_SECONDS=2" in error and "checkpoint 0" in error


def test_every_answer_carries_usage_and_a_warning_from_80_percent_of_the_quota(
    local: LocalRuntime, data, arn: str
) -> None:
    session = new_id()
    first = invoke(data, arn, session, "hello")["workspace"]
    assert first["usage"]["quota_bytes"] == QUOTA and "warning" not in first["usage"]
    assert first["restored_from"] is None and first["checkpoint"]
    # 1.7 MB, and as much again in the checkpoint that keeps it: past 80% (a checkpoint never passes 100%)
    shell(data, arn, session, "head -c 1700000 /dev/zero > big.bin")
    second = invoke(data, arn, session, "hello")["workspace"]
    assert second["usage"]["bytes"] >= 0.8 * QUOTA and "full" in second["usage"]["warning"]
    assert second["restored_from"] == "storage"
    status = act(data, arn, session, action="status")
    assert status["usage"]["files"] == 1 and status["checkpoints"]["count"] >= 3
    assert status["backup"] == {"enabled": False}


def test_the_first_turn_after_a_stop_verifies_the_workspace_against_the_last_checkpoint(
    local: LocalRuntime, data, arn: str
) -> None:
    session = new_id()
    turn(data, arn, session, "echo a > a.txt; echo b > b.txt")
    data.stop_runtime_session(agentRuntimeArn=arn, runtimeSessionId=session)
    assert invoke(data, arn, session, "hello")["workspace"]["verified"] is True
    shell(data, arn, session, "rm a.txt; echo bb > b.txt")
    data.stop_runtime_session(agentRuntimeArn=arn, runtimeSessionId=session)
    verified = invoke(data, arn, session, "hello")["workspace"]["verified"]
    assert verified == {"missing": ["a.txt"], "changed": ["b.txt"]}


def test_client_undo_checkpoints_and_status_print_a_short_summary(
    local: LocalRuntime, data, arn: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    session = new_id()
    monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_AGENTCORE", local.url)
    turn(data, arn, session, "echo one > one.txt")
    turn(data, arn, session, "echo two > two.txt")
    where = ["--arn", arn, "--session", session]

    assert client_cli.main(["checkpoints", *where]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and "+1 ~0 -0 m0" in lines[-1] and "echo two > two.txt" in lines[-1]

    assert client_cli.main(["undo", "--turns", "1", *where]) == 0
    out = capsys.readouterr()
    assert out.out.startswith("undid 1 turn(s)") and "deleted: two.txt" in out.out
    assert "recorded as checkpoint" in out.err
    assert shell(data, arn, session, "ls").split() == ["one.txt"]

    shell(data, arn, session, "head -c 3300000 /dev/zero > big.bin")
    assert client_cli.main(["status", *where]) == 0  # read-only: the file alone is past 80%
    out = capsys.readouterr()
    assert out.out.startswith("storage: ") and "checkpoints: 4 kept (latest 000004)" in out.out
    assert "backup: off" in out.out and "warning: session storage is" in out.err

    assert client_cli.main(["invoke", "hello", *where]) == 1  # keeping big.bin would pass the quota
    assert "Delete files" in capsys.readouterr().err
    shell(data, arn, session, "truncate -s 1700000 big.bin")  # and as much again in its checkpoint
    assert client_cli.main(["invoke", "hello", *where]) == 0
    assert "warning: session storage is" in capsys.readouterr().err
    assert client_cli.main(["undo", "--turns", "9", *where]) == 1
    assert "cannot undo 9 turn(s)" in capsys.readouterr().err


def test_a_turn_whose_client_goes_away_is_still_checkpointed_and_can_be_undone(tmp_path: Path) -> None:
    server = AgentProcess(tmp_path, plan=PLAN)
    server.start()
    try:
        with server.http.stream("POST", "/invocations", json={"prompt": "slow loop", "stream": True}) as r:
            for line in r.iter_lines():
                if '"tool_use"' in line:
                    break  # hang up mid-turn
        wait_for(lambda: server.http.get("/ping").json()["status"] == "Healthy", 60, "the turn to end")
        listing = server.invoke(action="checkpoints").json()["checkpoints"]
        assert listing[-1]["kind"] == "turn" and listing[-1]["outcome"] == "failed"
        undone = server.invoke(action="undo")
        assert undone.status_code == 200, undone.text
    finally:
        server.stop()


def test_the_service_keeps_only_the_last_checkpoint_keep_checkpoints(tmp_path: Path) -> None:
    server = AgentProcess(tmp_path, plan=PLAN, CHECKPOINT_KEEP="3")
    server.start()
    try:
        for i in range(6):
            assert server.invoke(f"sh -c 'echo {i} > f.txt'").status_code == 200
        manifests = tmp_path / ".sessions" / ".checkpoints" / "manifests"
        wait_for(lambda: len(list(manifests.glob("*.json"))) == 3, 30, "the prune after the last turn")
        objects = [p for p in (manifests.parent / "objects").rglob("*") if p.is_file()]
        assert len(objects) == 3  # f.txt's last three contents: the others went with their manifests
    finally:
        server.stop()
