"""Which Host a request to one of serve's endpoints may name: its own address only, so a web page
that rebinds its own name to 127.0.0.1 (DNS rebinding) and sends `Host: attacker.example:PORT`
is refused. One rule for the API (api/host_check.py) and the agent-facing listener (listener.py).

Own: the address and port the connection reached (a --host, or the interface a 0.0.0.0 listener
was reached on) under that address or 127.0.0.1, localhost and [::1]; and the `extra` names the
endpoint is called by (the endpoints serve's environment points boto3 at; the listener's
127.0.0.1:8788 inside a sandbox). A Host without a port is one on port 80.
"""

from __future__ import annotations

from starlette.types import Scope

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


def own_hosts(server: tuple[str, int] | None, extra: tuple[str, ...]) -> set[str]:
    hosts = set(extra)
    if server:
        host, port = server
        shown = f"[{host}]" if ":" in host else host
        hosts |= {f"{name}:{port}" for name in (*LOOPBACK_NAMES, shown)}
    return hosts


def loopback_hosts(port: int) -> tuple[str, ...]:
    """127.0.0.1, localhost and [::1] at `port`: an endpoint's names where the connection's own
    address says nothing (a unix socket, a forward)."""
    return tuple(f"{name}:{port}" for name in LOOPBACK_NAMES)


def foreign_host(scope: Scope, extra: tuple[str, ...]) -> str | None:
    """The Host of an HTTP request `scope` when it is not one of the endpoint's own (lower case,
    at most 100 characters, for the refusal), else None."""
    host = dict(scope["headers"]).get(b"host", b"").decode("latin-1").lower()
    with_port = host if host.rpartition(":")[2].isdigit() and not host.endswith("]") else f"{host}:80"
    return None if with_port in own_hosts(scope.get("server"), extra) else host[:100]
