"""The listener's two listening sockets: a unix socket in the state directory (what every
sandbox's forward reaches) and a loopback TCP port (--sandbox process and docker)."""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
from pathlib import Path

SOCKET_NAME = "agent-services.sock"


def socket_path_for(state_dir: Path) -> Path:
    """STATE_DIR/agent-services.sock, or one in a new short directory when that path is too long."""
    path = state_dir.resolve() / SOCKET_NAME
    if len(os.fsencode(path)) <= 107:  # sun_path holds 108 bytes with the terminating NUL
        return path
    return Path(tempfile.mkdtemp(prefix="agentcore-local-")) / SOCKET_NAME


def unix_socket(path: Path) -> socket.socket:
    """A listening unix socket at `path` (an old one from a killed server is replaced)."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    os.chmod(path, 0o666)  # the sandbox's user may not be ours (docker, user namespaces)
    sock.listen(128)
    return sock


def tcp_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    return sock
