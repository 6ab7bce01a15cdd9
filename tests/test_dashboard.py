"""Tests for qakeapi.core.dashboard: off unless exposed, token first, then the node's state every interval."""

from __future__ import annotations

import pytest

from qakeapi import Application, WebSocket, WebSocketHandler
from qakeapi.core.dashboard import dashboard_state, expose_dashboard
from qakeapi.exceptions import WebSocketDisconnect
from qakeapi.testing import TestClient

pytestmark = pytest.mark.asyncio

TOKEN = "s3cret-dashboard-token"


def make_app() -> Application:
    app = Application()
    handler = WebSocketHandler()

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket) -> None:
        await handler.handle_connection(websocket)

    expose_dashboard(app, token=TOKEN, node="node-x", interval=0.05)
    return app


async def test_an_application_has_no_dashboard_unless_it_exposes_one() -> None:
    async with TestClient(Application()) as client:
        assert (await client.get("/dashboard")).status_code == 404


async def test_the_page_connects_to_its_own_websocket_and_builds_the_dom_without_html_injection() -> None:
    async with TestClient(make_app()) as client:
        response = await client.get("/dashboard")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "}/dashboard/ws`" in response.text
    assert "innerHTML" not in response.text  # room names and user ids are text, never markup
    assert TOKEN not in response.text


@pytest.mark.parametrize("first", [{"type": "auth", "token": "wrong-token-wrong-token"}, {"type": "auth"}, "hello"])
async def test_a_client_without_the_token_is_closed_with_1008_and_shown_nothing(
    first: object, caplog: pytest.LogCaptureFixture
) -> None:
    async with TestClient(make_app()) as client, client.websocket_connect("/dashboard/ws") as ws:
        await ws.send_json(first)
        with pytest.raises(WebSocketDisconnect) as closed:
            await ws.receive_json()
    assert (closed.value.code, closed.value.reason) == (1008, "unauthorized")
    assert "wrong or missing token" in caplog.text
    assert "wrong-token" not in caplog.text


async def test_with_the_token_the_state_arrives_again_and_again() -> None:
    async with TestClient(make_app()) as client, client.websocket_connect("/dashboard/ws") as ws:
        await ws.send_json({"type": "auth", "token": TOKEN})
        first = await ws.receive_json()
        second = await ws.receive_json()
    assert first["node"] == "node-x"
    assert second["time"] >= first["time"]
    assert set(first) == set(dashboard_state("n"))


async def test_a_short_token_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 16"):
        expose_dashboard(Application(), token="short")
