"""Inside a session's sandbox: start the agent and run InvokeAgentRuntimeCommand's commands beside it.

Standalone (standard library only), because it runs wherever the agent runs: under bwrap, as a
plain process, or mounted into the Docker image. The host talks to it over stdin/stdout, one
JSON object per line, so no port or socket of one session is reachable from another:

  host -> {"op": "exec", "id": "1", "command": "ls", "timeout": 300}   | {"op": "stop", "grace": 10}
  init -> {"id": "1", "stream": "stdout", "data": "..."}  {"id": "1", "exit": 0, "status": "COMPLETED"}
          {"event": "exited", "code": 1}  (the agent ended by itself)   {"event": "stopped", "code": 0}

The agent's own output goes to stderr, which the host keeps as the session's log.
Usage: python sandbox_init.py --cwd COMMAND_DIR -- AGENT_ARGV...  (the agent starts in our cwd)
"""

from __future__ import annotations

import codecs
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading

_write_lock = threading.Lock()
_done = threading.Event()
_shutdown_lock = threading.Lock()
_execs: dict[str, subprocess.Popen] = {}


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


def run_command(exec_id: str, command: str, timeout: float, cwd: str) -> None:
    """Run one command in the workspace; stream its output; report exit code and status."""
    try:
        process = subprocess.Popen(
            ["/bin/sh", "-c", command],
            cwd=cwd,
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
    kill_group(agent, signal.SIGTERM)
    try:
        agent.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        kill_group(agent, signal.SIGKILL)
        agent.wait()
    kill_group(agent, signal.SIGKILL)  # anything the agent left behind in its group
    for process in list(_execs.values()):
        kill_group(process, signal.SIGKILL)
    os.sync()  # the storage is consistent before the host hears "stopped"
    emit({"event": event, "code": agent.returncode})


def main(argv: list[str]) -> int:
    if "--" not in argv or argv[:1] != ["--cwd"]:
        print(__doc__, file=sys.stderr)
        return 2
    cwd, agent_argv = argv[1], argv[argv.index("--") + 1 :]
    agent = subprocess.Popen(  # in our own working directory: the agent's code, like an image's WORKDIR
        agent_argv,
        stdin=subprocess.DEVNULL,
        stdout=sys.stderr.fileno(),  # stdout is our channel to the host
        stderr=sys.stderr.fileno(),
        start_new_session=True,
    )

    def on_sigterm(*_: object) -> None:  # docker stop, or the host's last resort
        def stop_and_exit() -> None:
            shutdown(agent, 10.0, "stopped")
            os._exit(0)

        threading.Thread(target=stop_and_exit, daemon=True).start()

    signal.signal(signal.SIGTERM, on_sigterm)

    def watch() -> None:
        agent.wait()
        if not _done.is_set():
            shutdown(agent, 0.0, "exited")
            os._exit(0)

    threading.Thread(target=watch, daemon=True).start()
    grace = 10.0
    for line in sys.stdin:
        try:
            request = json.loads(line)
        except json.JSONDecodeError:
            continue
        if request.get("op") == "exec":
            args = (str(request["id"]), request["command"], float(request.get("timeout", 300)), cwd)
            threading.Thread(target=run_command, args=args, daemon=True).start()
        elif request.get("op") == "kill" and (process := _execs.get(str(request.get("id")))):
            kill_group(process, signal.SIGKILL)
        elif request.get("op") == "stop":
            grace = float(request.get("grace", grace))
            break
    shutdown(agent, grace, "stopped")  # an explicit stop, or the host closed our stdin
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
