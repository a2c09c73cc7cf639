"""What each session may hold of the agent-facing listener, and who did what: the caps, and a
tally per session of the connections it holds and of every refusal and limit hit.

Connections are attributed to a compute by the socket it reached (forwarder.py: one socket per
compute); the listener learns the compute of a request from the loopback port the forwarder
connected from. A compute is known by its name until a session takes it (a warm pool member),
then by the session id. Shared by two event loops (serve's, the listener's): every method locks.
"""

from __future__ import annotations

import logging
import resource
import threading
import time
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("agentcore_local.connection_limits")
UNATTRIBUTED = "unattributed"  # the listener's TCP port and shared socket (process and docker sandboxes)
# A flood is thousands of refusals a second: one line a second per session tells them all (the
# count since the last line), where a line each cost the control plane's loop its share of the GIL.
LOG_INTERVAL_S = 1.0


@dataclass(frozen=True)
class ConnectionCaps:
    """Per session. 64 connections: six times botocore's pool of 10 plus the model's stream, and
    64 x 3 descriptors x --max-sessions stays far below serve's RLIMIT_NOFILE. 16 requests at once
    to an upstream (moto, a model backend): s3transfer's 10 threads and a turn, with room."""

    connections: int = 64
    upstream: int = 16
    header_timeout: float = 10.0  # every request's header, complete (a half-sent request ends here)
    idle_timeout: float = 300.0  # no byte either way; the listener's own upstream timeout (a slow model)
    header_bytes: int = 65536
    # A body's pace (request_pace.py): a client on loopback sends at memory speed; these stop only
    # a trickle. 1 KiB/s on average: a 5 GiB upload may take 60 days, a byte a second may not.
    body_rate: int = 1024
    body_idle_timeout: float = 30.0  # no byte of a started body


@dataclass
class Tally:
    """One session's: what it holds now and what it was refused."""

    open: int = 0
    upstream: int = 0
    refusals: int = 0
    limits_hit: int = 0
    last_refusal: str | None = None
    last_refusal_at: float | None = None
    logged_at: float = float("-inf")  # time.monotonic() of its last log line
    unlogged: int = 0  # refusals since then, told in the next line


class ConnectionLimits:
    def __init__(self, caps: ConnectionCaps) -> None:
        self.caps = caps
        self._lock = threading.Lock()
        self._owner: dict[str, str] = {}  # compute name -> session id
        self._tallies: dict[str, Tally] = {}  # session id (or compute name) -> its tally
        self._ports: dict[int, str] = {}  # the forwarder's loopback source port -> compute name
        self._backups: dict[str, str] = {}  # compute name -> the one backup key prefix its session may use

    def _tally(self, compute: str) -> tuple[str, Tally]:
        who = self._owner.get(compute, compute)
        return who, self._tallies.setdefault(who, Tally())

    def attribute(self, compute: str, session_id: str, backup_prefix: str | None = None) -> None:
        """`compute` serves `session_id` from now on (what it did before stays with its old name),
        and may reach the backup objects under `backup_prefix` only (the listener's S3 gate)."""
        with self._lock:
            self._owner[compute] = session_id
            if backup_prefix is not None:
                self._backups[compute] = backup_prefix

    def forget(self, compute: str) -> None:
        with self._lock:
            self._owner.pop(compute, None)
            self._backups.pop(compute, None)

    def backup_prefix(self, compute: str) -> str | None:
        """The backup key prefix `compute`'s session may use; None: it serves no session yet."""
        with self._lock:
            return self._backups.get(compute)

    def admit(self, compute: str) -> bool:
        """One more connection for `compute`'s session, or False (counted, logged) past its cap."""
        with self._lock:
            _, tally = self._tally(compute)
            if tally.open < self.caps.connections:
                tally.open += 1
                return True
        self.refuse(compute, f"{self.caps.connections} connections open to the agent-facing services", True)
        return False

    def leave(self, compute: str) -> None:
        with self._lock:
            self._tally(compute)[1].open -= 1

    def take_upstream(self, compute: str) -> bool:
        """A share of the upstreams for one request, or False (counted, logged) past the share."""
        with self._lock:
            _, tally = self._tally(compute)
            if tally.upstream < self.caps.upstream:
                tally.upstream += 1
                return True
        self.refuse(compute, f"{self.caps.upstream} requests at once to S3 or the model", True)
        return False

    def give_upstream(self, compute: str) -> None:
        with self._lock:
            self._tally(compute)[1].upstream -= 1

    def refuse(self, compute: str, reason: str, limit: bool = False) -> None:
        """Count and log one refusal of `compute`'s session (`limit`: a cap or a timeout said no)."""
        now = time.monotonic()
        with self._lock:
            who, tally = self._tally(compute)
            tally.refusals += 1
            tally.limits_hit += limit
            tally.last_refusal, tally.last_refusal_at = reason, time.time()
            if now - tally.logged_at < LOG_INTERVAL_S:
                tally.unlogged += 1
                return
            more, tally.unlogged, tally.logged_at = tally.unlogged, 0, now
        also = f" (and {more} more refusals since the last line)" if more else ""
        log.warning("session_id=<%s> | %s: %s%s", who, "limit hit" if limit else "refused", reason, also)

    def connected_from(self, port: int, compute: str) -> None:
        with self._lock:
            self._ports[port] = compute

    def disconnected(self, port: int) -> None:
        with self._lock:
            self._ports.pop(port, None)

    def compute_at(self, client: tuple[str, int] | None) -> str:
        """The compute whose forwarded connection comes from `client` (the listener's peer)."""
        with self._lock:
            return self._ports.get(client[1], UNATTRIBUTED) if client else UNATTRIBUTED

    def describe(self, session_id: str) -> dict[str, Any]:
        """The fields /_local/sessions shows for a session (docs/CONTRACT.md §2)."""
        with self._lock:
            tally = self._tallies.get(session_id, Tally())
            return {
                "openConnections": tally.open,
                "upstreamRequests": tally.upstream,
                "refusals": tally.refusals,
                "limitsHit": tally.limits_hit,
                "lastRefusal": tally.last_refusal,
                "lastRefusalAt": tally.last_refusal_at,
            }


def raise_open_files_limit() -> int:
    """serve's RLIMIT_NOFILE soft limit raised to its hard limit (each connection is a descriptor)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard
