"""End to end: a directory chain deeper than PATH_MAX (1,100 levels, ~4.4 kB of path), made and
removed by a session's own shell, never breaks a later turn, a stop and resume, or a redeploy's
restore from backup. boto3 -> agentcore_local -> sandbox -> coding_agent.py (the scripted test double).
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator

import pytest

from tests.support.local_runtime import LocalRuntime, invoke, local_runtime, shell

# The venv's Python, read-only inside the sandbox: 1,100 mkdir processes would take a minute.
CHAIN = (
    f"{sys.executable} -c \"import os; [os.mkdir('ddd') or os.chdir('ddd') for _ in range(1100)];"
    " open('f', 'w').write('deep')\" && echo made"
)


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRuntime]:
    with local_runtime(tmp_path_factory.mktemp("deep-tree")) as runtime:
        yield runtime


def test_a_chain_deeper_than_path_max_made_and_removed_by_exec_never_fails_a_turn(
    local: LocalRuntime, _isolated_aws: None
) -> None:
    data = local.data()
    created = local.create_runtime(f"deep_{uuid.uuid4().hex[:8]}")
    arn, session = created["agentRuntimeArn"], f"test-{uuid.uuid4().hex}"
    assert invoke(data, arn, session, "hi")["workspace"]["checkpoint"]
    for where in (".", ".sessions"):  # the project, and the conversation history's directory
        assert shell(data, arn, session, f"cd {where} && {CHAIN}") == "made\n"
    held = invoke(data, arn, session, "with the chain")  # the turn walks and checkpoints it
    assert held["history"]["messages_before"] == 2
    data.stop_runtime_session(agentRuntimeArn=arn, runtimeSessionId=session)
    resumed = invoke(data, arn, session, "after a stop")
    assert resumed["history"]["messages_before"] == 4
    assert shell(data, arn, session, "rm -rf ddd .sessions/ddd && echo gone") == "gone\n"
    data.stop_runtime_session(agentRuntimeArn=arn, runtimeSessionId=session)
    after = invoke(data, arn, session, "after the chain is gone")
    assert after["history"]["messages_before"] == 6
    assert set(after["workspace"]["usage"]) >= {"bytes", "files", "quota_bytes"}
