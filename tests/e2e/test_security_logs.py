"""Tokens never reach the server's log: ``examples_app.auth_app`` under uvicorn at DEBUG (and
TRACE), on each of uvicorn's WebSocket implementations, with tokens sent every way a client can."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

from tests.e2e.conftest import Serve, generate_token, recv_json
from tests.e2e.servers import Server, asgi_server

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio]


async def wait_for_log(server: Server, text: str, timeout: float = 5.0) -> None:
    """Wait (bounded) until ``text`` appears in the server's output: log lines are written asynchronously."""
    deadline = time.monotonic() + timeout
    while text not in server.output():
        if time.monotonic() > deadline:
            raise AssertionError(f"{text!r} not in the server log within {timeout}s:\n{server.output()}")
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("level", ["debug", "trace"])
@pytest.mark.parametrize("implementation", ["websockets-sansio", "websockets", "wsproto"])
async def test_no_token_in_the_log(serve: Serve, implementation: str, level: str) -> None:
    server = serve("auth_app", args=("--ws", implementation, "--log-level", level))
    token = await generate_token(server, "alice")
    other = await generate_token(server, "bob")
    secrets = [token, token.rsplit(".", 1)[1], other, other.rsplit(".", 1)[1], "opaque-secret-value"]
    ways = [
        connect(f"{server.ws_url}/ws?token={token}"),
        connect(f"{server.ws_url}/ws?room=1&access_token=opaque-secret-value&token={token}"),
        connect(f"{server.ws_url}/ws", additional_headers={"Authorization": f"Bearer {other}"}),
        connect(f"{server.ws_url}/ws", subprotocols=[Subprotocol("bearer"), Subprotocol(other)]),
        connect(f"{server.ws_url}/ws?token={token[:-3]}xyz"),  # a forged token, rejected
    ]
    for way in ways:
        async with way as ws:
            first = await recv_json(ws)
            assert first["type"] in ("welcome", "auth_required")
            await ws.send(json.dumps({"text": "hi"}))
            await recv_json(ws)
    await wait_for_log(server, '"WebSocket /ws?token=[redacted]" [accepted]')
    await wait_for_log(server, "access_token=[redacted]&token=[redacted]")
    server.stop()
    output = server.output()
    if level == "trace" or implementation != "wsproto":  # uvicorn's wsproto logs nothing at DEBUG itself
        assert f"{level.upper()} uvicorn." in output  # the level really applied: the check below saw everything
    for secret in secrets:
        assert output.count(secret) == 0, f"a token leaked into the log:\n{output}"


@pytest.mark.parametrize("implementation", ["websockets-sansio", "websockets"])
async def test_no_cookie_in_the_debug_log(serve: Serve, implementation: str) -> None:
    # The websockets library logs every request header at DEBUG, Cookie included.
    server = serve("auth_app", args=("--ws", implementation, "--log-level", "debug"))
    cookie = "sid=cookie-secret-value; theme=dark"
    async with connect(f"{server.ws_url}/ws", additional_headers={"Cookie": cookie}) as ws:
        assert (await recv_json(ws))["type"] == "auth_required"
    await wait_for_log(server, "cookie: [redacted]")
    server.stop()
    assert "cookie-secret-value" not in server.output()


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


async def test_no_token_in_daphnes_access_log(tmp_path: Path) -> None:
    with asgi_server("daphne", "examples_app.auth_app:app", tmp_path) as server:
        status = await asyncio.to_thread(_get, f"{server.http_url}/api/nothing?token=query-secret-value")
        assert status == 404
        async with connect(f"{server.ws_url}/ws?token=ws-secret-value") as ws:
            assert (await recv_json(ws))["type"] == "auth_required"
        server.wait_for_output("/api/nothing?token=[redacted]")
    output = server.output()
    assert "query-secret-value" not in output, output
    assert "ws-secret-value" not in output, output
