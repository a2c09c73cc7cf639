"""Sandbox command lines (pure), the `process` fallback, and the storage quota setting."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import httpx
from botocore.exceptions import ClientError
from local_runtime import local_runtime, run

from agentcore_local.bwrap_sandbox import BwrapLauncher
from agentcore_local.docker_sandbox import DockerLauncher
from agentcore_local.sandbox import LaunchSpec, ProcessLauncher

PYTHON = "/usr/bin/python3"


def spec(tmp_path: Path) -> LaunchSpec:
    return LaunchSpec(
        name="rt-abc",
        storage_dir=tmp_path / "state" / "sessions" / "rt" / "abc" / "storage",
        mount_path="/mnt/workspace",
        port=18080,
        env={"MODEL_PROVIDER": "scripted"},
        scratch_dir=tmp_path / "scratch",
    )


def test_a_checkout_in_tmp_is_shown_again_and_its_state_dir_hidden_after_it(tmp_path: Path) -> None:
    """CI clones into /tmp, and the default state dir (.agentcore/local) lives in the checkout."""
    checkout = tmp_path / "clone"
    state = checkout / ".agentcore" / "local"
    state.mkdir(parents=True)
    launcher = BwrapLauncher(PYTHON, checkout / "coding_agent.py", hidden=(tmp_path / "home", state))
    joined = " ".join(launcher.command(spec(tmp_path))[0])
    assert joined.index("--tmpfs /tmp ") < joined.index(f"--ro-bind {checkout} {checkout}")
    assert joined.index(f"--ro-bind {checkout} ") < joined.rindex(f"--tmpfs {state}")


def test_bwrap_binds_only_this_sessions_storage_and_hides_the_state_dir_and_home(tmp_path: Path) -> None:
    home, state = tmp_path / "home", tmp_path / "state"
    checkout = home / "src" / "project"
    for path in (home, state, checkout):
        path.mkdir(parents=True, exist_ok=True)
    launcher = BwrapLauncher(PYTHON, checkout / "coding_agent.py", hidden=(home, state))
    argv, env, _ = launcher.command(spec(tmp_path))
    joined = " ".join(argv)
    assert argv[:5] == ["bwrap", "--ro-bind", "/", "/", "--dev"]
    assert f"--tmpfs {home}" in joined and f"--tmpfs {state}" in joined
    assert f"--ro-bind {checkout} {checkout}" in joined  # the agent's code, shown again read-only
    assert joined.index(f"--tmpfs {home}") < joined.index(f"--ro-bind {checkout}")
    assert f"--bind {spec(tmp_path).storage_dir} /mnt/workspace" in joined
    for flag in ("--unshare-pid", "--die-with-parent", "--tmpfs /tmp"):
        assert flag in joined
    assert "--unshare-net" not in joined  # npm install needs the registry
    assert env["WORKSPACE_DIR"] == "/mnt/workspace" and env["PORT"] == "18080" and env["HOME"] == "/tmp"
    assert env["BYPASS_TOOL_CONSENT"] == env["STRANDS_NON_INTERACTIVE"] == "true"
    assert env["MODEL_PROVIDER"] == "scripted"


def test_docker_runs_the_image_with_the_storage_mounted_and_the_port_published(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setattr(DockerLauncher, "check_image", lambda self: None)  # no image needed for argv
    argv, env, _ = DockerLauncher("coding-agent:v1").command(spec(tmp_path))
    joined = " ".join(argv)
    assert argv[:3] == ["docker", "run", "--rm"]
    assert f"-v {spec(tmp_path).storage_dir}:/mnt/workspace" in joined
    assert "-p 127.0.0.1:18080:8080" in joined and "coding-agent:v1" in argv
    assert env["PORT"] == "8080" and "-e MODEL_PROVIDER" in joined
    assert DockerLauncher("x").kill_argv(spec(tmp_path)) == ["docker", "kill", "agentcore-local-rt-abc"]


def test_process_fallback_uses_the_storage_directory_itself(tmp_path: Path) -> None:
    argv, env, _ = ProcessLauncher(PYTHON, Path("/repo/coding_agent.py")).command(spec(tmp_path))
    assert argv[0] == PYTHON and "bwrap" not in argv
    assert env["WORKSPACE_DIR"] == str(spec(tmp_path).storage_dir)
    assert env["HOME"].startswith(str(tmp_path / "scratch"))


def test_the_process_sandbox_works_and_says_it_is_not_isolated(tmp_path: Path) -> None:
    with local_runtime(tmp_path, sandbox="process", storage_quota_bytes=1024 * 1024) as local:
        assert httpx.get(f"{local.url}/_local/health").json()["isolated"] is False
        client, session = local.data(), f"test-{uuid.uuid4().hex}"
        code, _, out, _ = run(client, local.default_arn, session, "pwd; head -c 2000000 /dev/zero > big.bin")
        assert code == 0 and out.strip().endswith("/storage")
        # Usage is measured after each call, off the request path: a later call is refused.
        refusal = None
        for _ in range(20):
            try:
                client.invoke_agent_runtime(
                    agentRuntimeArn=local.default_arn,
                    runtimeSessionId=session,
                    payload=json.dumps({"prompt": "hi"}),
                )
            except ClientError as error:
                refusal = error.response["Error"]
                break
            time.sleep(0.1)
        assert refusal is not None and refusal["Code"] == "ServiceQuotaExceededException"
        assert "quota of 1 MiB" in refusal["Message"]
        assert run(client, local.default_arn, f"test-{uuid.uuid4().hex}", "true")[0] == 0  # others unaffected
