"""Inside a session's sandbox: start the agent, run InvokeAgentRuntimeCommand's commands beside
it, and carry the host's connections to it (and its connections to the agent-facing services).

Standalone (standard library only), because it runs wherever the agent runs: under bwrap, as a
plain process, or mounted into the Docker image. The host talks to it over stdin/stdout, one
JSON object per line. The first message says how to start the agent; the agent's environment
(a runtime's environmentVariables among it) comes only this way, never on a command line that
/proc/*/cmdline would show nor in this process's own environment:

  init -> {"event": "init"}  (first: the sandbox is built; the host attaches its network now)
  host -> {"op": "start", "env": {...} or null, "grace": 10, "listen_fd": 3 or null,
           "agent_port": 8080, "ready": "ping" or "connect",
           "forwards": [[PORT, "/run/agentcore/forward-PORT.sock"], ...],
           "exec_argv": [...] or absent, "stop_argv": [...] or absent}
  host -> {"op": "exec", "id": "1", "command": "ls", "timeout": 300}   | {"op": "stop", "grace": 10}
  init -> {"id": "1", "stream": "stdout", "data": "..."}  {"id": "1", "exit": 0, "status": "COMPLETED"}
          {"event": "exited", "code": 1}  (the agent ended by itself)   {"event": "stopped", "code": 0}
  init -> {"event": "ready"}  (the agent's own /ping said Healthy: polled here, on its loopback, every 10 ms)
  host -> {"op": "attach"}  (the session's storage is now at the cwd: commands may run in it)

`listen_fd`: a listening unix socket the host made; every connection on it is carried to the
agent's 127.0.0.1:agent_port (in a private network namespace the host has no other way in).
`forwards`: this side listens on 127.0.0.1:PORT and carries every connection to the unix socket.
`exec_argv`, `stop_argv` (the docker sandbox, where this side runs on the host and the agent is
the `docker run` client): commands run as exec_argv + [bash, -c, COMMAND], and a stop runs
stop_argv ("{grace}" replaced by the grace in seconds) instead of signalling the client.
The agent's own output goes to stderr, which the host keeps as the session's log.
Usage: python -I sandbox_init.py --cwd COMMAND_DIR -- AGENT_ARGV...  (the agent starts in our cwd)
"""

from __future__ import annotations

import codecs
import contextlib
import errno
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

_write_lock = threading.Lock()
_done = threading.Event()
_shutdown_lock = threading.Lock()
_agent_gone = threading.Event()  # set by the thread that waits on the agent, the moment it ends
_execs: dict[str, subprocess.Popen] = {}
_container: dict[str, list[str]] = {}  # "exec" and "stop" argv when the agent is a container
# AWS runs InvokeAgentRuntimeCommand's command with bash; found on our own (serve's) PATH, not the agent's.
BASH = shutil.which("bash") or "/bin/bash"
READY_POLL_S = 0.01  # a fixed interval on the sandbox's own loopback: no backoff, ~1 ms a probe
# Connections one forward carries at once (two threads each). Twice the host's own cap per session
# (connection_limits.py), whose refusals /_local/sessions counts: this one only bounds what a flood
# that the host refuses slower than it connects piles up here. Past it: a 503 at once.
FORWARD_CONNECTIONS = 128
HOST_CONNECT_TIMEOUT_S = 10.0  # the host's socket's backlog full: give up, do not pile up
OUT_OF_DESCRIPTORS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
_BUSY_BODY = (
    b"<Error><Code>SlowDown</Code><Message>this sandbox's forward holds its connections</Message></Error>"
)
BUSY = (
    b"HTTP/1.1 503 SlowDown\r\nContent-Type: application/xml\r\nx-amzn-ErrorType: SlowDown\r\n"
    b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(_BUSY_BODY), _BUSY_BODY)
)


def emit(message: dict) -> None:
    line = json.dumps(message) + "\n"
    with _write_lock:
        try:
            sys.stdout.write(line)
            sys.stdout.flush()
        except (BrokenPipeError, ValueError):
            pass  # the host is gone; --die-with-parent or the stop will end us


def kill_group(process: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)


def run_command(exec_id: str, command: str, timeout: float, cwd: str, env: dict[str, str]) -> None:
    """Run one command in the workspace, with the agent's environment; stream its output; report."""
    try:
        prefix = _container.get("exec")
        process = subprocess.Popen(
            [*prefix, "bash", "-c", command] if prefix else [BASH, "-c", command],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # its own process group, so a timeout kills the whole pipeline
        )
    except OSError as error:
        emit({"id": exec_id, "stream": "stderr", "data": f"cannot run the command: {error}\n"})
        emit({"id": exec_id, "exit": 127, "status": "COMPLETED"})
        return
    _execs[exec_id] = process

    def pump(pipe, name: str) -> None:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        while chunk := os.read(pipe.fileno(), 65536):
            if text := decoder.decode(chunk):
                emit({"id": exec_id, "stream": name, "data": text})
        if tail := decoder.decode(b"", final=True):
            emit({"id": exec_id, "stream": name, "data": tail})

    pumps = [
        threading.Thread(target=pump, args=(p, n), daemon=True)
        for p, n in ((process.stdout, "stdout"), (process.stderr, "stderr"))
    ]
    for thread in pumps:
        thread.start()
    status = "COMPLETED"
    try:
        code = process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(process, signal.SIGKILL)
        process.wait()
        status, code = "TIMED_OUT", -1
    for thread in pumps:
        thread.join(timeout=1.0)  # a command that left a background child holding the pipe: stop reading
    _execs.pop(exec_id, None)
    emit({"id": exec_id, "exit": code, "status": status})


def shutdown(agent: subprocess.Popen, grace: float, event: str) -> None:
    """SIGTERM the agent, SIGKILL after `grace`, end running commands, flush the storage, report."""
    with _shutdown_lock:
        if _done.is_set():
            return
        _done.set()
    if stop := _container.get("stop"):
        seconds = str(max(0, math.ceil(grace)))
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):  # the SIGKILL below is the fallback
            argv = [a.replace("{grace}", seconds) for a in stop]
            subprocess.run(argv, capture_output=True, timeout=grace + 30)
    else:
        kill_group(agent, signal.SIGTERM)
    # Not agent.wait(timeout): that polls with sleeps of up to 50 ms, each a stop's caller waits out.
    if not _agent_gone.wait(grace):
        kill_group(agent, signal.SIGKILL)
    agent.wait()
    kill_group(agent, signal.SIGKILL)  # anything the agent left behind in its group
    for process in list(_execs.values()):
        kill_group(process, signal.SIGKILL)
    emit({"event": event, "code": agent.returncode})


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)  # half-close: an HTTP client that shut its side still gets the answer


def _carry(conn: socket.socket, open_peer, slots: threading.Semaphore | None) -> None:
    """Carry one accepted connection to a new one from `open_peer`, both ways, until both end."""
    peer = None
    try:
        peer = open_peer()
        back = threading.Thread(target=_pipe, args=(peer, conn), daemon=True)
        back.start()  # RuntimeError at the sandbox's pids limit: the connection ends
        _pipe(conn, peer)
        back.join()
    except (OSError, RuntimeError):
        pass
    finally:
        conn.close()
        if peer is not None:
            peer.close()
        if slots is not None:
            slots.release()


_refused = {"count": 0, "told": 0.0}


def _refuse(conn: socket.socket, port: int) -> None:
    """Answer 503 at once (what the client already sent is read first: else a reset hides the
    answer), and say so in the session's log, once a second at most."""
    with contextlib.suppress(OSError):
        conn.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            conn.recv(65536)
        conn.send(BUSY)
        conn.shutdown(socket.SHUT_WR)
    conn.close()
    _refused["count"] += 1
    if time.monotonic() - _refused["told"] >= 1.0:
        _refused["told"] = time.monotonic()
        print(
            f"sandbox_init: 127.0.0.1:{port} carries {FORWARD_CONNECTIONS} connections at once: "
            f"{_refused['count']} refused so far",
            file=sys.stderr,
        )


def _accept(listener: socket.socket, open_peer, cap: int | None = None) -> None:
    """Carry each connection in a thread of its own; at most `cap` at once (None: no cap, the
    host's connections to the agent). Out of descriptors or threads, a connection is refused and
    the loop goes on: the forward outlives a flood."""
    slots = threading.Semaphore(cap) if cap else None
    port = listener.getsockname()[1] if listener.family == socket.AF_INET else 0
    while True:
        try:
            conn, _ = listener.accept()
        except OSError as error:
            if error.errno not in OUT_OF_DESCRIPTORS:
                return  # the listener is closed
            _done.wait(0.05)  # what waits stays in the backlog meanwhile
            continue
        if conn.family != socket.AF_UNIX:
            with contextlib.suppress(OSError):
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if slots is not None and not slots.acquire(blocking=False):
            _refuse(conn, port)
            continue
        try:
            threading.Thread(target=_carry, args=(conn, open_peer, slots), daemon=True).start()
        except RuntimeError:  # the sandbox's pids limit
            if slots is not None:
                slots.release()
            _refuse(conn, port)


def _to_agent(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # else each answer waits on a delayed ACK
    return sock


def _to_host(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(HOST_CONNECT_TIMEOUT_S)
        sock.connect(path)
        sock.settimeout(None)
    except OSError:
        sock.close()
        raise
    return sock


def serve_sockets(listen_fd: int | None, agent_port: int, forwards: list) -> None:
    """Carry the host's connections to the agent and the agent's to the host services. Blocking
    threads, one a direction per connection: no event loop to import (~70 ms of the start) and no
    loop between the two sockets. Returns once every socket listens, so "ready" never precedes them."""
    listeners = []
    if listen_fd is not None:
        listeners.append((socket.socket(fileno=listen_fd), lambda: _to_agent(agent_port), None))
    for port, path in forwards:
        try:
            listener = socket.create_server(("127.0.0.1", int(port)), backlog=128)
        except OSError as error:  # a shared network (the process sandbox): another session has it
            print(f"sandbox_init: cannot forward 127.0.0.1:{port}: {error}", file=sys.stderr)
            continue
        listeners.append((listener, lambda path=path: _to_host(path), FORWARD_CONNECTIONS))
    for listener, open_peer, cap in listeners:
        threading.Thread(target=_accept, args=(listener, open_peer, cap), daemon=True).start()


def answers_http(port: int) -> bool:
    """True when 127.0.0.1:port answers a request with an HTTP status line (any status)."""
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=2.0) as sock:
        sock.settimeout(2.0)
        sock.sendall(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        return sock.recv(5) == b"HTTP/"
    return False


def watch_ready(agent: subprocess.Popen, port: int, mode: str = "ping") -> None:
    """Emit {"event": "ready"} once the agent's /ping answers Healthy, or (mode "connect": an MCP or
    A2A server, which need not serve /ping) once its port answers HTTP at all: a bare accept is not
    enough, docker's proxy accepts before the agent listens (a thread; ends with the agent)."""
    import http.client

    while agent.poll() is None and not _done.is_set():
        if mode == "connect":
            if answers_http(port):
                emit({"event": "ready"})
                return
            _done.wait(READY_POLL_S)
            continue
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2.0)
        try:
            connection.request("GET", "/ping")
            answer = connection.getresponse()
            if answer.status == 200 and json.loads(answer.read()).get("status") in ("Healthy", "HealthyBusy"):
                emit({"event": "ready"})
                return
        except (OSError, ValueError, http.client.HTTPException):
            pass
        finally:
            connection.close()
        _done.wait(READY_POLL_S)


def main(argv: list[str]) -> int:
    if "--" not in argv or argv[:1] != ["--cwd"]:
        print(__doc__, file=sys.stderr)
        return 2
    cwd, agent_argv = argv[1], argv[argv.index("--") + 1 :]
    emit({"event": "init"})  # the sandbox is set up (its network namespace too): the host may attach to it
    try:
        start = json.loads(sys.stdin.readline())
        assert isinstance(start, dict) and start.get("op") == "start"
    except (ValueError, AssertionError):
        print('sandbox_init: the first message must be {"op": "start", ...}', file=sys.stderr)
        return 2
    # The host's variables over our own: in an image, its ENV (PATH, WORKDIR's settings) stays beneath.
    env = {**os.environ, **(start.get("env") or {})}
    grace = float(start.get("grace", 10.0))
    _container.update({k: list(start[f"{k}_argv"]) for k in ("exec", "stop") if start.get(f"{k}_argv")})
    serve_sockets(start.get("listen_fd"), int(start.get("agent_port") or 8080), start.get("forwards") or [])
    agent = subprocess.Popen(  # in our own working directory: the agent's code, like an image's WORKDIR
        agent_argv,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=sys.stderr.fileno(),  # stdout is our channel to the host
        stderr=sys.stderr.fileno(),
        start_new_session=True,
    )

    def watch() -> None:
        agent.wait()
        _agent_gone.set()
        if not _done.is_set():
            shutdown(agent, 0.0, "exited")
            os._exit(0)

    threading.Thread(target=watch, daemon=True).start()  # before a SIGTERM could need _agent_gone

    def on_sigterm(*_: object) -> None:  # docker stop, or the host's last resort
        def stop_and_exit() -> None:
            shutdown(agent, grace, "stopped")
            os._exit(0)

        threading.Thread(target=stop_and_exit, daemon=True).start()

    signal.signal(signal.SIGTERM, on_sigterm)
    port = int(env.get("PORT") or start.get("agent_port") or 8080)  # where the agent listens (docker: 8080)
    ready = str(start.get("ready") or "ping")
    threading.Thread(target=watch_ready, args=(agent, port, ready), daemon=True).start()
    for line in sys.stdin:
        try:
            request = json.loads(line)
        except json.JSONDecodeError:
            continue
        if request.get("op") == "exec":
            args = (str(request["id"]), request["command"], float(request.get("timeout", 300)), cwd, env)
            threading.Thread(target=run_command, args=args, daemon=True).start()
        elif request.get("op") == "kill" and (process := _execs.get(str(request.get("id")))):
            kill_group(process, signal.SIGKILL)
        elif request.get("op") == "stop":
            grace = float(request.get("grace", grace))
            break
    shutdown(agent, grace, "stopped")  # an explicit stop, or the host closed our stdin
    # Nothing is left to flush (emit flushes each line): skip the interpreter's teardown of threads
    # still blocked in the relay, which the stop's caller would wait for.
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
