"""The slow-consumer policy over real sockets: one member that stops reading in a busy room."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Sequence
from pathlib import Path

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.client import ClientProtocol
from websockets.frames import Close, Frame, Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri

from tests.e2e.servers import Server, uvicorn_server

MESSAGES = 1000
PAYLOAD = "x" * 64_000  # large frames fill the stalled reader's buffers quickly


class StalledReader:
    """A WebSocket client that completes the handshake, then stops reading its socket.

    Its receive buffer is small and fixed (no autotuning to tens of MB), so the server soon
    sees backpressure. :meth:`read_all` later reads everything the server wrote.
    """

    def __init__(self, server: Server) -> None:
        self.server = server
        self.protocol = ClientProtocol(parse_uri(f"{server.ws_url}/ws"), max_size=None)
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

    def chat_messages(self) -> list[str]:
        texts = [json.loads(bytes(frame.data)) for frame in self.frames if frame.opcode is Opcode.TEXT]
        return [data["message"] for data in texts if data["type"] == "chat_message"]

    def close_frame(self) -> Close | None:
        closes = [Close.parse(frame.data) for frame in self.frames if frame.opcode is Opcode.CLOSE]
        return closes[0] if closes else None


async def read_chat(ws: ClientConnection, count: int) -> list[str]:
    """Read until ``count`` chat messages arrived; return their texts."""
    texts: list[str] = []
    while len(texts) < count:
        data = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if data["type"] == "chat_message":
            texts.append(data["message"])
    return texts


@pytest.mark.e2e
@pytest.mark.asyncio
async def test_a_reader_that_stops_is_closed_with_1008_and_the_room_keeps_its_pace(tmp_path: Path) -> None:
    with uvicorn_server("examples_app.chat_app:app", tmp_path) as server:
        url = f"{server.ws_url}/ws"
        stalled = StalledReader(server)
        await stalled.open()
        async with connect(url, max_size=None) as sender, connect(url, max_size=None) as reader:
            for ws in (sender, reader):
                assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "welcome"
                assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "room_joined"
            bodies = [f"{n:04d}{PAYLOAD}" for n in range(MESSAGES)]
            readers = [asyncio.ensure_future(read_chat(ws, MESSAGES)) for ws in (sender, reader)]
            for body in bodies:
                await sender.send(json.dumps({"type": "chat_message", "room": "general", "message": body}))
            for task in readers:  # every reading member gets every message, in order
                assert await asyncio.wait_for(task, 60) == bodies

        await stalled.read_all()  # the stalled member reads again: a prefix of the room, then the close
        received = stalled.chat_messages()
        assert received == bodies[: len(received)]
        assert len(received) < MESSAGES
        close = stalled.close_frame()
        assert close is not None, "the server never closed the stalled connection"
        assert (close.code, close.reason) == (1008, "slow consumer")
        assert "closed as a slow consumer" in server.output()
