"""Sandbox command lines (pure), the `process` fallback, and the storage quota setting."""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
import uuid
from pathlib import Path

import httpx
import pytest
from botocore.exceptions import ClientError

from agentcore_local.sandbox import LaunchSpec, choose
from agentcore_local.sandbox.bwrap import BwrapLauncher
from agentcore_local.sandbox.docker import DockerLauncher
from agentcore_local.sandbox.launcher import ProcessLauncher
from tests.support.local_runtime import local_runtime, run

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


def test_the_view_is_an_allow_list_and_a_state_dir_inside_the_checkout_stays_absent(tmp_path: Path) -> None:
    """The default state dir (.agentcore/local) lives in the checkout: its siblings are bound, it is not."""
    checkout = tmp_path / "clone"
    state = checkout / ".agentcore" / "local"
    state.mkdir(parents=True)
    (checkout / "coding_agent.py").write_text("")
    (checkout / ".agentcore" / "runtime.json").write_text("{}")
    launcher = BwrapLauncher(PYTHON, checkout / "coding_agent.py", hidden=(tmp_path / "home", state))
    argv = launcher.command(spec(tmp_path))[0]
    binds = [argv[i + 1] for i, a in enumerate(argv) if a == "--ro-bind"]
    assert "/" not in binds and "/usr" in binds and "/etc" in binds
    assert (
        str(checkout / "coding_agent.py") in binds and str(checkout / ".agentcore" / "runtime.json") in binds
    )
    assert not any(Path(b).is_relative_to(state) or Path(b) in state.parents for b in binds)
    assert "--tmpfs" in argv and argv[argv.index("--tmpfs") + 1] == "/tmp"  # first: nothing covered with it


def test_a_checkout_in_tmp_is_bound_into_the_private_tmp_not_covered_by_it(tmp_path: Path) -> None:
    """CI clones into /tmp: the private /tmp must come first, the checkout bound into it after."""
    checkout = tmp_path / "clone"
    checkout.mkdir()
    argv = BwrapLauncher(PYTHON, checkout / "coding_agent.py").command(spec(tmp_path))[0]
    joined = " ".join(argv)
    assert joined.index("--tmpfs /tmp ") < joined.index(f"--ro-bind {checkout} {checkout}")


def test_bwrap_drops_every_privilege_and_binds_only_this_sessions_storage(tmp_path: Path) -> None:
    home, state = tmp_path / "home", tmp_path / "state"
    checkout = home / "src" / "project"
    for path in (home, state, checkout):
        path.mkdir(parents=True, exist_ok=True)
    launcher = BwrapLauncher(
        PYTHON, checkout / "coding_agent.py", hidden=(home, state), bwrap="/usr/bin/bwrap"
    )
    argv, env, _ = launcher.command(spec(tmp_path))
    joined = " ".join(argv)
    assert argv[0] == "/usr/bin/bwrap"
    assert f"--ro-bind {checkout} {checkout}" in joined  # the agent's code; the rest of the home is absent
    assert f" {home} " not in joined and f" {state} " not in joined
    assert f"--bind {spec(tmp_path).storage_dir} /mnt/workspace" in joined
    for flag in ("--unshare-user", "--cap-drop ALL", "--unshare-pid", "--die-with-parent", "--remount-ro /"):
        assert flag in joined
    assert "--unshare-net" not in joined  # no slirp4netns given: the network is shared
    assert env == launcher.host_env and set(env) == {"PATH", "LANG"}  # bwrap itself: serve's own only
    agent = launcher.agent_environment(spec(tmp_path))
    assert agent["WORKSPACE_DIR"] == "/mnt/workspace" and agent["PORT"] == "18080" and agent["HOME"] == "/tmp"
    assert agent["MODEL_PROVIDER"] == "scripted"
    assert "scripted" not in joined  # the agent's environment never goes on a command line


def test_docker_runs_the_image_with_the_storage_mounted_and_the_port_published(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setattr(DockerLauncher, "find_image", lambda self, uri: uri)  # no image needed for argv
    argv, env, _ = DockerLauncher("coding-agent:v1").command(spec(tmp_path))
    docker = argv[argv.index("--") + 1 :]  # sandbox_init stays on the host; its agent is `docker run`
    joined = " ".join(docker)
    assert docker[:3] == ["docker", "run", "--rm"] and docker[-1] == "coding-agent:v1"  # its own CMD
    assert f"-v {spec(tmp_path).storage_dir}:/mnt/workspace" in joined
    assert "-p 127.0.0.1:18080:8080" in joined
    agent_env = DockerLauncher("coding-agent:v1").container_environment(spec(tmp_path))
    assert agent_env["PORT"] == "8080" and agent_env["MODEL_PROVIDER"] == "scripted"
    assert " -e " not in f" {joined} " and set(env) <= {"PATH", "LANG"}  # the docker CLI gets serve's own
    env_file = Path(docker[docker.index("--env-file") + 1])
    assert "MODEL_PROVIDER=scripted\n" in env_file.read_text() and env_file.stat().st_mode & 0o077 == 0


def test_a_runtimes_variables_never_reach_the_docker_cli(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(DockerLauncher, "find_image", lambda self, uri: uri)
    hostile = {"DOCKER_HOST": "tcp://attacker:2375", "PATH": "/tmp/evil", "LD_PRELOAD": "/tmp/evil.so"}
    launch = dataclasses.replace(spec(tmp_path), env={**spec(tmp_path).env, **hostile})
    argv, env, _ = DockerLauncher("coding-agent:v1").command(launch)
    assert "DOCKER_HOST" not in env and "LD_PRELOAD" not in env and env.get("PATH") != "/tmp/evil"
    assert "attacker" not in " ".join(argv)
    inside = DockerLauncher("coding-agent:v1").container_environment(launch)
    assert inside["DOCKER_HOST"] == "tcp://attacker:2375"  # the container's own business
    assert DockerLauncher("x").kill_argv(spec(tmp_path)) == ["docker", "kill", "agentcore-local-rt-abc"]


def test_process_fallback_uses_the_storage_directory_itself(tmp_path: Path) -> None:
    launcher = ProcessLauncher(PYTHON, Path("/repo/coding_agent.py"))
    argv, env, _ = launcher.command(spec(tmp_path))
    assert argv[:2] == [PYTHON, "-I"] and "bwrap" not in argv
    assert set(env) == {"PATH", "LANG"}
    agent = launcher.agent_environment(spec(tmp_path))
    assert agent["WORKSPACE_DIR"] == str(spec(tmp_path).storage_dir)
    assert agent["HOME"].startswith(str(tmp_path / "scratch"))


def test_the_process_sandbox_works_and_says_it_is_not_isolated(tmp_path: Path) -> None:
    # The measured quota (as where serve may not mount); docs/disk.md, test_session_disk.py: the volume.
    with local_runtime(tmp_path, sandbox="process", storage_quota_bytes=2**20, storage_volume=False) as local:
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
        # serve's measure refuses the call, or, when the call beats the measure, the agent's own
        # checkpoint does (it is told the same quota): either way one line naming the quota.
        assert refusal is not None, "a session over its quota was never refused"
        assert (refusal["Code"], "quota" in refusal["Message"]) in {
            ("ServiceQuotaExceededException", True),
            ("RuntimeClientError", True),
        }, refusal
        assert run(client, local.default_arn, f"test-{uuid.uuid4().hex}", "true")[0] == 0  # others unaffected


def test_without_slirp4netns_serve_says_loudly_that_sessions_share_the_network(
    tmp_path: Path, monkeypatch, caplog
) -> None:
    bwrap = shutil.which("bwrap")
    if not bwrap:
        pytest.skip("bubblewrap is not installed")
    only_bwrap = tmp_path / "bin"
    only_bwrap.mkdir()
    (only_bwrap / "bwrap").symlink_to(bwrap)
    monkeypatch.setenv("PATH", f"{only_bwrap}:/nonexistent")
    with caplog.at_level(logging.WARNING, logger="agentcore_local.sandbox"):
        launcher = choose("bwrap", PYTHON, tmp_path / "coding_agent.py", (), "unused")
    assert launcher.name == "bwrap" and not launcher.private_network
    assert any("SHARE the host's network" in r.getMessage() for r in caplog.records)
    assert launcher.bwrap == str(Path(bwrap).resolve())  # resolved once, by absolute path
