"""The guide's "Basic WebSocket Setup" app (``examples_app.basic_app``): welcome and echo."""

from __future__ import annotations

from typing import Any

import pytest

from examples_app.basic_app import app, ws_handler
from qakeapi.testing import TestClient, WebSocketTestSession

WELCOME = {"type": "welcome", "message": "Connected!"}


async def assert_silent(ws: WebSocketTestSession) -> None:
    """Nothing more arrives on ``ws``."""
    with pytest.raises(TimeoutError):
        await ws.receive_json(timeout=0.1)


@pytest.mark.asyncio
async def test_welcome_on_connect() -> None:
    async with TestClient(app) as client, client.websocket_connect("/ws") as ws:
        assert await ws.receive_json() == WELCOME
        await assert_silent(ws)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "payload",
    [
        {"text": "hi"},
        {"type": "message", "nested": {"list": [1, 2.5, None, True]}, "unicode": "héllo ✓"},
        [1, "two", {"three": 3}],
        {},
    ],
)
async def test_echoes_json(payload: Any) -> None:
    async with TestClient(app) as client, client.websocket_connect("/ws") as ws:
        assert await ws.receive_json() == WELCOME
        await ws.send_json(payload)
        assert await ws.receive_json() == {"type": "echo", "data": payload}
        await assert_silent(ws)


@pytest.mark.asyncio
async def test_echoes_plain_text() -> None:
    async with TestClient(app) as client, client.websocket_connect("/ws") as ws:
        assert await ws.receive_json() == WELCOME
        await ws.send_text("plain text")
        assert await ws.receive_json() == {"type": "echo", "data": "plain text"}
        await ws.send_text("{not json")
        assert await ws.receive_json() == {"type": "echo", "data": "{not json"}
        await assert_silent(ws)


@pytest.mark.asyncio
async def test_text_that_is_json_is_echoed_decoded() -> None:
    async with TestClient(app) as client, client.websocket_connect("/ws") as ws:
        assert await ws.receive_json() == WELCOME
        await ws.send_text("42")
        assert await ws.receive_json() == {"type": "echo", "data": 42}
        await ws.send_text('"quoted"')
        assert await ws.receive_json() == {"type": "echo", "data": "quoted"}


@pytest.mark.asyncio
async def test_many_messages_are_echoed_in_order() -> None:
    async with TestClient(app) as client, client.websocket_connect("/ws") as ws:
        assert await ws.receive_json() == WELCOME
        for n in range(20):
            await ws.send_json({"n": n})
        assert [await ws.receive_json() for _ in range(20)] == [{"type": "echo", "data": {"n": n}} for n in range(20)]
        await assert_silent(ws)


@pytest.mark.asyncio
async def test_each_connection_gets_only_its_own_echo() -> None:
    async with TestClient(app) as client:
        async with client.websocket_connect("/ws") as first, client.websocket_connect("/ws") as second:
            assert await first.receive_json() == WELCOME
            assert await second.receive_json() == WELCOME
            await first.send_json({"from": "first"})
            assert await first.receive_json() == {"type": "echo", "data": {"from": "first"}}
            await assert_silent(second)
            await second.send_text("from second")
            assert await second.receive_json() == {"type": "echo", "data": "from second"}
            await assert_silent(first)
            assert len(ws_handler.connections) == 2
        assert len(ws_handler.connections) == 0
