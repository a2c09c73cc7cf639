"""Per-compute cgroups: the v2 backend against a fake cgroupfs (a directory tree of plain files,
as this machine mounts v1), the v1 backend against the same kind of fake and against the real
kernel where serve could use it (root, writable v1 pids/memory/cpu), the shell that starts a
sandbox inside its cgroup, and the default figures."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agentcore_local.sandbox.cgroup_tree import open_tree, parse_mounts, parse_own
from agentcore_local.sandbox.cgroups import SANDBOX_OOM_SCORE, first_process
from agentcore_local.sandbox.docker import DockerLauncher
from agentcore_local.session_limits import AWS_SESSION_MEMORY, GIB, MIB, SessionLimits, sized_limits
from agentcore_local.settings import Settings

LIMITS = SessionLimits(pids=64, memory_bytes=256 * MIB, cpus=1.5)


def v1_fake(tmp: Path) -> tuple[str, str]:
    """A v1 layout like this project's machines (cpu co-mounted with cpuacct, serve nested in
    memory): mountinfo and /proc/self/cgroup text pointing into `tmp`."""
    lines = []
    for n, (name, options) in enumerate(
        (("pids", "pids"), ("memory", "memory"), ("cpu,cpuacct", "cpu,cpuacct"))
    ):
        (tmp / name).mkdir()
        lines.append(f"{30 + n} 25 0:{27 + n} / {tmp / name} rw,relatime - cgroup cgroup rw,{options}")
    (tmp / "memory" / "job" / "7b32").mkdir(parents=True)
    own = "8:pids:/\n4:memory:/job/7b32\n1:cpu,cpuacct:/\n0::/\n"
    return "\n".join(lines) + "\n", own


def v2_fake(tmp: Path) -> tuple[str, str]:
    root = tmp / "unified"
    root.mkdir()
    (root / "cgroup.controllers").write_text("cpuset cpu io memory hugetlb pids\n")
    (root / "cgroup.subtree_control").write_text("\n")
    mountinfo = f"35 25 0:30 / {root} rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
    return mountinfo, "0::/user.slice/session-1.scope\n"


def test_mountinfo_and_proc_cgroup_name_each_controllers_hierarchy_and_serves_place(tmp_path: Path) -> None:
    mountinfo, own = v1_fake(tmp_path)
    v1, v2 = parse_mounts(mountinfo + f"36 25 0:31 / {tmp_path}/unified rw - cgroup2 cgroup2 rw\n")
    assert {c: m.point.name for c, m in v1.items()} == {
        "pids": "pids",
        "memory": "memory",
        "cpu": "cpu,cpuacct",
    }
    assert v2 is not None and v2.point == tmp_path / "unified"
    assert parse_own(own) == ({"pids": "/", "memory": "/job/7b32", "cpu": "/", "cpuacct": "/"}, "/")


def test_v1_computes_nest_under_serves_own_cgroup_with_every_limit_written(tmp_path: Path) -> None:
    tree, why = open_tree(*v1_fake(tmp_path), root=True)
    assert tree is not None and tree.version == 1, why
    cgroup = tree.create("rt-session", LIMITS)
    memory = next(d for d in cgroup.dirs if d.is_relative_to(tmp_path / "memory"))
    assert memory.parent.parent == tmp_path / "memory" / "job" / "7b32"  # nested: serve's own bounds it
    assert memory.parent.name.startswith(f"agentcore-local-{os.getpid()}-")
    read = {p.name: p.read_text().strip() for d in cgroup.dirs for p in d.iterdir()}
    assert read == {
        "pids.max": "64",
        "memory.limit_in_bytes": str(256 * MIB),
        "memory.memsw.limit_in_bytes": str(256 * MIB),  # where swap is accounted, none on top
        "cpu.shares": "1024",
        "cpu.cfs_period_us": "100000",
        "cpu.cfs_quota_us": "150000",
    }
    assert sorted(cgroup.procs) == sorted(d / "cgroup.procs" for d in cgroup.dirs) and len(cgroup.dirs) == 3


def test_v2_computes_go_under_the_root_with_controllers_handed_down_and_oom_group_set(tmp_path: Path) -> None:
    tree, why = open_tree(*v2_fake(tmp_path), root=True)
    assert tree is not None and tree.version == 2, why
    root = tmp_path / "unified"
    assert (root / "cgroup.subtree_control").read_text().split() == ["+pids", "+memory", "+cpu"]
    (parent,) = set(tree.parents.values())
    assert parent.parent == root and (parent / "cgroup.subtree_control").read_text().split() == [
        "+pids",
        "+memory",
        "+cpu",
    ]
    cgroup = tree.create("rt-session", LIMITS)
    (directory,) = cgroup.dirs
    assert {p.name: p.read_text().strip() for p in directory.iterdir()} == {
        "pids.max": "64",
        "memory.max": str(256 * MIB),
        "memory.swap.max": "0",
        "memory.oom.group": "1",  # an OOM kill takes the whole compute
        "cpu.weight": "100",
        "cpu.max": "150000 100000",
    }
    assert cgroup.oom_watch() is None  # the kernel ends the group itself: nothing for serve to watch


def test_v2_counters_and_usage_are_read_from_the_kernels_files(tmp_path: Path) -> None:
    tree, _ = open_tree(*v2_fake(tmp_path), root=True)
    assert tree is not None
    cgroup = tree.create("rt-session", LIMITS)
    (directory,) = cgroup.dirs
    (directory / "memory.events").write_text("low 0\nhigh 0\nmax 12\noom 3\noom_kill 2\n")
    (directory / "pids.events").write_text("max 41\n")
    (directory / "memory.current").write_text("1048576\n")
    (directory / "pids.current").write_text("7\n")
    (directory / "cpu.stat").write_text("usage_usec 10\nnr_periods 4\nnr_throttled 3\n")
    counters = cgroup.counters()
    assert (counters.oom_kills, counters.pids_refused) == (2, 41)
    assert cgroup.usage() == {
        "memoryBytes": 1048576,
        "memoryPeakBytes": None,
        "pids": 7,
        "cpuPeriods": 4,
        "cpuThrottled": 3,
    }


def test_without_root_or_a_controller_or_a_writable_tree_there_is_no_tree_and_a_reason(
    tmp_path: Path,
) -> None:
    mountinfo, own = v1_fake(tmp_path)
    assert open_tree(mountinfo, own, root=False) == (None, "serve is not root")
    no_pids = "\n".join(line for line in mountinfo.splitlines() if "pids" not in line)
    assert open_tree(no_pids, own, root=True) == (None, "no pids controller is mounted (cgroup v1 or v2)")
    (tmp_path / "memory" / "job" / "7b32").rmdir()  # serve's cgroup is not there to nest under
    tree, why = open_tree(mountinfo, own, root=True)
    assert tree is None and why.startswith("cannot create cgroups:")


def test_the_first_process_joins_every_cgroup_and_raises_its_oom_score_before_the_sandbox_runs(
    tmp_path: Path,
) -> None:
    procs = [tmp_path / "a.procs", tmp_path / "b.procs"]
    script = 'cat /proc/self/oom_score_adj; echo "$PPID"; exec cat /proc/self/stat'
    out = subprocess.run(
        first_process(["sh", "-c", script], procs), capture_output=True, text=True, timeout=10
    )
    score, _, stat = out.stdout.splitlines()
    assert int(score) == SANDBOX_OOM_SCORE
    pid = stat.split()[0]  # exec keeps the pid: the sandbox is the process that joined
    assert [p.read_text().strip() for p in procs] == [pid, pid]


def test_the_sandbox_never_runs_when_its_cgroup_cannot_be_joined(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    argv = first_process(["touch", str(marker)], [tmp_path / "missing" / "cgroup.procs"])
    assert subprocess.run(argv, capture_output=True, timeout=10).returncode == 125
    assert not marker.exists()


def real_v1() -> bool:
    return os.geteuid() == 0 and all(
        os.access(f"/sys/fs/cgroup/{c}", os.W_OK) for c in ("pids", "memory", "cpu")
    )


@pytest.mark.skipif(not real_v1(), reason="needs root and the cgroup v1 pids, memory and cpu hierarchies")
def test_on_this_machines_v1_the_kernel_takes_the_limits_and_the_cgroup_goes_with_its_processes() -> None:
    tree, why = open_tree()
    assert tree is not None and tree.version == 1, why
    try:
        cgroup = tree.create("unit", LIMITS)
        memory = next(d for d in cgroup.dirs if (d / "memory.limit_in_bytes").exists())
        assert int((memory / "memory.limit_in_bytes").read_text()) == 256 * MIB
        argv = cgroup.wrap(["sh", "-c", "cat /proc/self/cgroup; sleep 30"])
        child = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        assert child.stdout is not None
        joined = {line.split(":")[1]: line.split(":")[2] for line in iter(child.stdout.readline, "0::/\n")}
        ours = {
            path.strip()
            for names, path in joined.items()
            if {"pids", "memory", "cpu"} & set(names.split(","))
        }
        assert {path.rsplit("/", 1)[1] for path in ours} == {memory.name}
        assert child.pid in cgroup.members()  # the sandbox (and what it started: sleep)
        cgroup.remove()  # kills what is left, then removes the directories
        assert child.wait(10) == -9 and not any(d.exists() for d in cgroup.dirs)
    finally:
        tree.close()
    assert not any(p.exists() for p in tree.parents.values())


def test_default_limits_fit_max_sessions_computes_on_the_machine_within_awss_figures() -> None:
    limits = sized_limits(16, memory=24 * GIB)
    assert limits.memory_bytes * 16 <= 24 * GIB - GIB  # serve keeps its headroom
    assert limits.memory_bytes == (23 * GIB // 16) // MIB * MIB
    assert sized_limits(1, memory=64 * GIB).memory_bytes == AWS_SESSION_MEMORY  # never past 8 GB
    assert limits.cpus == min(2.0, os.cpu_count() or 1)
    assert 32 <= limits.pids <= 4096
    assert sized_limits(4, memory=GIB, pids=100, cpus=0.5) == SessionLimits(100, 128 * MIB, 0.5)


def test_figures_too_small_for_an_agent_are_refused_with_what_to_give() -> None:
    with pytest.raises(ValueError, match="--session-memory 64 MiB is too little"):
        SessionLimits(64, 64 * MIB, 1.0)
    with pytest.raises(ValueError, match="--session-pids 8 is too few"):
        SessionLimits(8, 256 * MIB, 1.0)
    with pytest.raises(ValueError, match="--session-cpus 999"):
        SessionLimits(64, 256 * MIB, 999.0)


def test_serves_flags_set_each_figure_and_the_rest_stay_sized_to_max_sessions() -> None:
    settings = Settings.from_env({}, max_sessions=4, session_memory_bytes=512 * MIB, session_pids=200)
    assert settings.session_limits == sized_limits(4, memory_bytes=512 * MIB, pids=200)


def test_the_cli_refuses_a_bad_figure_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    from agentcore_local.__main__ import main

    assert main(["serve", "--session-memory", "16M"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--session-memory 16 MiB is too little" in err


def test_docker_gets_the_same_limits_as_its_own_flags() -> None:
    launcher = DockerLauncher("image:tag")
    launcher.limits = LIMITS
    memory = str(256 * MIB)
    assert launcher.limit_flags() == [
        "--tmpfs",
        f"/tmp:exec,mode=1777,size={memory}",
        "--pids-limit=64",
        f"--memory={memory}",
        f"--memory-swap={memory}",
        "--cpus=1.5",
        "--oom-score-adj=1000",
    ]


@pytest.mark.skipif(os.geteuid() != 0, reason="drops root in a child: needs root to start with")
def test_serve_says_so_in_one_line_at_start_when_it_cannot_have_cgroups_and_runs_without() -> None:
    script = (
        "import logging, os, sys\n"
        "from pathlib import Path\n"
        "from agentcore_local.sandbox import choose\n"
        "from agentcore_local.session_limits import MIB, SessionLimits\n"
        "logging.basicConfig(format='%(levelname)s %(message)s')\n"
        "os.seteuid(65534)  # serve as an ordinary user\n"
        "launcher = choose('process', sys.executable, Path('coding_agent.py'), (), 'image', "
        "SessionLimits(64, 256 * MIB, 1.0))\n"
        "print(launcher.name, launcher.cgroups, launcher.limits.pids)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.stdout == "process None 64\n", done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith(
        "WARNING no cgroups (serve is not root): sessions have NO pids, memory or CPU limit"
    )
