"""The test client answers a handshake refused with an HTTP response as uvicorn does.

Its scope offers the ASGI ``websocket.http.response`` extension; an application that answers
with ``websocket.http.response.start`` and ``.body`` makes connecting raise
:class:`~qakeapi.exceptions.WebSocketDenied` with the status, headers and body; one that closes
before accepting still raises a plain :class:`~qakeapi.exceptions.WebSocketDisconnect`.
``tests/test_application_refusals.py`` covers QakeAPI's own refusals through the client, and
``tests/e2e/test_refusals.py`` compares the client with a real uvicorn.
"""

from __future__ import annotations

from typing import Any

import pytest

from qakeapi.core.codec import decode_json
from qakeapi.exceptions import (
    LoneSurrogateError,
    NestingTooDeepError,
    NonStandardJSONError,
    QakeAPIError,
    WebSocketDenied,
    WebSocketDisconnect,
)
from qakeapi.status import CloseCode
from qakeapi.testing import TestClient
from qakeapi.types import Message, Receive, Scope, Send

JSON = [(b"content-type", b"application/json")]


def denying_app(*messages: Message, after: list[Message] | None = None) -> Any:
    """A bare ASGI app that sends ``messages`` after the connect; ``after`` gets what it receives then."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        for message in messages:
            await send(message)
        if after is not None:
            after.append(await receive())

    return app


def start(status: int, headers: list[tuple[bytes, bytes]] | None = None) -> Message:
    return {"type": "websocket.http.response.start", "status": status, "headers": headers or []}


def body(chunk: bytes, *, more: bool = False) -> Message:
    return {"type": "websocket.http.response.body", "body": chunk, "more_body": more}


@pytest.mark.asyncio
async def test_the_websocket_scope_offers_the_http_response_extension() -> None:
    scopes: list[Scope] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        scopes.append(scope)
        await receive()
        await send({"type": "websocket.accept"})

    session = await TestClient(app).websocket_connect("/")
    await session.close()
    assert scopes[0]["extensions"] == {"websocket.http.response": {}}


@pytest.mark.asyncio
async def test_a_denial_response_raises_websocket_denied_with_status_headers_and_body() -> None:
    app = denying_app(start(403, [*JSON, (b"X-Why", b"policy")]), body(b'{"detail":"origin not allowed"}'))
    with pytest.raises(WebSocketDenied) as info:
        await TestClient(app).websocket_connect("/")
    denied = info.value
    assert denied.status_code == 403
    assert denied.headers["Content-Type"] == "application/json"
    assert denied.headers["x-why"] == "policy"
    assert denied.body == b'{"detail":"origin not allowed"}'
    assert denied.text == '{"detail":"origin not allowed"}'
    assert denied.json() == {"detail": "origin not allowed"}
    assert denied.detail == "origin not allowed"
    assert str(denied) == "the WebSocket handshake was refused with HTTP 403 Forbidden: origin not allowed"


@pytest.mark.asyncio
async def test_a_body_in_chunks_is_joined() -> None:
    app = denying_app(start(429), body(b"too many ", more=True), body(b"", more=True), body(b"connections"))
    with pytest.raises(WebSocketDenied) as info:
        await TestClient(app).websocket_connect("/")
    assert (info.value.status_code, info.value.body) == (429, b"too many connections")
    message = "the WebSocket handshake was refused with HTTP 429 Too Many Requests: too many connections"
    assert str(info.value) == message


@pytest.mark.asyncio
async def test_an_empty_denial_says_the_status() -> None:
    with pytest.raises(WebSocketDenied) as info:
        await TestClient(denying_app(start(404), body(b""))).websocket_connect("/")
    assert (info.value.body, info.value.detail) == (b"", "Not Found")
    assert str(info.value) == "the WebSocket handshake was refused with HTTP 404 Not Found"


@pytest.mark.asyncio
async def test_a_denial_is_a_websocket_disconnect_so_old_handlers_still_catch_it() -> None:
    app = denying_app(start(401, JSON), body(b'{"detail":"missing"}'))
    caught: list[WebSocketDisconnect] = []
    try:
        await TestClient(app).websocket_connect("/")
    except WebSocketDisconnect as closed:  # what a test written for the close-based refusal caught
        caught.append(closed)
    [refusal] = caught
    assert isinstance(refusal, WebSocketDenied)
    assert isinstance(refusal, QakeAPIError)
    assert (refusal.code, refusal.reason) == (CloseCode.ABNORMAL_CLOSURE, "missing")


@pytest.mark.asyncio
async def test_after_the_denial_the_apps_receive_gets_a_disconnect() -> None:
    after: list[Message] = []
    app = denying_app(start(403), body(b"no"), after=after)
    with pytest.raises(WebSocketDenied):
        await TestClient(app).websocket_connect("/")
    assert after == [{"type": "websocket.disconnect", "code": CloseCode.ABNORMAL_CLOSURE, "reason": ""}]


@pytest.mark.asyncio
async def test_a_close_before_the_accept_is_still_a_plain_disconnect_with_its_code() -> None:
    after: list[Message] = []
    app = denying_app({"type": "websocket.close", "code": 4003, "reason": "forbidden"}, after=after)
    with pytest.raises(WebSocketDisconnect) as info:
        await TestClient(app).websocket_connect("/")
    assert type(info.value) is WebSocketDisconnect  # not a denial: a server answers it with a bare 403
    assert (info.value.code, info.value.reason) == (4003, "forbidden")
    assert after == [{"type": "websocket.disconnect", "code": CloseCode.ABNORMAL_CLOSURE, "reason": "forbidden"}]


@pytest.mark.asyncio
async def test_sending_after_the_response_ended_is_refused_in_the_app() -> None:
    app = denying_app(start(403), body(b""), {"type": "websocket.accept"})
    with pytest.raises(RuntimeError, match=r"Unexpected ASGI message 'websocket\.accept', after sending"):
        await TestClient(app).websocket_connect("/")


@pytest.mark.asyncio
async def test_anything_but_body_chunks_during_the_response_is_refused_in_the_app() -> None:
    app = denying_app(start(403), {"type": "websocket.send", "text": "hi"})
    with pytest.raises(RuntimeError, match=r"Expected ASGI message 'websocket\.http\.response\.body', but got"):
        await TestClient(app).websocket_connect("/")


@pytest.mark.asyncio
async def test_a_response_after_the_accept_is_refused_in_the_app() -> None:
    app = denying_app({"type": "websocket.accept"}, start(403))
    session = await TestClient(app).websocket_connect("/")
    with pytest.raises(RuntimeError, match=r"'websocket\.send' or 'websocket\.close', but got 'websocket\.http"):
        await session.receive_text()


@pytest.mark.asyncio
async def test_an_app_that_returns_in_the_middle_of_its_response_is_an_error() -> None:
    app = denying_app(start(403), body(b"half", more=True))
    with pytest.raises(RuntimeError, match=r"returned in the middle of its denial response: send .* more_body=False"):
        await TestClient(app).websocket_connect("/")


@pytest.mark.asyncio
async def test_an_exception_after_the_denial_is_raised_unless_told_not_to() -> None:
    async def fails(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send(start(500, JSON))
        await send(body(b'{"detail":"Internal Server Error"}'))
        raise LookupError("the app failed before accepting")

    with pytest.raises(LookupError, match="failed before accepting"):
        await TestClient(fails).websocket_connect("/")
    with pytest.raises(WebSocketDenied) as info:
        await TestClient(fails, raise_server_exceptions=False).websocket_connect("/")
    assert (info.value.status_code, info.value.json()) == (500, {"detail": "Internal Server Error"})


@pytest.mark.asyncio
async def test_a_denied_session_reports_the_refusal_on_receive_too() -> None:
    session = TestClient(denying_app(start(403), body(b"no"))).websocket_connect("/")
    with pytest.raises(WebSocketDenied):
        await session.connect()
    with pytest.raises(WebSocketDisconnect) as info:
        await session.receive_text()
    assert (info.value.code, info.value.reason) == (CloseCode.ABNORMAL_CLOSURE, "no")


# -- what a denial's message shows -----------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "content", "detail", "message"),
    [
        (401, b'{"detail":"expired"}', "expired", "HTTP 401 Unauthorized: expired"),
        (400, b'{"error":"bad"}', '{"error":"bad"}', 'HTTP 400 Bad Request: {"error":"bad"}'),
        (403, b'{"detail":3}', '{"detail":3}', 'HTTP 403 Forbidden: {"detail":3}'),
        (503, b"  busy\n", "busy", "HTTP 503 Service Unavailable: busy"),
        (599, b"", "599", "HTTP 599"),
        (500, b"\xff\xfe", "\ufffd\ufffd", "HTTP 500 Internal Server Error: \ufffd\ufffd"),
    ],
)
def test_the_detail_is_the_json_detail_else_the_text_else_the_status(
    status: int, content: bytes, detail: str, message: str
) -> None:
    denied = WebSocketDenied(status, JSON, content)
    assert denied.detail == detail
    assert str(denied) == f"the WebSocket handshake was refused with {message}"


def test_a_long_body_is_shortened_in_the_message_but_kept_whole() -> None:
    page = b"<html>" + b"x" * 500 + b"</html>"
    denied = WebSocketDenied(502, [(b"content-type", b"text/html")], page)
    assert denied.body == page
    assert len(denied.detail) == 200
    assert denied.detail.endswith("...")
    assert str(denied).endswith(denied.detail)


def test_json_of_a_body_that_is_not_json_is_a_value_error() -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the codec's own message
        WebSocketDenied(403, (), b"nope", decode=decode_json).json()


def test_json_without_a_decoder_says_what_is_missing() -> None:
    with pytest.raises(TypeError, match="without decode="):
        WebSocketDenied(403, JSON, b'{"detail":"no"}').json()


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("content", "error"),
    [
        (b'{"detail":NaN}', NonStandardJSONError),
        (b'{"detail":"\\ud800"}', LoneSurrogateError),
        (b"[" * 300 + b"]" * 300, NestingTooDeepError),
    ],
)
async def test_the_test_clients_denial_reads_its_body_with_the_strict_decoder(
    content: bytes, error: type[Exception]
) -> None:
    app = denying_app(start(400, JSON), body(content))
    with pytest.raises(WebSocketDenied) as info:
        await TestClient(app).websocket_connect("/")
    with pytest.raises(error):
        info.value.json()
