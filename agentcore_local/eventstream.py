"""Encode AWS event-stream frames (`application/vnd.amazon.eventstream`), the format of
InvokeAgentRuntimeCommand's answer, exactly as `botocore/eventstream.py` decodes them.

A frame is: prelude (total length, headers length: two big-endian uint32) + CRC32 of the
prelude, the headers, the payload, then a CRC32 of everything before it.
"""

from __future__ import annotations

import json
import struct
from binascii import crc32
from typing import Any

CONTENT_TYPE = "application/vnd.amazon.eventstream"
_STRING = 7  # header value type: utf-8 string with a uint16 length


def _header(name: str, value: str) -> bytes:
    raw_name, raw_value = name.encode(), value.encode()
    return (
        struct.pack("!B", len(raw_name)) + raw_name + struct.pack("!BH", _STRING, len(raw_value)) + raw_value
    )


def encode_frame(headers: dict[str, str], payload: bytes) -> bytes:
    """One event-stream message with string headers."""
    raw_headers = b"".join(_header(name, value) for name, value in headers.items())
    total = 12 + len(raw_headers) + len(payload) + 4
    prelude = struct.pack("!II", total, len(raw_headers))
    prelude += struct.pack("!I", crc32(prelude) & 0xFFFFFFFF)
    message = prelude + raw_headers + payload
    return message + struct.pack("!I", crc32(message) & 0xFFFFFFFF)


def event(event_type: str, body: dict[str, Any]) -> bytes:
    """An event of the stream's union, e.g. event("chunk", {"contentDelta": {"stdout": "hi"}})."""
    headers = {":message-type": "event", ":event-type": event_type, ":content-type": "application/json"}
    return encode_frame(headers, json.dumps(body).encode())


def exception(code: str, message: str) -> bytes:
    """A modelled error inside the stream; botocore raises it as EventStreamError with this code."""
    member = code[0].lower() + code[1:]  # ValidationException -> validationException (the union member)
    headers = {":message-type": "exception", ":exception-type": member, ":content-type": "application/json"}
    return encode_frame(headers, json.dumps({"message": message}).encode())


def content_start() -> bytes:
    return event("chunk", {"contentStart": {}})


def content_delta(stream: str, text: str) -> bytes:
    return event("chunk", {"contentDelta": {stream: text}})


def content_stop(exit_code: int, status: str) -> bytes:
    return event("chunk", {"contentStop": {"exitCode": exit_code, "status": status}})
