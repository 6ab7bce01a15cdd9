"""Rooms: membership bookkeeping and encode-once broadcast."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from qakeapi.core.codec import encode_json
from qakeapi.core.rooms import Room, Rooms
from qakeapi.core.websockets import WebSocket
from qakeapi.exceptions import LoneSurrogateError, QakeAPIError, RoomLimitError
from qakeapi.types import Message


class Peer:
    """A WebSocket driven through raw ASGI callables, recording the frames it is sent."""

    def __init__(self) -> None:
        inbox: asyncio.Queue[Message] = asyncio.Queue()
        inbox.put_nowait({"type": "websocket.connect"})
        self.sent: list[Message] = []
        self.websocket = WebSocket({"type": "websocket", "path": "/ws"}, inbox.get, self._send)

    async def _send(self, message: Message) -> None:
        self.sent.append(message)

    @property
    def frames(self) -> list[str | bytes]:
        return [m.get("text", m.get("bytes")) for m in self.sent if m["type"] == "websocket.send"]


async def open_peers(count: int) -> list[Peer]:
    peers = [Peer() for _ in range(count)]
    for peer in peers:
        await peer.websocket.accept()
    return peers


def make_ws() -> WebSocket:
    return Peer().websocket


# -- Rooms bookkeeping -----------------------------------------------------------------------


def test_join_creates_the_room() -> None:
    rooms, ws = Rooms(), make_ws()
    room = rooms.join("lobby", ws)
    assert room.name == "lobby"
    assert ws in room
    assert len(room) == 1
    assert rooms.get("lobby") is room
    assert "lobby" in rooms
    assert len(rooms) == 1


def test_join_twice_returns_the_same_room() -> None:
    rooms, first, second = Rooms(), make_ws(), make_ws()
    assert rooms.join("lobby", first) is rooms.join("lobby", second)
    assert len(rooms.join("lobby", first)) == 2


def test_get_unknown_room_is_none() -> None:
    assert Rooms().get("nowhere") is None


def test_rooms_of_lists_every_room_joined() -> None:
    rooms, ws, other = Rooms(), make_ws(), make_ws()
    rooms.join("a", ws)
    rooms.join("b", ws)
    rooms.join("c", other)
    assert rooms.rooms_of(ws) == {"a", "b"}
    assert rooms.rooms_of(make_ws()) == frozenset()


def test_leave_removes_membership_and_returns_the_room() -> None:
    rooms, ws, other = Rooms(), make_ws(), make_ws()
    room = rooms.join("a", ws)
    rooms.join("a", other)
    assert rooms.leave("a", ws) is room
    assert ws not in room
    assert rooms.rooms_of(ws) == frozenset()
    assert rooms.get("a") is room


def test_leaving_the_last_member_drops_the_room() -> None:
    rooms, ws = Rooms(), make_ws()
    room = rooms.join("a", ws)
    assert rooms.leave("a", ws) is room
    assert len(room) == 0
    assert rooms.get("a") is None
    assert "a" not in rooms
    assert len(rooms) == 0


def test_leave_when_not_a_member_is_none() -> None:
    rooms, ws = Rooms(), make_ws()
    rooms.join("a", make_ws())
    assert rooms.leave("a", ws) is None
    assert rooms.leave("missing", ws) is None
    assert len(rooms.get("a") or ()) == 1


def test_leave_all_removes_every_membership_in_name_order() -> None:
    rooms, ws, other = Rooms(), make_ws(), make_ws()
    rooms.join("zeta", ws)
    rooms.join("alpha", ws)
    rooms.join("alpha", other)
    left = rooms.leave_all(ws)
    assert [room.name for room in left] == ["alpha", "zeta"]
    assert rooms.rooms_of(ws) == frozenset()
    assert [room.name for room in rooms] == ["alpha"]


def test_leave_all_of_a_stranger_is_empty() -> None:
    assert Rooms().leave_all(make_ws()) == []


def test_iterating_rooms_tolerates_changes() -> None:
    rooms, ws = Rooms(), make_ws()
    rooms.join("a", ws)
    rooms.join("b", ws)
    for room in rooms:
        rooms.leave(room.name, ws)
    assert len(rooms) == 0


# -- Room.broadcast --------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_broadcast_sends_json_to_every_member() -> None:
    peers = await open_peers(3)
    room = Room("r")
    room.members.update(p.websocket for p in peers)
    assert await room.broadcast({"msg": "hi"}) == 3
    assert [p.frames for p in peers] == [['{"msg":"hi"}']] * 3


@pytest.mark.asyncio
async def test_broadcast_sends_str_as_text_and_bytes_as_binary() -> None:
    [peer] = await open_peers(1)
    room = Room("r")
    room.members.add(peer.websocket)
    await room.broadcast("plain")
    await room.broadcast(b"\x00")
    assert peer.sent[-2:] == [
        {"type": "websocket.send", "text": "plain"},
        {"type": "websocket.send", "bytes": b"\x00"},
    ]


@pytest.mark.asyncio
async def test_broadcast_excludes_the_sender() -> None:
    sender, listener = await open_peers(2)
    rooms = Rooms()
    rooms.join("r", sender.websocket)
    room = rooms.join("r", listener.websocket)
    assert await room.broadcast("hi", exclude=sender.websocket) == 1
    assert sender.frames == []
    assert listener.frames == ["hi"]


@pytest.mark.asyncio
async def test_broadcast_encodes_once(monkeypatch: pytest.MonkeyPatch) -> None:
    peers = await open_peers(4)
    room = Room("r")
    room.members.update(p.websocket for p in peers)
    calls: list[Any] = []

    def counting_encode(data: Any) -> str:
        calls.append(data)
        return encode_json(data)

    monkeypatch.setattr("qakeapi.core.websockets.fanout.encode_json", counting_encode)
    monkeypatch.setattr("qakeapi.core.websockets.messages.encode_json", counting_encode)
    assert await room.broadcast([1, 2]) == 4
    assert calls == [[1, 2]]
    assert {p.frames[0] for p in peers} == {"[1,2]"}


@pytest.mark.asyncio
async def test_broadcast_removes_closed_members() -> None:
    alive, closed = await open_peers(2)
    await closed.websocket.close()
    room = Room("r")
    room.members.update([alive.websocket, closed.websocket])
    assert await room.broadcast("hi") == 1
    assert alive.frames == ["hi"]
    assert closed.frames == []
    assert closed.websocket not in room
    assert alive.websocket in room


@pytest.mark.asyncio
async def test_broadcast_to_an_empty_room_is_zero() -> None:
    assert await Room("r").broadcast("hi") == 0


@pytest.mark.asyncio
async def test_room_emptied_by_broadcast_is_dropped_from_rooms() -> None:
    [peer] = await open_peers(1)
    rooms = Rooms()
    room = rooms.join("r", peer.websocket)
    await peer.websocket.close()
    assert await room.broadcast("hi") == 0
    assert rooms.get("r") is None
    assert "r" not in rooms


@pytest.mark.asyncio
async def test_closed_member_removed_by_broadcast_is_forgotten_by_rooms_of() -> None:
    alive, closed = await open_peers(2)
    rooms = Rooms()
    rooms.join("r", alive.websocket)
    room = rooms.join("r", closed.websocket)
    await closed.websocket.close()
    await room.broadcast("hi")
    assert rooms.rooms_of(closed.websocket) == frozenset()


def test_room_repr_names_the_room_and_its_size() -> None:
    room = Room("lobby")
    room.members.add(make_ws())
    assert repr(room) == "<Room 'lobby' members=1>"


# -- limits ----------------------------------------------------------------------------------------


def test_default_limits() -> None:
    rooms = Rooms()
    assert (rooms.max_rooms_per_connection, rooms.max_room_name_length) == (100, 200)


def test_a_join_past_the_room_limit_is_refused_logged_once_and_changes_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, "qakeapi.rooms")
    rooms = Rooms(max_rooms_per_connection=2)
    ws = make_ws()
    rooms.join("a", ws)
    rooms.join("b", ws)
    rooms.join("a", ws)  # already in it: not a new room
    with pytest.raises(RoomLimitError, match="already in 2 rooms, the limit") as raised:
        rooms.join("c", ws)
    assert isinstance(raised.value, QakeAPIError)
    assert isinstance(raised.value, ValueError)
    assert rooms.rooms_of(ws) == {"a", "b"}
    assert "c" not in rooms
    with pytest.raises(RoomLimitError):
        rooms.join("d", ws)  # hammering the limit
    refusals = [r for r in caplog.records if r.name == "qakeapi.rooms" and r.levelname == "WARNING"]
    assert len(refusals) == 1  # logged once per connection, not once per attempt
    assert f"connection={ws.id}" in refusals[0].getMessage()
    rooms.leave_all(ws)
    rooms.join("a", ws)
    rooms.join("b", ws)
    with pytest.raises(RoomLimitError):
        rooms.join("c", ws)
    assert len([r for r in caplog.records if r.name == "qakeapi.rooms" and r.levelname == "WARNING"]) == 2


@pytest.mark.parametrize(
    ("name", "match"), [("", "must not be empty"), ("x" * 11, "11 characters exceeds the limit of 10")]
)
def test_bad_room_names_are_refused(name: str, match: str) -> None:
    rooms = Rooms(max_room_name_length=10)
    with pytest.raises(RoomLimitError, match=match):
        rooms.join(name, make_ws())
    assert len(rooms) == 0
    rooms.join("x" * 10, make_ws())  # exactly the limit is fine


# -- a relay to other nodes ------------------------------------------------------------------------


class RecordingRelay:
    """A :class:`~qakeapi.core.rooms.RoomRelay` that records what it is told."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def connection_id(self, websocket: WebSocket) -> str:
        return f"node-x/{websocket.id}"

    def room_joined(self, room: str, websocket: WebSocket) -> None:
        self.calls.append(("joined", room, websocket))

    def room_left(self, room: str, websocket: WebSocket) -> None:
        self.calls.append(("left", room, websocket))

    def room_broadcast(self, room: str, frame: str | bytes, exclude: WebSocket | None) -> None:
        self.calls.append(("broadcast", room, frame, exclude))

    def sequenced(self, room: str) -> bool:
        return room.startswith("history:")

    async def room_publish(self, room: str, message: Any, exclude: WebSocket | None) -> int:
        self.calls.append(("publish", room, message, exclude))
        return 0


@pytest.mark.asyncio
async def test_the_relay_hears_every_membership_change_once_and_every_broadcast() -> None:
    relay = RecordingRelay()
    rooms = Rooms(relay)
    one, two = await open_peers(2)
    rooms.join("r", one.websocket)
    rooms.join("r", one.websocket)  # no change, no call
    room = rooms.join("r", two.websocket)
    assert await room.broadcast({"a": 1}, exclude=one.websocket) == 1
    assert two.frames == ['{"a":1}']
    rooms.leave("r", two.websocket)
    rooms.leave("r", two.websocket)  # no change, no call
    rooms.leave_all(one.websocket)
    assert relay.calls == [
        ("joined", "r", one.websocket),
        ("joined", "r", two.websocket),
        ("broadcast", "r", '{"a":1}', one.websocket),
        ("left", "r", two.websocket),
        ("left", "r", one.websocket),
    ]
    assert rooms.connection_id(one.websocket) == f"node-x/{one.websocket.id}"
    assert Rooms().connection_id(one.websocket) == str(one.websocket.id)


@pytest.mark.asyncio
async def test_a_sequenced_room_s_broadcast_goes_to_the_relay_only() -> None:
    relay = RecordingRelay()
    rooms = Rooms(relay)
    (one,) = await open_peers(1)
    room = rooms.join("history:r", one.websocket)
    relay.calls.clear()
    assert await room.broadcast({"a": 1}) == 0  # the relay numbers it and delivers it, here too
    assert relay.calls == [("publish", "history:r", {"a": 1}, None)]
    assert one.frames == []


@pytest.mark.asyncio
async def test_broadcast_local_does_not_go_to_the_relay() -> None:
    relay = RecordingRelay()
    rooms = Rooms(relay)
    one, two = await open_peers(2)
    room = rooms.join("r", one.websocket)
    rooms.join("r", two.websocket)
    relay.calls.clear()
    assert room.broadcast_local("here only", exclude=two.websocket) == 1
    for _ in range(5):  # on Python < 3.12 the delivery's task runs at the next turn of the loop
        await asyncio.sleep(0)
    assert one.frames == ["here only"]
    assert two.frames == []
    assert relay.calls == []


@pytest.mark.asyncio
@pytest.mark.parametrize("message", ["\ud800", {"type": "chat", "message": "x\udfff"}], ids=repr)
async def test_a_message_no_member_could_be_sent_is_refused_before_anyone_sees_it(message: Any) -> None:
    relay = RecordingRelay()
    rooms = Rooms(relay)
    one, two = await open_peers(2)
    room = rooms.join("r", one.websocket)
    rooms.join("r", two.websocket)
    relay.calls.clear()
    with pytest.raises(LoneSurrogateError):
        await room.broadcast(message)
    with pytest.raises(ValueError, match="lone surrogate"):
        room.broadcast_local(message)
    assert relay.calls == []  # nothing for the other nodes to choke on
    assert await room.broadcast("still here") == 2
    assert one.frames == two.frames == ["still here"]
    assert set(room.members) == {one.websocket, two.websocket}
