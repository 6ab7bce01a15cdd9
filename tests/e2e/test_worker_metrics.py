"""Metrics under ``uvicorn --workers 2``: whichever worker answers a scrape reports the server's totals.

The workers share ``QAKEAPI_METRICS_DIR``. Clients connect (the kernel spreads them over the
workers), send, and stay; once both workers have written a reading that holds the traffic (each
writes one a second), every scrape -- each a new HTTP connection, answered by either worker --
reports every connection and every message, however they were spread.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import urllib.request
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect

from qakeapi.core.snapshot import from_data
from tests.e2e.conftest import recv_json
from tests.e2e.servers import Server, uvicorn_server

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio]

CLIENTS = 8
MESSAGES_EACH = 3
ROUTE = "/rooms/{room}"


def scrape(server: Server) -> dict[str, float]:
    """The server's connections open, opened and messages received, summed over the samples of this route."""
    with urllib.request.urlopen(f"{server.http_url}/metrics", timeout=5) as response:
        text = response.read().decode()
    out = {"qakeapi_connections": 0.0, "qakeapi_connections_opened_total": 0.0, "qakeapi_messages_received_total": 0.0}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in out and sample.labels.get("route", ROUTE) == ROUTE:
                out[sample.name] += sample.value
    return out


def written(directory: Path, name: str) -> float:
    """``name`` added up over the readings the workers wrote to ``directory`` (their files lag by up to a second)."""
    total = 0.0
    for path in directory.glob("*.json"):
        for family in from_data(json.loads(path.read_text())):
            total += sum(
                float(value) for _, value in family.samples if family.name == name and isinstance(value, float)
            )
    return total


async def test_every_scrape_reports_the_totals_of_all_workers(tmp_path: Path) -> None:
    directory = tmp_path / "metrics"
    env = {
        "QAKEAPI_METRICS_DIR": str(directory),
        "OBSERVED_SECRET": secrets.token_hex(32),
        "OBSERVED_DASHBOARD_TOKEN": secrets.token_hex(16),
        "QAKEAPI_NODE_ID": "node-w",
    }
    with uvicorn_server("tests.e2e.observed_app:app", tmp_path, env=env, args=("--workers", "2")) as server:
        async with AsyncExitStack() as stack:
            for n in range(CLIENTS):
                ws = await stack.enter_async_context(connect(f"{server.ws_url}/rooms/r{n}"))
                assert (await recv_json(ws))["type"] == "welcome"
                for m in range(MESSAGES_EACH):
                    await ws.send(json.dumps(m))
                    assert (await recv_json(ws))["data"] == m
            expected = {
                "qakeapi_connections": float(CLIENTS),
                "qakeapi_connections_opened_total": float(CLIENTS),
                "qakeapi_messages_received_total": float(CLIENTS * MESSAGES_EACH),
            }
            # Once both workers are up and their files hold the traffic (written each second) ...
            deadline = time.monotonic() + 15
            while (
                len(list(directory.glob("*.json"))) < 2
                or written(directory, "qakeapi_messages_received") < CLIENTS * MESSAGES_EACH
            ):
                assert time.monotonic() < deadline, sorted(path.name for path in directory.glob("*"))
                await asyncio.sleep(0.1)
            # ... every scrape, whichever worker answers it, reports the totals.
            for _ in range(10):
                assert await asyncio.to_thread(scrape, server) == expected
