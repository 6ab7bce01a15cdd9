"""Property-based fuzzing of message dispatch: whatever frames a client sends, every one reaches
``on_message`` as decoded strict JSON, the text itself or the bytes, and the connection keeps
working (a hook may re-encode what it got)."""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from qakeapi import Application, WebSocket, WebSocketHandler
from qakeapi.core.codec import encode_json
from qakeapi.testing import TestClient

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
frames = st.one_of(
    st.text(max_size=200),
    st.binary(max_size=200),
    json_values.map(json.dumps),
    st.sampled_from(["NaN", "[Infinity]", '{"a": -Infinity}', "[" * 5000, '{"type": "auth"}', "\ud7ff"]),
)


def expected(frame: str | bytes) -> Any:
    if isinstance(frame, bytes):
        return frame
    try:
        value = json.loads(frame, parse_constant=lambda c: math.nan)
    except (ValueError, RecursionError):
        return frame
    try:
        encode_json(value)
    except ValueError:  # NaN/Infinity: not JSON, so the text itself
        return frame
    return value


async def run(frames_sent: list[str | bytes]) -> list[Any]:
    app = Application()
    handler = WebSocketHandler(rate_limit=None)
    received: list[Any] = []

    @handler.on_message
    async def echo(websocket: WebSocket, message: Any) -> None:
        received.append(message)
        if isinstance(message, bytes):
            await websocket.send_bytes(message)
        else:
            await websocket.send_text(message if isinstance(message, str) else encode_json(message))

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket) -> None:
        await handler.handle_connection(websocket)

    async with TestClient(app, timeout=5.0).websocket_connect("/ws") as session:
        for frame in frames_sent:
            if isinstance(frame, bytes):
                await session.send_bytes(frame)
                assert await session.receive_bytes() == frame
            else:
                await session.send_text(frame)
                await session.receive_text()
    return received


@settings(max_examples=150, deadline=None)
@given(sent=st.lists(frames, min_size=1, max_size=8))
def test_every_frame_is_dispatched_and_the_connection_survives(sent: list[str | bytes]) -> None:
    received = asyncio.run(run(sent))
    assert len(received) == len(sent)
    assert received == [expected(frame) for frame in sent]
