"""What a client gets when the application refuses a handshake or fails before accepting it.

Through a server that offers the ASGI ``websocket.http.response`` extension (uvicorn, hypercorn,
granian, and the test client) each refusal is an HTTP response whose status says which: 404 no
route, 403 origin or host, 401 auth, 500 the application failed; the test client raises it as
:class:`~qakeapi.exceptions.WebSocketDenied`. Without the extension (daphne) a refusal is a close
before the accept, 1008 with the reason. ``tests/e2e/test_refusals.py`` checks what each real
server transmits, and that the test client reports the same.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

import pytest

from qakeapi import Application, NotAcceptedError, WebSocket
from qakeapi.core.codec import decode_json
from qakeapi.status import CloseCode
from qakeapi.testing import TestClient, WebSocketDenied
from qakeapi.types import Message

DENIAL: dict[str, dict[str, Any]] = {"websocket.http.response": {}}


async def handshake(
    app: Application, path: str, headers: dict[str, str] | None = None, *, denial: bool = True
) -> tuple[list[Message], BaseException | None]:
    """Run one handshake through the raw ASGI interface; return what the app sent and what it raised."""
    scope: dict[str, Any] = {
        "type": "websocket",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(k.encode(), v.encode()) for k, v in {"host": "127.0.0.1:8000", **(headers or {})}.items()],
        "scheme": "ws",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 50000),
        "subprotocols": [],
        "extensions": DENIAL if denial else {},
    }
    sent: list[Message] = []
    received = iter([{"type": "websocket.connect"}])

    async def receive() -> Message:
        return next(received, {"type": "websocket.disconnect", "code": 1006})

    async def send(message: Message) -> None:
        sent.append(message)

    try:
        await app(scope, receive, send)
    except Exception as exc:
        return sent, exc
    return sent, None


def response(sent: list[Message]) -> tuple[int, dict[bytes, bytes], Any]:
    """The status, headers and decoded JSON body of a denial response."""
    start, body = sent
    assert start["type"] == "websocket.http.response.start"
    assert body["type"] == "websocket.http.response.body"
    return start["status"], dict(start["headers"]), decode_json(body["body"])


@pytest.fixture
def app() -> Application:
    app = Application()

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text("hello")

    @app.websocket("/fails")
    async def fails(websocket: WebSocket) -> None:
        raise LookupError("no such room")

    @app.websocket("/forgot-accept")
    async def forgot_accept(websocket: WebSocket) -> None:
        await websocket.send_text("hello")

    return app


@pytest.mark.asyncio
async def test_a_wrong_path_is_404_naming_the_path(app: Application, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="qakeapi.application"):
        sent, raised = await handshake(app, "/wss")
    assert raised is None
    status, headers, body = response(sent)
    assert (status, headers[b"content-type"]) == (404, b"application/json")
    assert body == {"detail": "no WebSocket route for /wss"}
    assert "no WebSocket route for '/wss'; answering 404 (WebSocket routes: /ws, /fails, /forgot-accept)" in caplog.text


@pytest.mark.asyncio
async def test_a_refused_origin_is_403_origin_not_allowed(app: Application) -> None:
    sent, _ = await handshake(app, "/ws", {"origin": "http://evil.example"})
    assert response(sent)[::2] == (403, {"detail": "origin not allowed"})


@pytest.mark.asyncio
async def test_a_refused_host_is_403_host_not_allowed(app: Application) -> None:
    # DNS rebinding's shape: the origin matches the Host header, a name nobody listed.
    sent, _ = await handshake(app, "/ws", {"host": "evil.example", "origin": "http://evil.example"})
    assert response(sent)[::2] == (403, {"detail": "host not allowed"})


@pytest.mark.asyncio
async def test_an_endpoint_failing_before_the_accept_is_500_and_raises(app: Application) -> None:
    sent, raised = await handshake(app, "/fails")
    assert response(sent)[::2] == (500, {"detail": "Internal Server Error"})
    assert isinstance(raised, LookupError)  # the server logs it


@pytest.mark.asyncio
async def test_without_the_extension_a_failure_before_the_accept_is_left_to_the_server(app: Application) -> None:
    sent, raised = await handshake(app, "/fails", denial=False)
    assert sent == []  # daphne and uvicorn answer the exception with their own 500; a close would be a 403
    assert isinstance(raised, LookupError)


@pytest.mark.asyncio
async def test_a_send_before_the_accept_says_what_to_write(app: Application) -> None:
    sent, raised = await handshake(app, "/forgot-accept")
    assert response(sent)[0] == 500
    assert isinstance(raised, NotAcceptedError)
    assert isinstance(raised, RuntimeError)
    message = str(raised)
    assert message.startswith("cannot send on WebSocket ")
    assert " at /forgot-accept: it was not accepted; write 'await websocket.accept()' before the first send" in message
    assert "websocket.send" not in message  # the server's wording, which said nothing useful


@pytest.mark.asyncio
async def test_a_raw_send_before_the_accept_says_the_same(app: Application) -> None:
    @app.websocket("/raw")
    async def raw(websocket: WebSocket) -> None:
        await websocket.receive()
        await websocket.send({"type": "websocket.send", "text": "hello"})

    _, raised = await handshake(app, "/raw")
    assert isinstance(raised, NotAcceptedError)
    assert "write 'await websocket.accept()'" in str(raised)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("path", "headers", "reason"),
    [
        ("/wss", {}, "no WebSocket route for /wss"),
        ("/ws", {"origin": "http://evil.example"}, "origin not allowed"),
        ("/ws", {"host": "evil.example", "origin": "http://evil.example"}, "host not allowed"),
    ],
)
async def test_without_the_extension_a_refusal_is_a_close_naming_it(
    app: Application, path: str, headers: dict[str, str], reason: str
) -> None:
    sent, raised = await handshake(app, path, headers, denial=False)
    assert raised is None
    assert sent == [{"type": "websocket.close", "code": CloseCode.POLICY_VIOLATION, "reason": reason}]


@pytest.mark.asyncio
async def test_without_the_extension_a_long_path_is_cut_to_fit_a_close_reason(app: Application) -> None:
    [close], _ = await handshake(app, "/" + "é" * 100, denial=False)
    assert close["reason"].startswith("no WebSocket route for /éé")
    assert close["reason"].endswith("...")
    assert len(close["reason"].encode()) <= 123


TEST_CLIENT_CASES = [
    ("/wss", {}, 404, "no WebSocket route for /wss"),
    ("/ws", {"origin": "http://evil.example"}, 403, "origin not allowed"),
    ("/ws", {"host": "evil.example", "origin": "http://evil.example"}, 403, "host not allowed"),
    ("/fails", {}, 500, "Internal Server Error"),
    ("/forgot-accept", {}, 500, "Internal Server Error"),
]


@pytest.mark.asyncio
@pytest.mark.parametrize(("path", "headers", "status", "detail"), TEST_CLIENT_CASES)
async def test_the_test_client_raises_the_status_and_body_the_app_sent(
    app: Application, path: str, headers: dict[str, str], status: int, detail: str
) -> None:
    host = headers.pop("host", "127.0.0.1")
    async with TestClient(app, base_url=f"http://{host}", raise_server_exceptions=False) as client:
        with pytest.raises(WebSocketDenied) as refused:
            await client.websocket_connect(path, headers=headers)
    denied = refused.value
    assert (denied.status_code, denied.json(), denied.detail) == (status, {"detail": detail}, detail)
    assert denied.headers["content-type"] == "application/json"
    sent, _ = await handshake(app, path, {"host": host, **headers})
    assert (denied.status_code, list(denied.headers.items()), denied.body) == (
        sent[0]["status"],
        [(name.decode(), value.decode()) for name, value in sent[0]["headers"]],
        sent[1]["body"],
    )  # what a server with the extension would transmit
    phrase = HTTPStatus(status).phrase
    assert str(denied) == f"the WebSocket handshake was refused with HTTP {status} {phrase}: {detail}"


@pytest.mark.asyncio
async def test_the_test_client_raises_a_failure_before_the_accept_itself_by_default(app: Application) -> None:
    async with TestClient(app) as client:
        with pytest.raises(LookupError, match="no such room"):
            await client.websocket_connect("/fails")


@pytest.mark.asyncio
async def test_the_test_client_raises_a_missing_accept_with_the_advice(app: Application) -> None:
    async with TestClient(app) as client:
        with pytest.raises(NotAcceptedError, match=r"write 'await websocket.accept\(\)' before the first send"):
            await client.websocket_connect("/forgot-accept")
