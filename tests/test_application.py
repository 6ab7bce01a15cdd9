"""The ASGI :class:`Application`: routing, return values, error responses, lifespan, WebSockets."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from qakeapi import Application, HTTPException, JSONResponse, Request, Response, WebSocket
from qakeapi.exceptions import WebSocketDenied, WebSocketDisconnect
from qakeapi.status import CloseCode
from qakeapi.testing import TestClient
from qakeapi.types import Message, Scope


@pytest.fixture
def app() -> Application:
    return Application()


@pytest.fixture
def client(app: Application) -> TestClient:
    return TestClient(app)


def http_scope(method: str, path: str) -> Scope:
    return {"type": "http", "method": method, "path": path, "headers": [], "query_string": b""}


async def call_raw(app: Application, scope: Scope, sent: list[Message], body: bytes = b"") -> None:
    """Run one HTTP request through the raw ASGI interface, recording what the app sends in ``sent``."""
    inbox: asyncio.Queue[Message] = asyncio.Queue()
    inbox.put_nowait({"type": "http.request", "body": body, "more_body": False})

    async def send(message: Message) -> None:
        sent.append(message)

    async def receive() -> Message:
        return inbox.get_nowait()

    await app(scope, receive, send)


# -- methods ---------------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("method", ["get", "post", "put", "patch", "delete"])
async def test_method_decorators_register_that_method(app: Application, client: TestClient, method: str) -> None:
    async def endpoint(request: Request) -> dict[str, str]:
        return {"method": request.method}

    getattr(app, method)("/thing")(endpoint)
    response = await client.request(method.upper(), "/thing")
    assert response.status_code == 200
    assert response.json() == {"method": method.upper()}


@pytest.mark.asyncio
async def test_route_with_several_methods(app: Application, client: TestClient) -> None:
    @app.route("/multi", methods=["get", "post"])
    async def endpoint(request: Request) -> str:
        return request.method

    assert (await client.get("/multi")).text == "GET"
    assert (await client.post("/multi")).text == "POST"


@pytest.mark.asyncio
async def test_decorator_returns_the_endpoint(app: Application) -> None:
    async def endpoint(request: Request) -> None: ...

    assert app.get("/x")(endpoint) is endpoint
    assert app.websocket("/ws")(endpoint) is endpoint


# -- path parameters -------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_int_path_param_is_converted(app: Application, client: TestClient) -> None:
    @app.get("/items/{item_id:int}")
    async def item(request: Request, item_id: int) -> dict[str, Any]:
        return {"id": item_id, "type": type(item_id).__name__, "params": request.path_params}

    response = await client.get("/items/-42")
    assert response.json() == {"id": -42, "type": "int", "params": {"item_id": -42}}


@pytest.mark.asyncio
async def test_int_path_param_does_not_match_text(app: Application, client: TestClient) -> None:
    @app.get("/items/{item_id:int}")
    async def item(request: Request, item_id: int) -> int:
        return item_id

    response = await client.get("/items/abc")
    assert response.status_code == 404


@pytest.mark.asyncio
async def test_float_path_param_is_converted(app: Application, client: TestClient) -> None:
    @app.get("/price/{value:float}")
    async def price(request: Request, value: float) -> dict[str, Any]:
        return {"value": value, "type": type(value).__name__}

    assert (await client.get("/price/2.5")).json() == {"value": 2.5, "type": "float"}
    assert (await client.get("/price/3")).json() == {"value": 3.0, "type": "float"}


@pytest.mark.asyncio
async def test_path_param_spans_slashes(app: Application, client: TestClient) -> None:
    @app.get("/files/{rest:path}")
    async def files(request: Request, rest: str) -> str:
        return rest

    assert (await client.get("/files/a/b/c.txt")).text == "a/b/c.txt"


@pytest.mark.asyncio
async def test_str_path_param_is_percent_decoded(app: Application, client: TestClient) -> None:
    @app.get("/rooms/{name}")
    async def room(request: Request, name: str) -> str:
        return name

    assert (await client.get("/rooms/caf%C3%A9")).text == "café"


# -- return values ---------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_dict_becomes_json(app: Application, client: TestClient) -> None:
    @app.get("/")
    async def endpoint(request: Request) -> dict[str, Any]:
        return {"a": 1, "b": [True, None]}

    response = await client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.content == b'{"a":1,"b":[true,null]}'


@pytest.mark.asyncio
async def test_list_becomes_json(app: Application, client: TestClient) -> None:
    @app.get("/")
    async def endpoint(request: Request) -> list[int]:
        return [1, 2]

    response = await client.get("/")
    assert response.headers["content-type"] == "application/json"
    assert response.json() == [1, 2]


@pytest.mark.asyncio
async def test_str_becomes_plain_text(app: Application, client: TestClient) -> None:
    @app.get("/")
    async def endpoint(request: Request) -> str:
        return "héllo"

    response = await client.get("/")
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.content == "héllo".encode()
    assert response.headers["content-length"] == str(len("héllo".encode()))


@pytest.mark.asyncio
async def test_bytes_become_octet_stream(app: Application, client: TestClient) -> None:
    @app.get("/")
    async def endpoint(request: Request) -> bytes:
        return b"\x00\x01"

    response = await client.get("/")
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.content == b"\x00\x01"


@pytest.mark.asyncio
async def test_none_becomes_204_without_body(app: Application, client: TestClient) -> None:
    @app.delete("/")
    async def endpoint(request: Request) -> None:
        return None

    response = await client.delete("/")
    assert response.status_code == 204
    assert response.content == b""


@pytest.mark.asyncio
async def test_response_passes_through(app: Application, client: TestClient) -> None:
    @app.post("/")
    async def endpoint(request: Request) -> Response:
        return JSONResponse({"created": True}, 201, {"Location": "/items/1"})

    response = await client.post("/")
    assert response.status_code == 201
    assert response.headers["location"] == "/items/1"
    assert response.json() == {"created": True}


# -- errors ----------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_unknown_path_is_404_json(client: TestClient) -> None:
    response = await client.get("/nowhere")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"detail": "Not Found"}


@pytest.mark.asyncio
async def test_wrong_method_is_405_with_allow(app: Application, client: TestClient) -> None:
    @app.get("/items")
    async def read(request: Request) -> list[int]:
        return []

    @app.post("/items")
    async def create(request: Request) -> None: ...

    response = await client.delete("/items")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD, POST"
    assert response.json() == {"detail": "Method Not Allowed"}


@pytest.mark.asyncio
async def test_malformed_json_body_is_400(app: Application, client: TestClient) -> None:
    @app.post("/echo")
    async def echo(request: Request) -> Any:
        return await request.json()

    response = await client.post("/echo", content=b"{oops")
    assert response.status_code == 400
    assert response.json()["detail"].startswith("malformed JSON body")


@pytest.mark.asyncio
async def test_empty_json_body_is_400(app: Application, client: TestClient) -> None:
    @app.post("/echo")
    async def echo(request: Request) -> Any:
        return await request.json()

    response = await client.post("/echo")
    assert response.status_code == 400
    assert response.json() == {"detail": "request body is empty; expected JSON"}


@pytest.mark.asyncio
async def test_json_body_round_trip(app: Application, client: TestClient) -> None:
    @app.post("/echo")
    async def echo(request: Request) -> Any:
        return await request.json()

    response = await client.post("/echo", json={"x": [1, "é"]})
    assert response.status_code == 200
    assert response.json() == {"x": [1, "é"]}


@pytest.mark.asyncio
async def test_oversized_body_is_413() -> None:
    app = Application(max_body_size=10)

    @app.post("/upload")
    async def upload(request: Request) -> int:
        return len(await request.body())

    client = TestClient(app)
    assert (await client.post("/upload", content=b"x" * 10)).json() == 10
    response = await client.post("/upload", content=b"x" * 11)
    assert response.status_code == 413
    assert response.json() == {"detail": "request body exceeds 10 bytes"}


@pytest.mark.asyncio
async def test_http_exception_sets_status_detail_and_headers(app: Application, client: TestClient) -> None:
    @app.get("/secret")
    async def secret(request: Request) -> None:
        raise HTTPException(401, "token required", {"WWW-Authenticate": "Bearer"})

    response = await client.get("/secret")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json() == {"detail": "token required"}


@pytest.mark.asyncio
async def test_http_exception_detail_defaults_to_the_status_phrase(app: Application, client: TestClient) -> None:
    @app.get("/teapot")
    async def teapot(request: Request) -> None:
        raise HTTPException(418)

    response = await client.get("/teapot")
    assert response.status_code == 418
    assert response.json() == {"detail": "I'm a Teapot"}


@pytest.mark.asyncio
async def test_unhandled_exception_is_a_500_that_does_not_leak_the_message(app: Application) -> None:
    @app.get("/boom")
    async def boom(request: Request) -> None:
        raise RuntimeError("database password is hunter2")

    sent: list[Message] = []
    with pytest.raises(RuntimeError, match="hunter2"):
        await call_raw(app, http_scope("GET", "/boom"), sent)
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert sent[0]["status"] == 500
    assert (b"content-type", b"application/json") in sent[0]["headers"]
    assert sent[1]["body"] == b'{"detail":"Internal Server Error"}'


@pytest.mark.asyncio
async def test_unhandled_exception_is_reraised_through_the_test_client(app: Application, client: TestClient) -> None:
    @app.get("/boom")
    async def boom(request: Request) -> None:
        raise RuntimeError("kaboom")

    with pytest.raises(RuntimeError, match="kaboom"):
        await client.get("/boom")


@pytest.mark.asyncio
async def test_unhandled_exception_gives_the_500_response_without_raise_server_exceptions(app: Application) -> None:
    @app.get("/boom")
    async def boom(request: Request) -> None:
        raise RuntimeError("kaboom")

    response = await TestClient(app, raise_server_exceptions=False).get("/boom")
    assert response.status_code == 500
    assert response.json() == {"detail": "Internal Server Error"}
    assert "kaboom" not in response.text


# -- HEAD ------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_head_is_served_by_get_without_a_body(app: Application, client: TestClient) -> None:
    @app.get("/page")
    async def page(request: Request) -> str:
        return "twelve bytes"

    response = await client.head("/page")
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["content-length"] == "12"


@pytest.mark.asyncio
async def test_head_is_not_served_by_post(app: Application, client: TestClient) -> None:
    @app.post("/form")
    async def form(request: Request) -> None: ...

    response = await client.head("/form")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"


# -- lifespan --------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_lifespan_runs_sync_and_async_hooks_in_order(app: Application) -> None:
    events: list[str] = []

    @app.on_startup
    def sync_start() -> None:
        events.append("sync startup")

    @app.on_startup
    async def async_start() -> None:
        events.append("async startup")

    @app.on_shutdown
    def sync_stop() -> None:
        events.append("sync shutdown")

    @app.on_shutdown
    async def async_stop() -> None:
        events.append("async shutdown")

    async with TestClient(app):
        assert events == ["sync startup", "async startup"]
    assert events == ["sync startup", "async startup", "sync shutdown", "async shutdown"]


@pytest.mark.asyncio
async def test_hooks_do_not_run_without_async_with(app: Application, client: TestClient) -> None:
    events: list[str] = []

    @app.on_startup
    def start() -> None:
        events.append("startup")

    @app.get("/")
    async def index(request: Request) -> str:
        return "ok"

    assert (await client.get("/")).text == "ok"
    assert events == []


@pytest.mark.asyncio
async def test_failing_startup_raises(app: Application) -> None:
    @app.on_startup
    async def start() -> None:
        raise ValueError("no database")

    with pytest.raises(RuntimeError, match="lifespan startup failed: ValueError: no database"):
        async with TestClient(app):
            pass


@pytest.mark.asyncio
async def test_failing_shutdown_raises_after_running_every_hook(app: Application) -> None:
    events: list[str] = []

    @app.on_shutdown
    def first() -> None:
        raise ValueError("flush failed")

    @app.on_shutdown
    def second() -> None:
        events.append("second shutdown")

    with pytest.raises(RuntimeError, match="lifespan shutdown failed"):
        async with TestClient(app):
            pass
    assert events == ["second shutdown"]


@pytest.mark.asyncio
async def test_unsupported_scope_type_raises(app: Application) -> None:
    async def receive() -> Message:
        raise AssertionError("not called")

    async def send(message: Message) -> None:
        raise AssertionError("not called")

    with pytest.raises(ValueError, match="unsupported ASGI scope type 'webtransport'"):
        await app({"type": "webtransport"}, receive, send)


# -- WebSocket routes ------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_websocket_route_receives_path_params(app: Application, client: TestClient) -> None:
    @app.websocket("/rooms/{room_id:int}")
    async def room(websocket: WebSocket, room_id: int) -> None:
        await websocket.accept()
        await websocket.send_json({"room_id": room_id, "params": websocket.path_params})

    async with client.websocket_connect("/rooms/7") as session:
        assert await session.receive_json() == {"room_id": 7, "params": {"room_id": 7}}


@pytest.mark.asyncio
async def test_unknown_websocket_path_refuses_the_handshake_naming_the_path(
    app: Application, client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None: ...

    with caplog.at_level(logging.WARNING, logger="qakeapi.application"), pytest.raises(WebSocketDenied) as info:
        await client.websocket_connect("/nowhere?x=1")
    assert (info.value.status_code, info.value.json()) == (404, {"detail": "no WebSocket route for /nowhere"})
    assert info.value.headers["content-type"] == "application/json"
    [record] = [r for r in caplog.records if r.name == "qakeapi.application"]
    assert record.levelno == logging.WARNING
    assert "no WebSocket route for '/nowhere'; answering 404 (WebSocket routes: /ws)" in record.getMessage()


@pytest.mark.asyncio
async def test_a_long_unknown_path_is_named_whole_in_the_404(client: TestClient) -> None:
    path = "/" + "é" * 100  # longer than a close reason may be (see test_application_refusals for that cut)
    with pytest.raises(WebSocketDenied) as info:
        await client.websocket_connect(path)
    assert (info.value.status_code, info.value.json()) == (404, {"detail": f"no WebSocket route for {path}"})


def test_registering_a_path_twice_is_refused(app: Application) -> None:
    @app.get("/items")
    async def list_items(request: Request) -> list[str]:
        return []

    with pytest.raises(ValueError, match=r"duplicate route: GET, HEAD /items is already served by .*list_items"):

        @app.get("/items")
        async def list_items_again(request: Request) -> list[str]:
            return []

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None: ...

    with pytest.raises(ValueError, match="duplicate route: WebSocket /ws"):
        app.websocket("/ws")(ws)


def test_a_sync_endpoint_is_refused_at_registration(app: Application) -> None:
    with pytest.raises(TypeError, match=r"define it with 'async def page\(request, \.\.\.\)'"):

        @app.get("/page")  # type: ignore[type-var]
        def page(request: Request) -> str:
            return "page"

    with pytest.raises(TypeError, match=r"'async def live\(websocket, \.\.\.\)'"):

        @app.websocket("/live")  # type: ignore[type-var]
        def live(websocket: WebSocket) -> None: ...


@pytest.mark.asyncio
async def test_http_route_does_not_serve_websockets(app: Application, client: TestClient) -> None:
    @app.get("/page")
    async def page(request: Request) -> str:
        return "page"

    with pytest.raises(WebSocketDenied) as info:
        await client.websocket_connect("/page")
    assert (info.value.status_code, info.value.detail) == (404, "no WebSocket route for /page")


@pytest.mark.asyncio
async def test_websocket_route_does_not_serve_http(app: Application, client: TestClient) -> None:
    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None: ...

    assert (await client.get("/ws")).status_code == 404


@pytest.mark.asyncio
async def test_endpoint_that_returns_closes_normally(app: Application, client: TestClient) -> None:
    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text("bye")

    async with client.websocket_connect("/ws") as session:
        assert await session.receive_text() == "bye"
        with pytest.raises(WebSocketDisconnect) as info:
            await session.receive_text()
    assert info.value.code == CloseCode.NORMAL_CLOSURE


@pytest.mark.asyncio
async def test_websocket_endpoint_exception_closes_1011_and_surfaces(app: Application, client: TestClient) -> None:
    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.receive_text()
        raise ValueError("endpoint broke")

    session = await client.websocket_connect("/ws")
    await session.send_text("go")
    with pytest.raises(ValueError, match="endpoint broke"):
        await session.receive_text()
    assert (session.close_code, session.close_reason) == (CloseCode.INTERNAL_ERROR, "internal error")
    await session.close()
