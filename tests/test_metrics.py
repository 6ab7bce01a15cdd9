"""Tests for qakeapi.core.metrics: GET /metrics in the Prometheus text format, counts that follow traffic."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.parser import text_string_to_metric_families

from qakeapi import Application, WebSocket, WebSocketHandler
from qakeapi.core.metrics import expose_metrics
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
