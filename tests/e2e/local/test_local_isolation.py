"""Attacks from inside a session, through the whole stack: boto3 -> agentcore_local -> bwrap sandbox.

Each test runs attacker code in a session with InvokeAgentRuntimeCommand (the agent's shell can
run the same) and checks that it gets nowhere: no privilege, no view of the host's state, no
runtime setting steering a host process, no route to the emulator or to another session.
One agentcore_local for the module, state dir in the checkout (not under /tmp, which every
sandbox has private anyway), every test on its own session ids.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentcore_local.sandbox.bwrap import TUN, BwrapLauncher, bwrap_works, find_tool
from agentcore_local.sandbox.launcher import SANDBOX_INIT, LaunchSpec
from agentcore_local.settings import REPO
from tests.support.local_runtime import LocalRuntime, invoke, local_runtime, run

pytestmark = pytest.mark.skipif(
    os.environ.get("AGENTCORE_LOCAL_TEST_SANDBOX", "auto") not in ("auto", "bwrap")
    or not bwrap_works(find_tool("bwrap") or "bwrap"),
    reason="needs the bwrap sandbox",
)


def new_id() -> str:
    return f"iso-{uuid.uuid4().hex}"


FORWARD_PORT = 9911  # an agent-facing host service, as the local S3 and bedrock-runtime will be


@pytest.fixture(scope="module")
def host_service() -> Iterator[Path]:
    """A host service on a unix socket that answers every connection with what it read, upper-cased."""
    directory = Path(tempfile.mkdtemp(prefix="svc-"))
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(directory / "svc.sock"))
    server.listen()

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.sendall(conn.recv(1024).upper())

    threading.Thread(target=serve, daemon=True).start()
    yield directory / "svc.sock"
    server.close()
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def local(host_service: Path) -> Iterator[LocalRuntime]:
    scratch = REPO / ".agentcore"
    scratch.mkdir(exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="test-iso-", dir=scratch))
    try:
        with local_runtime(tmp, forwards=((FORWARD_PORT, host_service),)) as runtime:
            if not runtime.app.state.sessions.launcher.private_network:
                pytest.skip("slirp4netns is missing: sessions share the network")
            yield runtime
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def data(local: LocalRuntime, _isolated_aws: None):
    return local.data()


def sh(data, arn: str, session: str, command: str) -> tuple[int, str]:
    code, status, out, err = run(data, arn, session, command)
    assert status == "COMPLETED", (command, out, err)
    return code, out + err


# --- 1. no privilege inside ------------------------------------------------------------------


def test_a_session_holds_no_capability_and_cannot_mount_umount_or_remount(local: LocalRuntime, data) -> None:
    arn, session = local.default_arn, new_id()
    code, out = sh(data, arn, session, "grep -E '^Cap(Eff|Prm|Bnd|Amb)' /proc/self/status")
    assert code == 0 and out.count("0000000000000000") == 4, out
    attacks = {
        "umount /tmp": "unmount what bwrap mounted",
        "umount -l /proc": "uncover the host's /proc",
        "mount -o remount,rw /": "make the root writable",
        "mount -o remount,rw /usr": "write into the host's /usr",
        "mount -t tmpfs none /mnt": "mount anything",
        "mount -t proc proc /tmp": "a /proc of its own choosing",
        "echo x > /usr/owned": "write through a read-only bind",
        "echo x > /owned": "write into the sandbox's root",
        "echo b > /proc/sysrq-trigger": "reboot the host",
        "echo 1 > /proc/sys/vm/drop_caches": "a host-wide kernel setting",
        "hostname owned": "rename the host",
        "ls /sys/fs/cgroup": "the host's cgroups (/sys is not bound)",
        "dmesg": "the host's kernel log",
    }
    for command, what in attacks.items():
        code, out = sh(data, arn, session, command)
        assert code != 0, f"{command} ({what}) succeeded: {out}"
    assert sh(data, arn, session, "echo fine > kept.txt && cat kept.txt") == (0, "fine\n")


def test_proc_shows_only_the_sessions_own_processes(local: LocalRuntime, data) -> None:
    arn, session = local.default_arn, new_id()
    sh(data, arn, new_id(), "true")  # another session's agent running beside it
    listing = "for p in /proc/[0-9]*; do echo \"$(tr '\\0' ' ' < $p/cmdline)\"; done"
    code, out = sh(data, arn, session, listing)
    processes = [line for line in out.splitlines() if line.strip()]
    agents = [p for p in processes if "coding_agent.py" in p and "sandbox_init" not in p]
    assert code == 0 and len(agents) == 1, processes  # its own agent, not the other session's
    host = _cmdline(os.getpid())
    assert all(p.strip() != host.strip() for p in processes)  # nor serve (this pytest)
    assert len(processes) <= 6, processes  # bwrap's init, sandbox_init, the agent, this command


def test_the_state_dir_other_sessions_and_the_home_are_absent_not_covered(local: LocalRuntime, data) -> None:
    arn, a, b = local.default_arn, new_id(), new_id()
    sh(data, arn, a, "echo secret-of-a > a.txt")
    a_storage = local.storage(arn, a)
    assert (a_storage / "a.txt").read_text() == "secret-of-a\n"
    home = Path.home().resolve()
    python_prefixes = {Path(p).resolve() for p in (os.sys.prefix, os.sys.base_prefix)}
    home_entries = [e for e in home.iterdir() if not any(p.is_relative_to(e) for p in python_prefixes)]
    for path in [local.state_dir, local.state_dir / "sessions", a_storage, *home_entries[:10]]:
        code, out = sh(data, arn, b, f"test -e '{path}' || test -L '{path}'")
        assert code != 0, f"{path} is visible inside the sandbox"
    code, out = sh(data, arn, b, "ls -A /")
    roots = set(out.split())
    assert roots <= {"bin", "sbin", "lib", "lib32", "lib64", "libx32", "usr", "etc", "dev", "proc", "tmp"} | {
        "mnt",
        "run",
        *(Path(p).parts[1] for p in (REPO, *python_prefixes)),
    }, roots
    _, out = sh(data, arn, b, "cat /etc/shadow /etc/gshadow; ls -A /etc/ssl/private")
    assert "root:" not in out and ".pem" not in out and ".key" not in out  # the host's secrets in /etc
    # The checkout is shown read-only (a CI clone lives in /tmp): its test sources spell the secret.
    code, out = sh(
        data,
        arn,
        b,
        f"find / -path /proc -prune -o -path {REPO} -prune -o -name a.txt -print; "
        f"grep -rs --exclude-dir={REPO.name} secret /mnt /tmp",
    )
    assert "a.txt" not in out and "secret-of-a" not in out


# --- 2. a runtime's settings never reach a host process -----------------------------------------


def test_a_runtimes_path_ld_preload_pythonpath_and_home_reach_only_the_agent(
    local: LocalRuntime, data, tmp_path: Path
) -> None:
    """The attack of issue 8: a runtime whose PATH names a directory holding a fake `bwrap`."""
    marker = tmp_path / "host-was-steered"
    trap = tmp_path / "trap"
    trap.mkdir()
    for name in ("bwrap", "slirp4netns", "python3", "sh", "bash"):
        (trap / name).write_text(f"#!/bin/sh\necho {name} >> {marker}\nexit 1\n")
        (trap / name).chmod(0o755)
    (trap / "sitecustomize.py").write_text(f"open({str(marker)!r}, 'a').write('python\\n')\n")
    preload = trap / "evil.so"
    if shutil.which("cc"):
        source = trap / "evil.c"
        source.write_text(
            "#include <stdio.h>\n__attribute__((constructor)) static void own(void) "
            f'{{ FILE *f = fopen("{marker}", "a"); if (f) {{ fputs("ld_preload\\n", f); fclose(f); }} }}\n'
        )
        subprocess.run(["cc", "-shared", "-fPIC", "-o", str(preload), str(source)], check=True)
    steering = {
        "PATH": f"{trap}:/usr/bin:/bin",
        "LD_PRELOAD": str(preload),
        "PYTHONPATH": str(trap),
        "HOME": str(trap),
        "SECRET_TOKEN": "s3cr3t-value",
    }
    base = local.create_runtime("steer_" + uuid.uuid4().hex[:8])
    request = base["request"]
    env = {**request["environmentVariables"], **steering}
    arn = local.create_runtime("steered_" + uuid.uuid4().hex[:8], environmentVariables=env)["agentRuntimeArn"]
    session = new_id()
    answer = invoke(data, arn, session, "hello")
    assert "echo: hello" in answer["response"]  # the compute started, through the real bwrap
    assert not marker.exists(), marker.read_text()

    # The host-side processes of this compute run with serve's own environment only.
    storage = str(local.storage(arn, session))
    host_pids = [int(p) for p in os.listdir("/proc") if p.isdigit() and _cmdline(int(p)).find(storage) >= 0]
    assert host_pids, "no bwrap process found for the session"
    for pid in host_pids:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        names = {e.split(b"=", 1)[0].decode() for e in environ if e}
        assert names <= {"PATH", "LANG"}, names
        assert b"s3cr3t-value" not in Path(f"/proc/{pid}/environ").read_bytes()
        assert "s3cr3t-value" not in _cmdline(pid)

    # Inside, the agent (and the commands beside it) see them all.
    find_agent = (
        "for p in /proc/[0-9]*; do grep -qa coding_agent.py $p/cmdline 2>/dev/null && "
        "! grep -qa sandbox_init $p/cmdline && tr '\\0' '\\n' < $p/environ; done"
    )
    _, out = sh(data, arn, session, find_agent)
    agent_env = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    for name, value in steering.items():
        assert agent_env.get(name) == value, (name, agent_env.get(name))
    out = run(data, arn, session, 'echo "$PATH|$PYTHONPATH|$HOME|$SECRET_TOKEN"')[2]
    assert out.strip() == f"{trap}:/usr/bin:/bin|{trap}|{trap}|s3cr3t-value"
    # ...but no command line in the sandbox carries them, nor sandbox_init's own environment.
    out = run(data, arn, session, "cat /proc/[0-9]*/cmdline | tr '\\0' ' '")[2]
    assert "s3cr3t-value" not in out
    out = run(
        data,
        arn,
        session,
        "for p in /proc/[0-9]*; do [ $p = /proc/$$ ] || "
        "{ grep -qa sandbox_init $p/cmdline 2>/dev/null && cat $p/environ; }; done",
    )[2]
    assert "s3cr3t-value" not in out and str(trap) not in out
    assert not marker.exists()


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def test_commands_run_with_bash_as_on_aws(local: LocalRuntime, data) -> None:
    code, out = sh(data, local.default_arn, new_id(), '[[ "$BASH" == */bash ]] && echo "bash $BASH_VERSION"')
    assert code == 0 and out.startswith("bash ")


# --- 3. a network of its own ---------------------------------------------------------------------


def connect(host: str, port: int, send: str = "") -> str:
    """bash: connect to host:port (3 s at most); print `connected` and the answer, or `unreachable`."""
    return (
        f"timeout 3 bash -c 'exec 3<>/dev/tcp/{host}/{port} || exit 1; echo connected; "
        f'printf "{send}" >&3; timeout 1 cat <&3; exit 0\' 2>&1 || echo unreachable'
    )


def host_addresses() -> list[str]:
    """The host's own non-loopback IPv4 addresses (where slirp4netns's outbound traffic comes from)."""
    found = subprocess.run(["hostname", "-I"], capture_output=True, text=True).stdout.split()
    return [a for a in found if ":" not in a][:3]


def test_the_emulators_api_is_unreachable_from_inside(local: LocalRuntime, data) -> None:
    arn, session = local.default_arn, new_id()
    api_port = int(local.url.rsplit(":", 1)[1])
    abstract = socket.socket(socket.AF_UNIX)  # abstract unix sockets belong to a network namespace
    abstract.bind(b"\0agentcore-local-test-" + uuid.uuid4().hex.encode())
    abstract.listen()
    with abstract:
        name = abstract.getsockname()[1:].decode()
        probe = f"python3 -c \"import socket; socket.socket(socket.AF_UNIX).connect(b'\\0{name}')\""
        code, out = sh(data, arn, session, probe)
        assert code != 0 and "ConnectionRefused" in out, out
    for host in ["127.0.0.1", "10.0.2.2", "localhost", *host_addresses()]:
        out = sh(data, arn, session, connect(host, api_port, "GET /_local/sessions HTTP/1.0\\r\\n\\r\\n"))[1]
        assert "unreachable" in out and "connected" not in out, (host, out)


def test_each_session_reaches_only_its_own_agent_on_its_own_loopback(local: LocalRuntime, data) -> None:
    arn, a, b = local.default_arn, new_id(), new_id()
    sh(data, arn, a, "echo a > who.txt")
    sh(data, arn, b, "echo b > who.txt")
    ping = "GET /ping HTTP/1.0\\r\\n\\r\\n"
    for session in (a, b):
        out = sh(data, arn, session, connect("127.0.0.1", 8080, ping))[1]
        assert "Healthy" in out  # its own agent
    # Nothing on 127.0.0.1 in B is A's: A's agent answers only through the host's private socket.
    _, out = sh(data, arn, b, "ls -A /run /tmp; ls -d /tmp/agentcore-* 2>&1")
    assert "agent.sock" not in out
    assert invoke(data, arn, a, "hello")["response"].endswith("(0 messages of history)")


def test_port_exhaustion_inside_one_session_does_not_touch_the_others(local: LocalRuntime, data) -> None:
    arn, hog = local.default_arn, new_id()
    # Every port of its loopback, held by 65 processes (each under its own open-files limit).
    hold = (
        "import os, socket, time\n"
        "for first in range(1024, 65536, 1000):\n"
        "    if os.fork() == 0:\n"
        "        held = []\n"
        "        for port in range(first, min(first + 1000, 65536)):\n"
        "            s = socket.socket()\n"
        "            try:\n"
        "                s.bind(('127.0.0.1', port))\n"
        "                held.append(s)\n"
        "            except OSError:\n"
        "                s.close()\n"
        "        open(f'/tmp/held.{first}', 'w').write(str(len(held)))\n"
        "        time.sleep(60)\n"
        "        os._exit(0)\n"
    )
    sh(
        data,
        arn,
        hog,
        f"cat > /tmp/hold.py <<'EOF'\n{hold}EOF\nsetsid python3 /tmp/hold.py >/dev/null 2>&1 &",
    )
    held = 0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and held == 0:
        _, out = sh(
            data,
            arn,
            hog,
            "ls /tmp/held.* 2>/dev/null | wc -l; "
            "for f in /tmp/held.*; do cat $f; echo; done | paste -sd+ | bc",
        )
        held = int(out.split()[1]) if out.split()[0] == "65" else 0
    assert held > 60000, held  # the hog holds (nearly) every port of its namespace
    for _ in range(2):  # new sessions start and answer, as does the hog's own agent
        assert invoke(data, arn, new_id(), "hello")["response"].endswith("(0 messages of history)")
    assert "echo: hello" in invoke(data, arn, hog, "hello")["response"]
    local.data().stop_runtime_session(agentRuntimeArn=arn, runtimeSessionId=hog)


def test_a_forwarded_host_service_is_the_one_host_service_a_session_reaches(
    local: LocalRuntime, data, host_service: Path
) -> None:
    arn, session = local.default_arn, new_id()
    out = sh(data, arn, session, connect("127.0.0.1", FORWARD_PORT, "hello service"))[1]
    assert "HELLO SERVICE" in out
    code, out = sh(data, arn, session, f"test -e {host_service} || ls /run/agentcore")
    # bound in read-only, beside the agent-facing listener's: nothing else of the host is there
    assert sorted(out.split()) == sorted([f"forward-{FORWARD_PORT}.sock", "forward-8788.sock"])
    code, out = sh(
        data, arn, session, f"rm /run/agentcore/forward-{FORWARD_PORT}.sock; touch /run/agentcore/x"
    )
    assert code != 0


def test_outbound_traffic_leaves_through_the_user_mode_stack(local: LocalRuntime, data) -> None:
    """npm install needs it (make demo proves the registry); here: a listener of the test's own."""
    addresses = host_addresses()
    if not addresses:
        pytest.skip("the host has no non-loopback IPv4 address")
    listener = socket.socket()
    listener.bind((addresses[0], 0))
    listener.listen()
    try:
        port = listener.getsockname()[1]
        out = sh(data, local.default_arn, new_id(), connect(addresses[0], port))[1]
        assert "connected" in out, out
    finally:
        listener.close()


# --- as an unprivileged user -----------------------------------------------------------------

NOBODY = 65534
TINY_AGENT = """import json, os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Agent(BaseHTTPRequestHandler):
    def do_GET(self):
        self.answer({"status": "Healthy", "time_of_last_update": 0})

    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.answer({"response": f"uid {os.getuid()}"})

    def answer(self, body):
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Agent).serve_forever()
"""


class AsNobody(BwrapLauncher):
    """bwrap and slirp4netns started as `nobody`, as a serve run by an ordinary user starts them.

    The agent is a stdlib stand-in on the system Python: this checkout's venv and Python live
    under root's 0700 home, which an ordinary user could not run anyway."""

    def __init__(self, agent_script: Path) -> None:
        bwrap, slirp = find_tool("bwrap") or "bwrap", find_tool("slirp4netns")
        super().__init__("/usr/bin/python3", agent_script, bwrap=bwrap, slirp=slirp)
        if os.stat(TUN).st_mode & 0o006 != 0o006:  # nobody could not open it: a shared network
            self.slirp, self.private_network = None, False
        setpriv = find_tool("setpriv") or "setpriv"
        self.drop = [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]

    def allowed(self) -> list[Path]:
        system = [Path(p) for p in ("/usr", "/etc", "/bin", "/lib", "/lib64") if os.path.lexists(p)]
        return [*system, SANDBOX_INIT.parent, self.agent_script.parent]

    def command(self, spec: LaunchSpec) -> tuple[list[str], dict[str, str], str]:
        os.chown(spec.storage_dir, NOBODY, NOBODY)  # serve's user owns its state dir
        argv, env, cwd = super().command(spec)
        return [*self.drop, "--", *argv], env, cwd

    def network_argv(self, child_pid: int, ready_fd: int, exit_fd: int, userns: str) -> list[str]:
        return [*self.drop, "--", *super().network_argv(child_pid, ready_fd, exit_fd, userns)]


@pytest.mark.skipif(not find_tool("setpriv") or os.getuid() != 0, reason="needs root and setpriv")
def test_as_an_unprivileged_user_the_sandbox_is_the_same(_isolated_aws: None) -> None:
    """What differs without root: bwrap nests a second user namespace, and slirp4netns must enter
    the one owning the network namespace. The network half needs /dev/net/tun open to all users
    (as on a usual host; some containers keep it root-only: then serve falls back to a shared network)."""
    tmp = Path(tempfile.mkdtemp(prefix="iso-nobody-"))
    tmp.chmod(0o755)
    agent = tmp / "agent" / "tiny_agent.py"
    agent.parent.mkdir(mode=0o755)
    agent.write_text(TINY_AGENT)
    try:
        with local_runtime(tmp, launcher=AsNobody(agent)) as local:
            data, arn, session = local.data(), local.default_arn, new_id()
            assert invoke(data, arn, session, "hi")["response"] == f"uid {NOBODY}"
            _, out = sh(data, arn, session, "id -u; grep CapEff /proc/self/status")
            assert out.split()[0] == str(NOBODY) and "0000000000000000" in out
            for attack in ("umount /tmp", "mount -o remount,rw /", "ls -A /root/.pyenv"):
                assert sh(data, arn, session, attack)[0] != 0, attack
            storage = str(local.storage(arn, session))
            bwraps = [p for p in os.listdir("/proc") if p.isdigit() and storage in _cmdline(int(p))]
            assert bwraps, "no host-side process of the sandbox found"
            for pid in bwraps:
                status = Path(f"/proc/{pid}/status").read_text()
                assert f"Uid:\t{NOBODY}\t" in status  # the host side runs as nobody too
            if not local.app.state.sessions.launcher.private_network:
                return
            api_port = int(local.url.rsplit(":", 1)[1])
            assert "unreachable" in sh(data, arn, session, connect("127.0.0.1", api_port))[1]
            addresses = host_addresses()
            if addresses:
                listener = socket.socket()
                listener.bind((addresses[0], 0))
                listener.listen()
                with listener:
                    out = sh(data, arn, session, connect(addresses[0], listener.getsockname()[1]))[1]
                assert "connected" in out  # slirp4netns, started as nobody, carries it out
    finally:
        subprocess.run(["rm", "-rf", str(tmp)], check=False)
