"""The demo chat's server (``examples_app.demo_app``) through the in-process client: the protocol of ``/chat``."""

from __future__ import annotations

from typing import Any

import pytest

from examples_app.demo_app import DEFAULT_ROOMS, HISTORY, create_app
from qakeapi.testing import TestClient, WebSocketTestSession


def rooms(**online: int) -> list[dict[str, Any]]:
    names = list(DEFAULT_ROOMS) + sorted(name for name in online if name not in DEFAULT_ROOMS)
    return [{"name": name, "online": online.get(name, 0)} for name in names]


async def enter(ws: WebSocketTestSession, name: str, client: str, room: str = "general") -> dict[str, Any]:
    """Join ``room``; return the ``joined`` answer (after the ``rooms`` update that follows it)."""
    await ws.send_json({"type": "join", "name": name, "room": room, "client": client})
    joined = await ws.receive_json()
    assert joined["type"] == "joined", joined
    assert (await ws.receive_json())["type"] == "presence"
    assert (await ws.receive_json())["type"] == "rooms"
    return dict(joined)


@pytest.mark.asyncio
async def test_join_say_presence_and_history() -> None:
    client = TestClient(create_app(), timeout=2.0)
    async with client.websocket_connect("/chat") as ada, client.websocket_connect("/chat") as bob:
        assert await ada.receive_json() == {"type": "welcome", "rooms": rooms()}
        assert await bob.receive_json() == {"type": "welcome", "rooms": rooms()}

        joined = await enter(ada, "Ada", "page-a")
        assert joined == {
            "type": "joined",
            "room": "general",
            "you": {"name": "Ada", "client": "page-a"},
            "members": [{"name": "Ada", "client": "page-a"}],
            "history": [],
        }
        assert await bob.receive_json() == {"type": "rooms", "rooms": rooms(general=1)}

        await ada.send_json({"type": "say", "text": "  hello <b>world</b>  "})
        said = await ada.receive_json()
        assert {k: said[k] for k in ("type", "room", "name", "client", "text")} == {
            "type": "message",
            "room": "general",
            "name": "Ada",
            "client": "page-a",
            "text": "hello <b>world</b>",
        }
        assert isinstance(said["ts"], int)

        joined = await enter(bob, "Bob", "page-b")
        assert joined["history"] == [said]
        assert joined["members"] == [{"name": "Ada", "client": "page-a"}, {"name": "Bob", "client": "page-b"}]
        assert await ada.receive_json() == {"type": "system", "room": "general", "text": "Bob joined"}
        assert await ada.receive_json() == {"type": "presence", "room": "general", "members": joined["members"]}
        assert await ada.receive_json() == {"type": "rooms", "rooms": rooms(general=2)}


@pytest.mark.asyncio
async def test_switching_rooms_and_leaving() -> None:
    client = TestClient(create_app(), timeout=2.0)
    async with client.websocket_connect("/chat") as ada, client.websocket_connect("/chat") as bob:
        await ada.receive_json()
        await bob.receive_json()
        await enter(ada, "Ada", "a")
        await bob.receive_json()  # rooms
        await enter(bob, "Bob", "b")
        for _ in range(3):  # system, presence, rooms
            await ada.receive_json()

        joined = await enter(bob, "Bob", "b", room="side-room")
        assert joined["members"] == [{"name": "Bob", "client": "b"}]
        assert await ada.receive_json() == {"type": "system", "room": "general", "text": "Bob left"}
        assert await ada.receive_json() == {
            "type": "presence",
            "room": "general",
            "members": [{"name": "Ada", "client": "a"}],
        }
        assert await ada.receive_json() == {"type": "rooms", "rooms": rooms(general=1, **{"side-room": 1})}

        await ada.send_json({"type": "say", "text": "anyone?"})
        assert (await ada.receive_json())["text"] == "anyone?"
        with pytest.raises(TimeoutError):  # bob is in another room now
            await bob.receive_json(timeout=0.1)

    async with client.websocket_connect("/chat") as carol:
        assert await carol.receive_json() == {"type": "welcome", "rooms": rooms()}


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("message", "error"),
    [
        ("not json", "expected a JSON object with a 'type'"),
        ({"type": "dance"}, "unknown message type 'dance'"),
        ({"type": "say", "text": "hi"}, "join a room first"),
        ({"type": "join", "name": "", "room": "general", "client": "c"}, "a name is 1 to 32 printable characters"),
        ({"type": "join", "name": "x" * 33, "room": "general", "client": "c"}, "a name is 1 to 32"),
        ({"type": "join", "name": "bell\x07", "room": "general", "client": "c"}, "a name is 1 to 32"),
        ({"type": "join", "name": "Ada", "room": "../etc", "client": "c"}, "a room name is 1 to 24"),
        ({"type": "join", "name": "Ada", "room": "general", "client": "<x>"}, "'client' is 1 to 64"),
    ],
)
async def test_bad_input_gets_a_clear_error_and_keeps_the_connection(message: Any, error: str) -> None:
    async with TestClient(create_app(), timeout=2.0).websocket_connect("/chat") as ws:
        await ws.receive_json()
        if isinstance(message, str):
            await ws.send_text(message)
        else:
            await ws.send_json(message)
        answer = await ws.receive_json()
        assert answer["type"] == "error"
        assert answer["message"].startswith(error)
        await enter(ws, "Ada", "c")  # still usable


@pytest.mark.asyncio
async def test_empty_and_overlong_messages_are_refused() -> None:
    async with TestClient(create_app(), timeout=2.0).websocket_connect("/chat") as ws:
        await ws.receive_json()
        await enter(ws, "Ada", "c")
        await ws.send_json({"type": "say", "text": "   "})
        assert await ws.receive_json() == {"type": "error", "message": "say something: 'text' is empty"}
        await ws.send_json({"type": "say", "text": "x" * 2001})
        assert await ws.receive_json() == {"type": "error", "message": "a message is at most 2000 characters"}


@pytest.mark.asyncio
async def test_history_keeps_the_latest_messages() -> None:
    client = TestClient(create_app(), timeout=2.0)
    async with client.websocket_connect("/chat") as ada:
        await ada.receive_json()
        await enter(ada, "Ada", "a")
        for i in range(HISTORY + 5):
            await ada.send_json({"type": "say", "text": str(i)})
            await ada.receive_json()
    async with client.websocket_connect("/chat") as bob:
        await bob.receive_json()
        history = (await enter(bob, "Bob", "b"))["history"]
    assert [m["text"] for m in history] == [str(i) for i in range(5, HISTORY + 5)]


@pytest.mark.asyncio
async def test_the_page_its_assets_and_the_guide_client_are_served() -> None:
    client = TestClient(create_app())
    page = await client.get("/")
    assert page.status_code == 200
    assert 'src="/static/demo.js"' in page.text
    assert (await client.get("/static/demo.js")).headers["content-type"] == "text/javascript; charset=utf-8"
    assert (await client.get("/static/demo.css")).headers["content-type"] == "text/css; charset=utf-8"
    assert (await client.get("/static/favicon.svg")).headers["content-type"] == "image/svg+xml"
    assert (await client.get("/favicon.ico")).status_code == 200
    assert (await client.get("/static/chat.html")).status_code == 404  # assets are listed, not any file
    assert (await client.get("/static/..%2Fdemo_app.py")).status_code == 404
    guide = await client.get("/guide-client")
    assert "ws://localhost:8000/ws" in guide.text  # the guide's client, verbatim
