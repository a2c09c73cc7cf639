"""A model-based test of sequences: hypothesis drives random runs of invoke, exec (write, delete),
stop, kill -9 of the agent mid-turn, update (a new version), a 15-day clock advance, undo,
restore of a backup checkpoint (client.py restore), and delete-and-re-create against
agentcore_local through boto3 (sandbox, coding_agent.py with the scripted model: a test double),
with an oracle of what each answered turn left. After every step, every file the oracle says must be
recoverable is there (restored if storage was reset), and nothing of a deleted runtime is.

`make test` runs a bounded number of sequences; `make soak` (SEQUENCES=N) many more.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from tests.support.faults import compute_pid, kill_compute, running
from tests.support.local_runtime import LocalRuntime, invoke, local_runtime, shell, wait_for

DAY = 86_400.0
NAMES = st.sampled_from(["a.txt", "b.txt", "c.txt", "src/d.txt"])
WORDS = st.text(alphabet="abcdefgh", min_size=1, max_size=8)
DIR = "model"  # everything the machine writes lives here, so nothing else in storage matters
LIST = (  # every file under DIR as "./path=content", one a line
    f"mkdir -p {DIR}; cd {DIR} && find . -type f | sort"
    """ | while read f; do printf '%s=%s\\n' "$f" "$(cat "$f")"; done"""
)
SEQUENCES = int(os.environ.get("SEQUENCES", "3"))
STEPS = int(os.environ.get("SEQUENCE_STEPS", "10"))


class Sequences(RuleBasedStateMachine):
    """The oracle: `committed` is what the last answered turn left (its checkpoint, backed up once
    the session stops); `current` what storage holds now. A reset (new version, 14 days idle)
    brings back `committed`, merged under whatever an exec wrote meanwhile; a delete forgets both."""

    runtime: LocalRuntime  # set by the test
    checked = 0  # invariant checks run: one after every step (make soak reports it)

    @initialize()
    def create(self) -> None:
        self.data = self.runtime.data()
        self.name = f"seq_{uuid.uuid4().hex[:8]}"
        self.created = self.runtime.create_runtime(self.name)
        self.session = f"test-{uuid.uuid4().hex}"
        self.committed: dict[str, str] = {}
        self.current: dict[str, str] = {}
        self.line: list[dict[str, str]] = []  # what each turn an undo can take back left, oldest first
        self.steps: list[str] = []
        self.answered: list[dict[str, str]] = []  # what each answered turn left, oldest first
        self.deleted = False

    @property
    def arn(self) -> str:
        return self.created["agentRuntimeArn"]

    def reset_storage(self) -> None:
        """AgentCore resets storage; the agent restores `committed` when the mount appears."""
        self.current = dict(self.committed)

    @rule(name=NAMES, text=WORDS)
    def exec_write(self, name: str, text: str) -> None:
        self.steps.append(f"write {name}")
        shell(self.data, self.arn, self.session, f"mkdir -p {DIR}/src && printf %s {text} > {DIR}/{name}")
        self.current[f"./{name}"] = text

    @precondition(lambda self: bool(self.current))
    @rule(data=st.data())
    def exec_delete(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(sorted(self.current)))
        self.steps.append(f"delete {name}")
        shell(self.data, self.arn, self.session, f"rm {DIR}/{name}")
        del self.current[name]

    @rule()
    def turn(self) -> None:
        self.steps.append("turn")
        answer = invoke(self.data, self.arn, self.session, "hello")
        assert "response" in answer, answer
        self.line.append(dict(self.current))
        self.committed = dict(self.current)
        self.answered.append(dict(self.current))

    @rule()
    def stop(self) -> None:
        self.steps.append("stop")
        self.data.stop_runtime_session(agentRuntimeArn=self.arn, runtimeSessionId=self.session)

    @rule()
    def new_version(self) -> None:
        self.steps.append("update")
        self.stop()  # the backup of the last turn is uploaded before the stop answers
        request = self.created["request"]
        self.runtime.control().update_agent_runtime(
            agentRuntimeId=self.created["agentRuntimeId"],
            agentRuntimeArtifact=request["agentRuntimeArtifact"],
            roleArn=request["roleArn"],
            filesystemConfigurations=request["filesystemConfigurations"],
            environmentVariables={**request["environmentVariables"], "REDEPLOY": uuid.uuid4().hex[:8]},
        )
        self.runtime.clock.advance(5)
        self.reset_storage()

    @rule()
    def fifteen_days(self) -> None:
        self.steps.append("15 days")
        self.stop()
        self.runtime.clock.advance(15 * DAY)
        self.reset_storage()

    @precondition(lambda self: bool(self.line))
    @rule()
    def undo(self) -> None:
        # Files back as they were before the last turn (docs: "added ones go"): turns here change no
        # file (the scripted "hello" only answers), so that is what the turn itself left, and what an
        # exec wrote since goes (it stays in the checkpoint the undo records first).
        self.steps.append("undo")
        answer = self.data.invoke_agent_runtime(
            agentRuntimeArn=self.arn, runtimeSessionId=self.session, payload=b'{"action": "undo"}'
        )
        assert answer["statusCode"] == 200
        self.current = self.line.pop()
        self.committed = dict(self.current)

    @rule()
    def kill_mid_turn(self) -> None:
        """kill -9 of the agent while a turn runs ("slow": a shell command that writes outside DIR):
        unless the runtime's resend to new compute answers it, nothing the oracle holds changes."""
        self.steps.append("kill -9 mid-turn")
        turn = threading.Thread(target=self._unanswered, daemon=True)
        turn.start()
        wait_for(lambda: (pid := compute_pid(self.runtime, self.session)) and running(pid, "sleep 1.5"), 60,
                 "the slow turn's command")  # fmt: skip
        kill_compute(compute_pid(self.runtime, self.session))
        turn.join(60)
        if self.slow_answered:  # agentcore_local sent it once more, to new compute: a turn like any
            self.line.append(dict(self.current))
            self.committed = dict(self.current)
            self.answered.append(dict(self.current))

    def _unanswered(self) -> None:
        self.slow_answered = False
        with contextlib.suppress(ClientError):  # a killed turn that is not sent again is an error
            self.slow_answered = "response" in invoke(self.data, self.arn, self.session, "slow")

    @precondition(lambda self: bool(self.answered) and not self.deleted)
    @rule(data=st.data())
    def restore(self, data: st.DataObject) -> None:
        """client.py restore of an answered turn's checkpoint, listed by checkpoints --backup."""
        self.stop()  # its push is in the backup once the stop answers
        body = {"action": "checkpoints", "backup": True}
        listing = self._act(body)["checkpoints"]
        turns = [c for c in listing if c.get("kind") == "turn" and c.get("prompt") in ("hello", "slow")][::-1]
        assert len(turns) == len(self.answered), f"after {' -> '.join(self.steps)}: backup lists {listing}"
        pick = data.draw(st.integers(0, len(turns) - 1))
        self.steps.append(f"restore turn {pick + 1}")
        self._act({"action": "restore", "checkpoint": turns[pick]["id"]})
        self.current = dict(self.answered[pick])
        self.committed = dict(self.current)
        self.line = []  # an undo now would go back past the restore; after a new turn it is one turn

    def teardown(self) -> None:
        """Each sequence's session ends with it: sequences must not pile up past --max-sessions."""
        with contextlib.suppress(ClientError):  # nothing to stop (never started, or deleted)
            self.data.stop_runtime_session(agentRuntimeArn=self.arn, runtimeSessionId=self.session)

    def _act(self, body: dict) -> dict:
        answer = self.data.invoke_agent_runtime(
            agentRuntimeArn=self.arn, runtimeSessionId=self.session, payload=json.dumps(body)
        )
        return json.loads(answer["response"].read())

    @rule()
    def delete_and_recreate(self) -> None:
        self.steps.append("delete+create")
        control = self.runtime.control()
        control.delete_agent_runtime(agentRuntimeId=self.created["agentRuntimeId"])
        self.runtime.clock.advance(5)
        self.created = self.runtime.create_runtime(self.name)  # the same name: a new runtime
        self.committed, self.current, self.line = {}, {}, []
        self.answered, self.deleted = [], True

    @invariant()
    def nothing_recoverable_is_lost(self) -> None:
        Sequences.checked += 1
        if not hasattr(self, "session"):
            return
        listing = shell(self.data, self.arn, self.session, LIST)
        seen = dict(line.split("=", 1) for line in listing.splitlines() if "=" in line)
        assert seen == self.current, f"after {' -> '.join(self.steps)}: storage {seen}, oracle {self.current}"


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRuntime]:
    with local_runtime(Path(tmp_path_factory.mktemp("sequences"))) as local:
        if not local.app.state.sessions.launcher.private_network:
            pytest.skip("backups need the agent-facing listener: bwrap with slirp4netns")
        yield local


def test_no_sequence_of_calls_loses_an_answered_turns_work(
    runtime: LocalRuntime, _isolated_aws: None
) -> None:
    Sequences.runtime = runtime
    run = Sequences.TestCase
    run.settings = settings(
        max_examples=SEQUENCES,
        stateful_step_count=STEPS,
        deadline=None,
        derandomize=not os.environ.get("SEQUENCES"),  # make test: the same sequences every run
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    try:
        run().runTest()
    finally:
        print(f"\nsequences: {SEQUENCES} asked, {Sequences.checked} steps checked")
