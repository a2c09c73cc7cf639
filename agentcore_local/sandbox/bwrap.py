"""The bwrap (bubblewrap) sandbox: a view of the host built from an allow-list, no privilege, and
(with slirp4netns) a network of its own.

- Files: the sandbox's root is empty; only the system (/usr, /etc, /bin, /lib*), the Python
  prefixes, node and the checkout are bound in, read-only; /tmp is private. The session's storage
  appears read-write at the mount path at the first call (slots.py: mounted into the running
  sandbox; the agent imports with an empty, read-only mount path, as on AWS); where serve may not
  mount (not root), it is bound from the start. The state directory (every session's storage)
  and the home directory are never bound, so they are absent, not covered: there is nothing to
  unmount. A hidden directory inside an allowed one (the state dir in the checkout) is left out
  by binding the allowed one's other entries instead.
- Privilege: a new user namespace with every capability dropped (`--cap-drop ALL`): mount,
  umount and remount fail even when serve runs as root.
- Processes: own PID, IPC, UTS and (where possible) cgroup namespaces; /proc shows only the
  session, read-only (no sysctl of the host can be written, even by the host's uid 0).
- Network: `--unshare-net` plus slirp4netns (`--disable-host-loopback`): outbound works (npm),
  the host's 127.0.0.1 (the emulator's API, other sessions' agents) does not. The host reaches
  the agent through a listening unix socket it hands to sandbox_init. Without slirp4netns the
  network is shared, and serve says so at start.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

from .artifacts import CODE_INSIDE
from .launcher import SANDBOX_INIT, Launcher, LaunchSpec
from .slots import slots_work

AGENT_PORT = 8080  # inside a private network namespace every agent can have the container's port
RUN_INSIDE = "/run/agentcore"  # where forwarded host sockets appear in the sandbox
SYSTEM = ("/usr", "/etc", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
SLIRP_GATEWAY_DNS = "10.0.2.3"  # slirp4netns's built-in DNS forwarder
TUN = "/dev/net/tun"


def find_tool(name: str) -> str | None:
    """`name` resolved once, by absolute path, from serve's own PATH."""
    found = shutil.which(name, path=os.environ.get("PATH") or "/usr/bin:/bin")
    return str(Path(found).resolve()) if found else None


def without(path: Path, hidden: list[Path]) -> list[Path]:
    """`path`, or its entries minus those that are or hold a hidden directory (so those stay absent)."""
    inside = [h for h in hidden if h.is_relative_to(path)]
    if not inside:
        return [path]
    if path in inside:
        return []
    shown: list[Path] = []
    for child in sorted(path.iterdir()):
        shown += without(child, inside)
    return shown


def private_entries(top: Path) -> list[Path]:
    """What under `top` other users may not read (/etc/shadow, TLS and SSH private keys): covered
    inside, because when serve is root the sandbox's uid 0 is the host's and would read them."""
    found: list[Path] = []
    for root, dirs, files in os.walk(top):
        for name in dirs + files:
            path = Path(root, name)
            with contextlib.suppress(OSError):
                mode = path.lstat().st_mode
                if not stat.S_ISLNK(mode) and not mode & stat.S_IROTH:
                    found.append(path)
        dirs[:] = [d for d in dirs if Path(root, d) not in found]
    return found


def loopback_resolver(resolv: Path = Path("/etc/resolv.conf")) -> bool:
    """True when the host's resolver is on its loopback (systemd-resolved), unreachable from a netns."""
    try:
        lines = resolv.read_text().splitlines()
    except OSError:
        return False
    for line in lines:
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            try:
                if ipaddress.ip_address(parts[1].split("%")[0]).is_loopback:
                    return True
            except ValueError:
                continue
    return False


class BwrapLauncher(Launcher):
    name = "bwrap"
    isolated = True

    def __init__(
        self,
        python: str,
        agent_script: Path,
        hidden: tuple[Path, ...] = (),
        bwrap: str = "bwrap",
        slirp: str | None = None,
    ) -> None:
        super().__init__(python, agent_script, hidden)
        self.bwrap = bwrap
        # slirp4netns opens /dev/net/tun as serve's user (some containers keep it root-only).
        self.slirp = slirp if slirp and os.access(TUN, os.R_OK | os.W_OK) else None
        self.private_network = self.slirp is not None
        self.covered = private_entries(Path("/etc"))  # once: a walk of /etc costs ~5 ms
        self.sized_tmp = bwrap_has(bwrap, "--size")  # bubblewrap 0.7 and later

    def agent_port(self) -> int | None:
        return AGENT_PORT if self.private_network else None

    def attaches_later(self) -> bool:
        return slots_work()

    def allowed(self) -> list[Path]:
        """What the sandbox sees read-only (before hidden directories are taken out)."""
        paths = {Path(p) for p in SYSTEM if os.path.lexists(p)}
        paths |= {Path(sys.prefix), Path(sys.base_prefix), Path(self.python).parent.parent}
        paths |= {Path(self.python).resolve().parent.parent, self.agent_script.parent}
        paths.add(SANDBOX_INIT.parent)  # within the checkout, unless the agent lives elsewhere
        for tool in ("node", "npm"):
            if found := shutil.which(tool, path=self.host_env["PATH"]):
                paths.add(Path(found).resolve().parent.parent)
        real = {p if p.is_symlink() and str(p) in SYSTEM else p.resolve() for p in paths}
        # Nested paths are bound once, by their outermost allowed parent.
        return sorted(p for p in real if not any(p != q and p.is_relative_to(q) for q in real))

    def view(self) -> list[str]:
        hidden = [h.resolve() for h in self.hidden]
        argv: list[str] = []
        for allowed in self.allowed():
            for path in without(allowed, hidden):
                if path.is_symlink():
                    argv += ["--symlink", os.readlink(path), str(path)]
                else:
                    argv += ["--ro-bind", str(path), str(path)]
        for path in self.covered:
            argv += ["--tmpfs", str(path)] if path.is_dir() else ["--ro-bind", "/dev/null", str(path)]
        return argv

    def agent_environment(self, spec: LaunchSpec) -> dict[str, str]:
        return self.environment(spec, "/tmp", "/tmp")

    def code_root(self, spec: LaunchSpec) -> str:
        return CODE_INSIDE

    def inside(self, spec: LaunchSpec) -> dict[str, object]:
        if not self.private_network:
            return super().inside(spec)
        return {"forwards": [[port, f"{RUN_INSIDE}/forward-{port}.sock"] for port, _ in spec.forwards]}

    def command(self, spec: LaunchSpec) -> tuple[list[str], dict[str, str], str]:
        # The private /tmp first: a checkout cloned into /tmp (CI) is then bound into it, not covered.
        # Its size capped: a tmpfs is host RAM (serve --tmp-size), and no larger than the compute's
        # memory, in which its pages are charged (cgroups.py). --size needs bubblewrap 0.7.
        caps = [spec.tmp_bytes, self.limits.memory_bytes if self.limits else None]
        cap = min((c for c in caps if c), default=None)
        size = ["--size", str(cap)] if cap and self.sized_tmp else []
        argv = [self.bwrap, *size, "--tmpfs", "/tmp", *self.view(), "--dev", "/dev", "--proc", "/proc"]
        if spec.slot_dir is not None:  # the storage is mounted on the slot's entry at the first call
            argv += ["--ro-bind", str(spec.slot_dir), str(Path(spec.mount_path).parent)]
        else:
            argv += ["--bind", str(spec.storage_dir), spec.mount_path]
        if spec.agent is not None:  # a code zip: its tree, and its interpreter's prefix, read-only
            prefix = Path(spec.agent.argv[0]).parent.parent
            argv += ["--ro-bind", str(spec.agent.code_dir), CODE_INSIDE]
            argv += ["--ro-bind", str(prefix), str(prefix)]
        if self.private_network:
            for port, host_socket in spec.forwards:
                argv += ["--ro-bind", str(host_socket), f"{RUN_INSIDE}/forward-{port}.sock"]
            if spec.run_dir is not None and loopback_resolver():
                resolv = spec.run_dir / "resolv.conf"
                resolv.write_text(f"nameserver {SLIRP_GATEWAY_DNS}\n")
                argv += ["--ro-bind", str(resolv), "/etc/resolv.conf"]
            argv += ["--unshare-net"]
        argv += ["--remount-ro", "/"]  # the empty root bwrap built: no writes outside storage and /tmp
        # /proc read-only too: when serve is root, the sandbox's uid 0 is the host's, so without
        # capabilities it still owns (and could write) the host's root-owned sysctls (/proc/sys/vm/...);
        # bwrap's own cover of /proc/sys is skipped then (it tests access(W_OK) on a 0555 directory).
        argv += ["--remount-ro", "/proc"]
        argv += ["--unshare-user", "--cap-drop", "ALL"]
        argv += ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
        if spec.info_fd is not None:
            argv += ["--info-fd", str(spec.info_fd)]
        argv += ["--die-with-parent", "--chdir", self.agent_dir(spec), "--"]
        argv += self.init_argv(spec.mount_path, spec.agent)
        return argv, dict(self.host_env), str(self.agent_script.parent)

    def network_argv(self, child_pid: int, ready_fd: int, exit_fd: int, userns: str) -> list[str]:
        """slirp4netns for the sandbox whose first process is `child_pid` (its pid on the host),
        entering `userns`, the user namespace that owns the sandbox's network namespace."""
        assert self.slirp
        return [
            self.slirp,
            "--configure",
            "--mtu=65520",
            "--disable-host-loopback",  # 10.0.2.2 is not the host's 127.0.0.1
            f"--userns-path={userns}",
            f"--ready-fd={ready_fd}",
            f"--exit-fd={exit_fd}",
            str(child_pid),
            "tap0",
        ]


def bwrap_has(bwrap: str, option: str) -> bool:
    """This bwrap knows `option` (its --help lists it)."""
    try:
        found = subprocess.run([bwrap, "--help"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return f"{option} " in found.stdout + found.stderr


def bwrap_works(bwrap: str = "bwrap") -> bool:
    """bwrap is installed and may create the namespaces we use here (some containers forbid it)."""
    true = shutil.which("true") or "/bin/true"
    probe = [bwrap, "--ro-bind", "/", "/", "--unshare-user", "--cap-drop", "ALL", "--unshare-pid", "--", true]
    try:
        return subprocess.run(probe, capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False
