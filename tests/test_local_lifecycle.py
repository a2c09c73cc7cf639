"""The session state machine of agentcore_local, driven synchronously with a hand-moved clock."""

from __future__ import annotations

import pytest

from agentcore_local.exceptions import RetryableConflictException
from agentcore_local.lifecycle import (
    DAY,
    ON_CALL,
    TRANSITIONS,
    Action,
    Event,
    InvalidTransition,
    LifecyclePolicy,
    SessionLifecycle,
    State,
)

POLICY = LifecyclePolicy(idle_timeout=900, max_lifetime=28_800)


def ready_session(now: float = 0.0) -> SessionLifecycle:
    session = SessionLifecycle("s" * 33)
    assert session.begin_call(now) is Action.START
    session.fire(Event.START, now)
    session.fire(Event.STARTED, now)
    return session


def test_the_transition_table_is_the_whole_state_machine() -> None:
    assert TRANSITIONS == {
        (State.STOPPED, Event.START): State.STARTING,
        (State.STARTING, Event.STARTED): State.READY,
        (State.STARTING, Event.START_FAILED): State.STOPPED,
        (State.READY, Event.STOP): State.STOPPING,
        (State.READY, Event.EXITED): State.STOPPED,
        (State.STOPPING, Event.STOPPED): State.STOPPED,
    }


def test_every_state_says_what_an_invocation_does() -> None:
    assert set(ON_CALL) == set(State)
    assert ON_CALL[State.STOPPED] is Action.START
    assert ON_CALL[State.READY] is Action.PROCEED
    assert ON_CALL[State.STOPPING] is None  # refused: RetryableConflictException


@pytest.mark.parametrize(
    "state,event",
    [(s, e) for s in State for e in Event if (s, e) not in TRANSITIONS],
)
def test_events_outside_the_table_are_refused(state: State, event: Event) -> None:
    session = SessionLifecycle("s" * 33, state=state)
    with pytest.raises(InvalidTransition):
        session.fire(event, 0.0)
    assert session.state is state


def test_first_invocation_starts_compute_and_later_ones_proceed() -> None:
    session = ready_session()
    assert session.state is State.READY
    assert session.begin_call(1.0) is Action.PROCEED
    assert session.in_flight == 2


def test_invocation_while_stopping_is_a_retryable_conflict_that_changes_nothing() -> None:
    session = ready_session()
    session.end_call(1.0)
    session.fire(Event.STOP, 2.0)
    with pytest.raises(RetryableConflictException, match="stopping"):
        session.begin_call(3.0)
    assert session.in_flight == 0
    assert session.last_invocation_at == 0.0


def test_stopped_session_starts_new_compute_on_the_next_invocation() -> None:
    session = ready_session()
    session.fire(Event.STOP, 5.0)
    session.fire(Event.STOPPED, 6.0)
    assert session.started_at is None and session.in_flight == 0
    assert session.begin_call(7.0) is Action.START


def test_idle_timeout_counts_from_the_last_activity_and_never_while_busy() -> None:
    session = ready_session(now=0.0)
    assert session.stop_reason(899, POLICY) is None
    assert session.stop_reason(900, POLICY) is None  # a call is still in flight
    session.end_call(100.0)
    assert session.stop_reason(999, POLICY) is None
    assert session.stop_reason(1000, POLICY) == "idle_timeout"
    session.touch(1000.0)  # the agent said HealthyBusy
    assert session.stop_reason(1001, POLICY) is None


def test_max_lifetime_stops_compute_even_when_busy() -> None:
    session = ready_session(now=0.0)
    session.touch(28_799.0)
    assert session.stop_reason(28_799, POLICY) is None
    assert session.stop_reason(28_800, POLICY) == "max_lifetime"


def test_only_ready_compute_has_a_reason_to_stop() -> None:
    assert SessionLifecycle("s" * 33).stop_reason(10**9, POLICY) is None


def test_storage_expires_fourteen_days_after_the_last_invocation() -> None:
    session = ready_session(now=0.0)
    assert not session.storage_expired(14 * DAY - 1, POLICY)
    assert session.storage_expired(14 * DAY, POLICY)
    session.begin_call(10 * DAY)
    assert not session.storage_expired(14 * DAY, POLICY)


def test_a_session_never_invoked_has_no_expiry() -> None:
    assert not SessionLifecycle("s" * 33).storage_expired(10**9, POLICY)
