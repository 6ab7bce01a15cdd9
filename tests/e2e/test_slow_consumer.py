"""The slow-consumer policy over real sockets: one member that stops reading in a busy room."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.e2e.clients import StalledReader
from tests.e2e.servers import uvicorn_server

MESSAGES = 1000
PAYLOAD = "x" * 64_000  # large frames fill the stalled reader's buffers quickly


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
