"""Where a client's bytes stand in its HTTP/1.1 requests, and how long it may take over each: the
forwarder (forwarder.py) bounds every request of a keep-alive connection, not only the first, so a
session cannot hold a connection or a listener worker by sending a header or a body a byte at a
time. The framing only times requests (the listener parses them itself): a client that frames
differently gains nothing but a shorter deadline.

Between requests: the connection's idle timeout. In a header: header_timeout from its first byte,
at most header_bytes. In a body (Content-Length or chunked): no wait over body_idle_timeout, and
after header_timeout of waiting, body_rate bytes a second on average (time the listener took to
read it not counted: only the waits for the client's bytes are).
"""

from __future__ import annotations

import time

from ..connection_limits import ConnectionCaps

LINE_BYTES = 4096  # a chunk-size line or a trailer line


class PaceError(Exception):
    """The client broke a rule: answered with `status` (S3's `code`) and the connection closed."""

    def __init__(self, status: int, code: str, message: str, limit: bool) -> None:
        super().__init__(message)
        self.status, self.code, self.limit = status, code, limit


def body_framing(head: bytes) -> tuple[str, int]:
    """("length", n) or ("chunked", 0) for a request's header (RFC 9112 6.3: chunked wins)."""
    length, chunked = 0, False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name, value = name.strip().lower(), value.strip().lower()
        if name == b"transfer-encoding":
            chunked = value.rsplit(b",", 1)[-1].strip() == b"chunked"
        elif name == b"content-length":
            if not value.isdigit():
                raise PaceError(400, "BadRequest", "the request's Content-Length is not a number", False)
            length = int(value)
    return ("chunked", 0) if chunked else ("length", length)


class RequestPace:
    """One connection's client side: feed it every byte the client sent, ask it how long the next
    read may wait."""

    def __init__(self, caps: ConnectionCaps) -> None:
        self.caps = caps
        self.phase = "idle"  # idle | head | body
        self._buffer = b""  # the header, a chunk-size line or the trailers, so far
        self._chunk = "length"  # in a body: length | size | data | crlf | trailer
        self._left = 0  # bytes left of the body (length) or of the chunk (data, crlf)
        self._started = 0.0  # time.monotonic() the header's first byte came
        self._waited = 0.0  # seconds this body waited for the client
        self._received = 0  # bytes of this body so far

    def begin(self, now: float | None = None) -> None:
        """A new connection: its first header's time starts now, bytes or not."""
        self.phase, self._buffer = "head", b""
        self._started = time.monotonic() if now is None else now

    def wait(self, now: float | None = None) -> float | None:
        """Seconds the next read may wait for the client; None: between requests (the idle timeout)."""
        now = time.monotonic() if now is None else now
        if self.phase == "head":
            return max(0.0, self._started + self.caps.header_timeout - now)
        if self.phase == "body":
            allowed = self.caps.header_timeout + self._received / self.caps.body_rate - self._waited
            return max(0.0, min(self.caps.body_idle_timeout, allowed))
        return None

    def waited(self, seconds: float) -> None:
        """The last read waited `seconds` for the client."""
        if self.phase == "body":
            self._waited += seconds

    def timed_out(self) -> PaceError:
        if self.phase == "head":
            what = f"a request's header took over {self.caps.header_timeout:g}s"
        else:
            what = f"a request's body came slower than {self.caps.body_rate} bytes a second"
        return PaceError(408, "RequestTimeout", what, True)

    def feed(self, data: bytes, now: float | None = None) -> None:
        """Account for `data`; PaceError when the client broke a rule."""
        while data:
            if self.phase == "idle":
                self.begin(now)
            if self.phase == "head":
                data = self._feed_head(data)
            else:
                rest = self._feed_body(data)
                self._received += len(data) - len(rest)
                data = rest

    def _feed_head(self, data: bytes) -> bytes:
        self._buffer += data
        # Blank lines before a request (RFC 9112 2.2) are part of its header's time: a client that
        # sends only those is a client that sends a header slowly.
        start = len(self._buffer) - len(self._buffer.lstrip(b"\r\n"))
        end = self._buffer.find(b"\r\n\r\n", start) if start < len(self._buffer) else -1
        if end < 0:
            if len(self._buffer) > self.caps.header_bytes:
                raise PaceError(
                    431,
                    "RequestHeaderFieldsTooLarge",
                    f"a request's header over {self.caps.header_bytes} bytes",
                    True,
                )
            return b""
        head, rest = self._buffer[start : end + 4], self._buffer[end + 4 :]
        self._chunk, self._left = body_framing(head)
        self.phase, self._buffer, self._waited, self._received = "body", b"", 0.0, 0
        if self._chunk == "chunked":
            self._chunk = "size"
        elif self._left == 0:
            self.phase = "idle"
        return rest

    def _feed_body(self, data: bytes) -> bytes:
        """Take what `data` holds of the body; the rest (the next request's) is returned."""
        if self._chunk in ("length", "data", "crlf"):
            taken = min(self._left, len(data))
            self._left -= taken
            if self._left == 0:
                if self._chunk == "length":
                    self.phase = "idle"
                else:
                    self._chunk, self._left = ("crlf", 2) if self._chunk == "data" else ("size", 0)
            return data[taken:]
        self._buffer += data
        if self._chunk == "size":
            end, limit = self._buffer.find(b"\r\n"), LINE_BYTES
            if end >= 0:
                try:
                    self._left = int(self._buffer[:end].split(b";")[0].strip(), 16)
                except ValueError:
                    raise PaceError(400, "BadRequest", "a chunk's size is not hexadecimal", False) from None
                rest, self._buffer = self._buffer[end + 2 :], b""
                self._chunk = "data" if self._left else "trailer"
                return rest
        else:  # the trailers, ended by an empty line
            end, limit = self._buffer.find(b"\r\n\r\n"), self.caps.header_bytes
            cut = 2 if self._buffer.startswith(b"\r\n") else end + 4 if end >= 0 else 0
            if cut:
                rest, self._buffer, self.phase = self._buffer[cut:], b"", "idle"
                return rest
        if len(self._buffer) > limit:
            raise PaceError(400, "BadRequest", f"a chunk-size or trailer line over {limit} bytes", False)
        return b""
