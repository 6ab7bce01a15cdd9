"""Guide section "Real-time Chat Application" over the network: ``examples_app.chat_app`` under uvicorn.

Every connection is welcomed and put in room ``general``; the members already there get
``user_joined``. Chat messages reach every member of the room, the sender included, exactly once.
``GET /`` serves the guide's HTML client, which chats in Chromium loaded from there.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.e2e.conftest import Serve, assert_no_message, recv_json
from tests.e2e.servers import ROOT
from tests.reader.page import Page

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio]

GENERAL = "general"
GUIDE = ROOT / "docs" / "guide" / "websockets.rst"
INVALID = {"type": "error", "message": "Invalid message: expected a JSON object with a 'type'"}


async def greeted(ws: ClientConnection) -> str:
    """Read the welcome and the automatic join of ``general``; return the connection id."""
    welcome = await recv_json(ws)
    connection_id = welcome["connection_id"]
    assert isinstance(connection_id, str)
    assert connection_id
    assert welcome == {"type": "welcome", "connection_id": connection_id, "message": "Welcome to the chat!"}
    assert await recv_json(ws) == {"type": "room_joined", "room": GENERAL}
    return connection_id


def said(connection_id: str, message: str, room: str = GENERAL) -> dict[str, str]:
    return {"type": "chat_message", "connection_id": connection_id, "room": room, "message": message}


def joined(connection_id: str, room: str = GENERAL) -> dict[str, str]:
    return {"type": "user_joined", "connection_id": connection_id, "room": room}


def left(connection_id: str, room: str = GENERAL) -> dict[str, str]:
    return {"type": "user_left", "connection_id": connection_id, "room": room}


async def send_json(ws: ClientConnection, message: Any) -> None:
    await ws.send(json.dumps(message))


async def test_rooms_with_several_clients(serve: Serve) -> None:
    server = serve("chat_app")
    url = f"{server.ws_url}/ws"
    async with connect(url) as alice, connect(url) as bob, connect(url) as carol:
        alice_id = await greeted(alice)
        bob_id = await greeted(bob)
        assert await recv_json(alice) == joined(bob_id)
        carol_id = await greeted(carol)
        for ws in (alice, bob):
            assert await recv_json(ws) == joined(carol_id)
        assert len({alice_id, bob_id, carol_id}) == 3

        # a chat reaches every member, the sender included, once
        await send_json(alice, {"type": "chat_message", "room": GENERAL, "message": "Hi all ✓"})
        for ws in (alice, bob, carol):
            assert await recv_json(ws) == said(alice_id, "Hi all ✓")
        await assert_no_message(alice, bob, carol)

        # a second room: only its members hear it
        await send_json(bob, {"type": "join_room", "room": "lobby"})
        assert await recv_json(bob) == {"type": "room_joined", "room": "lobby"}
        await send_json(carol, {"type": "join_room", "room": "lobby"})
        assert await recv_json(carol) == {"type": "room_joined", "room": "lobby"}
        assert await recv_json(bob) == joined(carol_id, "lobby")
        await send_json(carol, {"type": "chat_message", "room": "lobby", "message": "psst"})
        for ws in (bob, carol):
            assert await recv_json(ws) == said(carol_id, "psst", "lobby")
        await assert_no_message(alice, bob, carol)

        # leaving: the leaver gets room_left, the members left get user_left, the leaver hears no more
        await send_json(bob, {"type": "leave_room", "room": "lobby"})
        assert await recv_json(bob) == {"type": "room_left", "room": "lobby"}
        assert await recv_json(carol) == left(bob_id, "lobby")
        await send_json(carol, {"type": "chat_message", "room": "lobby", "message": "alone"})
        assert await recv_json(carol) == said(carol_id, "alone", "lobby")
        await assert_no_message(alice, bob, carol)


async def test_bad_input_gets_errors_and_the_connection_keeps_working(serve: Serve) -> None:
    server = serve("chat_app")
    async with connect(f"{server.ws_url}/ws") as ws:
        connection_id = await greeted(ws)
        await ws.send("this is not JSON")
        await send_json(ws, [1, 2, 3])
        await ws.send(b'{"type": "chat_message", "room": "general", "message": "as bytes"}')
        await send_json(ws, {"type": "dance"})
        await send_json(ws, {"type": "leave_room", "room": "nowhere"})
        await send_json(ws, {"type": "chat_message", "room": "nowhere", "message": "hi"})
        await send_json(ws, {"type": "chat_message"})
        await send_json(ws, {"type": "chat_message", "room": GENERAL, "message": ""})
        assert [await recv_json(ws) for _ in range(8)] == [
            INVALID,
            INVALID,
            INVALID,
            {"type": "error", "message": "Unknown message type: dance"},
            {"type": "error", "message": "Not in room 'nowhere'"},
            {"type": "error", "message": "Not in room 'nowhere'; join it first"},
            {"type": "error", "message": "Missing or invalid 'room'"},
            {"type": "error", "message": "Missing or invalid 'message'"},
        ]
        await send_json(ws, {"type": "chat_message", "room": GENERAL, "message": "still here"})
        assert await recv_json(ws) == said(connection_id, "still here")
        await assert_no_message(ws)
    # the server survived it all
    async with connect(f"{server.ws_url}/ws") as ws:
        await greeted(ws)
    assert server.process.poll() is None


async def test_closing_a_client_tells_the_others_user_left(serve: Serve) -> None:
    server = serve("chat_app")
    url = f"{server.ws_url}/ws"
    async with connect(url) as bob, connect(url) as carol:
        bob_id = await greeted(bob)
        carol_id = await greeted(carol)
        assert await recv_json(bob) == joined(carol_id)
        await send_json(bob, {"type": "join_room", "room": "lobby"})
        assert await recv_json(bob) == {"type": "room_joined", "room": "lobby"}

        alice = await connect(url)
        try:
            alice_id = await greeted(alice)
            for ws in (bob, carol):
                assert await recv_json(ws) == joined(alice_id)
            await send_json(alice, {"type": "join_room", "room": "lobby"})
            assert await recv_json(alice) == {"type": "room_joined", "room": "lobby"}
            assert await recv_json(bob) == joined(alice_id, "lobby")
        finally:
            await alice.close()

        # bob shares both rooms with alice, carol only general
        bob_heard = [await recv_json(bob) for _ in range(2)]
        assert sorted(bob_heard, key=lambda message: message["room"]) == [left(alice_id), left(alice_id, "lobby")]
        assert await recv_json(carol) == left(alice_id)
        await assert_no_message(bob, carol)

        # the leaver is gone: a chat reaches the two left, and nothing fails
        await send_json(bob, {"type": "chat_message", "room": GENERAL, "message": "bye alice"})
        for ws in (bob, carol):
            assert await recv_json(ws) == said(bob_id, "bye alice")
        await assert_no_message(bob, carol)


async def test_index_serves_the_chat_page(serve: Serve) -> None:
    server = serve("chat_app")

    def fetch() -> tuple[int, str, str]:
        with urllib.request.urlopen(f"{server.http_url}/", timeout=5) as response:
            return response.status, response.headers["content-type"], response.read().decode()

    status, content_type, page = await asyncio.to_thread(fetch)
    assert (status, content_type) == (200, "text/html; charset=utf-8")
    assert "new WebSocket('ws://localhost:8000/ws')" in page


async def test_guide_html_client_served_at_index_in_two_browser_pages(serve: Serve, tmp_path: Path) -> None:
    from tests.e2e.browser import run_two_page_chat  # Playwright: only where the browser tests run

    (html,) = [block.code for block in Page.read(GUIDE).blocks if block.language == "html"]
    server = serve("chat_app")
    shots = await run_two_page_chat(html, server, tmp_path)
    assert shots["one"].stat().st_size > 0
    assert shots["two"].stat().st_size > 0


async def test_guide_html_client_opened_at_another_host_is_refused(serve: Serve) -> None:
    """At http://127.0.0.1:<port>/ the page's origin is not ``localhost:8000``, the host it connects to."""
    from playwright.async_api import expect

    from tests.e2e.browser import TIMEOUT_MS, PageLog, launch

    server = serve("chat_app")
    browser, playwright = await launch(server)
    log = PageLog("127.0.0.1 page")
    try:
        page = await browser.new_page()
        log.attach(page)
        response = await page.goto(f"{server.http_url}/")
        assert response is not None
        assert response.status == 200
        messages = page.locator("#messages")
        await expect(messages).to_have_text("System: Disconnected from server", timeout=TIMEOUT_MS)
    finally:
        await browser.close()
        await playwright.stop()
    assert any("WebSocket connection to 'ws://localhost:8000/ws' failed" in line for line in log.console), log.report()
    output = server.output()
    assert f"origin 'http://127.0.0.1:{server.port}' refused (not_allowed); answering 403" in output, output
