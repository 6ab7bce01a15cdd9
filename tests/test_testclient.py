"""The in-process :class:`TestClient` and its WebSocket sessions."""

from __future__ import annotations

import time
from typing import Any

import pytest

from qakeapi import Application, Request, WebSocket
from qakeapi.exceptions import WebSocketClosedError, WebSocketDisconnect
from qakeapi.status import CloseCode
from qakeapi.testing import TestClient, WebSocketTestSession
from qakeapi.types import Message, Receive, Scope, Send


def echo_app() -> Application:
    app = Application()

    @app.websocket("/echo")
    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        async for message in websocket:
            if isinstance(message, str):
                await websocket.send_text(message)
            else:
                await websocket.send_bytes(message)

    @app.websocket("/scope")
    async def scope(websocket: WebSocket) -> None:
        await websocket.accept(subprotocol=websocket.subprotocols[0] if websocket.subprotocols else None)
        await websocket.send_json(
            {
                "token": websocket.headers.get("x-token"),
                "protocol_header": websocket.headers.get("sec-websocket-protocol"),
                "subprotocols": websocket.subprotocols,
                "query": dict(websocket.query_params),
                "client": list(websocket.client or ()),
            }
        )
        async for _ in websocket:
            pass

    @app.websocket("/silent")
    async def silent(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.receive_text()

    @app.websocket("/refuse")
    async def refuse(websocket: WebSocket) -> None:
        await websocket.close(4003, "forbidden")

    return app


@pytest.fixture
def client() -> TestClient:
    return TestClient(echo_app(), timeout=2.0)


# -- connecting ------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_websocket_connect_can_be_awaited(client: TestClient) -> None:
    session = await client.websocket_connect("/echo")
    assert isinstance(session, WebSocketTestSession)
    await session.send_text("hi")
    assert await session.receive_text() == "hi"
    await session.close()


@pytest.mark.asyncio
async def test_websocket_connect_as_async_context_manager(client: TestClient) -> None:
    async with client.websocket_connect("/echo") as session:
        await session.send_bytes(b"\x01")
        assert await session.receive_bytes() == b"\x01"
        await session.send_json({"a": 1}, mode="binary")
        assert await session.receive_bytes() == b'{"a":1}'


@pytest.mark.asyncio
async def test_headers_query_and_client_reach_the_scope(client: TestClient) -> None:
    async with client.websocket_connect("/scope?room=lobby", headers={"X-Token": "abc"}) as session:
        assert await session.receive_json() == {
            "token": "abc",
            "protocol_header": None,
            "subprotocols": [],
            "query": {"room": "lobby"},
            "client": ["testclient", 50000],
        }


@pytest.mark.asyncio
async def test_subprotocols_reach_the_scope_and_the_accept_comes_back(client: TestClient) -> None:
    async with client.websocket_connect("/scope", subprotocols=["v2", "v1"]) as session:
        data = await session.receive_json()
        assert session.accepted_subprotocol == "v2"
    assert data["subprotocols"] == ["v2", "v1"]
    assert data["protocol_header"] == "v2, v1"


@pytest.mark.asyncio
async def test_handshake_refusal_raises_websocket_disconnect_with_code(client: TestClient) -> None:
    with pytest.raises(WebSocketDisconnect) as info:
        await client.websocket_connect("/refuse")
    assert (info.value.code, info.value.reason) == (4003, "forbidden")


@pytest.mark.asyncio
async def test_send_before_connect_raises_runtime_error(client: TestClient) -> None:
    session = client.websocket_connect("/echo")
    with pytest.raises(RuntimeError, match="not connected"):
        await session.send_text("early")


# -- timeouts --------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_receive_timeout_raises_timeout_error_quickly(client: TestClient) -> None:
    async with client.websocket_connect("/silent") as session:
        started = time.monotonic()
        with pytest.raises(TimeoutError, match=r"no message from the application within 0\.05s"):
            await session.receive_text(timeout=0.05)
        assert time.monotonic() - started < 1.0
        await session.send_text("release")


@pytest.mark.asyncio
async def test_session_default_timeout_comes_from_websocket_connect(client: TestClient) -> None:
    async with client.websocket_connect("/silent", timeout=0.05) as session:
        assert session.timeout == 0.05
        with pytest.raises(TimeoutError):
            await session.receive_json()
        await session.send_text("release")


# -- closing ---------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_close_is_idempotent() -> None:
    app = Application()
    disconnects: list[int] = []

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            await websocket.receive_text()
        except WebSocketDisconnect as exc:
            disconnects.append(exc.code)

    session = await TestClient(app).websocket_connect("/ws")
    await session.close(4000)
    await session.close(4001)
    assert disconnects == [4000]


@pytest.mark.asyncio
async def test_send_after_client_close_raises_closed_error(client: TestClient) -> None:
    session = await client.websocket_connect("/echo")
    await session.close()
    with pytest.raises(WebSocketClosedError):
        await session.send_text("late")


@pytest.mark.asyncio
async def test_send_after_server_close_raises_closed_error() -> None:
    app = Application()

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.close(CloseCode.GOING_AWAY)

    async with TestClient(app).websocket_connect("/ws") as session:
        with pytest.raises(WebSocketDisconnect):
            await session.receive_text()
        assert session.close_code == CloseCode.GOING_AWAY
        with pytest.raises(WebSocketClosedError):
            await session.send_text("late")


@pytest.mark.asyncio
async def test_receive_after_server_close_keeps_raising_disconnect() -> None:
    app = Application()

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.close(4100, "gone")

    async with TestClient(app).websocket_connect("/ws") as session:
        for _ in range(2):
            with pytest.raises(WebSocketDisconnect) as info:
                await session.receive_text()
            assert (info.value.code, info.value.reason) == (4100, "gone")


# -- application errors ----------------------------------------------------------------------


async def failing_asgi_app(scope: Scope, receive: Receive, send: Send) -> None:
    """A plain ASGI app that accepts, reads one message and crashes without closing."""
    assert scope["type"] == "websocket"
    assert (await receive())["type"] == "websocket.connect"
    await send({"type": "websocket.accept"})
    await receive()
    raise LookupError("app crashed")


@pytest.mark.asyncio
async def test_app_exception_surfaces_in_receive() -> None:
    session = await TestClient(failing_asgi_app).websocket_connect("/")
    await session.send_text("go")
    with pytest.raises(LookupError, match="app crashed"):
        await session.receive_text()
    await session.close()


@pytest.mark.asyncio
async def test_app_exception_surfaces_on_close() -> None:
    session = await TestClient(failing_asgi_app).websocket_connect("/")
    await session.send_text("go")
    with pytest.raises(LookupError, match="app crashed"):
        await session.close()


@pytest.mark.asyncio
async def test_app_exception_not_raised_without_raise_server_exceptions() -> None:
    session = await TestClient(failing_asgi_app, raise_server_exceptions=False).websocket_connect("/")
    await session.send_text("go")
    with pytest.raises(WebSocketDisconnect):
        await session.receive_text()
    await session.close()


# -- HTTP ------------------------------------------------------------------------------------


def http_app() -> Application:
    app = Application()

    @app.route("/inspect", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    async def inspect(request: Request) -> dict[str, Any]:
        body = await request.body()
        return {
            "method": request.method,
            "path": request.path,
            "query": request.query_params.multi_items(),
            "x_token": request.headers.get("x-token"),
            "host": request.headers.get("host"),
            "content_type": request.headers.get("content-type"),
            "content_length": request.headers.get("content-length"),
            "body": body.decode(),
        }

    return app


@pytest.mark.asyncio
async def test_http_json_body_sets_content_type_and_length() -> None:
    response = await TestClient(http_app()).post("/inspect", json={"a": [1, 2]})
    data = response.json()
    assert data["body"] == '{"a":[1,2]}'
    assert data["content_type"] == "application/json"
    assert data["content_length"] == "11"


@pytest.mark.asyncio
async def test_http_params_extend_the_query_string() -> None:
    response = await TestClient(http_app()).get("/inspect?a=1", params={"b": [2, 3], "c": "x y"})
    assert response.json()["query"] == [["a", "1"], ["b", "2"], ["b", "3"], ["c", "x y"]]


@pytest.mark.asyncio
async def test_http_headers_and_host_reach_the_app() -> None:
    response = await TestClient(http_app(), base_url="http://example.org").get("/inspect", headers={"X-Token": "abc"})
    data = response.json()
    assert data["x_token"] == "abc"
    assert data["host"] == "example.org"


@pytest.mark.asyncio
async def test_http_raw_str_content() -> None:
    response = await TestClient(http_app()).put("/inspect", content="héllo")
    assert response.json()["body"] == "héllo"
    assert response.json()["content_length"] == "6"


@pytest.mark.asyncio
@pytest.mark.parametrize("method", ["get", "post", "put", "patch", "delete"])
async def test_http_method_helpers(method: str) -> None:
    response = await getattr(TestClient(http_app()), method)("/inspect")
    assert response.json()["method"] == method.upper()


@pytest.mark.asyncio
async def test_http_response_exposes_status_headers_text_and_json() -> None:
    response = await TestClient(http_app()).get("/inspect")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == {
        "method": "GET",
        "path": "/inspect",
        "query": [],
        "x_token": None,
        "host": "testserver",
        "content_type": None,
        "content_length": None,
        "body": "",
    }
    assert response.text == response.content.decode()


# -- a plain ASGI application ----------------------------------------------------------------


async def plain_asgi_app(scope: Scope, receive: Receive, send: Send) -> None:
    """A hand-written ASGI app: HTTP greets, WebSocket echoes in upper case; no lifespan support."""
    if scope["type"] == "http":
        await receive()
        body = f"hello {scope['path']} {scope['query_string'].decode()}".encode()
        await send({"type": "http.response.start", "status": 418, "headers": [(b"x-plain", b"yes")]})
        await send({"type": "http.response.body", "body": body[:5], "more_body": True})
        await send({"type": "http.response.body", "body": body[5:]})
    elif scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        while True:
            message: Message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            await send({"type": "websocket.send", "text": message["text"].upper()})
    else:
        raise RuntimeError(f"unsupported scope {scope['type']}")


@pytest.mark.asyncio
async def test_plain_asgi_app_over_http() -> None:
    response = await TestClient(plain_asgi_app).get("/x", params={"q": "1"})
    assert response.status_code == 418
    assert response.headers["x-plain"] == "yes"
    assert response.text == "hello /x q=1"


@pytest.mark.asyncio
async def test_plain_asgi_app_over_websocket() -> None:
    async with TestClient(plain_asgi_app).websocket_connect("/") as session:
        await session.send_text("shout")
        assert await session.receive_text() == "SHOUT"


@pytest.mark.asyncio
async def test_plain_asgi_app_without_lifespan_can_be_entered() -> None:
    async with TestClient(plain_asgi_app) as client:
        assert (await client.get("/")).status_code == 418


@pytest.mark.asyncio
async def test_http_app_exception_surfaces() -> None:
    async def broken(scope: Scope, receive: Receive, send: Send) -> None:
        raise KeyError("broken app")

    with pytest.raises(KeyError, match="broken app"):
        await TestClient(broken).get("/")


@pytest.mark.asyncio
async def test_http_exception_before_response_is_500_without_raise_server_exceptions() -> None:
    async def broken(scope: Scope, receive: Receive, send: Send) -> None:
        raise KeyError("broken app")

    response = await TestClient(broken, raise_server_exceptions=False).get("/")
    assert response.status_code == 500


@pytest.mark.asyncio
async def test_app_that_never_responds_is_reported() -> None:
    async def mute(scope: Scope, receive: Receive, send: Send) -> None:
        return None

    with pytest.raises(RuntimeError, match="returned without starting a response"):
        await TestClient(mute).get("/")


# -- the test transport refuses what a real server refuses ---------------------------------


def raw_app(*messages: dict[str, Any]) -> Any:
    """A bare ASGI app that sends ``messages`` in order after the connect, then returns."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        for message in messages:
            await send(message)

    return app


@pytest.mark.asyncio
async def test_sending_data_before_accepting_is_refused() -> None:
    client = TestClient(raw_app({"type": "websocket.send", "text": "too early"}), timeout=1.0)
    with pytest.raises(RuntimeError, match=r"Expected ASGI message 'websocket\.accept' or 'websocket\.close'"):
        await client.websocket_connect("/")


@pytest.mark.asyncio
async def test_sending_after_the_app_closed_is_refused() -> None:
    app = raw_app(
        {"type": "websocket.accept"},
        {"type": "websocket.close", "code": 1000},
        {"type": "websocket.send", "text": "too late"},
    )
    session = await TestClient(app, timeout=1.0).websocket_connect("/")
    with pytest.raises(WebSocketDisconnect):
        await session.receive_text()
    with pytest.raises(RuntimeError, match=r"after sending 'websocket\.close'"):
        await session.close()


@pytest.mark.asyncio
async def test_send_json_refuses_an_unknown_mode() -> None:
    async with TestClient(echo_app()).websocket_connect("/echo") as ws:
        with pytest.raises(ValueError, match="mode must be 'text' or 'binary'"):
            await ws.send_json({"a": 1}, mode="xml")
