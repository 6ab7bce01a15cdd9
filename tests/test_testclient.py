"""The in-process :class:`TestClient` and its WebSocket sessions."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from qakeapi import Application, Request, WebSocket, WebSocketHandler
from qakeapi.exceptions import WebSocketClosedError, WebSocketDisconnect
from qakeapi.status import CloseCode
from qakeapi.testing import ClientDisconnectedError, TestClient, WebSocketTestSession
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
    assert type(info.value) is WebSocketDisconnect  # a close, not an HTTP denial (WebSocketDenied)
    assert (info.value.code, info.value.reason) == (4003, "forbidden")


@pytest.mark.asyncio
async def test_send_before_connect_raises_runtime_error(client: TestClient) -> None:
    session = client.websocket_connect("/echo")
    with pytest.raises(RuntimeError, match="not connected"):
        await session.send_text("early")


# -- timeouts --------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_receive_timeout_raises_timeout_error_with_the_timeout_given(client: TestClient) -> None:
    async with client.websocket_connect("/silent") as session:
        with pytest.raises(TimeoutError, match=r"no message from the application within 0\.05s"):
            await session.receive_text(timeout=0.05)
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
    with pytest.raises(WebSocketDisconnect) as info:
        await session.receive_text()
    assert info.value.code == CloseCode.ABNORMAL_CLOSURE  # no close frame: what uvicorn's client sees
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
    expected = r"Expected ASGI message 'websocket\.accept' or 'websocket\.close' or 'websocket\.http\.response\.start'"
    with pytest.raises(RuntimeError, match=expected):
        await client.websocket_connect("/")


@pytest.mark.asyncio
async def test_sending_after_the_app_closed_is_refused() -> None:
    app = raw_app(
        {"type": "websocket.accept"},
        {"type": "websocket.close", "code": 1000},
        {"type": "websocket.send", "text": "too late"},
    )
    session = await TestClient(app, timeout=1.0).websocket_connect("/")
    with pytest.raises(RuntimeError, match=r"after sending 'websocket\.close'"):
        await session.receive_text()
    assert session.close_code == CloseCode.NORMAL_CLOSURE
    with pytest.raises(WebSocketDisconnect):
        await session.receive_text()
    await session.close()


@pytest.mark.asyncio
async def test_send_json_refuses_an_unknown_mode() -> None:
    async with TestClient(echo_app()).websocket_connect("/echo") as ws:
        with pytest.raises(ValueError, match="mode must be 'text' or 'binary'"):
            await ws.send_json({"a": 1}, mode="xml")


# -- the application's errors surface in the test ------------------------------------------


def failing_app() -> Application:
    """Endpoints and hooks that fail in the ways the issue lists."""
    app = Application()

    @app.websocket("/unserialisable")
    async def unserialisable(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.receive_text()
        await websocket.send_json(object())

    @app.websocket("/send-after-close")
    async def send_after_close(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.close()
        await websocket.send_text("too late")

    handler = WebSocketHandler()

    @handler.on_message
    async def on_message(websocket: WebSocket, message: Any) -> None:
        if message == "fail":
            raise ZeroDivisionError("hook failed on purpose")
        await websocket.send_json({"echo": message})

    @app.websocket("/hooks")
    async def hooks(websocket: WebSocket) -> None:
        await handler.handle_connection(websocket)

    @app.websocket("/mute")
    async def mute(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.receive_text()
        logging.getLogger("examples.mute").warning("not answering %s", "today")
        await websocket.receive_text()

    return app


@pytest.mark.asyncio
async def test_an_endpoint_exception_is_raised_by_the_next_receive_with_its_traceback() -> None:
    async with TestClient(failing_app()).websocket_connect("/unserialisable") as session:
        await session.send_text("go")
        with pytest.raises(TypeError, match="not JSON serializable") as info:
            await session.receive_json()
        assert "unserialisable" in [entry.name for entry in info.traceback]  # the endpoint's frame
        assert session.close_code == CloseCode.INTERNAL_ERROR
        with pytest.raises(WebSocketDisconnect) as closed:  # raised once; then the close code
            await session.receive_json()
        assert closed.value.code == CloseCode.INTERNAL_ERROR


@pytest.mark.asyncio
async def test_a_send_after_close_in_the_endpoint_is_raised_not_a_plain_close() -> None:
    async with TestClient(failing_app()).websocket_connect("/send-after-close") as session:
        with pytest.raises(WebSocketClosedError, match=r"cannot send on WebSocket \d+: it is closed"):
            await session.receive_text()
        assert session.close_code == CloseCode.NORMAL_CLOSURE


@pytest.mark.asyncio
async def test_a_hook_exception_logged_by_the_handler_is_raised_by_the_next_receive() -> None:
    async with TestClient(failing_app(), timeout=2.0).websocket_connect("/hooks") as session:
        await session.send_text("fail")
        with pytest.raises(ZeroDivisionError, match="hook failed on purpose") as info:  # not TimeoutError
            await session.receive_json()
        assert "on_message" in [entry.name for entry in info.traceback]
        # The handler survives a failing hook, and so does the session.
        await session.send_text("again")
        assert await session.receive_json() == {"echo": "again"}


@pytest.mark.asyncio
async def test_a_hook_exception_is_raised_by_the_next_send() -> None:
    async with TestClient(failing_app()).websocket_connect("/hooks") as session:
        await session.send_text("first")
        await session.send_text("fail")
        assert await session.receive_json() == {"echo": "first"}  # what came before the error comes first
        with pytest.raises(ZeroDivisionError):
            await session.send_text("next")
        await session.send_text("after")
        assert await session.receive_json() == {"echo": "after"}


@pytest.mark.asyncio
async def test_an_error_no_receive_surfaced_is_raised_on_exit() -> None:
    with pytest.raises(ZeroDivisionError):
        async with TestClient(failing_app()).websocket_connect("/hooks") as session:
            await session.send_text("fail")


@pytest.mark.asyncio
async def test_errors_go_to_the_session_whose_connection_failed() -> None:
    client = TestClient(failing_app(), timeout=2.0)
    async with client.websocket_connect("/hooks") as healthy, client.websocket_connect("/hooks") as failing:
        await failing.send_text("fail")
        await healthy.send_text("fine")
        assert await healthy.receive_json() == {"echo": "fine"}
        with pytest.raises(ZeroDivisionError):
            await failing.receive_json()


@pytest.mark.asyncio
async def test_without_raise_server_exceptions_a_timeout_says_what_the_app_logged() -> None:
    client = TestClient(failing_app(), raise_server_exceptions=False)
    async with client.websocket_connect("/hooks") as session:
        await session.send_text("fail")
        with pytest.raises(TimeoutError) as info:
            await session.receive_json(timeout=0.2)
    message = str(info.value)
    assert message.startswith("no message from the application within 0.2s; meanwhile the application logged:")
    assert "ERROR qakeapi.websockets: WebSocket hook" in message
    assert "[ZeroDivisionError: hook failed on purpose]" in message


@pytest.mark.asyncio
async def test_a_timeout_reports_the_applications_own_warnings() -> None:
    async with TestClient(failing_app()).websocket_connect("/mute") as session:
        await session.send_text("hello")
        with pytest.raises(TimeoutError, match=r"WARNING examples\.mute: not answering today"):
            await session.receive_text(timeout=0.2)
        await session.send_text("release")


@pytest.mark.asyncio
async def test_without_raise_server_exceptions_an_endpoint_crash_is_only_its_close_code() -> None:
    client = TestClient(failing_app(), raise_server_exceptions=False)
    async with client.websocket_connect("/unserialisable") as session:
        await session.send_text("go")
        with pytest.raises(WebSocketDisconnect) as info:
            await session.receive_json()
    assert (info.value.code, info.value.reason) == (CloseCode.INTERNAL_ERROR, "internal error")


@pytest.mark.asyncio
async def test_the_log_handler_lives_as_long_as_the_sessions() -> None:
    root = logging.getLogger()
    before = list(root.handlers)
    client = TestClient(failing_app())
    first = await client.websocket_connect("/hooks")
    second = await client.websocket_connect("/hooks")
    assert len(root.handlers) == len(before) + 1  # one handler, shared
    await first.close()
    assert len(root.handlers) == len(before) + 1
    await second.close()
    assert root.handlers == before


@pytest.mark.asyncio
async def test_the_log_handler_leaves_when_the_app_ends_even_if_the_test_never_closes() -> None:
    root = logging.getLogger()
    before = list(root.handlers)
    app = Application()

    @app.websocket("/bye")
    async def bye(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.close(4003, "signed out")

    session = await TestClient(app).websocket_connect("/bye")
    with pytest.raises(WebSocketDisconnect, match="4003"):
        await session.receive_json()
    for _ in range(100):  # the app's task ends a few turns of the loop after its close
        if root.handlers == before:
            break
        await asyncio.sleep(0)
    assert root.handlers == before  # the session was never closed: the handler left with the app


@pytest.mark.asyncio
async def test_a_failed_startup_hook_is_the_cause_of_the_lifespan_error() -> None:
    app = Application()

    @app.on_startup
    async def connect_database() -> None:
        raise ConnectionRefusedError("database is down")

    with pytest.raises(RuntimeError, match="lifespan startup failed") as info:
        async with TestClient(app):
            pass
    assert isinstance(info.value.__cause__, ConnectionRefusedError)
    assert str(info.value.__cause__) == "database is down"


@pytest.mark.asyncio
async def test_sync_with_on_the_client_says_to_use_async_with() -> None:
    client = TestClient(failing_app())
    with pytest.raises(TypeError, match="use 'async with TestClient"), client:
        pass


@pytest.mark.asyncio
async def test_sync_with_on_a_session_says_to_use_async_with() -> None:
    session = TestClient(failing_app()).websocket_connect("/hooks")
    with pytest.raises(TypeError, match=r"use 'async with client\.websocket_connect"), session:
        pass


# -- the transport mirrors uvicorn -----------------------------------------------------------


@pytest.mark.asyncio
async def test_an_app_that_returns_without_closing_is_an_abnormal_closure() -> None:
    async def leaves(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})

    session = await TestClient(leaves).websocket_connect("/")
    with pytest.raises(WebSocketDisconnect) as info:
        await session.receive_text()
    assert info.value.code == CloseCode.ABNORMAL_CLOSURE


@pytest.mark.asyncio
async def test_an_app_that_returns_without_a_handshake_answer_is_an_error() -> None:
    async def forgets(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()

    with pytest.raises(RuntimeError, match="returned without accepting or closing the WebSocket handshake"):
        await TestClient(forgets).websocket_connect("/")


@pytest.mark.asyncio
async def test_the_apps_close_is_answered_with_a_disconnect() -> None:
    seen: list[Message] = []

    async def closes(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 4001, "reason": "bye"})
        seen.append(await receive())

    async with TestClient(closes).websocket_connect("/") as session:
        with pytest.raises(WebSocketDisconnect):
            await session.receive_text()
    assert seen == [{"type": "websocket.disconnect", "code": 4001, "reason": "bye"}]


@pytest.mark.asyncio
async def test_a_send_after_the_client_left_is_not_an_application_error() -> None:
    async def keeps_sending(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await receive()  # the disconnect
        await send({"type": "websocket.send", "text": "anyone?"})  # uvicorn raises ClientDisconnected

    session = await TestClient(keeps_sending).websocket_connect("/")
    await session.close()  # does not raise ClientDisconnectedError


# -- backpressure: a session that stops reading ----------------------------------------------


def producer_app(sent: list[int], outcome: list[str]) -> Any:
    """A raw ASGI app: on ``"<n>"`` it sends n frames, counting each send that completed."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            try:
                for i in range(int(message["text"])):
                    await send({"type": "websocket.send", "text": str(i)})
                    sent.append(i)
            except ClientDisconnectedError:
                outcome.append("client disconnected")
                return

    return app


@pytest.mark.asyncio
async def test_a_paused_session_holds_up_the_apps_send_until_resumed() -> None:
    sent: list[int] = []
    async with TestClient(producer_app(sent, []), timeout=2.0).websocket_connect("/") as session:
        session.pause_reading()
        assert session.reading_paused
        await session.send_text("3")
        await session.wait_for_backpressure()
        assert sent == []  # the first send is waiting
        session.resume_reading()
        assert [await session.receive_text() for _ in range(3)] == ["0", "1", "2"]
        assert sent == [0, 1, 2]


@pytest.mark.asyncio
async def test_a_paused_session_takes_its_buffer_then_the_send_waits() -> None:
    sent: list[int] = []
    async with TestClient(producer_app(sent, []), timeout=2.0).websocket_connect("/") as session:
        session.pause_reading(buffer=2)
        await session.send_text("4")
        await session.wait_for_backpressure()
        assert sent == [0, 1]
        assert [await session.receive_text(), await session.receive_text()] == ["0", "1"]
        with pytest.raises(TimeoutError, match=r"reading is paused: call resume_reading\(\)"):
            await session.receive_text(timeout=0.1)
        assert sent == [0, 1]  # receiving what was buffered does not resume reading
        session.resume_reading()
        assert [await session.receive_text(), await session.receive_text()] == ["2", "3"]


@pytest.mark.asyncio
async def test_closing_a_paused_session_releases_the_waiting_send_as_a_disconnect() -> None:
    sent: list[int] = []
    outcome: list[str] = []
    session = await TestClient(producer_app(sent, outcome), timeout=2.0).websocket_connect("/")
    session.pause_reading()
    await session.send_text("2")
    await session.wait_for_backpressure()
    await session.close()
    assert outcome == ["client disconnected"]
    assert sent == []


@pytest.mark.asyncio
async def test_the_apps_close_waits_too_while_the_session_is_paused() -> None:
    closed: list[bool] = []

    async def closer(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await receive()
        await send({"type": "websocket.close", "code": 1000})
        closed.append(True)

    async with TestClient(closer, timeout=2.0).websocket_connect("/") as session:
        session.pause_reading()
        await session.send_text("close please")
        await session.wait_for_backpressure()
        assert closed == []
        session.resume_reading()
        with pytest.raises(WebSocketDisconnect):
            await session.receive_text()
        assert closed == [True]


@pytest.mark.asyncio
async def test_pause_reading_validates_its_buffer_and_backpressure_needs_a_pause() -> None:
    async with TestClient(echo_app()).websocket_connect("/echo") as session:
        with pytest.raises(ValueError, match="buffer must be >= 0"):
            session.pause_reading(buffer=-1)
        with pytest.raises(RuntimeError, match=r"call pause_reading\(\) first"):
            await session.wait_for_backpressure()
        session.pause_reading(buffer=5)
        with pytest.raises(TimeoutError, match=r"no send of the application waited within 0\.05s"):
            await session.wait_for_backpressure(timeout=0.05)


@pytest.mark.asyncio
async def test_websocket_send_text_waits_on_a_paused_session() -> None:
    app = Application()
    progress: list[str] = []

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.receive_text()
        await websocket.send_text("one")
        progress.append("one sent")
        await websocket.receive_text()

    async with TestClient(app, timeout=2.0).websocket_connect("/ws") as session:
        session.pause_reading()
        await session.send_text("go")
        await session.wait_for_backpressure()
        assert progress == []
        session.resume_reading()
        assert await session.receive_text() == "one"
        assert progress == ["one sent"]
        await session.send_text("done")


@pytest.mark.asyncio
async def test_a_broadcast_reaches_reading_sessions_while_one_is_paused() -> None:
    app = Application()
    handler = WebSocketHandler()

    @handler.on_message
    async def relay(websocket: WebSocket, message: Any) -> None:
        await handler.broadcast(message)

    @app.websocket("/room")
    async def room(websocket: WebSocket) -> None:
        await handler.handle_connection(websocket)

    client = TestClient(app, timeout=2.0)
    async with client.websocket_connect("/room") as reader, client.websocket_connect("/room") as stuck:
        stuck.pause_reading()
        for i in range(5):
            await reader.send_json({"n": i})
            assert await reader.receive_json() == {"n": i}
        await stuck.wait_for_backpressure()
        stuck.resume_reading()
        assert await stuck.receive_json() == {"n": 0}


@pytest.mark.asyncio
async def test_a_failing_disconnect_hook_is_raised_by_close() -> None:
    app = Application()
    handler = WebSocketHandler()

    @handler.on_disconnect
    async def cleanup(websocket: WebSocket) -> None:
        raise KeyError("cleanup failed")

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await handler.handle_connection(websocket)

    session = await TestClient(app).websocket_connect("/ws")
    with pytest.raises(KeyError, match="cleanup failed"):
        await session.close()


@pytest.mark.asyncio
async def test_an_error_qakeapi_logs_in_a_worker_thread_reaches_the_session() -> None:
    def work_in_thread() -> None:
        try:
            raise ValueError("failed in a thread")
        except ValueError:
            logging.getLogger("qakeapi.worker").exception("the worker failed")

    app = Application()

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.receive_text()
        await asyncio.to_thread(work_in_thread)
        await websocket.receive_text()

    async with TestClient(app, timeout=2.0).websocket_connect("/ws") as session:
        await session.send_text("go")
        with pytest.raises(ValueError, match="failed in a thread"):
            await session.receive_text()
        await session.send_text("done")


@pytest.mark.asyncio
async def test_a_session_can_pause_again_after_resuming() -> None:
    sent: list[int] = []
    async with TestClient(producer_app(sent, []), timeout=2.0).websocket_connect("/") as session:
        for _ in range(2):
            sent.clear()
            session.pause_reading(buffer=1)
            await session.send_text("2")
            await session.wait_for_backpressure()
            assert sent == [0]
            session.resume_reading()
            assert not session.reading_paused
            assert [await session.receive_text(), await session.receive_text()] == ["0", "1"]
            assert sent == [0, 1]


def health_app() -> Application:
    app = Application()

    @app.get("/health")
    async def health(request: Request) -> dict[str, str]:
        return {"status": "ok"}

    return app


def test_a_sync_call_of_the_client_says_to_await_it() -> None:
    # Starlette's habit, in a plain def test: the request is never run, and the error says why.
    client = TestClient(health_app())
    response: Any = client.get("/health")
    with pytest.raises(AttributeError) as missing:
        response.status_code  # noqa: B018 - the attribute read is the test
    assert str(missing.value) == (
        "client.get('/health') was not awaited, so there is no .status_code yet: QakeAPI's TestClient is "
        "asynchronous; write 'response = await client.get(...)' inside an 'async def' test"
    )
    for name in ("json", "text"):  # the coroutine is closed: no 'never awaited' warning either
        with pytest.raises(AttributeError, match=rf"no \.{name} yet: .* write 'response = await client\.get"):
            getattr(response, name)


@pytest.mark.asyncio
@pytest.mark.parametrize("method", ["get", "head", "post", "put", "patch", "delete"])
async def test_every_request_method_is_awaited_for_its_response(method: str) -> None:
    app = Application()
    app.route("/thing", [method.upper()])(health_app().router.routes[0].endpoint)
    response = await getattr(TestClient(app), method)("/thing")
    assert response.status_code == 200
    pending = getattr(TestClient(app), method)("/thing")
    assert repr(pending) == f"<PendingResponse client.{method}('/thing'): await it>"
    assert (await pending).status_code == 200
