"""The guide's "Real-time Chat Application" (``examples_app.chat_app``): rooms, broadcasting, the page.

The app's rooms are module-level state shared by every test in the process, so every session is
closed before its test ends and connection ids are read from the welcome, never assumed.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

import examples_app
from examples_app.chat_app import DEFAULT_ROOM, ChatService, app, chat
from qakeapi import Application, WebSocket, WebSocketHandler
from qakeapi.core.rooms import Rooms
from qakeapi.exceptions import ClusterUnavailableError
from qakeapi.testing import TestClient, WebSocketTestSession

INVALID = {"type": "error", "message": "Invalid message: expected a JSON object with a 'type'"}
MISSING_ROOM = {"type": "error", "message": "Missing or invalid 'room'"}
MISSING_MESSAGE = {"type": "error", "message": "Missing or invalid 'message'"}


@pytest_asyncio.fixture
async def client() -> AsyncIterator[TestClient]:
    async with TestClient(app) as test_client:
        yield test_client


async def assert_silent(*sessions: WebSocketTestSession) -> None:
    """Nothing more arrives on any of ``sessions``."""
    for ws in sessions:
        with pytest.raises(TimeoutError):
            await ws.receive_json(timeout=0.1)


async def greeted(ws: WebSocketTestSession) -> str:
    """Read the welcome and the automatic join of ``general``; return the connection id."""
    welcome = await ws.receive_json()
    assert isinstance(welcome, dict)
    connection_id = welcome["connection_id"]
    assert isinstance(connection_id, str)
    assert connection_id
    assert welcome == {"type": "welcome", "connection_id": connection_id, "message": "Welcome to the chat!"}
    assert await ws.receive_json() == {"type": "room_joined", "room": DEFAULT_ROOM}
    return connection_id


def joined(connection_id: str, room: str = DEFAULT_ROOM) -> dict[str, str]:
    return {"type": "user_joined", "connection_id": connection_id, "room": room}


def left(connection_id: str, room: str = DEFAULT_ROOM) -> dict[str, str]:
    return {"type": "user_left", "connection_id": connection_id, "room": room}


def said(connection_id: str, message: str, room: str = DEFAULT_ROOM) -> dict[str, str]:
    return {"type": "chat_message", "connection_id": connection_id, "room": room, "message": message}


async def assert_still_works(ws: WebSocketTestSession, connection_id: str) -> None:
    """A valid chat message still gets its answer (the sender sees its own message)."""
    await ws.send_json({"type": "chat_message", "room": DEFAULT_ROOM, "message": "still here"})
    assert await ws.receive_json() == said(connection_id, "still here")


# -- the page -----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_index_serves_the_chat_page(client: TestClient) -> None:
    response = await client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert "new WebSocket('ws://localhost:8000/ws')" in response.text
    assert response.text.lstrip().startswith("<!DOCTYPE html>")
    page = Path(examples_app.__file__).with_name("static") / "chat.html"
    assert response.text == page.read_text(encoding="utf-8")


@pytest.mark.asyncio
async def test_unknown_http_path_is_404(client: TestClient) -> None:
    response = await client.get("/nope")
    assert response.status_code == 404
    assert response.json() == {"detail": "Not Found"}


# -- connecting ---------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_new_connection_gets_welcome_then_joins_general(client: TestClient) -> None:
    async with client.websocket_connect("/ws") as ws:
        connection_id = await greeted(ws)
        await assert_silent(ws)
        room = chat.rooms.get(DEFAULT_ROOM)
        assert room is not None
        assert {chat.rooms.connection_id(member) for member in room.members} >= {connection_id}


@pytest.mark.asyncio
async def test_connection_ids_are_distinct(client: TestClient) -> None:
    async with client.websocket_connect("/ws") as first, client.websocket_connect("/ws") as second:
        first_id = await greeted(first)
        second_id = await greeted(second)
        assert first_id != second_id


@pytest.mark.asyncio
async def test_other_members_get_user_joined_but_not_the_joiner(client: TestClient) -> None:
    async with client.websocket_connect("/ws") as alice:
        await greeted(alice)
        async with client.websocket_connect("/ws") as bob:
            bob_id = await greeted(bob)
            assert await alice.receive_json() == joined(bob_id)
            async with client.websocket_connect("/ws") as carol:
                carol_id = await greeted(carol)
                assert await alice.receive_json() == joined(carol_id)
                assert await bob.receive_json() == joined(carol_id)
                await assert_silent(alice, bob, carol)


# -- chatting -----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_chat_message_reaches_every_member_including_the_sender_once(client: TestClient) -> None:
    async with (
        client.websocket_connect("/ws") as alice,
        client.websocket_connect("/ws") as bob,
        client.websocket_connect("/ws") as carol,
    ):
        alice_id = await greeted(alice)
        bob_id = await greeted(bob)
        carol_id = await greeted(carol)
        assert await alice.receive_json() == joined(bob_id)
        for ws in (alice, bob):
            assert await ws.receive_json() == joined(carol_id)

        await alice.send_json({"type": "chat_message", "room": DEFAULT_ROOM, "message": "Hi all"})
        for ws in (alice, bob, carol):
            assert await ws.receive_json() == said(alice_id, "Hi all")
        await assert_silent(alice, bob, carol)

        await carol.send_json({"type": "chat_message", "room": DEFAULT_ROOM, "message": "Hi Alice ✓"})
        for ws in (alice, bob, carol):
            assert await ws.receive_json() == said(carol_id, "Hi Alice ✓")
        await assert_silent(alice, bob, carol)


@pytest.mark.asyncio
async def test_messages_arrive_in_the_order_they_were_sent(client: TestClient) -> None:
    async with client.websocket_connect("/ws") as alice, client.websocket_connect("/ws") as bob:
        alice_id = await greeted(alice)
        bob_id = await greeted(bob)
        assert await alice.receive_json() == joined(bob_id)
        texts = [f"message {n}" for n in range(10)]
        for text in texts:
            await alice.send_json({"type": "chat_message", "room": DEFAULT_ROOM, "message": text})
        for ws in (alice, bob):
            assert [await ws.receive_json() for _ in texts] == [said(alice_id, text) for text in texts]
        await assert_silent(alice, bob)


# -- other rooms --------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_join_chat_and_leave_another_room(client: TestClient) -> None:
    async with (
        client.websocket_connect("/ws") as alice,
        client.websocket_connect("/ws") as bob,
        client.websocket_connect("/ws") as carol,
    ):
        alice_id = await greeted(alice)
        bob_id = await greeted(bob)
        carol_id = await greeted(carol)
        assert await alice.receive_json() == joined(bob_id)
        for ws in (alice, bob):
            assert await ws.receive_json() == joined(carol_id)

        # alice opens the lobby: only she hears of it
        await alice.send_json({"type": "join_room", "room": "lobby"})
        assert await alice.receive_json() == {"type": "room_joined", "room": "lobby"}
        await assert_silent(alice, bob, carol)

        # bob joins: alice (a member) is told, bob is not, carol (not a member) is not
        await bob.send_json({"type": "join_room", "room": "lobby"})
        assert await bob.receive_json() == {"type": "room_joined", "room": "lobby"}
        assert await alice.receive_json() == joined(bob_id, "lobby")
        await assert_silent(alice, bob, carol)

        # a chat in the lobby reaches its members only
        await bob.send_json({"type": "chat_message", "room": "lobby", "message": "lobby only"})
        assert await alice.receive_json() == said(bob_id, "lobby only", "lobby")
        assert await bob.receive_json() == said(bob_id, "lobby only", "lobby")
        await assert_silent(alice, bob, carol)

        # carol may not chat in a room she has not joined
        await carol.send_json({"type": "chat_message", "room": "lobby", "message": "let me in"})
        assert await carol.receive_json() == {"type": "error", "message": "Not in room 'lobby'; join it first"}
        await assert_silent(alice, bob, carol)

        # alice leaves: she gets room_left, the members left get user_left
        await alice.send_json({"type": "leave_room", "room": "lobby"})
        assert await alice.receive_json() == {"type": "room_left", "room": "lobby"}
        assert await bob.receive_json() == left(alice_id, "lobby")
        await assert_silent(alice, bob, carol)

        # alice no longer hears the lobby, and may not chat there
        await bob.send_json({"type": "chat_message", "room": "lobby", "message": "alone"})
        assert await bob.receive_json() == said(bob_id, "alone", "lobby")
        await alice.send_json({"type": "chat_message", "room": "lobby", "message": "back?"})
        assert await alice.receive_json() == {"type": "error", "message": "Not in room 'lobby'; join it first"}
        await assert_silent(alice, bob, carol)

        # general is unaffected by all of it
        await carol.send_json({"type": "chat_message", "room": DEFAULT_ROOM, "message": "general"})
        for ws in (alice, bob, carol):
            assert await ws.receive_json() == said(carol_id, "general")
        await assert_silent(alice, bob, carol)


@pytest.mark.asyncio
async def test_leaving_general_stops_its_messages(client: TestClient) -> None:
    async with client.websocket_connect("/ws") as alice, client.websocket_connect("/ws") as bob:
        alice_id = await greeted(alice)
        bob_id = await greeted(bob)
        assert await alice.receive_json() == joined(bob_id)
        await bob.send_json({"type": "leave_room", "room": DEFAULT_ROOM})
        assert await bob.receive_json() == {"type": "room_left", "room": DEFAULT_ROOM}
        assert await alice.receive_json() == left(bob_id)
        await alice.send_json({"type": "chat_message", "room": DEFAULT_ROOM, "message": "bob?"})
        assert await alice.receive_json() == said(alice_id, "bob?")
        await assert_silent(alice, bob)


@pytest.mark.asyncio
async def test_leaving_a_room_you_are_not_in_is_an_error(client: TestClient) -> None:
    async with client.websocket_connect("/ws") as alice, client.websocket_connect("/ws") as bob:
        alice_id = await greeted(alice)
        bob_id = await greeted(bob)
        assert await alice.receive_json() == joined(bob_id)
        # a room that does not exist
        await alice.send_json({"type": "leave_room", "room": "nowhere"})
        assert await alice.receive_json() == {"type": "error", "message": "Not in room 'nowhere'"}
        # a room that exists, with someone else in it
        await bob.send_json({"type": "join_room", "room": "bobs-room"})
        assert await bob.receive_json() == {"type": "room_joined", "room": "bobs-room"}
        await alice.send_json({"type": "leave_room", "room": "bobs-room"})
        assert await alice.receive_json() == {"type": "error", "message": "Not in room 'bobs-room'"}
        await assert_silent(alice, bob)
        await assert_still_works(alice, alice_id)
        assert await bob.receive_json() == said(alice_id, "still here")


@pytest.mark.asyncio
async def test_chat_to_a_room_you_are_not_in_is_an_error(client: TestClient) -> None:
    async with client.websocket_connect("/ws") as ws:
        connection_id = await greeted(ws)
        await ws.send_json({"type": "chat_message", "room": "elsewhere", "message": "hello?"})
        assert await ws.receive_json() == {"type": "error", "message": "Not in room 'elsewhere'; join it first"}
        await assert_silent(ws)
        await assert_still_works(ws, connection_id)


# -- bad input ----------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", ["join_room", "leave_room", "chat_message"])
@pytest.mark.parametrize("extra", [{}, {"room": ""}, {"room": None}, {"room": 5}, {"room": ["general"]}])
async def test_missing_or_invalid_room_is_an_error(client: TestClient, kind: str, extra: dict[str, Any]) -> None:
    async with client.websocket_connect("/ws") as ws:
        connection_id = await greeted(ws)
        await ws.send_json({"type": kind, "message": "text", **extra})
        assert await ws.receive_json() == MISSING_ROOM
        await assert_silent(ws)
        await assert_still_works(ws, connection_id)


@pytest.mark.asyncio
@pytest.mark.parametrize("extra", [{}, {"message": ""}, {"message": None}, {"message": 5}, {"message": {"a": 1}}])
async def test_missing_or_invalid_message_is_an_error(client: TestClient, extra: dict[str, Any]) -> None:
    async with client.websocket_connect("/ws") as alice, client.websocket_connect("/ws") as bob:
        alice_id = await greeted(alice)
        bob_id = await greeted(bob)
        assert await alice.receive_json() == joined(bob_id)
        await alice.send_json({"type": "chat_message", "room": DEFAULT_ROOM, **extra})
        assert await alice.receive_json() == MISSING_MESSAGE
        await assert_silent(alice, bob)
        await assert_still_works(alice, alice_id)
        assert await bob.receive_json() == said(alice_id, "still here")


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "text",
    [
        "this is not JSON",
        "{not json",
        "[]",
        '[{"type": "chat_message"}]',
        "42",
        "3.5",
        "null",
        "true",
        '"chat_message"',
        "{}",
        '{"room": "general", "message": "no type"}',
        '{"type": null}',
        '{"type": 5}',
        '{"type": ["chat_message"]}',
    ],
)
async def test_text_that_is_not_a_typed_json_object_is_an_error(client: TestClient, text: str) -> None:
    async with client.websocket_connect("/ws") as ws:
        connection_id = await greeted(ws)
        await ws.send_text(text)
        assert await ws.receive_json() == INVALID
        await assert_silent(ws)
        await assert_still_works(ws, connection_id)


@pytest.mark.asyncio
async def test_binary_message_is_an_error(client: TestClient) -> None:
    async with client.websocket_connect("/ws") as ws:
        connection_id = await greeted(ws)
        await ws.send_json({"type": "chat_message", "room": DEFAULT_ROOM, "message": "as bytes"}, mode="binary")
        assert await ws.receive_json() == INVALID
        await assert_silent(ws)
        await assert_still_works(ws, connection_id)


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", ["x", "dance", "", "JOIN_ROOM", "chat message"])
async def test_unknown_type_is_an_error(client: TestClient, kind: str) -> None:
    async with client.websocket_connect("/ws") as ws:
        connection_id = await greeted(ws)
        await ws.send_json({"type": kind, "room": DEFAULT_ROOM, "message": "hi"})
        assert await ws.receive_json() == {"type": "error", "message": f"Unknown message type: {kind}"}
        await assert_silent(ws)
        await assert_still_works(ws, connection_id)


@pytest.mark.asyncio
async def test_connection_survives_a_run_of_bad_input(client: TestClient) -> None:
    async with client.websocket_connect("/ws") as ws:
        connection_id = await greeted(ws)
        await ws.send_text("garbage")
        await ws.send_json([1, 2, 3])
        await ws.send_json({"type": "x"})
        await ws.send_json({"type": "leave_room", "room": "nowhere"})
        await ws.send_json({"type": "chat_message"})
        assert [await ws.receive_json() for _ in range(5)] == [
            INVALID,
            INVALID,
            {"type": "error", "message": "Unknown message type: x"},
            {"type": "error", "message": "Not in room 'nowhere'"},
            MISSING_ROOM,
        ]
        await assert_still_works(ws, connection_id)
        await assert_silent(ws)


# -- disconnecting ------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_disconnect_tells_the_others_user_left(client: TestClient) -> None:
    async with client.websocket_connect("/ws") as bob, client.websocket_connect("/ws") as carol:
        bob_id = await greeted(bob)
        carol_id = await greeted(carol)
        assert await bob.receive_json() == joined(carol_id)
        alice = await client.websocket_connect("/ws")
        try:
            alice_id = await greeted(alice)
            for ws in (bob, carol):
                assert await ws.receive_json() == joined(alice_id)
        finally:
            await alice.close()
        for ws in (bob, carol):
            assert await ws.receive_json() == left(alice_id)
        await assert_silent(bob, carol)
        # the leaver is gone from the room: a chat reaches the two left, and nothing fails
        await bob.send_json({"type": "chat_message", "room": DEFAULT_ROOM, "message": "bye alice"})
        for ws in (bob, carol):
            assert await ws.receive_json() == said(bob_id, "bye alice")
        room = chat.rooms.get(DEFAULT_ROOM)
        assert room is not None
        assert alice_id not in {chat.rooms.connection_id(member) for member in room.members}


@pytest.mark.asyncio
async def test_disconnect_reports_every_room_the_leaver_was_in(client: TestClient) -> None:
    async with client.websocket_connect("/ws") as bob, client.websocket_connect("/ws") as carol:
        bob_id = await greeted(bob)
        carol_id = await greeted(carol)
        assert await bob.receive_json() == joined(carol_id)
        await bob.send_json({"type": "join_room", "room": "lobby"})
        assert await bob.receive_json() == {"type": "room_joined", "room": "lobby"}

        async with client.websocket_connect("/ws") as alice:
            alice_id = await greeted(alice)
            for ws in (bob, carol):
                assert await ws.receive_json() == joined(alice_id)
            await alice.send_json({"type": "join_room", "room": "lobby"})
            assert await alice.receive_json() == {"type": "room_joined", "room": "lobby"}
            assert await bob.receive_json() == joined(alice_id, "lobby")

        # bob shares both rooms with alice, carol only general
        assert [await bob.receive_json() for _ in range(2)] == [
            left(alice_id),
            left(alice_id, "lobby"),
        ]
        assert await carol.receive_json() == left(alice_id)
        await assert_silent(bob, carol)
        assert chat.rooms.rooms_of(_member(bob_id)) == {DEFAULT_ROOM, "lobby"}


def _member(connection_id: str) -> WebSocket:
    for room in chat.rooms:
        for member in room.members:
            if chat.rooms.connection_id(member) == connection_id:
                return member
    raise AssertionError(f"connection {connection_id} is in no room")


@pytest.mark.asyncio
async def test_rooms_are_emptied_when_everyone_leaves(client: TestClient) -> None:
    async with client.websocket_connect("/ws") as ws:
        await greeted(ws)
        await ws.send_json({"type": "join_room", "room": "private-room-for-cleanup"})
        assert await ws.receive_json() == {"type": "room_joined", "room": "private-room-for-cleanup"}
        assert "private-room-for-cleanup" in chat.rooms
    assert "private-room-for-cleanup" not in chat.rooms


class UnavailableCluster:
    """A room relay whose other nodes cannot be reached (the cluster's buffer gave up)."""

    def connection_id(self, websocket: WebSocket) -> str:
        return f"node-x/{websocket.id}"

    def room_joined(self, room: str, websocket: WebSocket) -> None:
        pass

    def room_left(self, room: str, websocket: WebSocket) -> None:
        pass

    def room_broadcast(self, room: str, frame: str | bytes, exclude: WebSocket | None) -> None:
        raise ClusterUnavailableError("the backend has been down for more than 5.0s")

    def sequenced(self, room: str) -> bool:
        return False

    async def room_publish(self, room: str, message: Any, exclude: WebSocket | None) -> int:
        raise AssertionError("no room keeps a history here")


@pytest.mark.asyncio
async def test_while_the_cluster_is_unavailable_chat_works_on_this_node_without_a_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    service = ChatService(Rooms(UnavailableCluster()))
    handler = WebSocketHandler()

    @handler.on_connect
    async def connect(websocket: WebSocket) -> None:
        await service.join(websocket, DEFAULT_ROOM)

    @handler.on_message
    async def message(websocket: WebSocket, data: Any) -> None:
        await service.handle(websocket, data)

    @handler.on_disconnect
    async def disconnect(websocket: WebSocket) -> None:
        await service.disconnect(websocket)

    local = Application()

    @local.websocket("/ws")
    async def endpoint(websocket: WebSocket) -> None:
        await handler.handle_connection(websocket)

    say = {"type": "chat_message", "room": DEFAULT_ROOM, "message": "hi"}
    with caplog.at_level(logging.INFO, logger="qakeapi"):
        async with TestClient(local) as test_client, test_client.websocket_connect("/ws") as alice:
            assert await alice.receive_json() == {"type": "room_joined", "room": DEFAULT_ROOM}
            async with test_client.websocket_connect("/ws") as bob:
                assert await bob.receive_json() == {"type": "room_joined", "room": DEFAULT_ROOM}
                assert (await alice.receive_json())["type"] == "user_joined"  # on this node all the same
                for _ in range(20):
                    await alice.send_json(say)
                    for ws in (alice, bob):
                        assert (await ws.receive_json())["message"] == "hi"
                    error = await alice.receive_json()
                    assert error["type"] == "error"
                    assert error["message"].startswith("Not delivered to the other nodes: the backend")
            assert (await alice.receive_json())["type"] == "user_left"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
