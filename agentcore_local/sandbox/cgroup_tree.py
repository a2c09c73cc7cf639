"""Where serve makes its computes' cgroups: the hierarchies found in /proc/self/mountinfo, serve's
own place in them (/proc/self/cgroup), one parent directory per serve, a child per compute
(cgroups.py). Also why there are none: not root, a controller missing, a read-only cgroupfs."""

from __future__ import annotations

import contextlib
import itertools
import os
from dataclasses import dataclass
from pathlib import Path

from ..session_limits import SessionLimits
from .cgroups import CONTROLLERS, PREFIX, Cgroup, V1Cgroup, V2Cgroup, write

_trees = itertools.count(1)  # two servers in one process (tests) get two parents


@dataclass(frozen=True)
class Mount:
    point: Path
    root: str  # the hierarchy's path that is mounted there (not "/" inside some containers)

    def at(self, cgroup_path: str) -> Path:
        """The directory of `cgroup_path` (as /proc/self/cgroup names it) under this mount."""
        inner = cgroup_path
        if self.root != "/" and (inner == self.root or inner.startswith(self.root + "/")):
            inner = inner[len(self.root) :]
        return self.point / inner.lstrip("/")


def parse_mounts(mountinfo: str) -> tuple[dict[str, Mount], Mount | None]:
    """(v1 controller -> its hierarchy's mount, the cgroup2 mount or None) from mountinfo's text."""
    v1: dict[str, Mount] = {}
    v2: Mount | None = None
    for line in mountinfo.splitlines():
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or len(tail) < 3:
            continue
        mount = Mount(Path(fields[4].replace("\\040", " ")), fields[3])
        if tail[0] == "cgroup2":
            v2 = v2 or mount
        elif tail[0] == "cgroup":
            for option in tail[2].split(","):
                if option in CONTROLLERS:
                    v1.setdefault(option, mount)
    return v1, v2


def parse_own(proc_cgroup: str) -> tuple[dict[str, str], str | None]:
    """(v1 controller -> serve's cgroup path, serve's v2 path or None) from /proc/self/cgroup's text."""
    v1: dict[str, str] = {}
    v2: str | None = None
    for line in proc_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        if parts[1] == "":
            v2 = parts[2]
            continue
        for controller in parts[1].split(","):
            v1[controller] = parts[2]
    return v1, v2


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale(base: Path) -> None:
    """The parents a serve that died left under `base` (its computes died with it: empty)."""
    with contextlib.suppress(OSError):
        for entry in base.iterdir():
            owner = entry.name[len(PREFIX) :].split("-")[0]
            if entry.name.startswith(PREFIX) and owner.isdigit() and not alive(int(owner)):
                with contextlib.suppress(OSError):
                    for child in entry.iterdir():
                        if child.is_dir():
                            child.rmdir()
                    entry.rmdir()


class CgroupTree:
    """serve's parent cgroup(s): `parents` maps each controller to it (on v2 one directory)."""

    def __init__(self, version: int, parents: dict[str, Path]) -> None:
        self.version, self.parents = version, parents
        self._made = itertools.count(1)

    def create(self, name: str, limits: SessionLimits) -> Cgroup:
        """A new cgroup with `limits` for the compute `name` (numbered: a restart never collides)."""
        leaf = f"{name}-{next(self._made)}"
        dirs = {controller: parent / leaf for controller, parent in self.parents.items()}
        cgroup: Cgroup = (
            V1Cgroup(dirs, limits) if self.version == 1 else V2Cgroup([*set(dirs.values())], limits)
        )
        try:
            for directory in cgroup.dirs:
                directory.mkdir()
            cgroup.apply()
        except OSError:
            cgroup.remove(timeout=1.0)
            raise
        return cgroup

    def close(self) -> None:
        """serve is stopping, its computes are gone: the parents go too."""
        for parent in set(self.parents.values()):
            with contextlib.suppress(OSError):
                parent.rmdir()

    def describe(self) -> str:
        return f"cgroup v{self.version}"


def v1_tree(mounts: dict[str, Mount], own: dict[str, str], name: str) -> CgroupTree:
    """Nested under serve's own cgroup in each hierarchy."""
    parents: dict[str, Path] = {}
    for controller in CONTROLLERS:
        base = mounts[controller].at(own.get(controller, "/"))
        remove_stale(base)
        parents[controller] = base / name
    for parent in set(parents.values()):
        parent.mkdir(exist_ok=True)
    return CgroupTree(1, parents)


def v2_tree(mount: Mount, name: str) -> CgroupTree:
    """Under the unified tree's root: the one cgroup that may hold processes and hand out controllers."""
    root = mount.point
    wanted = " ".join(f"+{c}" for c in CONTROLLERS)
    if not set(CONTROLLERS) <= set((root / "cgroup.subtree_control").read_text().split()):
        write(root / "cgroup.subtree_control", wanted)
    remove_stale(root)
    parent = root / name
    parent.mkdir(exist_ok=True)
    write(parent / "cgroup.subtree_control", wanted)
    return CgroupTree(2, dict.fromkeys(CONTROLLERS, parent))


def open_tree(
    mountinfo: str | None = None, proc_cgroup: str | None = None, root: bool | None = None
) -> tuple[CgroupTree | None, str]:
    """serve's cgroup tree, or None and the reason there is none (the arguments: for tests)."""
    if root is None:
        root = os.geteuid() == 0
    if not root:
        return None, "serve is not root"
    try:
        mountinfo = mountinfo if mountinfo is not None else Path("/proc/self/mountinfo").read_text()
        proc_cgroup = proc_cgroup if proc_cgroup is not None else Path("/proc/self/cgroup").read_text()
    except OSError as error:
        return None, f"cannot read this process's cgroups: {error}"
    v1, v2 = parse_mounts(mountinfo)
    own_v1, own_v2 = parse_own(proc_cgroup)
    name = f"{PREFIX}{os.getpid()}-{next(_trees)}"
    try:
        if v2 is not None and (v2.point / "cgroup.controllers").exists():
            offered = set((v2.point / "cgroup.controllers").read_text().split())
            if set(CONTROLLERS) <= offered and own_v2 is not None:
                return v2_tree(v2, name), ""
        missing = [c for c in CONTROLLERS if c not in v1]
        if missing:
            return None, f"no {' or '.join(missing)} controller is mounted (cgroup v1 or v2)"
        return v1_tree(v1, own_v1, name), ""
    except OSError as error:
        return None, f"cannot create cgroups: {error}"
