"""Tests for qakeapi.core.metrics: GET /metrics in the Prometheus text format, counts that follow traffic."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.parser import text_string_to_metric_families

from qakeapi import (
    Application,
    ClusteredManager,
    WebSocket,
    WebSocketDisconnect,
    WebSocketHandler,
    create_clustered_manager,
)
from qakeapi.core.counters import MESSAGE_SAMPLE
from qakeapi.core.metrics import expose_metrics
from qakeapi.core.rooms import Rooms
from qakeapi.security import AuthConfig, JWTAuthenticator, WebSocketAuthMiddleware
from qakeapi.testing import TestClient, WebSocketDenied
from tests.redis_server import wait_until

pytestmark = pytest.mark.asyncio


def parse(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, by name and sorted labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def make_app(**options: Any) -> Application:
    app = Application()
    handler = WebSocketHandler()

    @handler.on_message
    async def echo(websocket: WebSocket, message: Any) -> None:
        await websocket.send_json({"echo": message})

    @app.websocket("/echo/{name}")
    async def endpoint(websocket: WebSocket, name: str) -> None:
        await handler.handle_connection(websocket)

    expose_metrics(app, node="test-node", **options)
    return app


async def test_metrics_are_served_in_the_prometheus_text_format_with_the_node_label() -> None:
    async with TestClient(make_app(registry=CollectorRegistry())) as client:
        response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    families = {family.name: family for family in text_string_to_metric_families(response.text)}
    assert families["qakeapi_messages_received"].type == "counter"
    assert families["qakeapi_connections"].type == "gauge"
    assert families["qakeapi_delivery_seconds"].type == "histogram"
    for sample in families["qakeapi_messages_sent"].samples:
        assert sample.labels["node"] == "test-node"


async def test_the_other_registry_is_served_too() -> None:
    registry = CollectorRegistry()
    Counter("app_orders", "Orders placed.", registry=registry).inc(3)
    async with TestClient(make_app(registry=registry)) as client:
        samples = parse((await client.get("/metrics")).text)
    assert samples[("app_orders_total", ())] == 3
    assert ("qakeapi_messages_received_total", (("node", "test-node"),)) in samples


async def test_auth_failures_are_counted_by_reason_and_revocations_by_connection() -> None:
    secret = "s" * 32
    app = Application()
    handler = WebSocketHandler()
    auth = WebSocketAuthMiddleware(JWTAuthenticator(AuthConfig(secret)), handler=handler)

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket) -> None:
        await auth(websocket, handler.handle_connection)

    expose_metrics(app, node="auth-node", registry=CollectorRegistry())
    expired = jwt.encode({"sub": "bob", "exp": int(time.time()) - 600}, secret, algorithm="HS256")
    good = jwt.encode({"sub": "ann", "exp": int(time.time()) + 600}, secret, algorithm="HS256")
    key = ("qakeapi_auth_failures_total", (("node", "auth-node"), ("reason", "expired")))
    revoked = ("qakeapi_revocations_total", (("node", "auth-node"),))
    async with TestClient(app) as client:
        before = parse((await client.get("/metrics")).text)
        for _ in range(2):
            async with client.websocket_connect(f"/ws?token={expired}"):
                pass
        async with client.websocket_connect(f"/ws?token={good}") as ws:
            assert await auth.revoke("ann") == 1
            with pytest.raises(WebSocketDisconnect):
                await ws.receive_json()
        after = parse((await client.get("/metrics")).text)
    assert after[key] - before.get(key, 0.0) == 2
    assert after[revoked] - before[revoked] == 1


def delta(after: dict[Any, float], before: dict[Any, float], name: str, **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


def traffic_app() -> tuple[Application, Rooms]:
    app = Application()
    handler = WebSocketHandler()
    rooms = Rooms(max_rooms_per_connection=1)

    @handler.on_connect
    async def join(websocket: WebSocket) -> None:
        rooms.join(websocket.path_params["room"], websocket)
        await websocket.send_json({"type": "welcome"})

    @handler.on_message
    async def relay(websocket: WebSocket, message: Any) -> None:
        if message == "fail":
            raise RuntimeError("on purpose")
        if message == "join another":
            rooms.join("another", websocket)  # past the limit: refused, counted
        room = rooms.get(websocket.path_params["room"])
        assert room is not None
        await room.broadcast({"message": message})

    @handler.on_disconnect
    async def leave(websocket: WebSocket) -> None:
        rooms.leave_all(websocket)

    @app.websocket("/chat/{room}")
    async def endpoint(websocket: WebSocket, room: str) -> None:
        await handler.handle_connection(websocket)

    app.expose_metrics(node="traffic", registry=CollectorRegistry())
    return app, rooms


async def test_counts_follow_the_traffic_by_route_template_never_by_path() -> None:
    app, _ = traffic_app()
    n = "traffic"
    async with TestClient(app, raise_server_exceptions=False) as client:  # the hook error is on purpose
        before = parse((await client.get("/metrics")).text)
        async with client.websocket_connect("/chat/lobby") as ann, client.websocket_connect("/chat/lobby") as bob:
            for ws in (ann, bob):
                assert await ws.receive_json() == {"type": "welcome"}
            during = parse((await client.get("/metrics")).text)
            for text in ("hi", "héllo ✓", "fail", "join another"):
                await ann.send_json(text)
            for ws in (ann, bob):
                assert await ws.receive_json() == {"message": "hi"}
                assert await ws.receive_json() == {"message": "héllo ✓"}
        after = parse((await client.get("/metrics")).text)
    route = "/chat/{room}"
    assert delta(during, before, "qakeapi_connections", node=n, route=route) == 2
    assert delta(after, before, "qakeapi_connections", node=n, route=route) == 0
    assert delta(after, before, "qakeapi_connections_opened_total", node=n, route=route) == 2
    assert delta(after, before, "qakeapi_connections_closed_total", node=n, route=route, code="1000") == 2
    assert not any("lobby" in str(labels) for _, labels in after)  # the path's room name is no label
    assert delta(after, before, "qakeapi_messages_received_total", node=n) == 4
    sent = ['{"type":"welcome"}'] * 2 + ['{"message":"hi"}', '{"message":"héllo ✓"}'] * 2
    assert delta(after, before, "qakeapi_messages_sent_total", node=n) == len(sent)
    assert delta(after, before, "qakeapi_sent_bytes_total", node=n) == sum(len(s.encode()) for s in sent)
    received = ['"hi"', '"héllo ✓"', '"fail"', '"join another"']
    assert delta(after, before, "qakeapi_received_bytes_total", node=n) == sum(len(s.encode()) for s in received)
    assert delta(after, before, "qakeapi_broadcast_recipients_count", node=n) == 2
    assert delta(after, before, "qakeapi_broadcast_recipients_sum", node=n) == 4
    assert delta(after, before, "qakeapi_delivery_seconds_count", node=n) == 2
    hook = f"{__name__}.traffic_app.<locals>.relay"
    assert delta(after, before, "qakeapi_hook_errors_total", node=n, hook=hook) == 2  # "fail", the refused join
    join = f"{__name__}.traffic_app.<locals>.join"
    assert delta(after, before, "qakeapi_hook_duration_seconds_count", node=n, kind="on_connect", hook=join) == 2
    assert delta(after, before, "qakeapi_limit_refusals_total", node=n, kind="room_limit") == 1


async def test_message_hooks_are_timed_one_message_in_sixteen_and_only_when_metrics_are_exposed() -> None:
    app, _ = traffic_app()
    plain = Application()
    handler = WebSocketHandler()

    @handler.on_message
    async def quiet(websocket: WebSocket, message: Any) -> None:
        pass

    @plain.websocket("/plain")
    async def endpoint(websocket: WebSocket) -> None:
        await handler.handle_connection(websocket)

    hook = f"{__name__}.traffic_app.<locals>.relay"
    key = ("qakeapi_hook_duration_seconds_count", (("hook", hook), ("kind", "on_message"), ("node", "traffic")))
    async with TestClient(app) as client, TestClient(plain) as other:
        before = parse((await client.get("/metrics")).text)
        async with client.websocket_connect("/chat/timed") as ws, other.websocket_connect("/plain") as untimed:
            await ws.receive_json()
            for index in range(MESSAGE_SAMPLE * 3):
                await ws.send_json(index)
                assert await ws.receive_json() == {"message": index}
                await untimed.send_json(index)
        after = parse((await client.get("/metrics")).text)
    assert after[key] - before.get(key, 0.0) == 3
    assert not any(f"{__name__}.test_message_hooks" in str(labels) for _, labels in after)


async def test_an_origin_refusal_is_counted_by_reason() -> None:
    app, _ = traffic_app()
    key = ("qakeapi_origin_refusals_total", (("node", "traffic"), ("reason", "not_allowed")))
    async with TestClient(app) as client:
        before = parse((await client.get("/metrics")).text)
        with pytest.raises(WebSocketDenied) as refused:
            await client.websocket_connect("/chat/x", headers={"origin": "https://evil.example"})
        assert (refused.value.status_code, refused.value.detail) == (403, "origin not allowed")
        after = parse((await client.get("/metrics")).text)
    assert after[key] - before.get(key, 0.0) == 1


async def test_each_cluster_node_exports_its_envelopes_lag_peers_and_buffer() -> None:
    def node(name: str) -> tuple[Application, ClusteredManager]:
        app = Application()
        handler = WebSocketHandler()
        manager = create_clustered_manager(handler, "memory://metrics-cluster", name, heartbeat_interval=0.05)
        app.on_startup(manager.start)
        app.on_shutdown(manager.close)

        @handler.on_message
        async def relay(websocket: WebSocket, message: Any) -> None:
            await manager.broadcast(message)

        @app.websocket("/ws")
        async def endpoint(websocket: WebSocket) -> None:
            await manager.handle_connection(websocket)

        app.expose_metrics(registry=CollectorRegistry())
        return app, manager

    (app_a, a), (app_b, b) = node("node-a"), node("node-b")
    async with TestClient(app_a) as on_a, TestClient(app_b) as on_b:
        await wait_until(lambda: len(a.nodes) == 1 and len(b.nodes) == 1, "the nodes hear each other")
        before = parse((await on_a.get("/metrics")).text)
        async with on_a.websocket_connect("/ws") as ann, on_b.websocket_connect("/ws") as bob:
            for n in range(3):
                await ann.send_json(n)
                assert await ann.receive_json() == n
                assert await bob.receive_json() == n
        after = parse((await on_a.get("/metrics")).text)
    assert after[("qakeapi_cluster_nodes", (("node", "node-a"),))] == 2
    assert after[("qakeapi_cluster_nodes", (("node", "node-b"),))] == 2
    assert after[("qakeapi_cluster_backend_up", (("node", "node-a"),))] == 1
    assert delta(after, before, "qakeapi_cluster_envelopes_published_total", node="node-a") >= 3
    assert delta(after, before, "qakeapi_cluster_envelopes_received_total", node="node-b") >= 3
    assert delta(after, before, "qakeapi_cluster_lag_seconds_count", node="node-b") >= 3
    assert ("qakeapi_cluster_publish_buffer", (("node", "node-a"),)) in after
    assert after[("qakeapi_cluster_outage_seconds_total", (("node", "node-a"),))] == 0


async def test_every_way_of_sending_counts_its_frame_and_its_bytes_on_the_wire() -> None:
    # send_text, send_bytes, send_json (text and binary) and send() share one writer, which
    # counts a frame and its UTF-8 size (not its length in characters).
    app = Application()
    frames: list[str | bytes] = ["héllo ✓", b"\x00\xff", '"é"', '"é"'.encode(), "plain"]

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text("héllo ✓")
        await websocket.send_bytes(b"\x00\xff")
        await websocket.send_json("é")
        await websocket.send_json("é", mode="binary")
        await websocket.send({"type": "websocket.send", "text": "plain"})
        await websocket.receive_message()

    app.expose_metrics(node="ways", registry=CollectorRegistry())
    async with TestClient(app) as client:
        before = parse((await client.get("/metrics")).text)
        async with client.websocket_connect("/ws") as ws:
            assert [await ws.receive_text(), await ws.receive_bytes()] == frames[:2]
            assert [await ws.receive_text(), await ws.receive_bytes(), await ws.receive_text()] == frames[2:]
            await ws.send_text("bye")
        after = parse((await client.get("/metrics")).text)
    assert delta(after, before, "qakeapi_messages_sent_total", node="ways") == len(frames)
    wire = sum(len(f.encode()) if isinstance(f, str) else len(f) for f in frames)
    assert delta(after, before, "qakeapi_sent_bytes_total", node="ways") == wire
