"""Bad JSON over the network: never a traceback per message, and one message never breaks a room.

- ``NaN`` and ``Infinity`` are not JSON, so they arrive as text; one log line, no traceback.
- Text in is text out: JSON that decodes to something that could not be sent back (a lone
  surrogate ``"\\ud800"``, ``1e400``, an integer of 5,000 digits, nesting deeper than
  :data:`~qakeapi.core.codec.MAX_DEPTH`) arrives as text too, so a room of ten members keeps
  receiving after one of them sends ``"\\ud800"``, on every uvicorn WebSocket implementation,
  and a cluster of two nodes on Redis keeps publishing.
- A seeded fuzz of 1,000 random and adversarial frames costs a bounded number of log lines, and
  the connection answers every one of them.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.e2e.conftest import Serve, assert_no_message, generate_token, recv_json
from tests.e2e.servers import SERVERS, server_command
from tests.redis_server import RedisServer

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio]

UVICORN = [name for name in SERVERS if name.startswith("uvicorn-")]
MEMBERS = 10
POISON = '{"type": "chat_message", "room": "general", "message": "\\ud800"}'
INVALID = {"type": "error", "message": "Invalid message: expected a JSON object with a 'type'"}


def uvicorn_args(name: str) -> tuple[str, ...]:
    """The ``--ws``/``--loop`` arguments of the uvicorn implementation ``name`` (see ``SERVERS``)."""
    command = server_command(name, "app:app", 0)
    return tuple(command[command.index("--ws") :])


ROUTINE = (
    "Started server process",
    "Waiting for application",
    "Application startup",
    "Uvicorn running",
    "Shutting down",
    "Application shutdown",
    "Finished server process",
    "connection open",
    "connection closed",
    '"WebSocket /ws"',
    "started on channel",
)


def log_lines(output: str) -> list[str]:
    """The lines QakeAPI and uvicorn logged, without the server's routine start, stop and access lines."""
    return [line for line in output.splitlines() if line.strip() and not any(part in line for part in ROUTINE)]


async def test_nan_messages_are_text_logged_once_and_the_connection_keeps_working(serve: Serve) -> None:
    server = serve("basic_app")
    bad = '{"value": NaN, "other": -Infinity}'
    async with connect(f"{server.ws_url}/ws") as ws:
        assert (await recv_json(ws))["type"] == "welcome"
        for _ in range(200):
            await ws.send(bad)
            assert await recv_json(ws) == {"type": "echo", "data": bad}
        await ws.send(json.dumps({"value": 1.5}))
        assert await recv_json(ws) == {"type": "echo", "data": {"value": 1.5}}
    server.stop()
    output = server.output()
    assert "Traceback" not in output
    assert output.count("a message was refused as JSON (NaN/Infinity)") == 1, output
    assert "200 messages were refused as JSON (NaN/Infinity)" in output
    assert len(output) < 4000  # 200 bad messages cost a few lines, not 200 tracebacks


async def join(url: str, members: list[ClientConnection]) -> ClientConnection:
    """Connect one more member of ``general``: it is greeted, the others hear it joined."""
    ws = await connect(url)
    assert (await recv_json(ws))["type"] == "welcome"
    assert await recv_json(ws) == {"type": "room_joined", "room": "general"}
    for member in members:
        assert (await recv_json(member))["type"] == "user_joined"
    members.append(ws)
    return ws


@pytest.mark.parametrize("implementation", UVICORN)
async def test_a_lone_surrogate_never_breaks_a_room(serve: Serve, implementation: str) -> None:
    server = serve("chat_app", args=uvicorn_args(implementation))
    url = f"{server.ws_url}/ws"
    members: list[ClientConnection] = []
    try:
        for _ in range(MEMBERS):
            await join(url, members)
        poisoner, *others = members
        for _ in range(3):
            await poisoner.send(POISON)
            assert await recv_json(poisoner) == INVALID  # a clear answer to the sender, as for any bad JSON
        await assert_no_message(*others)
        for sender in (poisoner, others[4], others[-1]):  # everyone still hears everyone
            await sender.send(json.dumps({"type": "chat_message", "room": "general", "message": "still here ✓"}))
            for member in members:
                message = await recv_json(member)
                assert (message["type"], message["message"]) == ("chat_message", "still here ✓")
        pair = json.dumps({"type": "chat_message", "room": "general", "message": "\ud83d\ude00"})  # a pair is fine
        await poisoner.send(pair)
        for member in members:
            assert (await recv_json(member))["message"] == "\U0001f600"
        before_leaving = server.output()
        assert "sending failed" not in before_leaving, before_leaving  # nobody was cut off
    finally:
        for member in members:
            await member.close()
    server.stop()
    output = server.output()
    assert "Traceback" not in output, output
    assert "cluster publisher lost its connection" not in output, output
    assert output.count("a message was refused as JSON (lone surrogate)") == 1, output


async def next_chat(ws: ClientConnection) -> str:
    """The text of the next chat message on ``ws``, skipping membership news from the other node."""
    while True:
        message = await recv_json(ws)
        if message["type"] == "chat_message":
            text: str = message["message"]
            return text


async def test_a_lone_surrogate_never_stalls_a_cluster(serve: Serve, redis_server: RedisServer) -> None:
    nodes = [
        serve("chat_app", env={"QAKEAPI_REDIS_URL": redis_server.url, "QAKEAPI_NODE_ID": f"chat-{n}"}) for n in (1, 2)
    ]
    members: list[ClientConnection] = []
    try:
        for n in range(6):
            ws = await connect(f"{nodes[n % 2].ws_url}/ws")
            members.append(ws)
            assert (await recv_json(ws))["type"] == "welcome"
            assert await recv_json(ws) == {"type": "room_joined", "room": "general"}
        poisoner = members[0]
        for _ in range(3):
            await poisoner.send(POISON)
        for sender in (members[1], poisoner):  # on the other node, then on the poisoner's own
            text = f"from {members.index(sender)}"
            await sender.send(json.dumps({"type": "chat_message", "room": "general", "message": text}))
            for member in members:
                assert await next_chat(member) == text
        before_leaving = "".join(node.output() for node in nodes)
    finally:
        for member in members:
            await member.close()
    assert "Traceback" not in before_leaving, before_leaving
    assert "sending failed" not in before_leaving, before_leaving
    assert "cluster publisher lost its connection" not in before_leaving, before_leaving
    assert before_leaving.count("a message was refused as JSON (lone surrogate)") == 1, before_leaving


# -- a seeded network fuzz ----------------------------------------------------------------------

FUZZ_MESSAGES = 1000
MAX_LOG_LINES = 20  # per 1,000 messages: one per kind refused, the counts at the end, a few more
NUMBERS = ("1e400", "-1e400", "1E309", "-0", "-0.0", "1e-400", "9" * 5000, "-" + "9" * 4300, "1.5e308", "0.1")


def fuzz_value(rng: random.Random, depth: int = 0) -> str:
    """Random JSON text (not always valid), biased to what once broke a connection or flooded a log."""
    roll = rng.random()
    if roll < 0.2 or depth > 3:
        escaped = "".join(
            f"\\u{rng.choice([rng.randrange(0xD800, 0xE000), rng.randrange(0x10000)]):04x}" for _ in range(3)
        )
        return json.dumps(rng.choice(["plain", "é ✓", "\U0001f600"])) if rng.random() < 0.3 else f'"{escaped}"'
    if roll < 0.45:
        return rng.choice((*NUMBERS, "NaN", "Infinity", "-Infinity", str(rng.randrange(-(10**30), 10**30))))
    if roll < 0.55:
        levels = rng.choice([2, 64, 256, 257, 1000, 5000])
        return "[" * levels + "]" * levels
    if roll < 0.8:
        return "[" + ",".join(fuzz_value(rng, depth + 1) for _ in range(rng.randrange(4))) + "]"
    items = ",".join(f"{fuzz_value(rng, 4)}:{fuzz_value(rng, depth + 1)}" for _ in range(rng.randrange(3)))
    return "{" + items + "}"


def fuzz_frame(rng: random.Random) -> str | bytes:
    roll = rng.random()
    if roll < 0.6:
        return f'{{"type": "message", "data": {fuzz_value(rng)}}}'
    if roll < 0.75:
        return fuzz_value(rng)
    if roll < 0.85:
        return rng.randbytes(rng.randrange(64))
    if roll < 0.95:
        return "".join(chr(rng.choice([rng.randrange(32, 127), rng.randrange(0xA0, 0xD800)])) for _ in range(20))
    return rng.choice(['{"type": "message"', "{", '{"type": 1}', "null", '{"type": "unknown"}'])


@pytest.mark.parametrize("implementation", UVICORN)
async def test_a_network_fuzz_costs_a_bounded_number_of_log_lines(
    serve: Serve, implementation: str, tmp_path: Path
) -> None:
    server = serve("websocket_app", args=uvicorn_args(implementation))
    rng = random.Random(f"issue-16-{implementation}")
    async with connect(f"{server.ws_url}/ws", max_size=None) as ws:
        assert (await recv_json(ws))["type"] == "welcome"
        for n in range(FUZZ_MESSAGES):
            frame = fuzz_frame(rng)
            await ws.send(frame)
            reply = await recv_json(ws)  # exactly one answer per frame, whatever it was
            assert reply["type"] in ("echo", "error"), (n, frame, reply)
        await ws.send(json.dumps({"type": "message", "data": {"n": -0.0, "big": 10**300}}))
        assert await recv_json(ws) == {"type": "echo", "data": {"type": "message", "data": {"n": -0.0, "big": 10**300}}}
    server.stop()
    output = server.output()
    assert "Traceback" not in output, output
    assert len(log_lines(output)) <= MAX_LOG_LINES, "\n".join(log_lines(output))


async def test_binary_frames_to_the_auth_example_are_answered_without_a_traceback(serve: Serve) -> None:
    server = serve("auth_app")
    token = await generate_token(server, "alice")
    async with connect(f"{server.ws_url}/ws?token={token}") as ws:
        assert (await recv_json(ws))["type"] == "welcome"
        for n in range(200):
            await ws.send(bytes([n]) * 10)
            reply = await recv_json(ws)
            assert reply["type"] == "error"
        await ws.send(json.dumps({"x": 1}))
        assert await recv_json(ws) == {"type": "message", "data": {"x": 1}, "user": "alice"}
    server.stop()
    output = server.output()
    assert "Traceback" not in output, output
    assert len(log_lines(output)) <= MAX_LOG_LINES, "\n".join(log_lines(output))
