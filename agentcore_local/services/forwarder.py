"""A socket per compute in front of the agent-facing listener: what a sandbox's 127.0.0.1:8788
(and the socket bound into it) reaches, so every connection is known to be its session's.

Each connection is admitted against the session's cap (past it: a 503 at once), must send each
request's header within the header timeout and its body at a pace (request_pace.py; else 408),
and ends after the idle timeout with no byte either way. Admitted connections are carried to the
listener's loopback TCP port; the port they come from tells the listener whose they are
(connection_limits.py). All of it runs on the listener's event loop; `open` and `close` are
called from serve's.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from ..connection_limits import ConnectionLimits
from .request_pace import PaceError, RequestPace

SOCKET_NAME = "services.sock"  # in the compute's own run directory (private_network.py)
LINGER_S, LINGER_BYTES = 0.1, 65536  # what a refused connection's unread request may still take
REFUSALS_PER_S = 100  # answered per session; a flood's further attempts wait in the backlog


def error_body(code: str, message: str) -> bytes:
    """S3's error shape (botocore reads Code and Message)."""
    return f"<Error><Code>{code}</Code><Message>{message}</Message></Error>".encode()


def http_error(status: int, code: str, message: str) -> bytes:
    """An S3-shaped error answer, the connection closed after it."""
    body = error_body(code, message)
    head = (
        f"HTTP/1.1 {status} {code}\r\nContent-Type: application/xml\r\nx-amzn-ErrorType: {code}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, answer: bytes) -> None:
    """Send a refusal, then read what the client had already sent (briefly): a socket closed with
    unread data resets the connection, and the client would see the reset, not the answer."""
    with contextlib.suppress(OSError, TimeoutError, asyncio.LimitOverrunError):
        writer.write(answer)
        await writer.drain()
        writer.write_eof()
        await asyncio.wait_for(reader.read(LINGER_BYTES), LINGER_S)


class Forwarder:
    def __init__(self, limits: ConnectionLimits, upstream_port: int, loop: asyncio.AbstractEventLoop) -> None:
        self.limits = limits
        self._port = upstream_port
        self._loop = loop
        self._tasks: dict[str, set[asyncio.Task]] = {}  # a compute's accept loop and connections

    def open(self, compute: str, directory: Path) -> Path:
        """A listening socket for `compute` in `directory` (served from now on: connections wait in
        its backlog until the listener's loop accepts them)."""
        path = directory / SOCKET_NAME
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(path))
        os.chmod(path, 0o666)  # the sandbox's user is not serve's (a user namespace)
        sock.listen(128)
        sock.setblocking(False)
        self._loop.call_soon_threadsafe(lambda: self._track(compute, self._accept(compute, sock)))
        return path

    def close(self, compute: str) -> None:
        """Stop accepting for `compute` and end the connections it holds."""
        self.limits.forget(compute)  # now: a new compute of the same name may be attributed next
        self._loop.call_soon_threadsafe(self._close, compute)

    def _close(self, compute: str) -> None:
        for task in self._tasks.pop(compute, set()):
            task.cancel()

    def _track(self, compute: str, coroutine: Coroutine[Any, Any, None]) -> None:
        tasks = self._tasks.setdefault(compute, set())
        task = self._loop.create_task(coroutine)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def _accept(self, compute: str, sock: socket.socket) -> None:
        """Admit or refuse each connection; past REFUSALS_PER_S refusals in a second, the rest of
        the second's attempts wait in the kernel's backlog: a flood costs serve a bounded share."""
        window, refused = time.monotonic(), 0
        try:
            while True:
                conn, _ = await self._loop.sock_accept(sock)
                if self.limits.admit(compute):
                    self._track(compute, self._connection(compute, conn))
                    continue
                self._track(compute, self._refuse(compute, conn))
                if time.monotonic() - window >= 1.0:
                    window, refused = time.monotonic(), 0
                refused += 1
                if refused >= REFUSALS_PER_S:
                    await asyncio.sleep(max(0.0, window + 1.0 - time.monotonic()))
        finally:
            sock.close()

    async def _refuse(self, compute: str, conn: socket.socket) -> None:
        reader, writer = await asyncio.open_connection(sock=conn)
        try:
            connections = self.limits.caps.connections
            await _answer(
                reader, writer, http_error(503, "SlowDown", f"this session holds {connections} connections")
            )
        finally:
            writer.close()

    async def _connection(self, compute: str, conn: socket.socket) -> None:
        try:
            reader, writer = await asyncio.open_connection(sock=conn)
        except BaseException:
            self.limits.leave(compute)
            conn.close()
            raise
        pace = RequestPace(self.limits.caps)
        try:
            try:
                first = await self._first_header(reader, pace)
            except PaceError as error:
                await self._refuse_pace(compute, error, reader, writer)
                return
            if not first:
                return  # closed before a whole header: nothing to answer
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._port)
            port = up_writer.get_extra_info("sockname")[1]
            self.limits.connected_from(port, compute)  # before a byte goes up: the listener asks next
            try:
                up_writer.write(first)
                await self._relay(compute, pace, (reader, writer), (up_reader, up_writer))
            finally:
                self.limits.disconnected(port)
                up_writer.close()
        finally:
            self.limits.leave(compute)
            writer.close()

    async def _first_header(self, reader: asyncio.StreamReader, pace: RequestPace) -> bytes:
        """What the client sent until its first request's header was whole (b"": it closed first);
        no upstream connection is made for a half-sent request."""
        received = b""
        pace.begin()
        while pace.phase == "head":
            try:
                data = await asyncio.wait_for(reader.read(65536), pace.wait())
            except TimeoutError:
                raise pace.timed_out() from None
            except ConnectionError:
                return b""
            if not data:
                return b""
            pace.feed(data)
            received += data
        return received

    async def _refuse_pace(
        self, compute: str, error: PaceError, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.limits.refuse(compute, str(error), error.limit)
        await _answer(reader, writer, http_error(error.status, error.code, str(error)))

    async def _relay(self, compute: str, pace: RequestPace, down: tuple, up: tuple) -> None:
        """Both directions until both end, or until no byte moved for the idle timeout; the client's
        requests each within their pace (request_pace.py)."""
        idle = self.limits.caps.idle_timeout
        last = [time.monotonic()]

        async def pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter, paced: bool) -> None:
            while True:
                wait = pace.wait() if paced else None
                began = time.monotonic()
                try:
                    data = await asyncio.wait_for(source.read(65536), idle if wait is None else wait)
                except TimeoutError:
                    if wait is not None:
                        raise pace.timed_out() from None
                    if time.monotonic() - last[0] < idle:
                        continue  # the other direction moved meanwhile
                    raise
                if paced:
                    pace.waited(time.monotonic() - began)
                if not data:
                    with contextlib.suppress(OSError):
                        sink.write_eof()  # passed on as sandbox_init does (uvicorn takes it for a disconnect)
                    return
                if paced:
                    pace.feed(data)
                last[0] = time.monotonic()
                sink.write(data)
                await sink.drain()

        pumps = [
            asyncio.ensure_future(pump(down[0], up[1], True)),
            asyncio.ensure_future(pump(up[0], down[1], False)),
        ]
        try:
            await asyncio.gather(*pumps)
        except PaceError as error:
            for p in pumps:
                p.cancel()
            await self._refuse_pace(compute, error, *down)
        except TimeoutError:
            self.limits.refuse(compute, f"a connection idle for {idle:g}s", True)
        except (ConnectionError, OSError):
            pass
        finally:
            for p in pumps:
                p.cancel()
