"""The combined app the guide's tests import (``examples_app.websocket_app``).

Its protocol (module docstring): a welcome on connect; ``message`` echoed to anonymous
connections and answered with the user to authenticated ones; the chat rooms; errors for
anything else; ``POST /api/generate-token``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from examples_app.websocket_app import app, authenticator, chat
from qakeapi.testing import TestClient, WebSocketTestSession

INVALID = {"type": "error", "message": "Invalid message: expected a JSON object with a 'type'"}


@pytest_asyncio.fixture
async def client() -> AsyncIterator[TestClient]:
    async with TestClient(app) as test_client:
        yield test_client


async def assert_silent(*sessions: WebSocketTestSession) -> None:
    """Nothing more arrives on any of ``sessions``."""
    for ws in sessions:
        with pytest.raises(TimeoutError):
            await ws.receive_json(timeout=0.1)


async def welcomed(ws: WebSocketTestSession, user: str | None = None) -> str:
    """Read the welcome; return the connection id."""
    welcome = await ws.receive_json()
    assert isinstance(welcome, dict)
    connection_id = welcome["connection_id"]
    assert isinstance(connection_id, str)
    assert connection_id
    greeting = "Connected!" if user is None else f"Welcome, {user}!"
    assert welcome == {"type": "welcome", "message": greeting, "connection_id": connection_id, "user": user}
    return connection_id


async def issue(client: TestClient, user_id: str) -> str:
    response = await client.post("/api/generate-token", json={"user_id": user_id})
    assert response.status_code == 200
    token = response.json()["token"]
    assert isinstance(token, str)
    return token


def joined(connection_id: str, room: str) -> dict[str, str]:
    return {"type": "user_joined", "connection_id": connection_id, "room": room}


def left(connection_id: str, room: str) -> dict[str, str]:
    return {"type": "user_left", "connection_id": connection_id, "room": room}


def said(connection_id: str, room: str, message: str) -> dict[str, str]:
    return {"type": "chat_message", "connection_id": connection_id, "room": room, "message": message}


async def assert_still_works(ws: WebSocketTestSession) -> None:
    await ws.send_json({"type": "message", "text": "ping"})
    answer = await ws.receive_json()
    assert answer["type"] in ("echo", "message")
    assert answer["data"] == {"type": "message", "text": "ping"}


# -- welcome and messages -----------------------------------------------------------------


@pytest.mark.asyncio
async def test_anonymous_welcome(client: TestClient) -> None:
    async with client.websocket_connect("/ws") as ws:
        await welcomed(ws)
        await assert_silent(ws)


@pytest.mark.asyncio
async def test_anonymous_message_is_echoed(client: TestClient) -> None:
    async with client.websocket_connect("/ws") as ws:
        await welcomed(ws)
        await ws.send_json({"type": "message", "text": "Hello"})
        assert await ws.receive_json() == {"type": "echo", "data": {"type": "message", "text": "Hello"}}
        await ws.send_json({"type": "message"})
        assert await ws.receive_json() == {"type": "echo", "data": {"type": "message"}}
        await assert_silent(ws)


@pytest.mark.asyncio
async def test_authenticated_welcome_and_message(client: TestClient) -> None:
    token = await issue(client, "123")
    async with client.websocket_connect(f"/ws?token={token}") as ws:
        await welcomed(ws, "123")
        await ws.send_json({"type": "message", "text": "Hello"})
        assert await ws.receive_json() == {
            "type": "message",
            "data": {"type": "message", "text": "Hello"},
            "user": "123",
        }
        await assert_silent(ws)


@pytest.mark.asyncio
async def test_authentication_through_header_and_subprotocol(client: TestClient) -> None:
    token = await issue(client, "alice")
    async with client.websocket_connect("/ws", headers={"Authorization": f"Bearer {token}"}) as ws:
        await welcomed(ws, "alice")
    async with client.websocket_connect("/ws", subprotocols=["bearer", token]) as ws:
        assert ws.accepted_subprotocol == "bearer"
        await welcomed(ws, "alice")
        await ws.send_json({"type": "message", "n": 1})
        assert await ws.receive_json() == {"type": "message", "data": {"type": "message", "n": 1}, "user": "alice"}


@pytest.mark.asyncio
@pytest.mark.parametrize("token", ["not-a-token", "a.b.c", ""])
async def test_bad_token_connects_anonymously(client: TestClient, token: str) -> None:
    async with client.websocket_connect(f"/ws?token={token}") as ws:
        await welcomed(ws)
        await ws.send_json({"type": "message", "text": "Hello"})
        assert await ws.receive_json() == {"type": "echo", "data": {"type": "message", "text": "Hello"}}


@pytest.mark.asyncio
async def test_forged_token_connects_anonymously(client: TestClient) -> None:
    token = await issue(client, "alice")
    async with client.websocket_connect(f"/ws?token={token[:-4]}AAAA") as ws:
        await welcomed(ws)


# -- the token endpoint -------------------------------------------------------------------


@pytest.mark.asyncio
async def test_generate_token(client: TestClient) -> None:
    response = await client.post("/api/generate-token", json={"user_id": "123"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"token"}
    assert authenticator.verify_token(body["token"])["sub"] == "123"


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("content", "detail"),
    [
        ("{}", "user_id must be a non-empty string or an integer"),
        ('{"user_id": ""}', "user_id must be a non-empty string or an integer"),
        ("[]", "expected a JSON object with 'user_id'"),
        ('"alice"', "expected a JSON object with 'user_id'"),
        ("", "request body is empty; expected JSON"),
    ],
)
async def test_generate_token_rejects_bad_bodies(client: TestClient, content: str, detail: str) -> None:
    response = await client.post("/api/generate-token", content=content, headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json() == {"detail": detail}


@pytest.mark.asyncio
async def test_generate_token_rejects_malformed_json(client: TestClient) -> None:
    response = await client.post("/api/generate-token", content="{oops", headers={"content-type": "application/json"})
    assert response.status_code == 400
    body = response.json()
    assert set(body) == {"detail"}
    assert body["detail"].startswith("malformed JSON body: ")


# -- rooms --------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_no_room_is_joined_on_connect(client: TestClient) -> None:
    async with client.websocket_connect("/ws") as ws:
        connection_id = await welcomed(ws)
        await ws.send_json({"type": "chat_message", "room": "general", "message": "hi"})
        assert await ws.receive_json() == {"type": "error", "message": "Not in room 'general'; join it first"}
        member_ids = {chat.rooms.connection_id(member) for room in chat.rooms for member in room.members}
        assert connection_id not in member_ids


@pytest.mark.asyncio
async def test_rooms_join_chat_leave(client: TestClient) -> None:
    async with (
        client.websocket_connect("/ws") as ws1,
        client.websocket_connect("/ws") as ws2,
        client.websocket_connect("/ws") as outsider,
    ):
        id1 = await welcomed(ws1)
        id2 = await welcomed(ws2)
        await welcomed(outsider)

        await ws1.send_json({"type": "join_room", "room": "general"})
        assert await ws1.receive_json() == {"type": "room_joined", "room": "general"}
        await assert_silent(ws1, ws2, outsider)

        await ws2.send_json({"type": "join_room", "room": "general"})
        assert await ws2.receive_json() == {"type": "room_joined", "room": "general"}
        assert await ws1.receive_json() == joined(id2, "general")
        await assert_silent(ws1, ws2, outsider)

        await ws1.send_json({"type": "chat_message", "room": "general", "message": "Hello everyone!"})
        assert await ws1.receive_json() == said(id1, "general", "Hello everyone!")
        assert await ws2.receive_json() == said(id1, "general", "Hello everyone!")
        await assert_silent(ws1, ws2, outsider)

        await ws2.send_json({"type": "leave_room", "room": "general"})
        assert await ws2.receive_json() == {"type": "room_left", "room": "general"}
        assert await ws1.receive_json() == left(id2, "general")
        await assert_silent(ws1, ws2, outsider)

        await ws2.send_json({"type": "leave_room", "room": "general"})
        assert await ws2.receive_json() == {"type": "error", "message": "Not in room 'general'"}
        await ws2.send_json({"type": "chat_message", "room": "general", "message": "still there?"})
        assert await ws2.receive_json() == {"type": "error", "message": "Not in room 'general'; join it first"}
        await assert_silent(ws1, ws2, outsider)


@pytest.mark.asyncio
async def test_authenticated_and_anonymous_users_share_rooms(client: TestClient) -> None:
    token = await issue(client, "alice")
    async with client.websocket_connect(f"/ws?token={token}") as alice, client.websocket_connect("/ws") as anon:
        alice_id = await welcomed(alice, "alice")
        anon_id = await welcomed(anon)
        for ws in (alice, anon):
            await ws.send_json({"type": "join_room", "room": "mixed"})
            assert await ws.receive_json() == {"type": "room_joined", "room": "mixed"}
        assert await alice.receive_json() == joined(anon_id, "mixed")
        await anon.send_json({"type": "chat_message", "room": "mixed", "message": "hi alice"})
        for ws in (alice, anon):
            assert await ws.receive_json() == said(anon_id, "mixed", "hi alice")
        await alice.send_json({"type": "chat_message", "room": "mixed", "message": "hi"})
        for ws in (alice, anon):
            assert await ws.receive_json() == said(alice_id, "mixed", "hi")
        await assert_silent(alice, anon)


@pytest.mark.asyncio
async def test_disconnect_tells_the_room_user_left(client: TestClient) -> None:
    async with client.websocket_connect("/ws") as stayer:
        stayer_id = await welcomed(stayer)
        await stayer.send_json({"type": "join_room", "room": "general"})
        assert await stayer.receive_json() == {"type": "room_joined", "room": "general"}
        await stayer.send_json({"type": "join_room", "room": "side"})
        assert await stayer.receive_json() == {"type": "room_joined", "room": "side"}
        async with client.websocket_connect("/ws") as leaver:
            leaver_id = await welcomed(leaver)
            for room in ("general", "side"):
                await leaver.send_json({"type": "join_room", "room": room})
                assert await leaver.receive_json() == {"type": "room_joined", "room": room}
                assert await stayer.receive_json() == joined(leaver_id, room)
        assert [await stayer.receive_json() for _ in range(2)] == [left(leaver_id, "general"), left(leaver_id, "side")]
        await assert_silent(stayer)
        await stayer.send_json({"type": "chat_message", "room": "general", "message": "alone"})
        assert await stayer.receive_json() == said(stayer_id, "general", "alone")


@pytest.mark.asyncio
async def test_disconnect_outside_any_room_tells_nobody(client: TestClient) -> None:
    async with client.websocket_connect("/ws") as stayer:
        await welcomed(stayer)
        await stayer.send_json({"type": "join_room", "room": "general"})
        assert await stayer.receive_json() == {"type": "room_joined", "room": "general"}
        async with client.websocket_connect("/ws") as passer_by:
            await welcomed(passer_by)
        await assert_silent(stayer)


# -- errors -------------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", ["invalid_type", "x", "", "Message"])
async def test_unknown_type_is_an_error(client: TestClient, kind: str) -> None:
    async with client.websocket_connect("/ws") as ws:
        await welcomed(ws)
        await ws.send_json({"type": kind})
        assert await ws.receive_json() == {"type": "error", "message": f"Unknown message type: {kind}"}
        await assert_silent(ws)
        await assert_still_works(ws)


@pytest.mark.asyncio
@pytest.mark.parametrize("text", ["not JSON", "[]", '["message"]', "42", "null", "{}", '{"type": 1}', '{"text": "x"}'])
async def test_bad_input_is_an_error(client: TestClient, text: str) -> None:
    async with client.websocket_connect("/ws") as ws:
        await welcomed(ws)
        await ws.send_text(text)
        assert await ws.receive_json() == INVALID
        await assert_silent(ws)
        await assert_still_works(ws)


@pytest.mark.asyncio
async def test_binary_input_is_an_error(client: TestClient) -> None:
    async with client.websocket_connect("/ws") as ws:
        await welcomed(ws)
        await ws.send_bytes(b'{"type": "message"}')
        assert await ws.receive_json() == INVALID
        await assert_still_works(ws)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("message", "error"),
    [
        ({"type": "join_room"}, "Missing or invalid 'room'"),
        ({"type": "leave_room", "room": ""}, "Missing or invalid 'room'"),
        ({"type": "chat_message", "room": 3, "message": "x"}, "Missing or invalid 'room'"),
        ({"type": "leave_room", "room": "nowhere"}, "Not in room 'nowhere'"),
        ({"type": "chat_message", "room": "nowhere", "message": "x"}, "Not in room 'nowhere'; join it first"),
    ],
)
async def test_bad_room_requests_are_errors(client: TestClient, message: dict[str, Any], error: str) -> None:
    async with client.websocket_connect("/ws") as ws:
        await welcomed(ws)
        await ws.send_json(message)
        assert await ws.receive_json() == {"type": "error", "message": error}
        await assert_silent(ws)
        await assert_still_works(ws)


@pytest.mark.asyncio
async def test_missing_chat_message_text_is_an_error(client: TestClient) -> None:
    async with client.websocket_connect("/ws") as ws:
        await welcomed(ws)
        await ws.send_json({"type": "join_room", "room": "quiet"})
        assert await ws.receive_json() == {"type": "room_joined", "room": "quiet"}
        await ws.send_json({"type": "chat_message", "room": "quiet"})
        assert await ws.receive_json() == {"type": "error", "message": "Missing or invalid 'message'"}
        await assert_silent(ws)
        await assert_still_works(ws)
