"""Tests for qakeapi.core.metrics: GET /metrics in the Prometheus text format, counts that follow traffic."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.parser import text_string_to_metric_families

from qakeapi import Application, WebSocket, WebSocketDisconnect, WebSocketHandler
from qakeapi.core.metrics import expose_metrics
from qakeapi.security.websocket_auth import AuthConfig, JWTAuthenticator, WebSocketAuthMiddleware
from qakeapi.testing import TestClient

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
