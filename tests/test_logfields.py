"""Tests for qakeapi.core.logfields: connection fields on every record, JSON lines, no credentials."""

from __future__ import annotations

import io
import json
import logging
from typing import Any

import jwt

from qakeapi import WebSocket
from qakeapi.core.logfields import (
    FIELDS,
    ROUTE_SCOPE_KEY,
    ConnectionLogFilter,
    JSONFormatter,
    bind,
    configure_logging,
    fields,
    unbind,
)
from qakeapi.types import Message

TOKEN = jwt.encode({"sub": "alice", "exp": 4102444800}, "k" * 32, algorithm="HS256")


def connection(path: str = "/chat/lobby", route: str | None = "/chat/{room}") -> WebSocket:
    async def receive() -> Message:
        raise AssertionError("not used")

    async def send(message: Message) -> None:
        raise AssertionError("not used")

    scope: dict[str, Any] = {"type": "websocket", "path": path}
    if route is not None:
        scope[ROUTE_SCOPE_KEY] = route
    return WebSocket(scope, receive, send)


def record(message: str, *args: object, **extra: Any) -> logging.LogRecord:
    made = logging.getLogger("qakeapi.test").makeRecord(
        "qakeapi.test", logging.WARNING, __file__, 1, message, args, None
    )
    made.__dict__.update(extra)
    return made


def values(made: logging.LogRecord) -> list[Any]:
    return [getattr(made, name) for name in FIELDS]


def test_a_record_logged_for_a_bound_connection_gets_its_fields() -> None:
    websocket = connection()
    token = bind(websocket)
    try:
        first = record("hello")
        ConnectionLogFilter("node-7").filter(first)
        websocket.user_id = "alice"  # authenticated later: later lines say so
        second = record("again")
        ConnectionLogFilter("node-7").filter(second)
    finally:
        unbind(token)
    assert values(first) == [websocket.id, None, "/chat/{room}", "node-7"]
    assert values(second) == [websocket.id, "alice", "/chat/{room}", "node-7"]


def test_explicit_fields_win_and_lines_outside_a_connection_have_none() -> None:
    websocket, other = connection(), connection(route=None)
    token = bind(websocket)
    try:
        named = record("slow consumer", **fields(other, "node-1"))
        ConnectionLogFilter("node-7").filter(named)
    finally:
        unbind(token)
    assert values(named) == [other.id, None, "/chat/lobby", "node-1"]  # no template in its scope: the path
    outside = record("start-up")
    ConnectionLogFilter("node-7").filter(outside)
    assert values(outside) == [None, None, None, "node-7"]


def test_the_json_formatter_writes_the_fields_and_never_a_token() -> None:
    websocket = connection()
    websocket.user_id = "alice"
    token = bind(websocket)
    try:
        line = record("handshake GET /chat/lobby?token=%s from %s", TOKEN, "127.0.0.1", extra_field=f"Bearer {TOKEN}")
        ConnectionLogFilter("node-7").filter(line)
    finally:
        unbind(token)
    text = JSONFormatter().format(line)
    assert TOKEN not in text
    assert TOKEN.split(".")[2] not in text
    data = json.loads(text)
    assert data["connection_id"] == websocket.id
    assert data["user_id"] == "alice"
    assert data["route"] == "/chat/{room}"
    assert data["node_id"] == "node-7"
    assert data["level"] == "WARNING"
    assert data["logger"] == "qakeapi.test"
    assert data["message"].startswith("handshake GET /chat/lobby?token=[redacted] from 127.0.0.1")
    assert data["extra_field"] == "Bearer [redacted]"


def test_configure_logging_puts_one_line_per_record_with_the_fields_on_the_root_logger() -> None:
    stream = io.StringIO()
    level = logging.getLogger().level
    handler = configure_logging(json=True, stream=stream, node_id="node-9", level=logging.WARNING)
    websocket = connection()
    token = bind(websocket)
    try:
        logging.getLogger("qakeapi.rooms").warning("refused a join (connection=%s)", websocket.id)
    finally:
        unbind(token)
        logging.getLogger().removeHandler(handler)
        logging.getLogger().setLevel(level)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert len(lines) == 1
    assert lines[0]["connection_id"] == websocket.id
    assert lines[0]["node_id"] == "node-9"
    assert lines[0]["message"] == f"refused a join (connection={websocket.id})"
