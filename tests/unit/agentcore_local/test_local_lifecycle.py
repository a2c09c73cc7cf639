"""The session state machine of agentcore_local, driven synchronously with a hand-moved clock.

Each state is reached the way the backend reaches it (calls and events), then probed for
behaviour: what an invocation gets there, and what each event does.
"""

from __future__ import annotations

import pytest

from agentcore_local.errors import RetryableConflictException
from agentcore_local.sessions.lifecycle import (
    DAY,
    Action,
    Event,
    InvalidTransition,
    LifecyclePolicy,
    SessionLifecycle,
    State,
    StopReason,
)

POLICY = LifecyclePolicy(idle_timeout=900, max_lifetime=28_800)
SESSION_ID = "s" * 33


def session_in(state: State, now: float = 0.0) -> SessionLifecycle:
    """A session brought to `state` through calls and events, its first call finished."""
    session = SessionLifecycle(SESSION_ID)
    if state is State.STOPPED:
        return session
    assert session.begin_call(now) is Action.START
    session.fire(Event.START, now)
    if state is State.STARTING:
        return session
    session.fire(Event.STARTED, now)
    session.end_call(now)
    if state is State.STOPPING:
        session.fire(Event.STOP, now)
    return session


def test_a_call_to_a_stopped_session_starts_its_compute() -> None:
    session = session_in(State.STOPPED)
    assert session.begin_call(5.0) is Action.START
    assert (session.in_flight, session.last_invocation_at) == (1, 5.0)


def test_a_call_to_a_ready_session_proceeds_on_the_same_compute() -> None:
    session = session_in(State.READY)
    assert session.begin_call(5.0) is Action.PROCEED
    assert (session.state, session.in_flight, session.started_at) == (State.READY, 1, 0.0)


@pytest.mark.parametrize(
    ("state", "says"), [(State.STARTING, "is provisioning"), (State.STOPPING, "is stopping")]
)
def test_a_call_while_compute_starts_or_stops_is_a_retryable_conflict_that_changes_nothing(
    state: State, says: str
) -> None:
    session = session_in(state)
    before = (session.state, session.in_flight, session.last_invocation_at, session.last_activity_at)
    with pytest.raises(RetryableConflictException, match=f"Runtime session {SESSION_ID} {says}"):
        session.begin_call(3.0)
    assert (session.state, session.in_flight, session.last_invocation_at, session.last_activity_at) == before


def test_every_state_either_answers_a_call_or_refuses_it_with_a_retryable_conflict() -> None:
    for state in State:
        try:
            assert session_in(state).begin_call(1.0) in set(Action)
        except RetryableConflictException as refused:
            assert SESSION_ID in str(refused)


def test_started_makes_the_compute_ready_and_starts_its_clocks() -> None:
    session = session_in(State.STARTING, now=1.0)
    assert session.fire(Event.STARTED, 4.0) is State.READY
    assert (session.started_at, session.last_activity_at) == (4.0, 4.0)


def test_a_failed_start_leaves_the_session_stopped_and_the_next_call_starts_again() -> None:
    session = session_in(State.STARTING)
    assert session.fire(Event.START_FAILED, 1.0) is State.STOPPED
    assert (session.in_flight, session.started_at) == (0, None)
    assert session.begin_call(2.0) is Action.START


def test_stop_then_stopped_ends_the_compute_and_the_next_call_gets_new_compute() -> None:
    session = session_in(State.READY)
    assert session.fire(Event.STOP, 5.0) is State.STOPPING
    assert session.fire(Event.STOPPED, 6.0) is State.STOPPED
    assert session.started_at is None and session.in_flight == 0
    assert session.begin_call(7.0) is Action.START


def test_compute_that_exits_by_itself_drops_its_calls_and_the_next_call_starts_again() -> None:
    session = session_in(State.READY)
    session.begin_call(1.0)
    assert session.fire(Event.EXITED, 2.0) is State.STOPPED
    assert session.in_flight == 0
    assert session.begin_call(3.0) is Action.START


@pytest.mark.parametrize(
    ("state", "event"),
    [
        (State.STOPPED, Event.STOP),  # nothing to stop
        (State.STOPPED, Event.STARTED),  # started without a start
        (State.STARTING, Event.START),  # two starts of one compute
        (State.STARTING, Event.STOP),  # a stop must wait for the start to finish
        (State.READY, Event.START),
        (State.STOPPING, Event.STOP),  # one stop at a time
        (State.STOPPING, Event.START),
    ],
)
def test_an_event_that_makes_no_sense_in_a_state_is_refused_and_changes_nothing(
    state: State, event: Event
) -> None:
    session = session_in(state)
    with pytest.raises(InvalidTransition, match=f"{event} is not allowed in {state}"):
        session.fire(event, 9.0)
    assert session.state is state


def test_idle_timeout_counts_from_the_last_activity_and_never_while_busy() -> None:
    session = session_in(State.READY, now=0.0)
    session.begin_call(0.0)
    assert session.stop_reason(900, POLICY) is None  # a call is still in flight
    session.end_call(100.0)
    assert session.stop_reason(999, POLICY) is None
    assert session.stop_reason(1000, POLICY) is StopReason.IDLE_TIMEOUT
    session.touch(1000.0)  # the agent said HealthyBusy
    assert session.stop_reason(1001, POLICY) is None


def test_max_lifetime_stops_compute_even_when_busy() -> None:
    session = session_in(State.READY, now=0.0)
    session.begin_call(1.0)
    session.touch(28_799.0)
    assert session.stop_reason(28_799, POLICY) is None
    assert session.stop_reason(28_800, POLICY) is StopReason.MAX_LIFETIME


def test_stop_reasons_keep_the_names_the_logs_use() -> None:
    assert (StopReason.IDLE_TIMEOUT, StopReason.MAX_LIFETIME) == ("idle_timeout", "max_lifetime")


@pytest.mark.parametrize("state", [State.STOPPED, State.STARTING, State.STOPPING])
def test_only_ready_compute_has_a_reason_to_stop(state: State) -> None:
    assert session_in(state).stop_reason(10**9, POLICY) is None


def test_storage_expires_fourteen_days_after_the_last_invocation() -> None:
    session = session_in(State.READY, now=0.0)
    assert not session.storage_expired(14 * DAY - 1, POLICY)
    assert session.storage_expired(14 * DAY, POLICY)
    session.begin_call(10 * DAY)
    assert not session.storage_expired(14 * DAY, POLICY)


def test_a_session_never_invoked_has_no_expiry() -> None:
    assert not SessionLifecycle(SESSION_ID).storage_expired(10**9, POLICY)
