"""Structured logs on a real server: every line about a connection names it, no line holds a token.

``tests.e2e.observed_app`` under uvicorn logs JSON (``configure_logging(json=True)``). Clients
authenticate with a JWT in the query string (which uvicorn logs with the request line), join a
room, talk, make a hook fail. Every JSON line QakeAPI or the app's hooks wrote about a
connection carries its ``connection_id``, ``user_id``, ``route`` (the template) and
``node_id``; no line of the server's whole output holds the token or its signature.
"""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from websockets.asyncio.client import connect

from tests.e2e.conftest import recv_json
from tests.e2e.servers import Server, uvicorn_server

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio]

SECRET = secrets.token_hex(32)
ENV = {"OBSERVED_SECRET": SECRET, "OBSERVED_DASHBOARD_TOKEN": secrets.token_hex(16), "QAKEAPI_NODE_ID": "node-logs"}


def json_lines(server: Server) -> list[dict[str, Any]]:
    lines = []
    for line in server.output().splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


def wait_for_line(server: Server, condition: Any, what: str, limit: float = 10.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        lines = json_lines(server)
        if any(condition(line) for line in lines):
            return lines
        time.sleep(0.05)
    raise AssertionError(f"no log line {what} within {limit}s:\n{server.output()}")


async def test_every_line_about_a_connection_carries_its_fields_and_no_line_a_token(tmp_path: Path) -> None:
    token = jwt.encode({"sub": "alice", "exp": int(time.time()) + 600}, SECRET, algorithm="HS256")
    expired = jwt.encode({"sub": "bob", "exp": int(time.time()) - 600}, SECRET, algorithm="HS256")
    with uvicorn_server("tests.e2e.observed_app:app", tmp_path, env=ENV) as server:
        async with connect(f"{server.ws_url}/rooms/lobby?token={token}") as alice:
            assert await recv_json(alice) == {"type": "welcome", "node": "node-logs", "user": "alice"}
            await alice.send(json.dumps("hello"))
            assert (await recv_json(alice))["data"] == "hello"
            await alice.send(json.dumps("fail"))  # the hook raises: an ERROR line about alice's connection
            await alice.send(json.dumps("still here"))
            assert (await recv_json(alice))["data"] == "still here"
        async with connect(f"{server.ws_url}/rooms/lobby?token={expired}") as anonymous:  # refused token
            assert (await recv_json(anonymous))["user"] is None
        lines = wait_for_line(server, lambda line: line["level"] == "ERROR", "at ERROR")
        output = server.output()

    assert token not in output
    assert token.split(".")[2] not in output
    assert expired.split(".")[2] not in output
    about = [line for line in lines if line.get("connection_id") is not None]
    messages = [line["message"] for line in about]
    assert any(line["logger"] == "observed" and line["message"] == "relaying a message" for line in about), messages
    failed = [line for line in about if line["level"] == "ERROR"]
    assert failed, messages
    assert "the hook failed on purpose" in failed[0]["exc_info"]
    alice_lines = [line for line in about if line["user_id"] == "alice"]
    assert {line["logger"] for line in alice_lines} >= {"observed", "qakeapi.websockets"}
    for line in about:
        assert line["route"] == "/rooms/{room}"
        assert line["node_id"] == "node-logs"
        assert isinstance(line["connection_id"], int)
    assert len({line["connection_id"] for line in about}) == 2  # alice's and the anonymous one
    rejected = [line for line in about if "expired" in line["message"]]
    assert rejected, messages
    assert rejected[0]["user_id"] is None
