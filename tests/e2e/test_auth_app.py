"""Guide section "WebSocket with Authentication" over the network: ``examples_app.auth_app`` under uvicorn.

Tokens come from ``POST /token`` on the same server process (each process signs
with its own random key unless ``QAKEAPI_SECRET_KEY`` is set), and travel the three ways a real
client can send them: the ``token`` query parameter, an ``Authorization: Bearer`` header, and the
subprotocol pair ``bearer, <token>`` (the server then selects ``bearer``).
"""

from __future__ import annotations

import json

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

from tests.e2e.conftest import Serve, assert_no_message, generate_token, http_post, http_post_json, recv_json
from tests.e2e.servers import Server

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio]

NEEDS_AUTH = {"type": "error", "message": "Authentication required"}


def welcome(user: str) -> dict[str, str]:
    return {"type": "welcome", "message": f"Welcome, {user}!"}


def auth_required(reason: str) -> dict[str, str]:
    return {"type": "auth_required", "message": "Please authenticate", "reason": reason}


def connect_with(server: Server, token: str, how: str) -> connect:
    """Open ``/ws`` sending ``token`` the way ``how`` names."""
    if how == "query":
        return connect(f"{server.ws_url}/ws?token={token}")
    if how == "header":
        return connect(f"{server.ws_url}/ws", additional_headers={"Authorization": f"Bearer {token}"})
    assert how == "subprotocol"
    return connect(f"{server.ws_url}/ws", subprotocols=[Subprotocol("bearer"), Subprotocol(token)])


async def assert_authenticated_as(ws: ClientConnection, user: str) -> None:
    assert await recv_json(ws) == welcome(user)
    await ws.send(json.dumps({"text": "hi"}))
    assert await recv_json(ws) == {"type": "message", "data": {"text": "hi"}, "user": user}
    await ws.send("plain")
    assert await recv_json(ws) == {"type": "message", "data": "plain", "user": user}
    await assert_no_message(ws)


async def assert_rejected(ws: ClientConnection, reason: str, how: str) -> None:
    # an offered ["bearer", token] is selected even for a bad token: browsers drop a
    # connection that selects none of the subprotocols they offered
    assert ws.subprotocol == ("bearer" if how == "subprotocol" else None)
    assert await recv_json(ws) == auth_required(reason)
    for _ in range(2):  # the connection stays open and keeps answering
        await ws.send(json.dumps({"text": "hi"}))
        assert await recv_json(ws) == NEEDS_AUTH
    await assert_no_message(ws)


@pytest.mark.parametrize("how", ["query", "header", "subprotocol"])
async def test_token_from_the_same_server_authenticates(serve: Serve, how: str) -> None:
    server = serve("auth_app")
    token = await generate_token(server, "alice")
    async with connect_with(server, token, how) as ws:
        assert ws.subprotocol == ("bearer" if how == "subprotocol" else None)
        await assert_authenticated_as(ws, "alice")


async def test_anonymous_connection_must_authenticate(serve: Serve) -> None:
    server = serve("auth_app")
    async with connect(f"{server.ws_url}/ws") as ws:
        await assert_rejected(ws, "missing", "query")
    async with connect(f"{server.ws_url}/ws?token=") as ws:
        await assert_rejected(ws, "missing", "query")


@pytest.mark.parametrize("how", ["query", "header", "subprotocol"])
async def test_bad_and_forged_tokens_are_refused(serve: Serve, how: str) -> None:
    server = serve("auth_app")
    other = serve("auth_app")  # another process: another random signing key
    token = await generate_token(server, "alice")
    foreign = await generate_token(other, "alice")
    cases = [("not-a-token", "malformed"), (token[:-4] + "AAAA", "invalid_signature"), (foreign, "invalid_signature")]
    for bad_token, reason in cases:
        async with connect_with(server, bad_token, how) as ws:
            await assert_rejected(ws, reason, how)
    # the genuine token still works on its own server
    async with connect_with(server, token, how) as ws:
        await assert_authenticated_as(ws, "alice")


async def test_authentication_is_per_connection(serve: Serve) -> None:
    server = serve("auth_app")
    alice_token = await generate_token(server, "alice")
    bob_token = await generate_token(server, "bob")
    async with (
        connect_with(server, alice_token, "query") as alice,
        connect_with(server, bob_token, "header") as bob,
        connect(f"{server.ws_url}/ws") as anon,
    ):
        assert await recv_json(alice) == welcome("alice")
        assert await recv_json(bob) == welcome("bob")
        assert await recv_json(anon) == auth_required("missing")
        await anon.send(json.dumps({"text": "anon"}))
        await bob.send(json.dumps({"text": "bob"}))
        await alice.send(json.dumps({"text": "alice"}))
        assert await recv_json(anon) == NEEDS_AUTH
        assert await recv_json(bob) == {"type": "message", "data": {"text": "bob"}, "user": "bob"}
        assert await recv_json(alice) == {"type": "message", "data": {"text": "alice"}, "user": "alice"}
        await assert_no_message(alice, bob, anon)


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b"[1, 2]", "expected a JSON object with 'name'"),
        (b'{"name": ""}', "user_id must be a non-empty string or an integer"),
    ],
)
async def test_generate_token_rejects_bad_requests(serve: Serve, body: bytes, detail: str) -> None:
    server = serve("auth_app")
    assert await http_post(f"{server.http_url}/token", body) == (400, {"detail": detail})


async def test_generate_token_answers_a_token(serve: Serve) -> None:
    server = serve("auth_app")
    status, answer = await http_post_json(f"{server.http_url}/token", {"name": 42})
    assert status == 200
    assert set(answer) == {"token"}
    token = answer["token"]
    assert isinstance(token, str)
    async with connect_with(server, token, "query") as ws:
        await assert_authenticated_as(ws, "42")
