"""The guide, followed by a reader: its files written as it says, its commands run as it shows.

Each test writes the files the guide has asked for from its top to the end of one section, runs
that section's commands (servers under uvicorn, tests under pytest, the token under curl) in
the reader's virtualenv, and talks to the servers with the ``websockets`` client, or Chromium.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import socket
import subprocess
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.e2e.servers import Server
from tests.reader.conftest import Reader
from tests.reader.page import Block
from tests.reader.shown import assert_printed, assert_server_printed, output_of

pytestmark = pytest.mark.e2e

RECV_TIMEOUT = 5.0


async def recv_json(ws: ClientConnection, timeout: float = RECV_TIMEOUT) -> Any:
    """The next message of ``ws``, decoded, waiting at most ``timeout`` seconds."""
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


def console_blocks(reader: Reader, section: str) -> list[Block]:
    """The console blocks of ``section``, in order."""
    return [block for block in reader.page.blocks if block.language == "console" and block.section == section]


def assert_start_shown(reader: Reader, section: str, server: Server) -> None:
    """The server printed what the section's start command shows (process ids and ports aside)."""
    (start, *_) = console_blocks(reader, section)
    assert_server_printed(output_of(start, start.commands[-1]), server)


def servers(results: list[Server | subprocess.CompletedProcess[str]]) -> list[Server]:
    found = [result for result in results if isinstance(result, Server)]
    assert len(found) == len(results), f"expected only servers, got {results}"
    return found


UVICORN_DENIAL_ERROR = re.compile(
    r"^(INFO: +connection rejected \(\d{3} [^)]*\)\n)ERROR: +ASGI callable returned without completing handshake\.\n",
    re.MULTILINE,
)
"""uvicorn's websockets-sansio protocol (the default with ``websockets`` installed, 0.54 at least)
logs this ERROR after every handshake refused with an HTTP response (QakeAPI's 401 and 403),
though the client got the response: https://github.com/Kludex/uvicorn/pull/3138. Only right
after uvicorn's own "connection rejected" line is it not counted as an error."""


def assert_stops_cleanly(server: Server) -> None:
    """Ctrl+C: the server runs its shutdown hooks and exits 0, logging no error.

    The one ERROR line let through is uvicorn's right after a refused handshake
    (:data:`UVICORN_DENIAL_ERROR`).
    """
    code = server.stop()
    output = server.output()
    assert code == 0, output
    assert "Application shutdown complete." in output, output
    assert "ERROR" not in UVICORN_DENIAL_ERROR.sub(r"\1", output), output


@pytest.mark.asyncio
async def test_echo(reader: Reader) -> None:
    reader.page.write(reader.workdir, through="Basic WebSocket Setup")
    start, talk = reader.page.commands("Basic WebSocket Setup")
    assert start == ["cd echo", "uvicorn main:app"]
    (server,) = servers(reader.shell.run_block(start))
    start_block, talk_block = console_blocks(reader, "Basic WebSocket Setup")
    assert_server_printed(output_of(start_block, start[1]), server)

    async with connect(f"{server.ws_url}/ws") as ws:
        assert await recv_json(ws) == {"type": "welcome", "message": "Connected!"}
        await ws.send(json.dumps({"text": "hi"}))
        assert await recv_json(ws) == {"type": "echo", "data": {"text": "hi"}}
        await ws.send("plain text")
        assert await recv_json(ws) == {"type": "echo", "data": "plain text"}

    assert talk == ["python -m websockets ws://localhost:8000/ws"]
    printed = await asyncio.to_thread(
        reader.shell.interact, talk[0], reader.workdir, '{"text": "hi"}\n', '{"type":"echo","data":{"text":"hi"}}'
    )
    assert '{"type":"welcome","message":"Connected!"}' in printed
    assert_printed(output_of(talk_block, talk[0]), printed)
    assert_stops_cleanly(server)


@pytest.mark.asyncio
async def test_authentication(reader: Reader) -> None:
    section = "WebSocket with Authentication"
    reader.page.write(reader.workdir, through=section)
    start, get_token, talk = reader.page.commands(section)
    assert start == ["cd auth", "uvicorn main:app"]
    (server,) = servers(reader.shell.run_block(start))
    assert "InsecureKeyWarning" in server.output(), "the page warns the reader about this warning"
    start_block, token_block, talk_block = console_blocks(reader, section)
    assert_server_printed(output_of(start_block, start[1]), server)

    (curl,) = get_token
    assert curl.startswith("curl ")
    assert "localhost:8000/api/generate-token" in curl
    answer = reader.shell.run(curl, reader.workdir)
    assert answer.returncode == 0, answer.stderr
    token = json.loads(answer.stdout)["token"]
    (shown_answer,) = output_of(token_block, curl)
    assert json.loads(shown_answer).keys() == {"token"}
    assert re.fullmatch(r"eyJ[\w-]+\.eyJ[\w-]+\.[\w-]+", token), "the token has the shape the page shows"

    async with connect(f"{server.ws_url}/ws?token={token}") as ws:
        assert await recv_json(ws) == {"type": "welcome", "message": "Welcome, alice!"}
        await ws.send(json.dumps({"text": "hi"}))
        assert await recv_json(ws) == {"type": "message", "data": {"text": "hi"}, "user": "alice"}
    async with connect(f"{server.ws_url}/ws", additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        assert await recv_json(ws) == {"type": "welcome", "message": "Welcome, alice!"}
    async with connect(f"{server.ws_url}/ws", subprotocols=["bearer", token]) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == "bearer"
        assert await recv_json(ws) == {"type": "welcome", "message": "Welcome, alice!"}
    for bad in ("", "not-a-token", token[:-4] + "AAAA"):
        async with connect(f"{server.ws_url}/ws?token={bad}") as ws:
            assert await recv_json(ws) == {"type": "auth_required", "message": "Please authenticate"}
            await ws.send(json.dumps({"text": "hi"}))
            assert await recv_json(ws) == {"type": "error", "message": "Authentication required"}

    (command,) = talk
    assert "<the token>" in command
    printed = await asyncio.to_thread(
        reader.shell.interact,
        command.replace("<the token>", token),
        reader.workdir,
        '{"text": "hi"}\n',
        '"user":"alice"}',
    )
    assert "Welcome, alice!" in printed
    shown = [line.replace("<the token>", token) for line in output_of(talk_block, command)]
    assert_printed(shown, printed)
    assert "/ws?token=[redacted]" in server.output(), "the page shows the server's log line"
    assert token not in server.output().replace(f"token={token}", ""), "a token reached the server log"
    assert_stops_cleanly(server)


@pytest.mark.asyncio
async def test_chat_rooms(reader: Reader) -> None:
    section = "Real-time Chat Application"
    reader.page.write(reader.workdir, through=section)
    (start,) = reader.page.commands(section)
    assert start == ["cd chat", "uvicorn main:app"]
    (server,) = servers(reader.shell.run_block(start))
    assert_start_shown(reader, section, server)

    async with connect(f"{server.ws_url}/ws") as alice, connect(f"{server.ws_url}/ws") as bob:
        alice_id = (await recv_json(alice))["connection_id"]
        bob_id = (await recv_json(bob))["connection_id"]
        await alice.send(json.dumps({"type": "join_room", "room": "lobby"}))
        assert await recv_json(alice) == {"type": "room_joined", "room": "lobby"}
        assert await recv_json(alice) == {"type": "user_joined", "connection_id": alice_id, "room": "lobby"}
        await bob.send(json.dumps({"type": "join_room", "room": "lobby"}))
        assert await recv_json(bob) == {"type": "room_joined", "room": "lobby"}
        joined = {"type": "user_joined", "connection_id": bob_id, "room": "lobby"}
        assert await recv_json(bob) == joined
        assert await recv_json(alice) == joined
        await alice.send(json.dumps({"type": "chat_message", "room": "lobby", "message": "Hi Bob"}))
        said = {"type": "chat_message", "connection_id": alice_id, "room": "lobby", "message": "Hi Bob"}
        assert await recv_json(alice) == said
        assert await recv_json(bob) == said
        await bob.send(json.dumps({"type": "dance"}))
        assert await recv_json(bob) == {"type": "error", "message": "Unknown message type"}
        await alice.close()
        assert await recv_json(bob) == {"type": "user_left", "connection_id": alice_id}
    assert_stops_cleanly(server)


def redis_is_listening() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 6379), 1).close()
    except OSError:
        return False
    return True


@pytest.mark.asyncio
async def test_clustered_broadcast_across_two_processes(reader: Reader) -> None:
    section = "WebSocket Clustering"
    assert redis_is_listening(), "the guide's cluster needs Redis on localhost:6379 (scripts/services.sh starts it)"
    reader.page.write(reader.workdir, through=section)
    first, second = reader.page.commands(section)
    assert first == ["cd cluster", "uvicorn main:app --port 8001"]
    assert second == ["cd cluster", "uvicorn main:app --port 8002"]
    (node_a,) = servers(reader.shell.run_block(first))
    (node_b,) = servers(reader.shell.run_block(second))
    for block, command, node in zip(console_blocks(reader, section), (first, second), (node_a, node_b), strict=True):
        assert_server_printed(output_of(block, command[1]), node)

    # The Redis server is shared with other test runs: recognise our messages by a nonce.
    nonce = secrets.token_hex(8)

    async def next_of_ours(ws: ClientConnection) -> Any:
        while True:
            message = await recv_json(ws)
            if isinstance(message.get("data"), dict) and message["data"].get("nonce") == nonce:
                return message

    async with connect(f"{node_a.ws_url}/ws") as on_a, connect(f"{node_b.ws_url}/ws") as on_b:
        assert await recv_json(on_a) == {"type": "welcome"}
        assert await recv_json(on_b) == {"type": "welcome"}
        await on_a.send(json.dumps({"nonce": nonce, "text": "from a"}))
        expected = {"type": "message", "data": {"nonce": nonce, "text": "from a"}, "node": "node-1"}
        assert await next_of_ours(on_a) == expected
        assert await next_of_ours(on_b) == expected
        await on_b.send(json.dumps({"nonce": nonce, "text": "from b"}))
        expected = {"type": "message", "data": {"nonce": nonce, "text": "from b"}, "node": "node-1"}
        assert await next_of_ours(on_b) == expected
        assert await next_of_ours(on_a) == expected
    assert_stops_cleanly(node_a)
    assert_stops_cleanly(node_b)


def pytest_outcome(output: str) -> dict[str, int]:
    """``{"passed": 2, "failed": 2}`` from pytest's last line."""
    last = output.strip().splitlines()[-1].strip("= ")
    counts = {}
    for part in last.split(" in ")[0].split(", "):
        number, _, what = part.partition(" ")
        counts[what] = int(number)
    return counts


def test_testing_section(reader: Reader) -> None:
    section = "Testing WebSocket Applications"
    reader.page.write(reader.workdir, through=section)
    originals, corrected = reader.page.commands(section)
    assert originals == ["cd testing", "pytest test_app.py"]
    (run,) = reader.shell.run_block(originals)
    assert isinstance(run, subprocess.CompletedProcess)
    first = run
    # As the page says: two of the four fail, on the welcome they never read.
    assert pytest_outcome(run.stdout) == {"failed": 2, "passed": 2}, run.stdout
    failures = sorted(line for line in run.stdout.splitlines() if line.startswith("FAILED "))
    assert [line.split(" - ")[0] for line in failures] == [
        "FAILED test_app.py::test_websocket_chat_room",
        "FAILED test_app.py::test_websocket_error_handling",
    ], run.stdout
    assert "AssertionError: assert 'welcome' == 'room_joined'" in run.stdout
    assert "AssertionError: assert 'welcome' == 'error'" in run.stdout
    # The page's pytest.ini sets what pytest-asyncio asks for: no deprecation warning, no warning at all.
    assert "Deprecation" not in run.stdout + run.stderr, run.stdout
    assert "warnings summary" not in run.stdout, run.stdout

    assert corrected == ["cd testing", "pytest test_chat.py"]
    (run,) = reader.shell.run_block(corrected)
    assert isinstance(run, subprocess.CompletedProcess)
    assert run.returncode == 0, run.stdout
    assert pytest_outcome(run.stdout) == {"passed": 2}, run.stdout
    shown = [block for block in reader.page.blocks if block.language == "console" and block.section == section]
    assert_printed(output_of(shown[0], originals[1]), first.stdout, any_number=True)
    assert_printed(output_of(shown[1], corrected[1]), run.stdout, any_number=True)


def test_performance_section(reader: Reader) -> None:
    section = "Performance Testing"
    reader.page.write(reader.workdir, through=section)
    (command,) = reader.page.commands(section)
    assert command == ["cd testing", "pytest -s -k performance test_app.py"]
    (run,) = reader.shell.run_block(command)
    assert isinstance(run, subprocess.CompletedProcess)
    assert run.returncode == 0, run.stdout
    assert "Sent 100 messages in " in run.stdout
    assert "messages/second" in run.stdout
    assert pytest_outcome(run.stdout) == {"passed": 2, "deselected": 4}, run.stdout
    (shown,) = [block for block in reader.page.blocks if block.commands == command]
    assert_printed(output_of(shown, command[1]), run.stdout, any_number=True)


@pytest.mark.asyncio
async def test_html_client_in_two_browser_pages(reader: Reader) -> None:
    section = "WebSocket Client Example"
    written = reader.page.write(reader.workdir, through=section)
    (start,) = reader.page.commands(section)
    assert start == ["cd chat", "uvicorn main:app"]
    (server,) = servers(reader.shell.run_block(start))
    assert_start_shown(reader, section, server)
    from tests.reader.browser import open_from_file, run_guide_chat  # Playwright: only where the browser tests run

    shots = await run_guide_chat(written["chat/chat.html"], server, reader.workdir)
    assert shots["one"].stat().st_size > 0
    assert '"GET / HTTP/1.1" 200' in server.output()

    # What the guide says of the file: opened from disk, its handshake (Origin: null) is refused.
    console = await open_from_file(written["chat/chat.html"], server)
    assert any("WebSocket connection to 'ws://localhost:8000/ws' failed" in line for line in console), console
    output = server.output()
    assert "origin 'null' refused" in output, output
    assert '"WebSocket /ws" 403' in output, output

    # What the guide says of the address uvicorn prints: opened as http://127.0.0.1:<port>/, the
    # page's origin is not the host it connects to (localhost:8000), and it is refused.
    assert "Uvicorn running on http://127.0.0.1:" in output
    shown = await page_at_loopback_address(server)
    assert shown == "System: Disconnected from server", shown
    output = server.output()
    assert f"origin 'http://127.0.0.1:{server.port}' refused (not_allowed); answering 403" in output, output
    assert_stops_cleanly(server)


async def page_at_loopback_address(server: Server) -> str:
    """Open the chat page at http://127.0.0.1:<port>/ (the address uvicorn prints); return what it shows."""
    from playwright.async_api import expect

    from tests.e2e.browser import TIMEOUT_MS, launch

    browser, playwright = await launch(server)
    try:
        page = await browser.new_page()
        response = await page.goto(f"http://127.0.0.1:{server.port}/")
        assert response is not None
        assert response.status == 200
        messages = page.locator("#messages")
        await expect(messages).to_have_text("System: Disconnected from server", timeout=TIMEOUT_MS)
        return await messages.inner_text()
    finally:
        await browser.close()
        await playwright.stop()


@pytest.mark.asyncio
async def test_connection_pool(reader: Reader) -> None:
    section = "Connection Pooling"
    reader.page.write(reader.workdir, through=section)
    (start,) = reader.page.commands(section)
    assert start == ["cd patterns", "uvicorn pool:app"]
    (server,) = servers(reader.shell.run_block(start))
    assert_start_shown(reader, section, server)
    async with connect(f"{server.ws_url}/pool") as first, connect(f"{server.ws_url}/pool") as second:
        await first.send("hello")
        for ws in (first, second):
            assert (await recv_json(ws))["text"] == "hello"
    async with connect(f"{server.ws_url}/pool") as third:  # the closed ones are dropped on the next broadcast
        await third.send("again")
        assert (await recv_json(third))["text"] == "again"
    assert_stops_cleanly(server)


@pytest.mark.asyncio
async def test_message_queue(reader: Reader) -> None:
    section = "Message Queuing"
    reader.page.write(reader.workdir, through=section)
    (start,) = reader.page.commands(section)
    assert start == ["cd patterns", "uvicorn message_queue:app"]
    (server,) = servers(reader.shell.run_block(start))
    assert_start_shown(reader, section, server)
    async with connect(f"{server.ws_url}/queue") as first, connect(f"{server.ws_url}/queue") as second:
        for text in ("one", "two", "three"):
            await first.send(text)
        for ws in (first, second):
            assert [(await recv_json(ws))["text"] for _ in range(3)] == ["one", "two", "three"]
    assert_stops_cleanly(server)
