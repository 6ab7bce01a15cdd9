"""The hook-based :class:`WebSocketHandler`."""

from __future__ import annotations

import logging
from collections.abc import MutableSet
from typing import Any

import pytest

from qakeapi import Application
from qakeapi.core.codec import encode_json
from qakeapi.core.websockets import WebSocket, WebSocketHandler
from qakeapi.exceptions import WebSocketDisconnect
from qakeapi.status import CloseCode
from qakeapi.testing import TestClient


def serve(handler: WebSocketHandler, *, raise_server_exceptions: bool = True) -> TestClient:
    app = Application()

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket) -> None:
        await handler.handle_connection(websocket)

    return TestClient(app, timeout=2.0, raise_server_exceptions=raise_server_exceptions)


def recording_handler(**options: Any) -> tuple[WebSocketHandler, list[Any]]:
    """A handler whose ``on_message`` records each message and answers ``"ack"``."""
    handler = WebSocketHandler(**options)
    received: list[Any] = []

    @handler.on_message
    async def record(websocket: WebSocket, message: Any) -> None:
        received.append(message)
        await websocket.send_text("ack")

    return handler, received


# -- registration ----------------------------------------------------------------------------


def test_decorators_return_the_hook_unchanged() -> None:
    handler = WebSocketHandler()

    async def connect(websocket: WebSocket) -> None: ...

    async def message(websocket: WebSocket, data: Any) -> None: ...

    assert handler.on_connect(connect) is connect
    assert handler.on_message(message) is message
    assert handler.on_disconnect(connect) is connect


@pytest.mark.asyncio
async def test_hooks_run_in_registration_order() -> None:
    handler = WebSocketHandler()
    calls: list[str] = []

    @handler.on_connect
    async def connect_first(websocket: WebSocket) -> None:
        calls.append("connect 1")

    @handler.on_connect
    async def connect_second(websocket: WebSocket) -> None:
        calls.append("connect 2")

    @handler.on_message
    async def message_first(websocket: WebSocket, message: Any) -> None:
        calls.append(f"message 1 {message}")

    @handler.on_message
    async def message_second(websocket: WebSocket, message: Any) -> None:
        calls.append(f"message 2 {message}")
        await websocket.send_text("ack")

    @handler.on_disconnect
    async def disconnect_first(websocket: WebSocket) -> None:
        calls.append("disconnect 1")

    @handler.on_disconnect
    async def disconnect_second(websocket: WebSocket) -> None:
        calls.append("disconnect 2")

    async with serve(handler).websocket_connect("/ws") as session:
        await session.send_text("x")
        assert await session.receive_text() == "ack"
    assert calls == ["connect 1", "connect 2", "message 1 x", "message 2 x", "disconnect 1", "disconnect 2"]


# -- message decoding ------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_json_text_reaches_on_message_decoded() -> None:
    handler, received = recording_handler()
    async with serve(handler).websocket_connect("/ws") as session:
        await session.send_text('{"type":"chat","n":[1,2]}')
        assert await session.receive_text() == "ack"
        await session.send_text("42")
        assert await session.receive_text() == "ack"
    assert received == [{"type": "chat", "n": [1, 2]}, 42]


@pytest.mark.asyncio
async def test_non_json_text_reaches_on_message_as_str() -> None:
    handler, received = recording_handler()
    async with serve(handler).websocket_connect("/ws") as session:
        await session.send_text("hello {world")
        assert await session.receive_text() == "ack"
    assert received == ["hello {world"]


REFUSED_AS_JSON = {
    '{"x": NaN}': ("NaN/Infinity", "NaN"),
    '{"x": Infinity}': ("NaN/Infinity", "Infinity"),
    '{"x": -Infinity}': ("NaN/Infinity", "Infinity"),
    '{"type": "chat_message", "message": "\\ud800"}': ("lone surrogate", "\\ud800"),
    '["ok", "\\udfff"]': ("lone surrogate", "\\udfff"),
    '{"x": 1e400}': ("number out of range", "1e400"),
    '{"x": -1E+999}': ("number out of range", "-1E+999"),
    '{"x": ' + "9" * 5000 + "}": ("number out of range", "digits"),
    "[" * 300 + "]" * 300: ("nesting too deep", "nests too deeply"),
}


@pytest.mark.asyncio
@pytest.mark.parametrize("bad", list(REFUSED_AS_JSON), ids=lambda bad: bad[:40])
async def test_json_that_could_not_be_sent_back_arrives_as_text_logged_once_without_traceback(
    bad: str, caplog: pytest.LogCaptureFixture
) -> None:
    kind, shown = REFUSED_AS_JSON[bad]
    handler = WebSocketHandler()
    received: list[Any] = []

    @handler.on_message
    async def echo(websocket: WebSocket, message: Any) -> None:
        received.append(message)
        await websocket.send_json({"echo": message})  # would fail to encode (or send) a decoded value

    with caplog.at_level(logging.DEBUG, logger="qakeapi"):
        async with serve(handler).websocket_connect("/ws") as session:
            for _ in range(50):
                await session.send_text(bad)
                assert await session.receive_json() == {"echo": bad}
            await session.send_text('{"x": 1.5, "y": "\\ud83d\\ude00", "z": -0}')  # the connection keeps working
            assert await session.receive_json() == {"echo": {"x": 1.5, "y": "\U0001f600", "z": 0}}
    assert received == [bad] * 50 + [{"x": 1.5, "y": "\U0001f600", "z": 0}]
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert f"refused as JSON ({kind})" in warnings[0].getMessage()
    assert shown in warnings[0].getMessage()
    assert not any(r.exc_info for r in caplog.records)
    assert any(f"50 messages were refused as JSON ({kind})" in r.getMessage() for r in caplog.records)


@pytest.mark.asyncio
async def test_each_kind_refused_as_json_is_logged_once_per_connection(caplog: pytest.LogCaptureFixture) -> None:
    handler, received = recording_handler()
    bad = ['{"x": NaN}', '"\\ud800"', "1e400", '"\\udc00"', "-Infinity", "1e999"]
    with caplog.at_level(logging.WARNING, logger="qakeapi"):
        async with serve(handler).websocket_connect("/ws") as session:
            for text in bad * 10:
                await session.send_text(text)
                assert await session.receive_text() == "ack"
    assert received == bad * 10
    kinds = sorted(r.getMessage().split("refused as JSON (")[1].split(")")[0] for r in caplog.records)
    assert kinds == ["NaN/Infinity", "lone surrogate", "number out of range"]


@pytest.mark.asyncio
async def test_binary_reaches_on_message_as_bytes() -> None:
    handler, received = recording_handler()
    async with serve(handler).websocket_connect("/ws") as session:
        await session.send_bytes(b'{"a":1}')
        assert await session.receive_text() == "ack"
    assert received == [b'{"a":1}']


# -- errors in hooks -------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_exception_in_on_message_is_logged_with_connection_context(caplog: pytest.LogCaptureFixture) -> None:
    handler = WebSocketHandler()
    ids: list[int] = []

    @handler.on_connect
    async def remember(websocket: WebSocket) -> None:
        ids.append(websocket.id)

    @handler.on_message
    async def explode(websocket: WebSocket, message: Any) -> None:
        if message == "boom":
            raise RuntimeError("hook exploded")
        await websocket.send_text(f"echo {message}")

    with caplog.at_level(logging.ERROR, logger="qakeapi.websockets"):
        async with serve(handler, raise_server_exceptions=False).websocket_connect("/ws") as session:
            await session.send_text("boom")
            await session.send_text("still here")
            assert await session.receive_text() == "echo still here"

    [record] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert record.name == "qakeapi.websockets"
    assert f"connection={ids[0]}" in record.getMessage()
    assert "path=/ws" in record.getMessage()
    assert "explode" in record.getMessage()
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], RuntimeError)


@pytest.mark.asyncio
async def test_exception_in_on_connect_closes_with_internal_error() -> None:
    handler = WebSocketHandler()
    disconnected: list[int] = []

    @handler.on_connect
    async def fail(websocket: WebSocket) -> None:
        raise RuntimeError("setup failed")

    @handler.on_disconnect
    async def gone(websocket: WebSocket) -> None:
        disconnected.append(websocket.id)

    async with serve(handler).websocket_connect("/ws") as session:
        with pytest.raises(RuntimeError, match="setup failed"):  # the hook's error, logged by the handler
            await session.receive_text()
        with pytest.raises(WebSocketDisconnect) as info:
            await session.receive_text()
    assert info.value.code == CloseCode.INTERNAL_ERROR
    assert len(disconnected) == 1


@pytest.mark.asyncio
async def test_exception_in_on_connect_skips_later_connect_hooks_and_messages() -> None:
    handler = WebSocketHandler()
    calls: list[str] = []

    @handler.on_connect
    async def fail(websocket: WebSocket) -> None:
        raise RuntimeError("setup failed")

    @handler.on_connect
    async def later(websocket: WebSocket) -> None:
        calls.append("later connect hook")

    @handler.on_message
    async def message(websocket: WebSocket, data: Any) -> None:
        calls.append("message")

    async with serve(handler, raise_server_exceptions=False).websocket_connect("/ws") as session:
        with pytest.raises(WebSocketDisconnect):
            await session.receive_text()
    assert calls == []


# -- disconnect ------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_on_disconnect_runs_once_when_the_client_closes() -> None:
    handler = WebSocketHandler()
    disconnected: list[int] = []
    connected: list[int] = []

    @handler.on_connect
    async def hello(websocket: WebSocket) -> None:
        connected.append(websocket.id)
        await websocket.send_text("hello")

    @handler.on_disconnect
    async def gone(websocket: WebSocket) -> None:
        disconnected.append(websocket.id)

    session = await serve(handler).websocket_connect("/ws")
    assert await session.receive_text() == "hello"
    await session.close(CloseCode.GOING_AWAY)
    await session.close()
    assert disconnected == connected
    assert len(disconnected) == 1


@pytest.mark.asyncio
async def test_on_disconnect_runs_once_when_a_hook_closes_the_connection() -> None:
    handler = WebSocketHandler()
    disconnected: list[int] = []

    @handler.on_message
    async def kick(websocket: WebSocket, message: Any) -> None:
        await websocket.close(CloseCode.POLICY_VIOLATION, "kicked")

    @handler.on_disconnect
    async def gone(websocket: WebSocket) -> None:
        disconnected.append(websocket.id)

    async with serve(handler).websocket_connect("/ws") as session:
        await session.send_text("hi")
        with pytest.raises(WebSocketDisconnect) as info:
            await session.receive_text()
    assert (info.value.code, info.value.reason) == (CloseCode.POLICY_VIOLATION, "kicked")
    assert len(disconnected) == 1


# -- message size limit ----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_oversized_message_closes_with_message_too_big() -> None:
    handler, received = recording_handler(max_message_size=8)
    async with serve(handler).websocket_connect("/ws") as session:
        await session.send_text("x" * 9)
        with pytest.raises(WebSocketDisconnect) as info:
            await session.receive_text()
    assert info.value.code == CloseCode.MESSAGE_TOO_BIG
    assert received == []


@pytest.mark.asyncio
async def test_message_at_the_size_limit_is_accepted() -> None:
    handler, received = recording_handler(max_message_size=8)
    async with serve(handler).websocket_connect("/ws") as session:
        await session.send_bytes(b"x" * 8)
        assert await session.receive_text() == "ack"
    assert received == [b"x" * 8]


@pytest.mark.asyncio
async def test_size_limit_counts_utf8_bytes_not_characters() -> None:
    handler, received = recording_handler(max_message_size=8)
    async with serve(handler).websocket_connect("/ws") as session:
        await session.send_text("é" * 5)  # 5 characters, 10 bytes
        with pytest.raises(WebSocketDisconnect) as info:
            await session.receive_text()
    assert info.value.code == CloseCode.MESSAGE_TOO_BIG
    assert received == []


@pytest.mark.asyncio
async def test_size_limit_can_be_disabled() -> None:
    handler, received = recording_handler(max_message_size=None)
    big = "x" * (2 << 20)
    async with serve(handler).websocket_connect("/ws") as session:
        await session.send_text(big)
        assert await session.receive_text() == "ack"
    assert received == [big]


# -- connections and broadcast ---------------------------------------------------------------


def greeting_handler() -> WebSocketHandler:
    """A handler that greets each connection with its id, so a client knows it is registered."""
    handler = WebSocketHandler()

    @handler.on_connect
    async def hello(websocket: WebSocket) -> None:
        await websocket.send_json({"id": websocket.id})

    return handler


@pytest.mark.asyncio
async def test_connections_tracks_open_connections() -> None:
    handler = greeting_handler()
    client = serve(handler)
    assert len(handler.connections) == 0
    first = await client.websocket_connect("/ws")
    second = await client.websocket_connect("/ws")
    first_id = (await first.receive_json())["id"]
    second_id = (await second.receive_json())["id"]
    assert {ws.id for ws in handler.connections} == {first_id, second_id}
    await first.close()
    assert {ws.id for ws in handler.connections} == {second_id}
    await second.close()
    assert len(handler.connections) == 0


@pytest.mark.asyncio
async def test_connections_of_a_user_follow_the_user_as_it_changes() -> None:
    handler = WebSocketHandler()

    @handler.on_message
    async def login(websocket: WebSocket, message: Any) -> None:
        websocket.user_id = message["as"]  # as an in-band (re-)authentication does
        await websocket.send_json({"ok": websocket.id})

    client = serve(handler)
    async with client.websocket_connect("/ws") as one, client.websocket_connect("/ws") as two:
        await one.send_json({"as": "alice"})
        first = (await one.receive_json())["ok"]
        await two.send_json({"as": "alice"})
        second = (await two.receive_json())["ok"]
        assert [ws.id for ws in handler.connections_of("alice")] == [first, second]
        await one.send_json({"as": "bob"})
        await one.receive_json()
        assert [ws.id for ws in handler.connections_of("alice")] == [second]
        assert [ws.id for ws in handler.connections_of("bob")] == [first]
        await one.send_json({"as": None})
        await one.receive_json()
        assert handler.connections_of("bob") == []
    assert handler.connections_of("alice") == []  # gone with the connection


def test_connections_view_is_read_only() -> None:
    handler = WebSocketHandler()
    assert not isinstance(handler.connections, MutableSet)


@pytest.mark.asyncio
async def test_broadcast_reaches_every_connection_and_returns_the_count() -> None:
    handler = greeting_handler()
    client = serve(handler)
    sessions = [await client.websocket_connect("/ws") for _ in range(3)]
    for session in sessions:
        await session.receive_json()
    assert await handler.broadcast({"news": "hi"}) == 3
    for session in sessions:
        assert await session.receive_text() == '{"news":"hi"}'
        await session.close()


@pytest.mark.asyncio
async def test_broadcast_follows_joins_and_leaves_between_broadcasts() -> None:
    # Consecutive broadcasts share one snapshot of the members: a join or a leave must replace it.
    handler = greeting_handler()
    client = serve(handler)
    first = await client.websocket_connect("/ws")
    await first.receive_json()
    assert await handler.broadcast("one") == 1
    second = await client.websocket_connect("/ws")
    await second.receive_json()
    assert await handler.broadcast("two") == 2
    await first.close()
    assert await handler.broadcast("three") == 1
    assert await first.receive_text() == "one"
    assert await first.receive_text() == "two"
    assert await second.receive_text() == "two"
    assert await second.receive_text() == "three"
    await second.close()


@pytest.mark.asyncio
async def test_broadcast_encodes_the_message_once(monkeypatch: pytest.MonkeyPatch) -> None:
    handler = greeting_handler()
    client = serve(handler)
    sessions = [await client.websocket_connect("/ws") for _ in range(3)]
    for session in sessions:
        await session.receive_json()
    calls: list[Any] = []

    def counting_encode(data: Any) -> str:
        calls.append(data)
        return encode_json(data)

    monkeypatch.setattr("qakeapi.core.websockets.fanout.encode_json", counting_encode)
    monkeypatch.setattr("qakeapi.core.websockets.messages.encode_json", counting_encode)
    assert await handler.broadcast({"n": 1}) == 3
    assert calls == [{"n": 1}]
    for session in sessions:
        assert await session.receive_json() == {"n": 1}
        await session.close()


@pytest.mark.asyncio
async def test_broadcast_sends_str_as_text_and_bytes_as_binary() -> None:
    handler = greeting_handler()
    session = await serve(handler).websocket_connect("/ws")
    await session.receive_json()
    assert await handler.broadcast("plain") == 1
    assert await handler.broadcast(b"\x00raw") == 1
    assert await session.receive_text() == "plain"
    assert await session.receive_bytes() == b"\x00raw"
    await session.close()


@pytest.mark.asyncio
async def test_broadcast_excludes_the_sender() -> None:
    handler = greeting_handler()

    @handler.on_message
    async def relay(websocket: WebSocket, message: Any) -> None:
        count = await handler.broadcast({"said": message}, exclude=websocket)
        await websocket.send_json({"delivered": count})

    client = serve(handler)
    sender = await client.websocket_connect("/ws")
    listener = await client.websocket_connect("/ws")
    await sender.receive_json()
    await listener.receive_json()
    await sender.send_text("hi")
    assert await sender.receive_json() == {"delivered": 1}  # the broadcast, sent first, did not reach it
    assert await listener.receive_json() == {"said": "hi"}
    await sender.close()
    await listener.close()


@pytest.mark.asyncio
async def test_broadcast_skips_closed_connections() -> None:
    handler = greeting_handler()
    counts: list[int] = []

    @handler.on_message
    async def leave_then_broadcast(websocket: WebSocket, message: Any) -> None:
        await websocket.close()  # still registered until its hooks return
        counts.append(await handler.broadcast("after close"))

    client = serve(handler)
    leaver = await client.websocket_connect("/ws")
    stayer = await client.websocket_connect("/ws")
    await leaver.receive_json()
    await stayer.receive_json()
    await leaver.send_text("bye")
    with pytest.raises(WebSocketDisconnect) as info:
        await leaver.receive_text()
    assert info.value.code == CloseCode.NORMAL_CLOSURE
    assert await stayer.receive_text() == "after close"
    await leaver.close()
    await stayer.close()
    assert counts == [1]


@pytest.mark.asyncio
async def test_absurdly_nested_json_arrives_as_text_and_the_connection_keeps_working() -> None:
    handler, received = recording_handler()
    async with serve(handler).websocket_connect("/ws") as ws:
        await ws.send_text("[" * 100_000)
        assert await ws.receive_text() == "ack"
        await ws.send_json({"still": "here"})
        assert await ws.receive_text() == "ack"
    assert received == ["[" * 100_000, {"still": "here"}]


@pytest.mark.asyncio
async def test_a_failure_outside_the_hooks_closes_with_internal_error() -> None:
    handler = WebSocketHandler()
    messages = [{"type": "websocket.connect"}, {"type": "websocket.bogus"}]
    sent: list[Any] = []

    async def receive() -> Any:
        return messages.pop(0)

    async def send(message: Any) -> None:
        sent.append(message)

    websocket = WebSocket({"type": "websocket", "path": "/ws"}, receive, send)
    with pytest.raises(RuntimeError, match=r"websocket\.bogus"):
        await handler.handle_connection(websocket)
    assert sent[-1] == {"type": "websocket.close", "code": CloseCode.INTERNAL_ERROR, "reason": "internal error"}
    assert len(handler.connections) == 0


# -- registration checks -------------------------------------------------------------------------


def test_a_sync_hook_is_refused_at_registration_with_the_fix() -> None:
    handler = WebSocketHandler()

    def on_message(websocket: WebSocket, message: Any) -> None:
        pass

    def on_connect(websocket: WebSocket) -> None:
        pass

    with pytest.raises(TypeError, match=r"define it with 'async def': async def on_message\(websocket, message\)"):
        handler.on_message(on_message)  # type: ignore[type-var]
    for register in (handler.on_connect, handler.on_disconnect):
        with pytest.raises(TypeError, match=r"not a coroutine function.*async def on_connect\(websocket\)"):
            register(on_connect)  # type: ignore[type-var]
    with pytest.raises(TypeError, match="is not callable"):
        handler.on_connect("not a function")  # type: ignore[type-var]


@pytest.mark.parametrize("kind", ["on_connect", "on_disconnect"])
def test_a_connection_hook_with_the_wrong_signature_is_refused(kind: str) -> None:
    handler = WebSocketHandler()

    async def two(websocket: WebSocket, message: Any) -> None:
        pass

    async def none() -> None:
        pass

    for hook in (two, none):
        with pytest.raises(TypeError, match=rf"{kind} hook .* calls it with 1 argument \(websocket\)"):
            getattr(handler, kind)(hook)


def test_a_message_hook_with_the_wrong_signature_is_refused() -> None:
    handler = WebSocketHandler()

    async def one(websocket: WebSocket) -> None:
        pass

    async def three(websocket: WebSocket, message: Any, extra: int) -> None:
        pass

    for hook in (one, three):
        with pytest.raises(TypeError, match=r"calls it with 2 arguments \(websocket, message\).*define it as"):
            handler.on_message(hook)  # type: ignore[type-var]


def test_hooks_that_fit_are_accepted() -> None:
    import functools

    handler = WebSocketHandler()

    async def flexible(websocket: WebSocket, *args: Any, **kwargs: Any) -> None:
        pass

    async def with_default(websocket: WebSocket, message: Any, extra: int = 1) -> None:
        pass

    async def bound(prefix: str, websocket: WebSocket) -> None:
        pass

    class Callable:
        async def __call__(self, websocket: WebSocket) -> None:
            pass

        async def method(self, websocket: WebSocket, message: Any) -> None:
            pass

    instance = Callable()
    handler.on_connect(flexible)
    handler.on_message(flexible)
    handler.on_message(with_default)
    handler.on_connect(functools.partial(bound, "x"))
    handler.on_disconnect(instance)
    handler.on_message(instance.method)
    with pytest.raises(TypeError, match="not a coroutine function"):
        handler.on_connect(Callable)  # type: ignore[type-var]


# -- interceptors -------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_an_interceptor_consumes_what_it_returns_true_for_and_a_failing_one_consumes_too(
    caplog: pytest.LogCaptureFixture,
) -> None:
    handler, received = recording_handler()
    seen: list[Any] = []

    @handler.intercept
    async def control(websocket: WebSocket, message: Any) -> bool:
        seen.append(message)
        if message == "boom":
            raise ValueError("bad control message")
        if isinstance(message, dict) and message.get("type") == "control":
            await websocket.send_text("control ok")
            return True
        return False

    client = serve(handler, raise_server_exceptions=False)
    with caplog.at_level(logging.ERROR, logger="qakeapi.websockets"):
        async with client.websocket_connect("/ws") as session:
            await session.send_json({"type": "control"})
            assert await session.receive_text() == "control ok"
            await session.send_text("boom")
            await session.send_json({"type": "chat"})
            assert await session.receive_text() == "ack"
    assert seen == [{"type": "control"}, "boom", {"type": "chat"}]
    assert received == [{"type": "chat"}]  # neither the consumed nor the failed message reached on_message
    assert "bad control message" in caplog.text


def test_a_sync_interceptor_is_refused() -> None:
    def sync(websocket: WebSocket, message: Any) -> bool:
        return False

    with pytest.raises(TypeError, match=r"intercept hook .* not a coroutine function"):
        WebSocketHandler().intercept(sync)  # type: ignore[arg-type]
