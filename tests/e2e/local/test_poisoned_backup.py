"""End to end: a backup its own session crafted (through its shell, with its own credentials) is
refused and set aside at the next restore; the turn goes on, says why, and nothing lands in
`.sessions/` or outside the workspace. boto3 -> agentcore_local -> sandbox -> coding_agent.py (the
scripted test double) with agentcore_local's real S3 API (moto in server mode).
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Iterator

import pytest

from agentcore_local.services.backups import session_prefix
from tests.support.local_runtime import LocalRuntime, invoke, local_runtime, shell

SHA = "0" * 64
FILE = {"type": "file", "sha256": SHA, "size": 1, "mode": 0o644, "mtime": 1}
POISONS = {
    # a link the backup makes, then a path through it spelled so the link check could miss it
    "dot-slash link into history": {"./s": {"type": "symlink", "target": ".sessions"}, "s/x": FILE},
    "link out of the workspace": {
        "esc": {"type": "symlink", "target": "/tmp"},
        "esc/planted": {"type": "dir", "mode": 0o755},
    },
    "climbs out": {"../outside": FILE},
    "not a hash": {"a": {**FILE, "sha256": "../../x"}},
    "unknown type": {"f": {"type": "fifo", "mode": 0o644}},
}
PLANT = """
import boto3, json, sys
key, body = sys.argv[1], sys.argv[2]  # the session's own prefix (the gate serves no other)
if body == "DEEP":  # nested past any JSON parser's recursion limit (too long for a command line)
    body = '{"seq": 1, "files": ' + "[" * 100_000 + "]" * 100_000 + "}"
s3 = boto3.client("s3")
s3.put_object(Bucket="agentcore-local-backups", Key=key + "/manifests/000001.json", Body=body.encode())
s3.put_object(Bucket="agentcore-local-backups", Key=key + "/latest.json", Body=b'{"seq": 1, "seqs": [1]}')
print("planted")
"""


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRuntime]:
    with local_runtime(tmp_path_factory.mktemp("poisoned-backup")) as runtime:
        if not runtime.app.state.sessions.launcher.private_network:
            pytest.skip("the forward to the agent-facing listener needs bwrap with slirp4netns")
        yield runtime


def manifest_body(files: dict | None) -> str:
    if files is None:
        return "DEEP"
    return json.dumps({"seq": 1, "id": "000001", "files": files, "history": {}})


def test_a_crafted_backup_is_refused_set_aside_and_the_session_goes_on(
    local: LocalRuntime, _isolated_aws: None
) -> None:
    data = local.data()
    created = local.create_runtime(f"poison_{uuid.uuid4().hex[:8]}")
    arn = created["agentRuntimeArn"]
    cases = {f"test-{uuid.uuid4().hex}": name for name in [*POISONS, "100k-deep"]}
    for session, name in cases.items():
        body = manifest_body(POISONS.get(name))
        key = session_prefix(created["agentRuntimeId"], session)
        script = f"cat > /tmp/plant.py <<'PY'\n{PLANT}\nPY\n{sys.executable} /tmp/plant.py {key} '{body}'"
        assert shell(data, arn, session, script) == "planted\n", name
        data.stop_runtime_session(agentRuntimeArn=arn, runtimeSessionId=session)
    request = created["request"]
    local.control().update_agent_runtime(  # a new version: every session's storage resets
        agentRuntimeId=created["agentRuntimeId"],
        agentRuntimeArtifact=request["agentRuntimeArtifact"],
        roleArn=request["roleArn"],
        filesystemConfigurations=request["filesystemConfigurations"],
        environmentVariables={**request["environmentVariables"], "REDEPLOY": "1"},
    )
    local.clock.advance(5)
    for session, name in cases.items():
        answer = invoke(data, arn, session, "what is here?")
        assert answer["workspace"]["restored_from"] is None, name
        assert answer["workspace"]["restore"]["refused"].startswith("backup refused"), name
        listing = shell(data, arn, session, "ls -A; ls -A .sessions; ls -A /tmp; ls .sessions/.checkpoints")
        assert "planted" not in listing and "\nx\n" not in listing and "outside" not in listing, name
        assert "backup-refused.json" in listing, name
        again = invoke(data, arn, session, "and now?")  # never wedged: the next turn is a turn
        assert again["history"]["messages_before"] == 2, name
