"""The demo chat's server (``examples_app.demo_app``) through the in-process client: the protocol of ``/chat``.

Presence and room counts reach the pages from the cluster's presence hook, a task of its own, so
they may come before or after the answer to a join: :func:`until` reads up to the frame it needs
and returns what came on the way.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from examples_app.demo_app import DEFAULT_ROOMS, RECENT, create_app
from qakeapi.exceptions import WebSocketDisconnect
from qakeapi.testing import TestClient, WebSocketDenied, WebSocketTestSession

pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture
async def client() -> AsyncIterator[TestClient]:
    # a history of its own: memory:// histories live as long as the process
    async with TestClient(create_app(f"memory://demo-{secrets.token_hex(4)}"), timeout=2.0) as test_client:
        yield test_client


async def token(client: TestClient, name: str) -> str:
    response = await client.post("/token", json={"name": name})
    assert response.status_code == 200, response.text
    value = response.json()["token"]
    assert isinstance(value, str)
    return value


async def connect(client: TestClient, name: str) -> WebSocketTestSession:
    return await client.websocket_connect("/chat", subprotocols=["bearer", await token(client, name)])


async def until(ws: WebSocketTestSession, kind: str, limit: int = 20) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Receive frames up to the first of type ``kind``: ``(that frame, the ones before it)``."""
    before: list[dict[str, Any]] = []
    for _ in range(limit):
        frame = await ws.receive_json()
        if frame["type"] == kind:
            return frame, before
        before.append(frame)
    raise AssertionError(f"no {kind!r} in {limit} frames: {before}")


async def join(ws: WebSocketTestSession, room: str = "general", **extra: Any) -> dict[str, Any]:
    await ws.send_json({"type": "join", "room": room, "client": "page-1", **extra})
    joined, _ = await until(ws, "joined")
    return joined


async def test_a_handshake_without_a_token_is_refused(client: TestClient) -> None:
    with pytest.raises(WebSocketDenied) as refused:
        await client.websocket_connect("/chat")
    assert (refused.value.status_code, refused.value.json()) == (401, {"detail": "missing"})


async def test_tokens_are_issued_for_names_only(client: TestClient) -> None:
    assert (await client.post("/token", json={"name": ""})).status_code == 400
    assert (await client.post("/token", json={"name": "x" * 33})).status_code == 400
    assert (await client.post("/token", json=["Ada"])).status_code == 400


async def test_join_say_and_presence_across_two_pages(client: TestClient) -> None:
    ada = await connect(client, "Ada")
    bob = await connect(client, "Bob")
    try:
        welcome = await ada.receive_json()
        assert welcome["type"] == "welcome"
        assert welcome["user"] == "Ada"
        assert [room["name"] for room in welcome["rooms"]] == list(DEFAULT_ROOMS)

        joined = await join(ada)
        assert joined["room"] == "general"
        assert [m["user"] for m in joined["members"]] == ["Ada"]
        assert joined["members"][0]["connection"] == joined["you"]

        joined_bob = await join(bob)
        assert sorted(m["user"] for m in joined_bob["members"]) == ["Ada", "Bob"]
        presence, _ = await until(ada, "presence")
        while not any(m["user"] == "Bob" for m in presence["joins"]):
            presence, _ = await until(ada, "presence")
        assert presence["reason"] == "join"
        assert presence["joins"] == [{"connection": joined_bob["you"], "user": "Bob", "node": "demo-1"}]

        await bob.send_json({"type": "say", "room": "general", "text": "  hello <b>world</b>  "})
        for ws in (ada, bob):
            publication, _ = await until(ws, "publication")
            assert publication["room"] == "general"
            assert publication["offset"] == 1
            said = publication["data"]
            assert {k: said[k] for k in ("type", "room", "from", "client", "text")} == {
                "type": "said",
                "room": "general",
                "from": "Bob",
                "client": "page-1",
                "text": "hello <b>world</b>",
            }
    finally:
        await ada.close()
        await bob.close()


async def test_a_page_that_comes_back_recovers_what_it_missed_once_in_order(client: TestClient) -> None:
    ada = await connect(client, "Ada")
    await join(ada)
    await ada.send_json({"type": "say", "text": "first"})
    first, _ = await until(ada, "publication")
    bob = await connect(client, "Bob")
    await join(bob)
    await bob.close()  # Bob goes away at offset 1
    for text in ("second", "third"):
        await ada.send_json({"type": "say", "text": text})
    bob = await connect(client, "Bob")
    try:
        since = {"epoch": first["epoch"], "offset": first["offset"]}
        await bob.send_json({"type": "join", "room": "general", "client": "b", "since": since})
        recovery, before = await until(bob, "recovery")
        replayed = [frame["data"]["text"] for frame in before if frame["type"] == "publication"]
        assert replayed == ["second", "third"]
        assert recovery["recovered"] is True
        assert recovery["replayed"] == 2
        await until(bob, "joined")

        await bob.send_json(
            {"type": "join", "room": "general", "client": "b", "since": {"epoch": "another", "offset": 1}}
        )
        recovery, before = await until(bob, "recovery")
        assert recovery["recovered"] is False
        assert recovery["epoch"] == first["epoch"]
        assert recovery["offset"] == first["offset"] + 2
        assert not [frame for frame in before if frame["type"] == "publication"]
    finally:
        await ada.close()
        await bob.close()


async def test_switching_rooms_leaves_the_previous_one(client: TestClient) -> None:
    ada = await connect(client, "Ada")
    try:
        await join(ada)
        joined = await join(ada, room="side-room")
        assert [m["user"] for m in joined["members"]] == ["Ada"]
        rooms, _ = await until(ada, "rooms")
        while {r["name"]: r["online"] for r in rooms["rooms"]}.get("general", 0) != 0:
            rooms, _ = await until(ada, "rooms")
        assert {r["name"]: r["online"] for r in rooms["rooms"]}["side-room"] == 1
        await ada.send_json({"type": "leave", "room": "side-room"})
        left, _ = await until(ada, "left")
        assert left == {"type": "left", "room": "side-room"}
    finally:
        await ada.close()


async def test_a_page_that_enters_a_room_sees_its_latest_messages(client: TestClient) -> None:
    ada = await connect(client, "Ada")
    bob = await connect(client, "Bob")
    try:
        await join(ada)
        for i in range(RECENT + 3):
            await ada.send_json({"type": "say", "text": str(i)})
        for i in range(RECENT + 3):  # said, and numbered, before Bob comes
            assert (await until(ada, "publication"))[0]["data"]["text"] == str(i)
        await bob.send_json({"type": "join", "room": "general", "client": "b"})
        recovery, before = await until(bob, "recovery", limit=RECENT + 10)
        assert recovery["recovered"] is True
        replayed = [f["data"]["text"] for f in before if f["type"] == "publication"]
        assert replayed == [str(i) for i in range(3, RECENT + 3)]
    finally:
        await ada.close()
        await bob.close()


@pytest.mark.parametrize(
    ("message", "error"),
    [
        ("not json", "expected a JSON object whose type is one of"),
        ({"type": "dance"}, "expected a JSON object whose type is one of"),
        ({"type": "say", "text": "hi"}, "join a room first"),
        ({"type": "join", "room": "../etc", "client": "c"}, "a room name is 1 to 24"),
        ({"type": "join", "room": "general", "client": "<x>"}, "'client' is 1 to 64"),
        ({"type": "join", "room": "general", "client": "c", "since": {"epoch": 1}}, "a position is"),
    ],
)
async def test_bad_input_gets_a_clear_error_and_keeps_the_connection(
    client: TestClient, message: Any, error: str
) -> None:
    ws = await connect(client, "Ada")
    try:
        await ws.receive_json()
        if isinstance(message, str):
            await ws.send_text(message)
        else:
            await ws.send_json(message)
        answer, _ = await until(ws, "error")
        assert answer["message"].startswith(error), answer
        await join(ws)  # still usable
    finally:
        await ws.close()


async def test_empty_and_overlong_messages_are_refused_and_ping_is_answered(client: TestClient) -> None:
    ws = await connect(client, "Ada")
    try:
        await join(ws)
        await ws.send_json({"type": "say", "text": "   "})
        assert (await until(ws, "error"))[0]["message"] == "say something: 'text' is empty"
        await ws.send_json({"type": "say", "text": "x" * 2001})
        assert (await until(ws, "error"))[0]["message"] == "a message is at most 2000 characters"
        await ws.send_json({"type": "ping"})
        await until(ws, "pong")
    finally:
        await ws.close()


async def test_signing_out_closes_the_users_pages_with_4003(client: TestClient) -> None:
    value = await token(client, "Ada")
    ws = await client.websocket_connect("/chat", subprotocols=["bearer", value])
    await ws.receive_json()
    assert (await client.post("/api/revoke")).status_code == 401
    answer = await client.post("/api/revoke", headers={"authorization": f"Bearer {value}"})
    assert answer.json() == {"user": "Ada", "closed": 1}
    with pytest.raises(WebSocketDisconnect, match="4003"):
        await until(ws, "no such frame")


async def test_the_page_the_client_and_the_guide_client_are_served(client: TestClient) -> None:
    page = await client.get("/")
    assert page.status_code == 200
    assert 'src="/static/demo.js"' in page.text
    url = page.text.split('"qakeapi": "', 1)[1].split('"', 1)[0]
    assert url.startswith("/qakeapi/qakeapi-")
    script = await client.get(url)
    assert script.headers["content-type"] == "text/javascript; charset=utf-8"
    assert "export class Client" in script.text
    assert (await client.get("/static/demo.js")).headers["content-type"] == "text/javascript; charset=utf-8"
    assert (await client.get("/static/demo.css")).headers["content-type"] == "text/css; charset=utf-8"
    assert (await client.get("/static/favicon.svg")).headers["content-type"] == "image/svg+xml"
    assert (await client.get("/favicon.ico")).status_code == 200
    assert (await client.get("/static/chat.html")).status_code == 404  # assets are listed, not any file
    assert (await client.get("/static/..%2Fdemo_app.py")).status_code == 404
    guide = await client.get("/guide-client")
    assert "ws://localhost:8000/ws" in guide.text  # the guide's client, verbatim
