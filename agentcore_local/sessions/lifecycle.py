"""The life of one runtime session, as data and plain methods: no I/O, no asyncio, no clock of its own.

Compute (the sandboxed agent) comes and goes; storage stays. `TRANSITIONS` is the whole state
machine of the compute; `ON_CALL` says what an invocation does in each state; `StopReason`
names every cause of a stop. The caller passes `now` in, so tests drive time by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from ..errors import RetryableConflictException

DAY = 86_400.0


class State(StrEnum):
    STOPPED = "STOPPED"  # no compute; the storage (if any) waits on disk
    STARTING = "STARTING"  # compute launched, not yet answering /ping
    READY = "READY"  # compute answering
    STOPPING = "STOPPING"  # compute being shut down and its storage made consistent


class Event(StrEnum):
    START = "start"
    STARTED = "started"
    START_FAILED = "start_failed"
    STOP = "stop"  # StopRuntimeSession, idle timeout, max lifetime, version change, shutdown
    STOPPED = "stopped"
    EXITED = "exited"  # the compute ended by itself (crash, or the agent exited)


TRANSITIONS: dict[tuple[State, Event], State] = {
    (State.STOPPED, Event.START): State.STARTING,
    (State.STARTING, Event.STARTED): State.READY,
    (State.STARTING, Event.START_FAILED): State.STOPPED,
    (State.READY, Event.STOP): State.STOPPING,
    (State.READY, Event.EXITED): State.STOPPED,
    (State.STOPPING, Event.STOPPED): State.STOPPED,
}


class Action(StrEnum):
    START = "start"  # start compute, then go on
    PROCEED = "proceed"


# What an invocation (InvokeAgentRuntime or InvokeAgentRuntimeCommand) does in each state.
# None: refused with RetryableConflictException, before anything of the turn has started; AWS
# answers so for a session whose compute is still provisioning, and for one that is stopping.
ON_CALL: dict[State, Action | None] = {
    State.STOPPED: Action.START,
    State.STARTING: None,
    State.READY: Action.PROCEED,
    State.STOPPING: None,
}
# The refusal's message, for each state ON_CALL refuses in.
BUSY: dict[State, str] = {
    State.STARTING: "is provisioning (its compute is starting); retry shortly",
    State.STOPPING: "is stopping; retry once it has stopped",
}


class StopReason(StrEnum):
    """Why a session's compute stops (logged; idle and lifetime ones come from `stop_reason`)."""

    IDLE_TIMEOUT = "idle_timeout"  # idleRuntimeSessionTimeout without an invocation
    MAX_LIFETIME = "max_lifetime"  # maxLifetime since the compute started
    STOP_CALL = "StopRuntimeSession"
    RUNTIME_UPDATED = "runtime_updated"  # a new version: the storage resets at the next start
    RUNTIME_DELETED = "runtime_deleted"
    ENDPOINT_DELETED = "endpoint_deleted"  # the session's named endpoint was deleted, its storage too
    SHUTDOWN = "shutdown"  # serve is exiting


class InvalidTransition(RuntimeError):
    """An event that the table does not allow in the current state (a bug in the caller)."""


@dataclass(frozen=True)
class LifecyclePolicy:
    """AWS's defaults: 15 minutes idle, 8 hours of life, 14 days of storage without an invocation."""

    idle_timeout: float = 900.0
    max_lifetime: float = 28_800.0
    storage_ttl: float = 14 * DAY

    @classmethod
    def of(cls, lifecycle: dict[str, int]) -> LifecyclePolicy:
        """The policy of a runtime's effective lifecycleConfiguration (Runtime.lifecycle())."""
        return cls(
            idle_timeout=float(lifecycle["idleRuntimeSessionTimeout"]),
            max_lifetime=float(lifecycle["maxLifetime"]),
        )


@dataclass
class SessionLifecycle:
    """One session's compute state and clocks."""

    session_id: str
    state: State = State.STOPPED
    started_at: float | None = None
    last_activity_at: float | None = None
    last_invocation_at: float | None = None  # persisted: it decides the 14-day storage expiry
    in_flight: int = 0

    def fire(self, event: Event, now: float) -> State:
        """Apply one event from the table, or raise InvalidTransition."""
        try:
            target = TRANSITIONS[(self.state, event)]
        except KeyError:
            raise InvalidTransition(
                f"session {self.session_id}: {event} is not allowed in {self.state}"
            ) from None
        if target is State.READY:
            self.started_at = self.last_activity_at = now
        elif target is State.STOPPED:
            self.started_at = None
            self.in_flight = 0
        self.state = target
        return target

    def begin_call(self, now: float) -> Action:
        """An invocation arrives: what to do, or RetryableConflictException while it starts or stops."""
        action = ON_CALL[self.state]
        if action is None:
            raise RetryableConflictException(f"Runtime session {self.session_id} {BUSY[self.state]}")
        self.in_flight += 1
        self.last_activity_at = self.last_invocation_at = now
        return action

    def end_call(self, now: float) -> None:
        self.in_flight = max(0, self.in_flight - 1)
        self.last_activity_at = now

    def touch(self, now: float) -> None:
        """Activity that is not an invocation (the agent reports HealthyBusy)."""
        self.last_activity_at = now

    def stop_reason(self, now: float, policy: LifecyclePolicy) -> StopReason | None:
        """Why the compute must stop now (max lifetime, idle timeout), or None."""
        if self.state is not State.READY or self.started_at is None:
            return None
        if now - self.started_at >= policy.max_lifetime:
            return StopReason.MAX_LIFETIME
        idle_since = self.last_activity_at if self.last_activity_at is not None else self.started_at
        if self.in_flight == 0 and now - idle_since >= policy.idle_timeout:
            return StopReason.IDLE_TIMEOUT
        return None

    def storage_expired(self, now: float, policy: LifecyclePolicy) -> bool:
        """True when the storage has gone `storage_ttl` without an invocation (AWS: 14 days)."""
        return self.last_invocation_at is not None and now - self.last_invocation_at >= policy.storage_ttl
