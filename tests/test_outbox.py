"""The delivery core: per-connection outboxes, fan-out and the slow-consumer policy.

Every ASGI ``send`` must be entered and finished by one task, whatever wraps it (timeouts,
anyio task groups and cancel scopes, contextvars); a slow reader must never hold up the others.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Awaitable, Callable

import anyio
import pytest

from qakeapi import Application, WebSocketDisconnect, WebSocketHandler
from qakeapi.core.websockets import WebSocket, WebSocketClosedError, WebSocketState
from qakeapi.core.websockets.fanout import deliver, deliver_in_order, fan_out
from qakeapi.core.websockets.outbox import (
    GiveUp,
    Outbox,
    Overflow,
    SendPolicy,
    end_pressure,
    feel_pressure,
    relieve,
    stats,
)
from qakeapi.exceptions import LoneSurrogateError
from qakeapi.status import CloseCode
from qakeapi.testing import TestClient
from qakeapi.types import Message

Wrapper = Callable[[Callable[[Message], Awaitable[None]], Message], Awaitable[None]]


class FakePeer:
    """The server side of one connection: records frames, can stop taking them (backpressure).

    Every send records the task that entered it and the task that finished it.
    """

    def __init__(self, wrapper: Wrapper | None = None) -> None:
        self.sent: list[Message] = []
        self.writable = asyncio.Event()
        self.writable.set()
        self.gone = False
        self.wrapper = wrapper
        self.foreign_finishes = 0

    async def receive(self) -> Message:
        return {"type": "websocket.connect"}

    async def _raw_send(self, message: Message) -> None:
        entered = asyncio.current_task()
        await self.writable.wait()
        if asyncio.current_task() is not entered:
            self.foreign_finishes += 1
        if self.gone:
            raise OSError("peer gone")
        self.sent.append(message)

    async def send(self, message: Message) -> None:
        if self.wrapper is None:
            await self._raw_send(message)
        else:
            await self.wrapper(self._raw_send, message)

    def texts(self) -> list[str]:
        return [m["text"] for m in self.sent if m["type"] == "websocket.send"]


async def connected(peer: FakePeer, policy: SendPolicy | None = None, path: str = "/room") -> WebSocket:
    websocket = WebSocket({"type": "websocket", "path": path}, peer.receive, peer.send)
    if policy is not None:
        websocket.send_policy = policy
    await websocket.accept()
    return websocket


async def settle() -> None:
    """Let background writes run until nothing is runnable (bounded)."""
    for _ in range(50):
        await asyncio.sleep(0)


async def eventually(condition: Callable[[], bool], limit: float = 5.0) -> None:
    """Wait until ``condition()`` holds; fail after ``limit`` seconds."""
    with anyio.fail_after(limit):
        while not condition():  # noqa: ASYNC110 - polls state the test cannot subscribe to
            await asyncio.sleep(0.001)


@pytest.mark.asyncio
async def test_send_nowait_writes_in_order() -> None:
    peer = FakePeer()
    websocket = await connected(peer)
    assert websocket.send_nowait("one") is True
    assert websocket.send_nowait(b"two") is True
    await settle()
    assert peer.sent[1:] == [
        {"type": "websocket.send", "text": "one"},
        {"type": "websocket.send", "bytes": b"two"},
    ]


@pytest.mark.asyncio
async def test_frames_wait_in_order_behind_a_blocked_send_and_flush_when_writable() -> None:
    peer = FakePeer()
    websocket = await connected(peer)
    peer.writable.clear()
    for n in range(5):
        assert websocket.send_nowait(f"frame {n}") is True
    await settle()
    assert peer.texts() == []
    assert len(websocket.outbox) == 4  # frame 0 is in the blocked write
    peer.writable.set()
    await settle()
    assert peer.texts() == [f"frame {n}" for n in range(5)]
    assert websocket.dropped == 0
    assert peer.foreign_finishes == 0


@pytest.mark.asyncio
async def test_a_slow_reader_does_not_hold_up_the_others() -> None:
    fast_peers = [FakePeer() for _ in range(3)]
    slow_peer = FakePeer()
    fast = [await connected(peer) for peer in fast_peers[:2]]
    slow = await connected(slow_peer, SendPolicy(max_queue=1000))
    last = await connected(fast_peers[2])
    slow_peer.writable.clear()
    for n in range(100):
        assert await deliver_in_order(f"m{n}", [*fast, slow, last]) == []
    for peer in fast_peers:  # the recipient after the slow one too
        assert peer.texts() == [f"m{n}" for n in range(100)]
    assert slow_peer.texts() == []
    slow_peer.writable.set()
    await settle()
    assert slow_peer.texts() == [f"m{n}" for n in range(100)]
    assert all(peer.foreign_finishes == 0 for peer in [*fast_peers, slow_peer])


@pytest.mark.asyncio
async def test_a_broadcaster_cancelled_mid_walk_leaves_nobody_behind_a_slow_reader() -> None:
    # The walk blocks in the slow reader's write while the broadcasting task is cancelled: the
    # recipients after it still get the frame at once (the walk's rest is handed on), and the
    # slow one gets it from the task that entered its write.
    slow_peer, after_peer = FakePeer(), FakePeer()
    slow = await connected(slow_peer)
    after = await connected(after_peer)
    slow_peer.writable.clear()
    broadcaster = asyncio.create_task(deliver_in_order("m", [slow, after]))
    await asyncio.sleep(0)  # the broadcaster has started its walk
    broadcaster.cancel()
    await eventually(lambda: after_peer.texts() == ["m"])
    assert slow_peer.texts() == []
    slow_peer.writable.set()
    await eventually(lambda: slow_peer.texts() == ["m"])
    assert slow_peer.foreign_finishes == 0
    await after.send_text("next")
    assert after_peer.texts() == ["m", "next"]


@pytest.mark.asyncio
async def test_deliver_in_order_keeps_order_with_a_direct_send_after_it() -> None:
    peer = FakePeer()
    websocket = await connected(peer)
    await deliver_in_order("broadcast", [websocket])
    await websocket.send_text("direct")
    assert peer.texts() == ["broadcast", "direct"]


@pytest.mark.asyncio
async def test_a_direct_send_waits_behind_queued_frames() -> None:
    peer = FakePeer()
    websocket = await connected(peer)
    peer.writable.clear()
    deliver("q1", [websocket])
    deliver("q2", [websocket])
    await settle()
    direct = asyncio.create_task(websocket.send_text("direct"))
    await settle()
    assert not direct.done()
    peer.writable.set()
    await asyncio.wait_for(direct, 1)
    assert peer.texts() == ["q1", "q2", "direct"]


@pytest.mark.asyncio
async def test_disconnect_policy_closes_the_slow_reader_with_its_code_and_counts_drops(
    caplog: pytest.LogCaptureFixture,
) -> None:
    peer = FakePeer()
    websocket = await connected(peer, SendPolicy(max_queue=3, overflow=Overflow.DISCONNECT))
    before = (stats.dropped, stats.disconnected)
    peer.writable.clear()
    results = []
    with caplog.at_level(logging.WARNING, logger="qakeapi.websockets"):
        deliver("m0", [websocket])
        await settle()  # m0 is now in a blocked write
        for n in range(1, 5):
            websocket.send_nowait(f"m{n}")
            await settle()
            results.append(websocket.is_open)
    # m1..m3 fill the queue, m4 overflows: the queue and m4 are dropped.
    assert results == [True, True, True, False]
    assert websocket.send_nowait("m5") is False
    assert websocket.application_state is WebSocketState.DISCONNECTED
    assert websocket.dropped == 4
    assert (stats.dropped - before[0], stats.disconnected - before[1]) == (4, 1)
    records = [r for r in caplog.records if "slow consumer" in r.getMessage()]
    assert len(records) == 1
    assert records[0].levelno == logging.WARNING
    assert f"WebSocket {websocket.id} (path=/room)" in records[0].getMessage()
    with pytest.raises(WebSocketClosedError):
        await websocket.send_text("after")
    peer.writable.set()
    await settle()
    # The blocked m0 completes, then the close the policy queued behind it.
    assert peer.texts() == ["m0"]
    assert peer.sent[-1] == {"type": "websocket.close", "code": CloseCode.POLICY_VIOLATION, "reason": "slow consumer"}


@pytest.mark.asyncio
async def test_drop_oldest_keeps_the_newest_frames_and_the_connection() -> None:
    peer = FakePeer()
    websocket = await connected(peer, SendPolicy(max_queue=2, overflow=Overflow.DROP_OLDEST))
    peer.writable.clear()
    for n in range(6):
        deliver(f"m{n}", [websocket])
        await settle()
    assert websocket.is_open
    assert websocket.dropped == 3
    peer.writable.set()
    await settle()
    assert peer.texts() == ["m0", "m4", "m5"]


@pytest.mark.asyncio
async def test_a_send_that_fails_closes_only_its_connection_and_is_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    peers = [FakePeer() for _ in range(3)]
    sockets = [await connected(peer) for peer in peers]
    peers[1].gone = True
    with caplog.at_level(logging.WARNING, logger="qakeapi.websockets"):
        dead = await deliver_in_order("one", sockets)
        dead += await deliver_in_order("two", sockets)
    assert dead == [sockets[1], sockets[1]]
    assert peers[0].texts() == peers[2].texts() == ["one", "two"]
    failures = [r for r in caplog.records if "sending failed" in r.getMessage()]
    assert len(failures) == 1
    assert "peer gone" in failures[0].getMessage()
    assert "path=/room" in failures[0].getMessage()
    with pytest.raises(WebSocketClosedError):
        await sockets[1].send_text("again")


async def _timeout_send(send: Callable[[Message], Awaitable[None]], message: Message) -> None:
    async with asyncio.timeout(0.05):  # type: ignore[attr-defined,unused-ignore]  # Python >= 3.11
        await send(message)


async def _fail_after_send(send: Callable[[Message], Awaitable[None]], message: Message) -> None:
    with anyio.fail_after(0.05):
        await send(message)


async def _task_group_send(send: Callable[[Message], Awaitable[None]], message: Message) -> None:
    async with anyio.create_task_group() as group:
        group.start_soon(anyio.sleep, 0)
        await send(message)


_var: contextvars.ContextVar[str] = contextvars.ContextVar("_var", default="")


async def _contextvar_send(send: Callable[[Message], Awaitable[None]], message: Message) -> None:
    token = _var.set("sending")
    try:
        await send(message)
    finally:
        _var.reset(token)


WRAPPERS: dict[str, Wrapper] = {
    "anyio.fail_after": _fail_after_send,
    "anyio task group": _task_group_send,
    "contextvar set/reset": _contextvar_send,
}
if hasattr(asyncio, "timeout"):  # Python >= 3.11
    WRAPPERS["asyncio.timeout"] = _timeout_send


@pytest.mark.parametrize("name", sorted(WRAPPERS))
@pytest.mark.asyncio
async def test_middleware_around_send_sees_one_task_per_send(name: str) -> None:
    """Readers get everything in order; a stuck peer behind a deadline fails alone."""
    wrapper = WRAPPERS[name]
    peers = [FakePeer(wrapper) for _ in range(4)]
    sockets = [await connected(peer, SendPolicy(max_queue=1000)) for peer in peers]
    stuck = peers[1]
    stuck.writable.clear()
    for n in range(50):
        await deliver_in_order(f"m{n}", sockets)
    await asyncio.sleep(0.2)  # a deadline (0.05 s) in the stuck send fires, where there is one
    await settle()
    for peer in (peers[0], peers[2], peers[3]):
        assert peer.texts() == [f"m{n}" for n in range(50)]
    assert all(peer.foreign_finishes == 0 for peer in peers)
    if name in ("asyncio.timeout", "anyio.fail_after"):
        assert not sockets[1].is_open  # its deadline closed it, and only it
        assert stuck.texts() == []
    else:
        stuck.writable.set()
        await eventually(lambda: len(stuck.texts()) == 50)
        assert stuck.texts() == [f"m{n}" for n in range(50)]
    assert all(s.is_open for i, s in enumerate(sockets) if i != 1)


@pytest.mark.asyncio
async def test_a_server_send_that_returns_a_future_works() -> None:
    """Some servers (granian) hand back an awaitable that is not a coroutine."""
    sent: list[Message] = []
    loop = asyncio.get_running_loop()

    def send(message: Message) -> asyncio.Future[None]:
        future: asyncio.Future[None] = loop.create_future()
        sent.append(message)
        loop.call_soon(future.set_result, None)
        return future

    async def receive() -> Message:
        return {"type": "websocket.connect"}

    sockets = []
    for _ in range(3):
        websocket = WebSocket({"type": "websocket", "path": "/g"}, receive, send)
        await websocket.accept()
        sockets.append(websocket)
    for n in range(20):
        await deliver_in_order(f"m{n}", sockets)
    await settle()
    texts = [m["text"] for m in sent if m["type"] == "websocket.send"]
    assert len(texts) == 60
    for n in range(20):
        assert texts.count(f"m{n}") == 3
    assert all(s.dropped == 0 and s.is_open for s in sockets)


@pytest.mark.asyncio
async def test_close_is_bounded_behind_a_blocked_write(caplog: pytest.LogCaptureFixture) -> None:
    peer = FakePeer()
    websocket = await connected(peer, SendPolicy(max_queue=10, close_timeout=0.1))
    peer.writable.clear()
    deliver("blocked", [websocket])
    for n in range(3):
        deliver(f"q{n}", [websocket])
    await settle()
    before = stats.close_timeouts
    with caplog.at_level(logging.WARNING, logger="qakeapi.websockets"):
        await asyncio.wait_for(websocket.close(), 2)
    assert stats.close_timeouts == before + 1
    assert websocket.dropped == 3
    assert "was not taken within 0.1s" in caplog.text
    assert websocket.application_state is WebSocketState.DISCONNECTED
    await websocket.close()  # idempotent
    with pytest.raises(WebSocketClosedError):
        await websocket.send_text("late")


@pytest.mark.asyncio
async def test_close_sends_the_close_after_the_queue_is_dropped() -> None:
    peer = FakePeer()
    websocket = await connected(peer)
    peer.writable.clear()
    deliver("blocked", [websocket])
    deliver("queued", [websocket])
    await settle()
    closing = asyncio.create_task(websocket.close(CloseCode.GOING_AWAY, "bye"))
    await settle()
    peer.writable.set()
    await asyncio.wait_for(closing, 1)
    assert peer.texts() == ["blocked"]
    assert peer.sent[-1] == {"type": "websocket.close", "code": CloseCode.GOING_AWAY, "reason": "bye"}
    assert websocket.dropped == 1


@pytest.mark.asyncio
async def test_send_nowait_on_a_closed_connection_returns_false() -> None:
    peer = FakePeer()
    websocket = await connected(peer)
    await websocket.close()
    assert websocket.send_nowait("late") is False
    assert deliver("late", [websocket]) == [websocket]


@pytest.mark.asyncio
async def test_outbox_alone_reports_giving_up_and_counts() -> None:
    """The outbox knows nothing of WebSockets: items and a callback."""
    written: list[object] = []
    gate = asyncio.Event()
    reasons: list[GiveUp] = []

    async def write(item: object) -> None:
        await gate.wait()
        written.append(item)

    def gave_up(why: GiveUp, error: BaseException | None) -> str:
        reasons.append(why)
        return "bye"

    outbox = Outbox(write, gave_up, SendPolicy(max_queue=2))
    fan_out(0, [outbox])
    await settle()
    assert outbox.busy
    fan_out(1, [outbox])
    fan_out(2, [outbox])
    await settle()
    assert reasons == []
    fan_out(3, [outbox])
    await settle()
    assert reasons == [GiveUp.SLOW_CONSUMER]
    assert not outbox.open
    assert outbox.dropped == 3
    gate.set()
    await settle()
    assert written == [0, "bye"]
    assert not outbox.busy


def test_send_policy_validates() -> None:
    with pytest.raises(ValueError, match="max_queue"):
        SendPolicy(max_queue=0)
    with pytest.raises(ValueError, match="close_timeout"):
        SendPolicy(close_timeout=0)
    assert SendPolicy(overflow="drop_oldest").overflow is Overflow.DROP_OLDEST  # type: ignore[arg-type]


def _room_app(policy: SendPolicy) -> Application:
    app = Application()
    room = WebSocketHandler(send_policy=policy)

    @room.on_message
    async def relay(websocket: WebSocket, message: object) -> None:
        await room.broadcast(message)

    @app.websocket("/room")
    async def endpoint(websocket: WebSocket) -> None:
        await room.handle_connection(websocket)

    return app


@pytest.mark.asyncio
async def test_a_paused_test_session_is_closed_by_the_disconnect_policy() -> None:
    client = TestClient(_room_app(SendPolicy(max_queue=4)), timeout=2.0)
    async with client.websocket_connect("/room") as reader, client.websocket_connect("/room") as sleeper:
        sleeper.pause_reading()
        for n in range(10):
            await reader.send_json(n)
            assert await reader.receive_json() == n  # the reader keeps its pace
        sleeper.resume_reading()
        assert await sleeper.receive_json() == 0  # the write that was blocked when it paused
        with pytest.raises(WebSocketDisconnect) as info:
            await sleeper.receive_json()
        assert (info.value.code, info.value.reason) == (CloseCode.POLICY_VIOLATION, "slow consumer")


@pytest.mark.asyncio
async def test_a_paused_test_session_keeps_the_newest_frames_under_drop_oldest() -> None:
    client = TestClient(_room_app(SendPolicy(max_queue=3, overflow=Overflow.DROP_OLDEST)), timeout=2.0)
    async with client.websocket_connect("/room") as reader, client.websocket_connect("/room") as sleeper:
        sleeper.pause_reading()
        for n in range(10):
            await reader.send_json(n)
            assert await reader.receive_json() == n
        sleeper.resume_reading()
        assert [await sleeper.receive_json() for _ in range(4)] == [0, 7, 8, 9]
        await reader.send_json({"m": "after"})
        assert await sleeper.receive_json() == {"m": "after"}


# -- a frame that cannot be sent costs that frame, never a connection -----------------------------


class Utf8Peer(FakePeer):
    """A peer whose server encodes text frames as UTF-8 before writing anything, as uvicorn does."""

    async def _raw_send(self, message: Message) -> None:
        if message.get("text") is not None:
            message["text"].encode("utf-8")  # UnicodeEncodeError on a lone surrogate
        await super()._raw_send(message)


@pytest.mark.asyncio
async def test_a_frame_the_server_cannot_encode_is_dropped_and_every_connection_kept(
    caplog: pytest.LogCaptureFixture,
) -> None:
    peers = [Utf8Peer() for _ in range(4)]
    path = f"/unsendable-{id(peers)}"  # logged once per path and process: a path of its own
    sockets = [await connected(peer, path=path) for peer in peers]
    before = stats.unsendable
    with caplog.at_level(logging.DEBUG, logger="qakeapi"):
        for _ in range(3):
            assert await deliver_in_order('{"token": "s3cret", "m": "\ud800"}', sockets) == []
            assert sockets[0].send_nowait("\udfff") is True
        assert await deliver_in_order("after", sockets) == []
        await settle()
    assert [peer.texts() for peer in peers] == [["after"]] * 4
    assert all(
        websocket.outbox.open and websocket.application_state is WebSocketState.CONNECTED for websocket in sockets
    )
    assert [websocket.dropped for websocket in sockets] == [6, 3, 3, 3]
    assert stats.unsendable - before == 15
    lines = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(lines) == 1, [r.getMessage() for r in lines]  # once per path, not per frame or recipient
    assert "could not be sent" in lines[0].getMessage()
    assert "\\ud800" in lines[0].getMessage()
    assert f"path={path}" in lines[0].getMessage()
    assert "s3cret" not in caplog.text  # the frame itself is never logged
    assert not any(r.exc_info for r in caplog.records)
    await sockets[1].send_text("direct")
    assert peers[1].texts() == ["after", "direct"]


@pytest.mark.asyncio
async def test_an_unsendable_frame_queued_behind_a_blocked_write_is_skipped_in_order() -> None:
    peer = Utf8Peer()
    websocket = await connected(peer)
    peer.writable.clear()
    for frame in ("one", "two", "\ud800", "three", "\udc00", "four"):
        assert websocket.send_nowait(frame) is True
    await settle()
    peer.writable.set()
    await eventually(lambda: len(peer.texts()) == 4)
    await settle()
    assert peer.texts() == ["one", "two", "three", "four"]
    assert websocket.dropped == 2
    assert websocket.outbox.open
    assert not websocket.outbox.busy
    assert peer.foreign_finishes == 0


@pytest.mark.asyncio
async def test_outbox_alone_skips_an_item_its_send_cannot_encode() -> None:
    written: list[str] = []
    skipped: list[UnicodeEncodeError] = []

    async def write(item: str) -> None:
        written.append(item.encode("utf-8").decode())

    def gave_up(why: GiveUp, error: BaseException | None) -> None:
        raise AssertionError(f"gave up: {why} {error!r}")

    outbox = Outbox(write, gave_up, SendPolicy(), skipped.append)
    with pytest.raises(UnicodeEncodeError):
        await outbox.send("\ud800")  # a direct send tells its caller
    assert await outbox.send("ok") is True
    fan_out("\udfff", [outbox])
    fan_out("fanned", [outbox])
    await settle()
    assert written == ["ok", "fanned"]
    assert [error.start for error in skipped] == [0, 0]
    assert outbox.open
    assert outbox.dropped == 2
    assert not outbox.busy


@pytest.mark.asyncio
async def test_send_text_refuses_a_lone_surrogate_and_the_connection_keeps_working() -> None:
    peer = Utf8Peer()
    websocket = await connected(peer)
    with pytest.raises(LoneSurrogateError):
        await websocket.send_text("bad \ud800")
    with pytest.raises(ValueError, match="lone surrogate"):
        await websocket.send_json({"m": "\udc00"})
    await websocket.send_text("good")
    assert peer.texts() == ["good"]
    assert websocket.dropped == 0


async def _flood(outbox: Outbox, count: int) -> None:
    """A sender's receive loop: each message fans out to ``outbox``; it feels backpressure as a connection does."""
    pressed, token = feel_pressure()
    try:
        for n in range(count):
            if pressed:
                await relieve(pressed)
            waiting = fan_out(n, [outbox])
            if waiting is not None:
                await waiting
    finally:
        end_pressure(token)


@pytest.mark.parametrize("backpressure", [0.5, 0.0])
@pytest.mark.asyncio
async def test_a_sender_waits_for_a_reader_that_keeps_up_with_a_slow_server(backpressure: float) -> None:
    written: list[object] = []

    async def slow_server(item: object) -> None:  # each write takes a few turns of the loop, and progresses
        for _ in range(3):
            await asyncio.sleep(0)
        written.append(item)

    given_up: list[GiveUp] = []
    policy = SendPolicy(max_queue=8, backpressure=backpressure)
    outbox = Outbox(slow_server, lambda why, _exc: given_up.append(why), policy)
    await _flood(outbox, 200)
    kept = await outbox.send("end")  # written after everything queued before it
    if backpressure:
        assert kept
        assert (given_up, outbox.dropped, written) == ([], 0, [*range(200), "end"])  # the sender slowed down
    else:  # senders never wait: the reader's queue overflowed although it kept up with the server
        assert given_up == [GiveUp.SLOW_CONSUMER]
        assert outbox.dropped > 0


@pytest.mark.asyncio
async def test_a_sender_does_not_wait_for_a_peer_that_reads_nothing() -> None:
    stuck = asyncio.Event()

    async def never(item: object) -> None:
        await stuck.wait()

    given_up: list[GiveUp] = []
    outbox = Outbox(never, lambda why, _exc: given_up.append(why), SendPolicy(max_queue=8, backpressure=0.05))
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.wait_for(_flood(outbox, 50), 5)
    # One wait of `backpressure` when the queue passed half, then the policy closed the non-reader.
    assert loop.time() - started < 2
    assert given_up == [GiveUp.SLOW_CONSUMER]
    assert not outbox.open
    stuck.set()
