"""serve's clean exit on SIGINT/SIGTERM, through uvicorn's public API only: uvicorn re-raises the
signal after its shutdown under the handlers it found at its start, and exit_zero_on_signal's
make that harmless. An upgrade of uvicorn (pinned in uv.lock) that changes this fails here."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

# A real uvicorn.Server on a bound socket, as serve() runs it; the lifespan's end leaves a mark.
SERVER = """
import contextlib, sys
from pathlib import Path
import uvicorn
from starlette.applications import Starlette
from agentcore_local.server import bind, exit_zero_on_signal

@contextlib.asynccontextmanager
async def lifespan(app):
    print("serving", flush=True)
    yield
    Path(sys.argv[1]).write_text("lifespan ended")

sock = bind("127.0.0.1", 0)
server = uvicorn.Server(uvicorn.Config(Starlette(lifespan=lifespan), log_level="warning", lifespan="on"))
with exit_zero_on_signal(server):
    server.run(sockets=[sock])
print("returned", flush=True)
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_ends_serving_cleanly_with_exit_0(tmp_path: Path, sig: signal.Signals) -> None:
    mark = tmp_path / "mark"
    process = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(mark)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == "serving\n", process.stderr.read() if process.stderr else ""
        process.send_signal(sig)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert (process.returncode, out) == (0, "returned\n"), err
    assert mark.read_text() == "lifespan ended"
