"""No data lost over many stop/resume cycles: boto3 -> agentcore_local -> sandbox -> coding_agent.py.

Each cycle writes a file through InvokeAgentRuntimeCommand and one through a turn of the agent,
checks that the turn saw the whole history so far, then stops the session. At the end every
file's hash and every message of the history must be there, in order.

`make test` runs 5 cycles; `make soak` runs 100 (`pytest -m soak`).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator

import pytest

from agent.conversation.window import STEP, WINDOW
from tests.support.faults import assert_history_consistent, new_id, prompts, reliability_runtime
from tests.support.local_runtime import LocalRuntime, invoke, run

MESSAGES_PER_TURN = 4  # prompt, file_editor call, its result, the answer
SOAK_BUDGET_S = 900  # 100 cycles take about 4 minutes on 2 cores; far over that is a hang


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRuntime]:
    with reliability_runtime(tmp_path_factory.mktemp("soak")) as runtime:
        yield runtime


def stop_resume_cycles(local: LocalRuntime, cycles: int, budget_s: float) -> float:
    """Run the cycles; assert everything survived; return the seconds they took."""
    data, arn, session = local.data(), local.default_arn, new_id("soak")
    expected: dict[str, str] = {}  # relative path -> sha256
    turns: list[str] = []
    started = time.monotonic()
    held = 0  # what the model is given: the stepped window (docs/CONTRACT.md); every message stays on disk
    for i in range(cycles):
        assert time.monotonic() - started < budget_s, f"cycle {i} started after the {budget_s}s budget"
        blob = os.urandom(4096).hex()
        path = f"files/{i:03d}.txt"
        code, _, _, err = run(data, arn, session, f"mkdir -p files && printf %s {blob} > {path}")
        assert code == 0, err
        expected[path] = hashlib.sha256(blob.encode()).hexdigest()

        prompt = f"soak-{i:03d}-{os.urandom(4).hex()}"
        answer = invoke(data, arn, session, prompt)
        assert answer["history"]["messages_before"] == held
        held += MESSAGES_PER_TURN
        if held > WINDOW + STEP:  # the newest whole turns that hold at least WINDOW messages stay
            held = -(-WINDOW // MESSAGES_PER_TURN) * MESSAGES_PER_TURN
        assert answer["workspace"]["restored"] is True
        turns.append(prompt)
        expected[f"soak/{prompt}.txt"] = hashlib.sha256(f"{prompt}\n".encode()).hexdigest()

        stopped = data.stop_runtime_session(agentRuntimeArn=arn, runtimeSessionId=session)
        assert stopped["statusCode"] == 200
    elapsed = time.monotonic() - started

    # Seen from a new compute, through the API ...
    _, _, listing, _ = run(data, arn, session, "sha256sum files/* soak/*")
    seen = {line.split()[1]: line.split()[0] for line in listing.splitlines()}
    assert seen == expected
    # ... and on the host: the history holds every turn, in order, and nothing half-written.
    storage = local.storage(arn, session)
    messages = assert_history_consistent(storage, session)
    assert len(messages) == MESSAGES_PER_TURN * cycles
    assert prompts(messages) == turns
    assert not (storage / ".sessions" / ".quarantine").exists()
    data.stop_runtime_session(agentRuntimeArn=arn, runtimeSessionId=session)
    return elapsed


def test_five_stop_resume_cycles_lose_no_file_and_no_message(local: LocalRuntime) -> None:
    stop_resume_cycles(local, cycles=5, budget_s=120)


@pytest.mark.soak
def test_a_hundred_stop_resume_cycles_lose_no_file_and_no_message(local: LocalRuntime) -> None:
    elapsed = stop_resume_cycles(local, cycles=100, budget_s=SOAK_BUDGET_S)
    print(f"\nsoak: 100 stop/resume cycles in {elapsed:.0f}s ({elapsed / 100:.2f}s per cycle)")
