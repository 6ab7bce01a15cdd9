"""docs/tutorial.rst, followed by a reader: each step's file written as the page says, its commands run."""

from __future__ import annotations

import asyncio
import json
import subprocess

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.e2e.servers import Server
from tests.reader.conftest import ROOT, Reader
from tests.reader.page import Page
from tests.reader.test_guide import assert_stops_cleanly, recv_json

pytestmark = pytest.mark.e2e

PAGE = Page.read(ROOT / "docs" / "tutorial.rst")


def start_step(reader: Reader, step: str) -> tuple[Server, list[list[str]]]:
    PAGE.write(reader.workdir, through=step)
    start, *rest = PAGE.commands(step)
    assert start == ["cd tutorial", "uvicorn chat:app"]
    (server,) = reader.shell.run_block(start)
    assert isinstance(server, Server)
    return server, rest


@pytest.mark.asyncio
async def test_step_1_one_room(reader: Reader) -> None:
    server, _ = start_step(reader, "Step 1: one room for everyone")
    async with connect(f"{server.ws_url}/chat") as ann, connect(f"{server.ws_url}/chat") as bob:
        await ann.send(json.dumps("hi all"))
        assert (await recv_json(bob))["text"] == "hi all"
    assert_stops_cleanly(server)


@pytest.mark.asyncio
async def test_step_2_rooms(reader: Reader) -> None:
    server, _ = start_step(reader, "Step 2: rooms")
    async with connect(f"{server.ws_url}/chat") as ann, connect(f"{server.ws_url}/chat") as bob:
        for ws in (ann, bob):
            await ws.send(json.dumps({"type": "join", "room": "python"}))
            assert await recv_json(ws) == {"type": "joined", "room": "python"}
        await bob.send(json.dumps({"type": "say", "room": "python", "text": "hi"}))
        for ws in (ann, bob):
            said = await recv_json(ws)
            assert (said["type"], said["text"]) == ("said", "hi")
        await ann.send(json.dumps({"type": "say", "room": "rust", "text": "anyone?"}))
        assert (await recv_json(ann))["type"] == "error"
    assert_stops_cleanly(server)


@pytest.mark.asyncio
async def test_step_3_names(reader: Reader) -> None:
    server, (get_token, talk) = start_step(reader, "Step 3: who is talking")
    (answer,) = reader.shell.run_block(get_token)
    assert isinstance(answer, subprocess.CompletedProcess)
    assert answer.returncode == 0, answer.stderr
    token = json.loads(answer.stdout)["token"]
    async with connect(f"{server.ws_url}/chat?token={token}") as ann:
        await ann.send(json.dumps({"type": "join", "room": "python"}))
        assert await recv_json(ann) == {"type": "joined", "room": "python"}
        await ann.send(json.dumps({"type": "say", "room": "python", "text": "hi"}))
        assert await recv_json(ann) == {"type": "said", "room": "python", "from": "ann", "text": "hi"}
    with pytest.raises(InvalidStatus) as refused:
        await connect(f"{server.ws_url}/chat")
    assert refused.value.response.status_code == 401
    assert refused.value.response.headers["WWW-Authenticate"].startswith("Bearer ")
    (command,) = talk
    printed = await asyncio.to_thread(
        reader.shell.interact,
        command.replace("<the token>", token),
        reader.workdir,
        json.dumps({"type": "join", "room": "r"}) + "\n",
        '{"type":"joined","room":"r"}',
    )
    assert "joined" in printed
    assert_stops_cleanly(server)
