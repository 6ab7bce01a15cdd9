"""Property-based fuzzing of message dispatch: whatever frames a client sends, every one reaches
``on_message`` as decoded strict JSON, the text itself or the bytes, and the connection keeps
working: a hook can re-encode what it got and send it (text in is text out), also JSON escaping
lone surrogates, numbers out of range (``1e400``, huge integers), ``-0`` and deep nesting."""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from qakeapi import Application, WebSocket, WebSocketHandler
from qakeapi.core.codec import MAX_DEPTH, encode_json
from qakeapi.testing import TestClient

# Strings of any code point, lone surrogates included: json.dumps escapes them ("\\ud800").
any_text = st.text(st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=()), max_size=20)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | any_text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(any_text, children, max_size=4),
    max_leaves=20,
)
numbers = st.from_regex(r"\A-?(0|[1-9][0-9]{0,400})(\.[0-9]{1,20})?([eE][+-]?[0-9]{1,4})?\Z")
ADVERSARIAL = [
    "NaN",
    "[Infinity]",
    '{"a": -Infinity}',
    "[" * 5000,
    '{"type": "auth"}',
    "\ud7ff",
    '"\\ud800"',
    '{"message": "\\udfff"}',
    '["\\ud83d\\ude00", "\\\\ud800"]',
    "1e400",
    "-1e400",
    "-0",
    "-0.0",
    "9" * 5000,
    "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1),
    "[" * MAX_DEPTH + "]" * MAX_DEPTH,
]
frames = st.one_of(
    st.text(max_size=200),
    st.binary(max_size=200),
    json_values.map(json.dumps),
    numbers,
    numbers.map(lambda number: f'{{"type": "n", "n": {number}}}'),
    st.integers(1, 2 * MAX_DEPTH).map(lambda depth: "[" * depth + "]" * depth),
    st.sampled_from(ADVERSARIAL),
)


def depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max(map(depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(depth, value), default=0)
    return 0


def expected(frame: str | bytes) -> Any:
    """What ``on_message`` gets, worked out with the standard library only."""
    if isinstance(frame, bytes):
        return frame
    try:
        value = json.loads(frame, parse_constant=lambda c: math.nan)
    except (ValueError, RecursionError):  # not JSON, or an integer longer than int() converts
        return frame
    if depth(value) > MAX_DEPTH:
        return frame
    try:  # NaN/Infinity, 1e400 (infinity), a lone surrogate: it could not be sent back, so the text itself
        json.dumps(value, ensure_ascii=False, allow_nan=False).encode("utf-8")
    except ValueError:
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
