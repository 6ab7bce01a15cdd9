"""Raw WebSocket clients for end-to-end tests that need more control than ``websockets.connect``."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Sequence

from websockets.client import ClientProtocol
from websockets.frames import Close, Frame, Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri

from tests.e2e.servers import Server

__all__ = ["StalledReader"]


class StalledReader:
    """A WebSocket client that completes the handshake, then stops reading its socket.

    Its receive buffer is small and fixed (no autotuning to tens of MB), so the server soon
    sees backpressure. :meth:`read_all` later reads everything the server wrote.
    """

    def __init__(self, server: Server, path: str = "/ws") -> None:
        self.server = server
        self.protocol = ClientProtocol(parse_uri(f"{server.ws_url}{path}"), max_size=None)
        self.frames: list[Frame] = []

    async def open(self) -> None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16_384)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", self.server.port))
        self.reader, self.writer = await asyncio.open_connection(sock=sock, limit=16_384)
        self.protocol.send_request(self.protocol.connect())
        self.writer.write(b"".join(self.protocol.data_to_send()))
        while not any(isinstance(event, Response) for event in self._feed(await self.reader.read(4096))):
            pass

    def _feed(self, data: bytes) -> Sequence[object]:
        if data:
            self.protocol.receive_data(data)
        else:
            self.protocol.receive_eof()
        events = self.protocol.events_received()
        self.frames += [event for event in events if isinstance(event, Frame)]
        return events

    async def read_all(self) -> None:
        """Read until the server closes the connection, answering its close frame."""
        while data := await asyncio.wait_for(self.reader.read(1 << 20), 10):
            self._feed(data)
            self.writer.write(b"".join(self.protocol.data_to_send()))  # e.g. the reply to a close
        self.writer.close()

    async def read_texts(self, count: int, limit: float = 10.0) -> None:
        """Read until at least ``count`` text frames arrived (fails after ``limit`` seconds)."""
        async with asyncio.timeout(limit):  # type: ignore[attr-defined,unused-ignore]  # Python >= 3.11
            while len(self.texts()) < count:
                data = await self.reader.read(1 << 20)
                if not data:
                    raise ConnectionError(f"the server closed after {len(self.texts())} of {count} frames")
                self._feed(data)

    def close_socket(self) -> None:
        """Drop the connection without a close handshake."""
        self.writer.close()

    def texts(self) -> list[str]:
        """The text frames received so far."""
        return [bytes(frame.data).decode() for frame in self.frames if frame.opcode is Opcode.TEXT]

    def chat_messages(self) -> list[str]:
        texts = [json.loads(bytes(frame.data)) for frame in self.frames if frame.opcode is Opcode.TEXT]
        return [data["message"] for data in texts if data["type"] == "chat_message"]

    def close_frame(self) -> Close | None:
        closes = [Close.parse(frame.data) for frame in self.frames if frame.opcode is Opcode.CLOSE]
        return closes[0] if closes else None
