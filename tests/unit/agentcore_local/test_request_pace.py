"""The forwarder's view of a client's requests (request_pace.py): where each ends, however the
bytes are split, and what a slow or malformed one is told."""

from __future__ import annotations

import pytest

from agentcore_local.connection_limits import ConnectionCaps
from agentcore_local.services.request_pace import PaceError, RequestPace

CAPS = ConnectionCaps(header_timeout=10.0, header_bytes=1024, body_rate=100, body_idle_timeout=30.0)
CHUNKED = b"PUT /k HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4;ext=1\r\nabcd\r\n0\r\nX-T: 1\r\n\r\n"
LENGTH = b"PUT /k HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"
GET = b"\r\nGET /k HTTP/1.1\r\nHost: h\r\n\r\n"  # a blank line before it, as RFC 9112 allows


@pytest.mark.parametrize("step", [1, 3, 7, 1000])
def test_pipelined_requests_end_where_they_end_however_the_bytes_are_split(step: int) -> None:
    pace, stream = RequestPace(CAPS), CHUNKED + LENGTH + GET + CHUNKED
    phases = []
    for i in range(0, len(stream), step):
        pace.feed(stream[i : i + step], now=0.0)
        phases.append(pace.phase)
    assert pace.phase == "idle" and pace.wait(0.0) is None
    if step == 1:
        assert "body" in phases and "head" in phases


def test_a_header_has_its_timeout_from_its_first_byte_and_blank_lines_count() -> None:
    pace = RequestPace(CAPS)
    pace.feed(LENGTH, now=0.0)
    assert pace.phase == "idle"
    pace.feed(b"\r\n", now=100.0)  # a blank line only: the next header's clock runs
    assert pace.phase == "head" and pace.wait(103.0) == pytest.approx(7.0)
    assert "header took over 10s" in str(pace.timed_out()) and pace.timed_out().status == 408


def test_a_body_must_keep_its_pace_and_is_not_charged_for_time_it_did_not_wait() -> None:
    pace = RequestPace(CAPS)
    pace.feed(b"PUT /k HTTP/1.1\r\nContent-Length: 100000\r\n\r\n", now=0.0)
    assert pace.phase == "body" and pace.wait() == pytest.approx(10.0)  # the grace: header_timeout
    pace.waited(8.0)
    pace.feed(b"x" * 500)  # 5 s more at 100 bytes a second
    assert pace.wait() == pytest.approx(7.0)
    pace.feed(b"x" * 10_000)
    assert pace.wait() == pytest.approx(CAPS.body_idle_timeout)  # never a gap over the idle timeout
    assert "slower than 100 bytes a second" in str(pace.timed_out())


@pytest.mark.parametrize(
    ("stream", "status"),
    [
        (b"PUT / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
        (b"PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
        (b"GET / HTTP/1.1\r\nX: " + b"a" * 2000, 431),
    ],
)
def test_a_malformed_or_oversized_request_is_told_why(stream: bytes, status: int) -> None:
    with pytest.raises(PaceError) as raised:
        RequestPace(CAPS).feed(stream)
    assert raised.value.status == status
