"""A runtime's server protocol: where its agent listens and how the emulator knows it is up.

botocore 1.44.5's ProtocolConfiguration: `port` (8000-12000, not 8443) and `path` default to
8080 and /invocations for HTTP and AGUI, 8000 and /mcp for MCP, 9000 and / for A2A. HTTP and
AGUI agents answer GET /ping (runtime-service-contract); an MCP or A2A server need not, so it is
up once its port accepts a connection.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

DEFAULTS = {
    "HTTP": (8080, "/invocations"),
    "AGUI": (8080, "/invocations"),
    "MCP": (8000, "/mcp"),
    "A2A": (9000, "/"),
}


@dataclass(frozen=True)
class Protocol:
    name: str
    port: int
    path: str

    @property
    def readiness(self) -> str:
        """ "ping": GET /ping answers Healthy; "connect": the port accepts a connection."""
        return "ping" if self.name in ("HTTP", "AGUI") else "connect"


def protocol_of(config: dict[str, Any]) -> Protocol:
    """The protocol a runtime version's configuration names (HTTP when it names none)."""
    given = config.get("protocolConfiguration") or {}
    name = given.get("serverProtocol", "HTTP")
    port, path = DEFAULTS.get(name, DEFAULTS["HTTP"])
    return Protocol(name, int(given.get("port") or port), given.get("path") or path)
