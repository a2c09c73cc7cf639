"""agentcore_local's event-stream frames, decoded by botocore's own decoder and parser."""

from __future__ import annotations

import botocore.session
import pytest
from botocore.eventstream import ChecksumMismatch, EventStream, EventStreamBuffer
from botocore.exceptions import EventStreamError
from botocore.parsers import EventStreamJSONParser

from agentcore_local import eventstream


class _Raw:
    def __init__(self, data: bytes, piece: int) -> None:
        self.pieces = [data[i : i + piece] for i in range(0, len(data), piece)]

    def stream(self):
        yield from self.pieces


def parse(data: bytes, piece: int = 7) -> list[dict]:
    """Decode as boto3 does for InvokeAgentRuntimeCommand, fed in small pieces as a network would."""
    model = botocore.session.get_session().get_service_model("bedrock-agentcore")
    shape = model.operation_model("InvokeAgentRuntimeCommand").output_shape.members["stream"]
    return list(EventStream(_Raw(data, piece), shape, EventStreamJSONParser(), "InvokeAgentRuntimeCommand"))


def test_command_output_frames_parse_into_the_models_chunk_events() -> None:
    data = (
        eventstream.content_start()
        + eventstream.content_delta("stdout", "héllo\n")
        + eventstream.content_delta("stderr", "warn\n")
        + eventstream.content_stop(3, "COMPLETED")
    )
    assert parse(data) == [
        {"chunk": {"contentStart": {}}},
        {"chunk": {"contentDelta": {"stdout": "héllo\n"}}},
        {"chunk": {"contentDelta": {"stderr": "warn\n"}}},
        {"chunk": {"contentStop": {"exitCode": 3, "status": "COMPLETED"}}},
    ]


def test_an_exception_frame_raises_the_modelled_error() -> None:
    # :exception-type names the stream's union member, as botocore looks it up.
    data = eventstream.content_start() + eventstream.exception("RuntimeClientError", "compute stopped")
    with pytest.raises(EventStreamError, match=r"runtimeClientError.*compute stopped"):
        parse(data)


def test_frames_carry_valid_checksums() -> None:
    frame = bytearray(eventstream.content_delta("stdout", "x"))
    buffer = EventStreamBuffer()
    buffer.add_data(bytes(frame))
    assert len(list(buffer)) == 1
    frame[-6] ^= 0xFF  # flip a payload byte: the message CRC no longer matches
    corrupted = EventStreamBuffer()
    corrupted.add_data(bytes(frame))
    with pytest.raises(ChecksumMismatch):
        list(corrupted)
