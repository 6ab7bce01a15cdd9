"""The guide's "WebSocket Clustering" app (``examples_app.cluster_app``) against the real Redis.

The app runs in-process inside ``async with TestClient(app)``, so its lifespan starts and stops
the clustered manager. Each test points the manager at a channel of its own, so other Redis
users (other test runs, the guide's own test) cannot publish into it.

The app and its manager are module-level objects, and the manager's asyncio primitives belong to
the first event loop that uses them, so the in-process tests share one event loop for the
module. Serving the app again in a *new* loop is tested in a fresh interpreter
(:func:`test_app_can_be_served_again_in_a_new_event_loop`).
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from redis.asyncio import Redis

from examples_app import settings
from examples_app.cluster_app import NODE, app, clustered_manager, ws_handler
from qakeapi.core.cluster.envelope import Envelope, Kind, decode_envelope, encode_envelope
from qakeapi.testing import TestClient, WebSocketTestSession
from tests.redis_server import wait_until

WELCOME = {"type": "welcome", "node": NODE}


@pytest_asyncio.fixture(loop_scope="module")
async def client(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[TestClient]:
    monkeypatch.setattr(clustered_manager, "channel", f"qakeapi-test-examples-cluster:{uuid.uuid4().hex}")
    async with TestClient(app) as test_client:
        yield test_client
    assert clustered_manager.connections == 0


@pytest_asyncio.fixture(loop_scope="module")
async def redis() -> AsyncIterator[Redis]:
    connection = Redis.from_url(settings.redis_url())
    try:
        yield connection
    finally:
        await connection.aclose()


async def assert_silent(*sessions: WebSocketTestSession) -> None:
    """Nothing more arrives on any of ``sessions``."""
    for ws in sessions:
        with pytest.raises(TimeoutError):
            await ws.receive_json(timeout=0.1)


def broadcast(data: Any, node: str = NODE) -> dict[str, Any]:
    return {"type": "message", "data": data, "node": node}


@pytest.mark.asyncio(loop_scope="module")
async def test_welcome_names_the_node(client: TestClient) -> None:
    async with client.websocket_connect("/ws") as ws:
        assert await ws.receive_json() == WELCOME
        await assert_silent(ws)


@pytest.mark.asyncio(loop_scope="module")
async def test_broadcast_reaches_every_client_exactly_once(client: TestClient) -> None:
    async with client.websocket_connect("/ws") as first, client.websocket_connect("/ws") as second:
        assert await first.receive_json() == WELCOME
        assert await second.receive_json() == WELCOME
        await first.send_json({"text": "to everyone"})
        expected = broadcast({"text": "to everyone"})
        assert await first.receive_json() == expected
        assert await second.receive_json() == expected
        await assert_silent(first, second)

        await second.send_text("plain text")
        assert await first.receive_json() == broadcast("plain text")
        assert await second.receive_json() == broadcast("plain text")
        await assert_silent(first, second)


@pytest.mark.asyncio(loop_scope="module")
async def test_broadcasts_arrive_in_order(client: TestClient) -> None:
    async with (
        client.websocket_connect("/ws") as first,
        client.websocket_connect("/ws") as second,
        client.websocket_connect("/ws") as third,
    ):
        for ws in (first, second, third):
            assert await ws.receive_json() == WELCOME
        for n in range(10):
            await first.send_json({"n": n})
        for ws in (first, second, third):
            assert [await ws.receive_json() for _ in range(10)] == [broadcast({"n": n}) for n in range(10)]
        await assert_silent(first, second, third)
        assert clustered_manager.connections == 3


@pytest.mark.asyncio(loop_scope="module")
async def test_a_closed_client_no_longer_receives(client: TestClient) -> None:
    async with client.websocket_connect("/ws") as stayer:
        assert await stayer.receive_json() == WELCOME
        async with client.websocket_connect("/ws") as leaver:
            assert await leaver.receive_json() == WELCOME
        await stayer.send_json("after")
        assert await stayer.receive_json() == broadcast("after")
        await assert_silent(stayer)
        assert clustered_manager.connections == 1


@pytest.mark.asyncio(loop_scope="module")
async def test_broadcast_is_published_on_the_redis_stream(client: TestClient, redis: Redis) -> None:
    async with client.websocket_connect("/ws") as ws:
        assert await ws.receive_json() == WELCOME
        await ws.send_json({"text": "over redis"})
        assert await ws.receive_json() == broadcast({"text": "over redis"})

        async def published() -> list[Envelope]:
            entries: Any = await redis.xrange(clustered_manager.channel)
            envelopes = [decode_envelope(fields[b"d"]) for _id, fields in entries]
            return [e for e in envelopes if e.kind is Kind.ALL]

        async def arrived() -> bool:
            return bool(await published())

        await wait_until(arrived, "the broadcast reached the stream")
        (envelope,) = await published()
        assert (envelope.node, envelope.instance) == (NODE, clustered_manager.instance_id)
        assert envelope.seq == clustered_manager.outbox.last_seq
        assert envelope.frame == '{"type":"message","data":{"text":"over redis"},"node":"' + NODE + '"}'


@pytest.mark.asyncio(loop_scope="module")
async def test_broadcast_from_another_node_reaches_local_clients(client: TestClient, redis: Redis) -> None:
    async with client.websocket_connect("/ws") as first, client.websocket_connect("/ws") as second:
        assert await first.receive_json() == WELCOME
        assert await second.receive_json() == WELCOME
        frame = '{"type":"message","data":"from afar","node":"node-2"}'
        envelope = Envelope(Kind.ALL, "0123456789ab", "node-2", 1, {}, frame)
        await redis.xadd(clustered_manager.channel, {"d": encode_envelope(envelope)})
        for ws in (first, second):
            assert await ws.receive_json() == broadcast("from afar", node="node-2")
        await assert_silent(first, second)


@pytest.mark.asyncio(loop_scope="module")
async def test_lifespan_starts_and_stops_the_manager(monkeypatch: pytest.MonkeyPatch, redis: Redis) -> None:
    channel = f"qakeapi-test-examples-cluster:{uuid.uuid4().hex}"
    monkeypatch.setattr(clustered_manager, "channel", channel)
    async with TestClient(app) as client:
        # startup started the node before any connection was made: its heartbeats reach the stream
        async def exists() -> bool:
            return bool(await redis.exists(channel))

        await wait_until(exists, "the node's first heartbeat")
        async with client.websocket_connect("/ws") as ws:
            assert await ws.receive_json() == WELCOME
    entries: Any = await redis.xrevrange(channel, count=1)
    last = decode_envelope(entries[0][1][b"d"])
    assert (last.kind, last.instance) == (Kind.BYE, clustered_manager.instance_id)  # shutdown said goodbye
    assert len(ws_handler.connections) == 0


# -- settings -------------------------------------------------------------------------------


def test_node_id_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QAKEAPI_NODE_ID", "node-7")
    assert settings.node_id() == "node-7"


def test_node_id_defaults_to_node_1(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QAKEAPI_NODE_ID", raising=False)
    assert settings.node_id() == "node-1"


def test_redis_url_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QAKEAPI_REDIS_URL", "redis://redis.example:6380/2")
    assert settings.redis_url() == "redis://redis.example:6380/2"


def test_redis_url_defaults_to_localhost(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QAKEAPI_REDIS_URL", raising=False)
    assert settings.redis_url() == "redis://localhost:6379"


def _import_cluster_app(env: dict[str, str]) -> list[str]:
    code = (
        "import examples_app.cluster_app as m; "
        "print(m.NODE); print(m.clustered_manager.node_id); print(m.clustered_manager.backend.safe_url)"
    )
    clean = {k: v for k, v in os.environ.items() if k not in ("QAKEAPI_NODE_ID", "QAKEAPI_REDIS_URL")}
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", code],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout.splitlines()


def test_cluster_app_takes_its_node_and_redis_from_the_environment() -> None:
    lines = _import_cluster_app({"QAKEAPI_NODE_ID": "node-2", "QAKEAPI_REDIS_URL": "redis://user:pw@10.0.0.9:6390/3"})
    assert lines == ["node-2", "node-2", "redis://10.0.0.9:6390/3"]


def test_cluster_app_defaults() -> None:
    assert _import_cluster_app({}) == ["node-1", "node-1", "redis://localhost:6379"]


RESTART_SCRIPT = """
import asyncio, uuid
from examples_app.cluster_app import NODE, app, clustered_manager
from qakeapi.testing import TestClient

clustered_manager.channel = f"qakeapi-test-examples-cluster:{uuid.uuid4().hex}"

async def serve_once(text: str) -> None:
    async with TestClient(app, timeout=2) as client, client.websocket_connect("/ws") as ws:
        assert await ws.receive_json() == {"type": "welcome", "node": NODE}
        await ws.send_json(text)
        assert await ws.receive_json() == {"type": "message", "data": text, "node": NODE}

asyncio.run(serve_once("first loop"))
asyncio.run(serve_once("second loop"))
print("served twice")
"""


def test_app_can_be_served_again_in_a_new_event_loop() -> None:
    """After a full lifespan (startup, shutdown) the app serves again under a new event loop.

    That is what a test suite with a loop per test, or a server restarted in-process, does.
    """
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", RESTART_SCRIPT], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.splitlines() == ["served twice"]
