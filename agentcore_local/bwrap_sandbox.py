"""The bwrap (bubblewrap) sandbox: read-only view of the host, private /tmp, /proc and PID namespace,
the session's storage bound read-write at the mount path, the state directory (every other
session's storage) and the serve user's home hidden. The network is shared: the agent runs
`npm install`.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from .sandbox import Launcher, LaunchSpec


class BwrapLauncher(Launcher):
    name = "bwrap"
    isolated = True

    def __init__(
        self, python: str, agent_script: Path, hidden: tuple[Path, ...] = (), bwrap: str = "bwrap"
    ) -> None:
        super().__init__(python, agent_script, hidden)
        self.bwrap = bwrap

    def needed_paths(self) -> list[Path]:
        """What the agent must still see when a hidden directory contains it."""
        paths = {self.agent_script.parent, Path(sys.prefix), Path(sys.base_prefix), Path(self.python).parent}
        for tool in ("node", "npm"):
            if found := shutil.which(tool):
                paths.add(Path(found).resolve().parent.parent)
        return sorted(p.resolve() for p in paths)

    def command(self, spec: LaunchSpec) -> tuple[list[str], dict[str, str], str]:
        argv = [self.bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
        # A private /tmp and the hidden directories (the state dir, the user's home) become empty...
        covered = [Path("/tmp"), *(h.resolve() for h in self.hidden if h.resolve().is_dir())]
        covered = [c for c in covered if c != Path("/")]
        for path in covered:
            argv += ["--tmpfs", str(path)]
        # ...then what the agent needs from inside them (a checkout in /tmp or in a home) comes back
        # read-only, and a hidden directory inside such a path (the state dir in the checkout) goes again.
        shown = [p for p in self.needed_paths() if any(p != c and p.is_relative_to(c) for c in covered)]
        shown = [p for p in shown if not any(p != q and p.is_relative_to(q) for q in shown)]
        for path in shown:
            argv += ["--ro-bind", str(path), str(path)]
        for path in covered[1:]:
            if any(path.is_relative_to(p) for p in shown):
                argv += ["--tmpfs", str(path)]
        mount_root = Path(spec.mount_path).parent
        if mount_root.is_dir():
            argv += ["--tmpfs", str(mount_root)]  # nothing of the host's /mnt, only this session's storage
        argv += ["--bind", str(spec.storage_dir), spec.mount_path]
        argv += ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
        argv += ["--die-with-parent", "--chdir", str(self.agent_script.parent), "--"]
        env = self.environment(spec, "/tmp", "/tmp")
        return argv + self.init_argv(spec.mount_path), env, str(self.agent_script.parent)


def bwrap_works(bwrap: str = "bwrap") -> bool:
    """bwrap is installed and may create namespaces here (some containers forbid it)."""
    if not shutil.which(bwrap):
        return False
    probe = [bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--unshare-pid", "--", "true"]
    try:
        return subprocess.run(probe, capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False
