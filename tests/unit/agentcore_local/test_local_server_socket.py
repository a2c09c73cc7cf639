"""agentcore_local's listening socket: what the proxy's latency depends on."""

from __future__ import annotations

import asyncio
import socket

from agentcore_local.server import bind


def test_served_connections_have_nagle_off_so_streamed_chunks_leave_at_once() -> None:
    """asyncio turns TCP_NODELAY on only for sockets whose proto is TCP; bind() must say so."""
    listener = bind("127.0.0.1", 0)
    port = listener.getsockname()[1]
    seen: list[int] = []

    async def main() -> None:
        def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            seen.append(writer.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(on_connect, sock=listener)
        async with server:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            while not seen:
                await asyncio.sleep(0.01)
            writer.close()

    asyncio.run(asyncio.wait_for(main(), 10))
    assert seen and seen[0] != 0
