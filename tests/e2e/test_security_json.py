"""NaN and Infinity over the network: not JSON, so they arrive as text; one log line, no traceback."""

from __future__ import annotations

import json

import pytest
from websockets.asyncio.client import connect

from tests.e2e.conftest import Serve, recv_json

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio]


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
    assert output.count("which is not JSON") == 1, output
    assert "200 messages used NaN/Infinity" in output
    assert len(output) < 4000  # 200 bad messages cost a few lines, not 200 tracebacks
