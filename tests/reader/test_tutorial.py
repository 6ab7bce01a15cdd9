"""docs/tutorial.rst, followed by a reader: each step's file written as the page says, its commands run.

The reader makes the tutorial's directory once and runs every command there, in one terminal
after another (the page's first block): each step's files are written into the working
directory, and what each command prints is compared with what the page shows.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.e2e.servers import Server, free_port, wait_for_port
from tests.reader.conftest import ROOT, Reader
from tests.reader.page import Block, Page
from tests.reader.shown import assert_printed, assert_server_printed, output_of
from tests.reader.test_guide import assert_stops_cleanly, recv_json
from tests.redis_server import RedisServer

pytestmark = pytest.mark.e2e

PAGE = Page.read(ROOT / "docs" / "tutorial.rst")
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
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
    assert_server_printed(output_of(start, "uvicorn chat:app"), server)
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


def start_nodes(reader: Reader, redis: RedisServer) -> tuple[Server, Server, list[Block]]:
    """Step 4's two nodes, started as the page shows, on the reader's own Redis; the step's other blocks."""
    step = "Step 4: two nodes"
    first, second, *rest = blocks(step)
    reader.shell.env = {"QAKEAPI_REDIS_URL": redis.url}  # the reader's own Redis, as the page allows
    nodes = []
    for block, port in ((first, 8001), (second, 8002)):
        (command,) = block.commands
        assert command.endswith(f"QAKEAPI_NODE_ID=node-{port - 8000} uvicorn chat:app --port {port}")
        (server,) = reader.shell.run_block(block.commands)
        assert isinstance(server, Server)
        assert_server_printed(output_of(block, command), server)
        nodes.append(server)
    return nodes[0], nodes[1], rest


def get_tokens(reader: Reader, block: Block) -> dict[str, str]:
    """Run the block's ``curl`` commands; the tokens they got, by name."""
    issued = {}
    for command in block.commands:
        (answer,) = reader.shell.run_block([command])
        assert isinstance(answer, subprocess.CompletedProcess)
        assert answer.returncode == 0, answer.stderr
        name = json.loads(command.split(" -d ", 1)[1].strip("'"))["name"]
        issued[name] = json.loads(answer.stdout)["token"]
        (shown,) = output_of(block, command)
        assert json.loads(shown).keys() == {"token"}
    assert set(issued) == {"ann", "bob"}
    return issued


async def bob_hears_ann(reader: Reader, bob_block: Block, ann_block: Block, issued: dict[str, str]) -> list[str]:
    """Bob joins (a client of ours), then ann types what the page shows; what bob's terminal shows."""
    (bob_command,) = bob_block.commands
    bob_url = reader.shell.localize(bob_command.split('"')[1].replace("<the token for bob>", issued["bob"]))
    async with connect(bob_url) as bob:
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
        assert_printed(shown, printed, any_number=True)
        said = await asyncio.wait_for(bob.recv(decode=True), 5)
    assert isinstance(joined, str)
    assert isinstance(said, str)
    bob_printed = f"Connected to {bob_url}.\n< {joined}\n< {said}"
    shown = [line.replace("<the token for bob>", issued["bob"]) for line in output_of(bob_block, bob_command)]
    assert_printed(shown, bob_printed, any_number=True)
    return [json.loads(joined)["node"], json.loads(said)["node"], printed]


@pytest.mark.asyncio
async def test_step_4_two_nodes(reader: Reader, private_redis: RedisServer) -> None:
    PAGE.write(reader.workdir, through="Step 4: two nodes")
    node_1, node_2, (tokens, bob_block, ann_block, bob_later) = start_nodes(reader, private_redis)
    assert "localhost:8002" in bob_block.commands[0]
    assert "localhost:8001" in ann_block.commands[0]
    issued = get_tokens(reader, tokens)
    bob_node, ann_node, _ = await bob_hears_ann(reader, bob_block, ann_block, issued)
    assert (bob_node, ann_node) == ("node-2", "node-1"), "bob on node 2 hears ann on node 1"
    assert bob_later.commands == []
    assert "node-1" in bob_later.code
    assert_stops_cleanly(node_1)
    assert_stops_cleanly(node_2)


def nginx_main_config(site: str, directory: Path, *, port: int, nodes: tuple[Server, Server]) -> Path:
    """A main ``nginx.conf`` including the page's ``chat.conf``, its ports swapped for the test's.

    One worker process, so that nginx hands out connections strictly in turn.
    """
    swaps = {
        "listen 8000;": f"listen 127.0.0.1:{port};",
        "server 127.0.0.1:8001;": f"server 127.0.0.1:{nodes[0].port};",
        "server 127.0.0.1:8002;": f"server 127.0.0.1:{nodes[1].port};",
    }
    for documented, local in swaps.items():
        assert site.count(documented) == 1, f"the page's chat.conf no longer has {documented!r}"
        site = site.replace(documented, local)
    (directory / "chat.conf").write_text(site, encoding="utf-8")
    temp = directory / "temp"
    temp.mkdir(mode=0o777)
    temp.chmod(0o777)  # nginx's workers may run as another user
    main = directory / "nginx.conf"
    lines = [
        "daemon off;",
        "worker_processes 1;",
        f"pid {directory}/nginx.pid;",
        f"error_log {directory}/error.log info;",
        "events {}",
        "http {",
        f"    access_log {directory}/access.log;",
        *(f"    {kind}_temp_path {temp}/{kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")),
        f"    include {directory}/chat.conf;",
        "}",
    ]
    main.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return main


@contextmanager
def nginx_in_front(site: str, directory: Path, nodes: tuple[Server, Server], check_shown: list[str]) -> Iterator[int]:
    """nginx with the page's ``chat.conf`` (see :func:`nginx_main_config`), checked first; yield its port."""
    assert Path(NGINX).exists(), "nginx is not installed (apt-get install nginx-light)"
    port = free_port()
    config = nginx_main_config(site, directory, port=port, nodes=nodes)
    check = subprocess.run([NGINX, "-t", "-c", str(config)], capture_output=True, text=True, timeout=30, check=False)
    assert check.returncode == 0, check.stderr
    assert_printed([line.replace("/etc/nginx/nginx.conf", str(config)) for line in check_shown], check.stderr)
    with (directory / "nginx.out").open("wb") as out:
        nginx = subprocess.Popen([NGINX, "-c", str(config)], stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, None)
        yield port
    finally:
        nginx.send_signal(signal.SIGQUIT)  # graceful shutdown
        try:
            nginx.wait(10)
        except subprocess.TimeoutExpired:
            nginx.kill()
            nginx.wait()


@pytest.mark.asyncio
async def test_step_5_one_address(reader: Reader, private_redis: RedisServer, tmp_path: Path) -> None:
    written = PAGE.write(reader.workdir, through="Step 5: one address")
    node_1, node_2, _ = start_nodes(reader, private_redis)
    install, tokens, bob_block, ann_block = blocks("Step 5: one address")
    assert install.commands == [
        "sudo cp chat.conf /etc/nginx/conf.d/tutorial-chat.conf",
        "sudo nginx -t",
        "sudo systemctl reload nginx",
    ]
    site = written["chat.conf"].read_text(encoding="utf-8")
    directory = tmp_path / "nginx"
    directory.mkdir()
    with nginx_in_front(site, directory, (node_1, node_2), output_of(install, "sudo nginx -t")) as port:
        reader.shell.ports[8000] = port  # localhost:8000 in the page's commands is this nginx
        issued = get_tokens(reader, tokens)
        bob_node, ann_node, _ = await bob_hears_ann(reader, bob_block, ann_block, issued)
        assert {bob_node, ann_node} == {"node-1", "node-2"}, "nginx gave them a node each, in turn"
        assert (bob_node, ann_node) == ("node-1", "node-2"), "as the page shows: the two curls took a turn each"
    assert_stops_cleanly(node_1)
    assert_stops_cleanly(node_2)
