"""Every example app serves its Prometheus metrics at ``GET /metrics``."""

from __future__ import annotations

import importlib

import pytest
from prometheus_client.parser import text_string_to_metric_families

from qakeapi.testing import TestClient

pytestmark = pytest.mark.asyncio

EXAMPLES = ["auth_app", "basic_app", "chat_app", "cluster_app", "demo_app", "history_app", "patterns", "websocket_app"]


@pytest.mark.parametrize("name", EXAMPLES)
async def test_the_example_serves_metrics(name: str) -> None:
    app = importlib.import_module(f"examples_app.{name}").app
    client = TestClient(app)  # no lifespan: the cluster examples need no Redis to be scraped
    response = await client.get("/metrics")
    assert response.status_code == 200
    names = {family.name for family in text_string_to_metric_families(response.text)}
    assert {"qakeapi_connections", "qakeapi_messages_received", "qakeapi_cluster_nodes"} <= names
