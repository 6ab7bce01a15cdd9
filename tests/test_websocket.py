"""The :class:`WebSocket` connection: state machine, handshake, sending, receiving, closing."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from qakeapi import Application
from qakeapi.core.websockets import WebSocket, WebSocketState
from qakeapi.exceptions import NotAcceptedError, WebSocketClosedError, WebSocketDisconnect
from qakeapi.status import CloseCode
from qakeapi.testing import TestClient
from qakeapi.types import Message, Scope


class FakeASGI:
    """The server side of the ASGI interface: queued messages in, a record of messages out.

    ``receive`` never waits: a test that asks for a message it did not queue fails at once.
    """

    def __init__(self, *messages: Message, send_error: OSError | None = None) -> None:
        self.inbox: asyncio.Queue[Message] = asyncio.Queue()
        for message in messages:
            self.inbox.put_nowait(message)
        self.sent: list[Message] = []
        self.send_error = send_error

    async def receive(self) -> Message:
        return self.inbox.get_nowait()

    async def send(self, message: Message) -> None:
        if self.send_error is not None:
            raise self.send_error
        self.sent.append(message)


CONNECT: Message = {"type": "websocket.connect"}
ACCEPT: Message = {"type": "websocket.accept", "subprotocol": None}


def text(data: str) -> Message:
    return {"type": "websocket.receive", "text": data}


def binary(data: bytes) -> Message:
    return {"type": "websocket.receive", "bytes": data}


def disconnect(code: int = 1000, reason: str = "") -> Message:
    return {"type": "websocket.disconnect", "code": code, "reason": reason}


def make_scope(**extra: Any) -> Scope:
    scope: Scope = {"type": "websocket", "path": "/ws", "headers": [], "query_string": b""}
    scope.update(extra)
    return scope


def make_websocket(*messages: Message, **scope: Any) -> tuple[WebSocket, FakeASGI]:
    asgi = FakeASGI(CONNECT, *messages)
    return WebSocket(make_scope(**scope), asgi.receive, asgi.send), asgi


async def accepted(*messages: Message) -> tuple[WebSocket, FakeASGI]:
    websocket, asgi = make_websocket(*messages)
    await websocket.accept()
    asgi.sent.clear()
    return websocket, asgi


# -- construction and state ---------------------------------------------------------------


def test_new_websocket_is_connecting_in_both_directions() -> None:
    websocket, _ = make_websocket()
    assert websocket.client_state is WebSocketState.CONNECTING
    assert websocket.application_state is WebSocketState.CONNECTING
    assert websocket.is_open is False


def test_non_websocket_scope_is_refused() -> None:
    asgi = FakeASGI()
    with pytest.raises(ValueError, match="expected a 'websocket' scope, got 'http'"):
        WebSocket({"type": "http"}, asgi.receive, asgi.send)


def test_ids_are_unique_per_connection() -> None:
    ids = {make_websocket()[0].id for _ in range(5)}
    assert len(ids) == 5


@pytest.mark.asyncio
async def test_id_is_stable_through_accept_and_close() -> None:
    websocket, _ = make_websocket()
    before = websocket.id
    await websocket.accept()
    await websocket.close()
    assert websocket.id == before


# -- accept ----------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_accept_receives_connect_then_sends_accept() -> None:
    websocket, asgi = make_websocket()
    await websocket.accept()
    assert asgi.sent == [ACCEPT]
    assert websocket.client_state is WebSocketState.CONNECTED
    assert websocket.application_state is WebSocketState.CONNECTED
    assert websocket.is_open is True


@pytest.mark.asyncio
async def test_accept_sends_extra_headers() -> None:
    websocket, asgi = make_websocket()
    await websocket.accept(headers=[(b"x-server", b"qake")])
    assert asgi.sent == [{"type": "websocket.accept", "subprotocol": None, "headers": [(b"x-server", b"qake")]}]


@pytest.mark.asyncio
async def test_accept_selects_an_offered_subprotocol() -> None:
    websocket, asgi = make_websocket(subprotocols=["chat.v1", "chat.v2"])
    await websocket.accept(subprotocol="chat.v2")
    assert asgi.sent == [{"type": "websocket.accept", "subprotocol": "chat.v2"}]
    assert websocket.accepted_subprotocol == "chat.v2"


@pytest.mark.asyncio
async def test_accept_refuses_a_subprotocol_not_offered() -> None:
    websocket, asgi = make_websocket(subprotocols=["chat.v1"])
    with pytest.raises(ValueError, match=r"subprotocol 'chat\.v9' was not offered"):
        await websocket.accept(subprotocol="chat.v9")
    assert asgi.sent == []
    assert websocket.application_state is WebSocketState.CONNECTING
    assert websocket.accepted_subprotocol is None


@pytest.mark.asyncio
async def test_accept_twice_raises_runtime_error() -> None:
    websocket, asgi = make_websocket()
    await websocket.accept()
    with pytest.raises(RuntimeError, match=r"cannot accept WebSocket \d+: it is CONNECTED"):
        await websocket.accept()
    assert asgi.sent == [ACCEPT]


@pytest.mark.asyncio
async def test_accept_after_close_raises_runtime_error() -> None:
    websocket, _ = make_websocket()
    await websocket.close()
    with pytest.raises(RuntimeError, match="it is DISCONNECTED"):
        await websocket.accept()


# -- raw receive/send transitions ------------------------------------------------------------


@pytest.mark.asyncio
async def test_receive_before_accept_raises_runtime_error() -> None:
    websocket, _ = make_websocket(text("early"))
    with pytest.raises(RuntimeError, match=r"call accept\(\) first"):
        await websocket.receive_text()


@pytest.mark.asyncio
async def test_first_raw_message_must_be_connect() -> None:
    asgi = FakeASGI(text("hi"))
    websocket = WebSocket(make_scope(), asgi.receive, asgi.send)
    with pytest.raises(RuntimeError, match=r"expected 'websocket\.connect', got 'websocket\.receive'"):
        await websocket.receive()


@pytest.mark.asyncio
async def test_raw_receive_after_disconnect_raises_runtime_error() -> None:
    websocket, _ = await accepted(disconnect())
    await websocket.receive()
    with pytest.raises(RuntimeError, match="the peer has already disconnected"):
        await websocket.receive()


@pytest.mark.asyncio
async def test_sending_data_before_accept_says_to_accept_first() -> None:
    websocket, asgi = make_websocket()
    expected = r"it was not accepted; write 'await websocket\.accept\(\)' before the first send"
    for send in (websocket.send_text("too early"), websocket.send_json({}), websocket.send_bytes(b"x")):
        with pytest.raises(NotAcceptedError, match=expected):  # a RuntimeError, as Starlette raises
            await send
    with pytest.raises(RuntimeError, match=expected):
        await websocket.send({"type": "websocket.send", "text": "raw"})
    assert asgi.sent == []


@pytest.mark.asyncio
async def test_raw_accept_after_accept_raises_runtime_error() -> None:
    websocket, asgi = await accepted()
    expected = r"expected 'websocket\.send' or 'websocket\.close', got 'websocket\.accept'"
    with pytest.raises(RuntimeError, match=expected):
        await websocket.send({"type": "websocket.accept"})
    assert asgi.sent == []


# -- sending ---------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_send_text() -> None:
    websocket, asgi = await accepted()
    await websocket.send_text("héllo")
    assert asgi.sent == [{"type": "websocket.send", "text": "héllo"}]


@pytest.mark.asyncio
async def test_send_bytes() -> None:
    websocket, asgi = await accepted()
    await websocket.send_bytes(b"\x00\xff")
    assert asgi.sent == [{"type": "websocket.send", "bytes": b"\x00\xff"}]


@pytest.mark.asyncio
async def test_send_json_is_compact_text_without_ascii_escapes() -> None:
    websocket, asgi = await accepted()
    await websocket.send_json({"a": [1, 2], "name": "é"})
    assert asgi.sent == [{"type": "websocket.send", "text": '{"a":[1,2],"name":"é"}'}]


@pytest.mark.asyncio
async def test_send_json_binary_mode_sends_utf8_bytes() -> None:
    websocket, asgi = await accepted()
    await websocket.send_json({"name": "é"}, mode="binary")
    assert asgi.sent == [{"type": "websocket.send", "bytes": '{"name":"é"}'.encode()}]


@pytest.mark.asyncio
async def test_send_json_unknown_mode_raises_value_error_and_sends_nothing() -> None:
    websocket, asgi = await accepted()
    with pytest.raises(ValueError, match="mode must be 'text' or 'binary', not 'hex'"):
        await websocket.send_json({}, mode="hex")
    assert asgi.sent == []


@pytest.mark.asyncio
async def test_send_json_refuses_nan() -> None:
    websocket, asgi = await accepted()
    with pytest.raises(ValueError, match="not JSON compliant"):
        await websocket.send_json({"x": float("nan")})
    assert asgi.sent == []


# -- receiving -------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_receive_text() -> None:
    websocket, _ = await accepted(text("hi"))
    assert await websocket.receive_text() == "hi"


@pytest.mark.asyncio
async def test_receive_text_of_binary_message_raises_type_error() -> None:
    websocket, _ = await accepted(binary(b"hi"))
    with pytest.raises(TypeError, match="expected a text message, got a binary one"):
        await websocket.receive_text()


@pytest.mark.asyncio
async def test_receive_bytes() -> None:
    websocket, _ = await accepted(binary(b"\x01\x02"))
    assert await websocket.receive_bytes() == b"\x01\x02"


@pytest.mark.asyncio
async def test_receive_bytes_of_text_message_raises_type_error() -> None:
    websocket, _ = await accepted(text("hi"))
    with pytest.raises(TypeError, match="expected a binary message, got a text one"):
        await websocket.receive_bytes()


@pytest.mark.asyncio
async def test_receive_json_from_text_and_from_bytes() -> None:
    websocket, _ = await accepted(text('{"a":1}'), binary(b"[1,2]"))
    assert await websocket.receive_json() == {"a": 1}
    assert await websocket.receive_json() == [1, 2]


@pytest.mark.asyncio
async def test_receive_json_of_invalid_json_raises_value_error() -> None:
    websocket, _ = await accepted(text("{not json"))
    with pytest.raises(ValueError, match="Expecting property name"):
        await websocket.receive_json()


@pytest.mark.asyncio
async def test_receive_message_returns_text_or_bytes() -> None:
    websocket, _ = await accepted(text("t"), binary(b"b"))
    assert await websocket.receive_message() == "t"
    assert await websocket.receive_message() == b"b"


@pytest.mark.asyncio
async def test_peer_disconnect_raises_websocket_disconnect_with_code_and_reason() -> None:
    websocket, _ = await accepted(disconnect(4001, "bye"))
    with pytest.raises(WebSocketDisconnect) as info:
        await websocket.receive_text()
    assert (info.value.code, info.value.reason) == (4001, "bye")
    assert websocket.close_code == 4001
    assert websocket.client_state is WebSocketState.DISCONNECTED
    assert websocket.application_state is WebSocketState.DISCONNECTED


@pytest.mark.asyncio
async def test_receive_after_peer_disconnect_raises_disconnect_again() -> None:
    websocket, _ = await accepted(disconnect(4001))
    with pytest.raises(WebSocketDisconnect):
        await websocket.receive_text()
    with pytest.raises(WebSocketDisconnect) as info:
        await websocket.receive_text()
    assert info.value.code == 4001


@pytest.mark.asyncio
async def test_messages_sent_before_the_peer_saw_our_close_can_still_be_received() -> None:
    websocket, _ = await accepted(text("in flight"))
    await websocket.close()
    assert await websocket.receive_text() == "in flight"


@pytest.mark.asyncio
async def test_async_iteration_yields_messages_and_ends_at_disconnect() -> None:
    websocket, _ = await accepted(text("a"), binary(b"b"), text("c"), disconnect(1001))
    received = [message async for message in websocket]
    assert received == ["a", b"b", "c"]
    assert websocket.close_code == 1001


# -- closing ---------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_close_sends_code_and_reason() -> None:
    websocket, asgi = await accepted()
    await websocket.close(CloseCode.GOING_AWAY, "restarting")
    assert asgi.sent == [{"type": "websocket.close", "code": 1001, "reason": "restarting"}]
    assert websocket.application_state is WebSocketState.DISCONNECTED
    assert websocket.is_open is False


@pytest.mark.asyncio
async def test_close_is_idempotent() -> None:
    websocket, asgi = await accepted()
    await websocket.close()
    await websocket.close(CloseCode.INTERNAL_ERROR)
    assert asgi.sent == [{"type": "websocket.close", "code": 1000, "reason": ""}]


@pytest.mark.asyncio
async def test_close_before_accept_refuses_the_handshake() -> None:
    websocket, asgi = make_websocket()
    await websocket.close(CloseCode.POLICY_VIOLATION, "no")
    assert asgi.sent == [{"type": "websocket.close", "code": 1008, "reason": "no"}]
    assert websocket.application_state is WebSocketState.DISCONNECTED


@pytest.mark.asyncio
async def test_close_after_peer_disconnect_sends_nothing() -> None:
    websocket, asgi = await accepted(disconnect())
    with pytest.raises(WebSocketDisconnect):
        await websocket.receive_text()
    await websocket.close()
    assert asgi.sent == []


@pytest.mark.asyncio
async def test_close_when_the_transport_is_gone_does_not_raise() -> None:
    websocket, asgi = await accepted()
    asgi.send_error = ConnectionResetError("reset")
    await websocket.close()
    assert websocket.application_state is WebSocketState.DISCONNECTED


# -- sending on a closed connection ----------------------------------------------------------


@pytest.mark.asyncio
async def test_send_after_application_close_raises_closed_error() -> None:
    websocket, asgi = await accepted()
    await websocket.close()
    with pytest.raises(WebSocketClosedError, match="it is closed"):
        await websocket.send_text("late")
    assert asgi.sent == [{"type": "websocket.close", "code": 1000, "reason": ""}]


@pytest.mark.asyncio
async def test_send_after_peer_disconnect_raises_closed_error() -> None:
    websocket, asgi = await accepted(disconnect())
    await websocket.receive()  # the raw disconnect, before any helper saw it
    with pytest.raises(WebSocketClosedError, match="the peer has disconnected"):
        await websocket.send_text("late")
    assert asgi.sent == []
    assert websocket.application_state is WebSocketState.DISCONNECTED


@pytest.mark.asyncio
async def test_send_when_asgi_send_raises_oserror_raises_closed_error() -> None:
    websocket, asgi = await accepted()
    error = BrokenPipeError("pipe")
    asgi.send_error = error
    with pytest.raises(WebSocketClosedError) as info:
        await websocket.send_text("x")
    assert info.value.__cause__ is error
    assert websocket.application_state is WebSocketState.DISCONNECTED


@pytest.mark.asyncio
async def test_after_transport_failure_later_sends_do_not_reach_asgi() -> None:
    websocket, asgi = await accepted()
    asgi.send_error = BrokenPipeError("pipe")
    with pytest.raises(WebSocketClosedError):
        await websocket.send_text("x")
    asgi.send_error = None
    with pytest.raises(WebSocketClosedError):
        await websocket.send_text("y")
    assert asgi.sent == []


def test_closed_error_is_a_connection_error() -> None:
    assert issubclass(WebSocketClosedError, ConnectionError)


# -- request data ----------------------------------------------------------------------------


def test_headers_are_case_insensitive() -> None:
    websocket, _ = make_websocket(headers=[(b"X-Token", b"abc"), (b"cookie", b"a=1"), (b"cookie", b"b=2")])
    assert websocket.headers["x-token"] == "abc"
    assert websocket.headers["X-TOKEN"] == "abc"
    assert websocket.headers.getlist("Cookie") == ["a=1", "b=2"]


def test_query_params() -> None:
    websocket, _ = make_websocket(query_string=b"room=lobby&tag=a&tag=b")
    assert websocket.query_params["room"] == "lobby"
    assert websocket.query_params.getlist("tag") == ["a", "b"]


def test_subprotocols_in_client_order() -> None:
    websocket, _ = make_websocket(subprotocols=["v2", "v1"])
    assert websocket.subprotocols == ["v2", "v1"]


def test_subprotocols_default_to_empty() -> None:
    websocket, _ = make_websocket()
    assert websocket.subprotocols == []


def test_client_address() -> None:
    websocket, _ = make_websocket(client=["10.0.0.1", "5000"])
    assert websocket.client == ("10.0.0.1", 5000)


def test_client_is_none_when_unknown() -> None:
    websocket, _ = make_websocket()
    assert websocket.client is None


def test_path_and_path_params() -> None:
    websocket, _ = make_websocket(path="/rooms/7", path_params={"room_id": 7})
    assert websocket.path == "/rooms/7"
    assert websocket.path_params == {"room_id": 7}


def test_path_params_default_to_empty() -> None:
    websocket, _ = make_websocket()
    assert websocket.path_params == {}


def test_state_keeps_attributes_per_connection() -> None:
    first, _ = make_websocket()
    second, _ = make_websocket()
    first.state.nickname = "ann"
    assert first.state.nickname == "ann"
    with pytest.raises(AttributeError, match="state has no attribute 'nickname'"):
        _ = second.state.nickname


# -- through the TestClient ------------------------------------------------------------------


@pytest.mark.asyncio
async def test_echo_through_test_client() -> None:
    app = Application()

    @app.websocket("/echo")
    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        async for message in websocket:
            if isinstance(message, str):
                await websocket.send_text(message.upper())
            else:
                await websocket.send_bytes(message[::-1])

    async with TestClient(app).websocket_connect("/echo") as session:
        await session.send_text("hi")
        assert await session.receive_text() == "HI"
        await session.send_bytes(b"ab")
        assert await session.receive_bytes() == b"ba"


@pytest.mark.asyncio
async def test_json_round_trip_through_test_client() -> None:
    app = Application()

    @app.websocket("/json")
    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        data = await websocket.receive_json()
        await websocket.send_json({"echo": data, "id": websocket.path_params})

    async with TestClient(app).websocket_connect("/json") as session:
        await session.send_json({"n": 1})
        assert await session.receive_json() == {"echo": {"n": 1}, "id": {}}


@pytest.mark.asyncio
async def test_client_close_code_reaches_the_endpoint() -> None:
    app = Application()
    seen: list[tuple[int, str]] = []

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            await websocket.receive_text()
        except WebSocketDisconnect as exc:
            seen.append((exc.code, exc.reason))

    session = await TestClient(app).websocket_connect("/ws")
    await session.close(4002, "done")
    assert seen == [(4002, "done")]


@pytest.mark.asyncio
async def test_accepted_subprotocol_reaches_the_client() -> None:
    app = Application()

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept(subprotocol=websocket.subprotocols[-1])
        await websocket.send_json(websocket.subprotocols)

    async with TestClient(app).websocket_connect("/ws", subprotocols=["a", "b"]) as session:
        assert session.accepted_subprotocol == "b"
        assert await session.receive_json() == ["a", "b"]


@pytest.mark.asyncio
async def test_server_close_reaches_the_client_with_code_and_reason() -> None:
    app = Application()

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.close(CloseCode.TRY_AGAIN_LATER, "busy")

    async with TestClient(app).websocket_connect("/ws") as session:
        with pytest.raises(WebSocketDisconnect) as info:
            await session.receive_text()
    assert (info.value.code, info.value.reason) == (CloseCode.TRY_AGAIN_LATER, "busy")


# -- closing under pressure ----------------------------------------------------------------


@pytest.mark.asyncio
async def test_concurrent_closes_send_one_close_frame() -> None:
    gate = asyncio.Event()
    sent: list[Message] = []

    async def send(message: Message) -> None:
        await gate.wait()  # the transport is paused: the first close is still being written
        sent.append(message)

    async def receive() -> Message:
        return CONNECT

    websocket = WebSocket(make_scope(), receive, send)
    gate.set()
    await websocket.accept()
    gate.clear()
    first = asyncio.ensure_future(websocket.close(CloseCode.GOING_AWAY, "bye"))
    second = asyncio.ensure_future(websocket.close())
    await asyncio.sleep(0)
    assert second.done()  # the second close returned at once
    gate.set()
    await first
    assert sent[1:] == [{"type": "websocket.close", "code": 1001, "reason": "bye"}]


@pytest.mark.asyncio
async def test_close_refuses_reasons_and_codes_that_cannot_be_sent() -> None:
    websocket, asgi = await accepted()
    with pytest.raises(ValueError, match="123 bytes"):
        await websocket.close(reason="é" * 62)
    for code in (1005, 1006, 999, 5000):
        with pytest.raises(ValueError, match=f"close code {code}"):
            await websocket.close(code)
    assert asgi.sent == []
    assert websocket.application_state is WebSocketState.CONNECTED
    await websocket.close(reason="x" * 123)
    assert asgi.sent == [{"type": "websocket.close", "code": 1000, "reason": "x" * 123}]


@pytest.mark.asyncio
async def test_close_ignores_a_server_that_already_closed_the_connection() -> None:
    async def send(message: Message) -> None:
        if message["type"] == "websocket.close":
            raise RuntimeError("Unexpected ASGI message 'websocket.close', after sending 'websocket.close'")

    async def receive() -> Message:
        return CONNECT

    websocket = WebSocket(make_scope(), receive, send)
    await websocket.accept()
    await websocket.close()  # no exception: close() is idempotent whoever closed first
    assert websocket.application_state is WebSocketState.DISCONNECTED


@pytest.mark.asyncio
async def test_receive_json_refuses_absurdly_nested_json_with_value_error() -> None:
    websocket, _ = await accepted(text("[" * 100_000))
    with pytest.raises(ValueError, match="nests too deeply"):
        await websocket.receive_json()
