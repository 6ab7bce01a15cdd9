"""docs/tutorial.rst, followed by a reader: each step's file written as the page says, its commands run.

The reader makes the tutorial's directory once and runs every command there, in one terminal
after another (the page's first block): each step's files are written into the working
directory, and what each command prints is compared with what the page shows.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.e2e.servers import Server
from tests.reader.conftest import ROOT, Reader
from tests.reader.page import Block, Page
from tests.reader.shown import assert_printed, output_of
from tests.reader.test_guide import assert_stops_cleanly, recv_json
from tests.redis_server import RedisServer

pytestmark = pytest.mark.e2e

PAGE = Page.read(ROOT / "docs" / "tutorial.rst")
TITLE = "Tutorial: a chat, step by step"


def blocks(step: str) -> list[Block]:
    """The console blocks of ``step``, in order."""
    return [block for block in PAGE.blocks if block.language == "console" and block.section == step]


def test_the_reader_changes_directory_once() -> None:
    (first,) = blocks(TITLE)
    assert first.commands == ["mkdir tutorial", "cd tutorial"]
    commands = [command for block in PAGE.blocks if block.language == "console" for command in block.commands]
    assert commands.count("cd tutorial") == 1, "every later command runs where the first block left the reader"
    assert all(block.target is None or "/" not in block.target.path for block in PAGE.blocks)


def start_step(reader: Reader, step: str) -> tuple[Server, list[Block]]:
    PAGE.write(reader.workdir, through=step)
    start, *rest = blocks(step)
    assert start.commands == ["uvicorn chat:app"]
    (server,) = reader.shell.run_block(start.commands)
    assert isinstance(server, Server)
    assert_printed(output_of(start, "uvicorn chat:app"), server.output(), any_number=True)
    return server, rest


def typed(block: Block) -> str:
    """What the page tells the reader to type (the ``> `` lines), as the client's input."""
    return "".join(line[2:] + "\n" for line in block.code.splitlines() if line.startswith("> "))


@pytest.mark.asyncio
async def test_step_1_one_room(reader: Reader) -> None:
    server, (ann_block, bob_block) = start_step(reader, "Step 1: one room for everyone")
    command = "python -m websockets ws://localhost:8000/chat"
    assert ann_block.commands == bob_block.commands == [command]
    async with connect(f"{server.ws_url}/chat") as bob:
        assert typed(ann_block) == '"hi all"\n'
        printed = await asyncio.to_thread(
            reader.shell.interact, command, reader.workdir, typed(ann_block), "Connected to"
        )
        assert_printed(output_of(ann_block, command), printed)
        frame = await asyncio.wait_for(bob.recv(decode=True), 5)
        assert isinstance(frame, str)
        assert json.loads(frame)["text"] == "hi all"
        # The second terminal prints each frame after "< ", as it came.
        assert_printed(
            output_of(bob_block, command), f"Connected to ws://localhost:8000/chat.\n< {frame}", any_number=True
        )
    assert_stops_cleanly(server)


@pytest.mark.asyncio
async def test_step_2_rooms(reader: Reader) -> None:
    server, (talk,) = start_step(reader, "Step 2: rooms")
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

    (command,) = talk.commands
    printed = await asyncio.to_thread(reader.shell.interact, command, reader.workdir, typed(talk), '"type":"error"')
    assert_printed(output_of(talk, command), printed, any_number=True)
    assert_stops_cleanly(server)


@pytest.mark.asyncio
async def test_step_3_names(reader: Reader) -> None:
    server, (get_token, talk, refused_block) = start_step(reader, "Step 3: who is talking")
    (answer,) = reader.shell.run_block(get_token.commands)
    assert isinstance(answer, subprocess.CompletedProcess)
    assert answer.returncode == 0, answer.stderr
    token = json.loads(answer.stdout)["token"]
    (shown,) = output_of(get_token, get_token.commands[0])
    assert json.loads(shown).keys() == {"token"}
    assert re.fullmatch(r"eyJ[\w-]+\.eyJ[\w-]+\.[\w-]+", token), "the token has the shape the page shows"
    async with connect(f"{server.ws_url}/chat?token={token}") as ann:
        await ann.send(json.dumps({"type": "join", "room": "python"}))
        assert await recv_json(ann) == {"type": "joined", "room": "python"}
        await ann.send(json.dumps({"type": "say", "room": "python", "text": "hi"}))
        assert await recv_json(ann) == {"type": "said", "room": "python", "from": "ann", "text": "hi"}
    with pytest.raises(InvalidStatus) as refused:
        await connect(f"{server.ws_url}/chat")
    assert refused.value.response.status_code == 401
    assert refused.value.response.headers["WWW-Authenticate"].startswith("Bearer ")

    (command,) = talk.commands
    printed = await asyncio.to_thread(
        reader.shell.interact, command.replace("<the token>", token), reader.workdir, typed(talk), '"from":"ann"'
    )
    assert_printed([line.replace("<the token>", token) for line in output_of(talk, command)], printed)

    (command,) = refused_block.commands
    (result,) = reader.shell.run_block([command])
    assert isinstance(result, subprocess.CompletedProcess)
    assert result.returncode == 1
    assert_printed(output_of(refused_block, command), result.stdout + result.stderr)
    assert_stops_cleanly(server)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    directory = tmp_path / "redis"
    directory.mkdir()
    with RedisServer(directory) as server:
        yield server


@pytest.mark.asyncio
async def test_step_4_two_nodes(reader: Reader, private_redis: RedisServer) -> None:
    step = "Step 4: two nodes"
    PAGE.write(reader.workdir, through=step)
    first, second, tokens, bob_block, ann_block, bob_later = blocks(step)
    reader.shell.env = {"REDIS_URL": private_redis.url}  # the reader's own Redis, as the page allows
    nodes = []
    for block, port in ((first, 8001), (second, 8002)):
        (command,) = block.commands
        assert command.endswith(f"NODE_ID=node-{port - 8000} uvicorn chat:app --port {port}")
        (server,) = reader.shell.run_block(block.commands)
        assert isinstance(server, Server)
        assert_printed(output_of(block, command), server.output(), any_number=True)
        nodes.append(server)
    node_1, node_2 = nodes

    issued = {}
    for command in tokens.commands:
        (answer,) = reader.shell.run_block([command])
        assert isinstance(answer, subprocess.CompletedProcess)
        assert answer.returncode == 0, answer.stderr
        name = json.loads(command.split(" -d ", 1)[1].strip("'"))["name"]
        issued[name] = json.loads(answer.stdout)["token"]
        (shown,) = output_of(tokens, command)
        assert json.loads(shown).keys() == {"token"}
    assert set(issued) == {"ann", "bob"}

    # Bob, on node 2, with the token node 2 issued; ann on node 1, typing what the page shows.
    (bob_command,) = bob_block.commands
    assert "localhost:8002" in bob_command
    bob_url = bob_command.split('"')[1].replace("<the token for bob>", issued["bob"])
    async with connect(bob_url.replace("localhost:8002", f"127.0.0.1:{node_2.port}")) as bob:
        await bob.send(json.dumps({"type": "join", "room": "python"}))
        joined = await asyncio.wait_for(bob.recv(decode=True), 5)
        (ann_command,) = ann_block.commands
        printed = await asyncio.to_thread(
            reader.shell.interact,
            ann_command.replace("<the token for ann>", issued["ann"]),
            reader.workdir,
            typed(ann_block),
            '"from":"ann"',
        )
        shown = [line.replace("<the token for ann>", issued["ann"]) for line in output_of(ann_block, ann_command)]
        assert_printed(shown, printed)
        said = await asyncio.wait_for(bob.recv(decode=True), 5)
        assert isinstance(joined, str)
        assert isinstance(said, str)
        bob_printed = f"Connected to {bob_url}.\n< {joined}\n< {said}"
        shown = [line.replace("<the token for bob>", issued["bob"]) for line in output_of(bob_block, bob_command)]
        assert_printed(shown, bob_printed)
        assert_printed(bob_later.code.splitlines(), bob_printed)
    assert_stops_cleanly(node_1)
    assert_stops_cleanly(node_2)
