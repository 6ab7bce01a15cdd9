"""The slow-consumer policy: bounded per-connection queues behind WebSocket.send_nowait and deliver()."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from qakeapi.core.fanout import deliver
from qakeapi.core.websockets import WebSocket, WebSocketClosedError, WebSocketState
from qakeapi.core.websockets.outbox import Overflow, SendPolicy, start_send, stats
from qakeapi.status import CloseCode
from qakeapi.types import Message


class FakePeer:
    """The server side of one connection: records frames, and can stop taking them (backpressure)."""

    def __init__(self) -> None:
        self.sent: list[Message] = []
        self.writable = asyncio.Event()
        self.writable.set()
        self.gone = False

    async def receive(self) -> Message:
        return {"type": "websocket.connect"}

    async def send(self, message: Message) -> None:
        await self.writable.wait()
        if self.gone:
            raise OSError("peer gone")
        self.sent.append(message)

    def texts(self) -> list[str]:
        return [m["text"] for m in self.sent if m["type"] == "websocket.send"]


async def connected(peer: FakePeer, policy: SendPolicy | None = None) -> WebSocket:
    websocket = WebSocket({"type": "websocket", "path": "/room"}, peer.receive, peer.send)
    if policy is not None:
        websocket.send_policy = policy
    await websocket.accept()
    return websocket


async def settle() -> None:
    """Let background sends run until nothing is runnable (bounded)."""
    for _ in range(50):
        await asyncio.sleep(0)


@pytest.mark.asyncio
async def test_send_nowait_writes_immediately_when_the_transport_takes_it() -> None:
    peer = FakePeer()
    websocket = await connected(peer)
    assert websocket.send_nowait("one") is True
    assert websocket.send_nowait(b"two") is True
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
    assert peer.texts() == []
    peer.writable.set()
    await settle()
    assert peer.texts() == [f"frame {n}" for n in range(5)]
    assert websocket.dropped == 0


@pytest.mark.asyncio
async def test_a_slow_reader_does_not_hold_up_the_others() -> None:
    fast_peers = [FakePeer() for _ in range(3)]
    slow_peer = FakePeer()
    fast = [await connected(peer) for peer in fast_peers]
    slow = await connected(slow_peer, SendPolicy(max_queue=1000))
    slow_peer.writable.clear()
    for n in range(100):
        assert deliver(f"m{n}", [*fast, slow]) == []
    for peer in fast_peers:  # delivered synchronously, without waiting for the slow one
        assert peer.texts() == [f"m{n}" for n in range(100)]
    assert slow_peer.texts() == []
    slow_peer.writable.set()
    await settle()
    assert slow_peer.texts() == [f"m{n}" for n in range(100)]


@pytest.mark.asyncio
async def test_disconnect_policy_closes_the_slow_reader_with_its_code_and_counts_drops(
    caplog: pytest.LogCaptureFixture,
) -> None:
    peer = FakePeer()
    websocket = await connected(peer, SendPolicy(max_queue=3, overflow=Overflow.DISCONNECT))
    before = (stats.dropped, stats.disconnected)
    peer.writable.clear()
    with caplog.at_level(logging.WARNING, logger="qakeapi.websockets"):
        results = [websocket.send_nowait(f"m{n}") for n in range(6)]
    # m0 is in flight, m1..m3 fill the queue, m4 overflows: the queue and m4 are dropped.
    assert results == [True, True, True, True, False, False]
    assert websocket.application_state is WebSocketState.DISCONNECTED
    assert websocket.dropped == 4
    assert (stats.dropped - before[0], stats.disconnected - before[1]) == (4, 1)
    assert "reads too slowly" in caplog.text
    assert f"WebSocket {websocket.id}" in caplog.text
    with pytest.raises(WebSocketClosedError):
        await websocket.send_text("after")
    peer.writable.set()
    await settle()
    assert peer.sent[-1] == {"type": "websocket.close", "code": CloseCode.POLICY_VIOLATION, "reason": "slow consumer"}
    assert peer.texts() == []  # the blocked m0 was abandoned, nothing else was written


@pytest.mark.asyncio
async def test_deliver_reports_the_connection_the_policy_closed() -> None:
    fast_peer, slow_peer = FakePeer(), FakePeer()
    fast = await connected(fast_peer)
    slow = await connected(slow_peer, SendPolicy(max_queue=2))
    slow_peer.writable.clear()
    dead: list[WebSocket] = []
    for n in range(5):
        dead += deliver(f"m{n}", [fast, slow])
    assert dead == [slow, slow]  # m3 overflowed it, m4 found it closed
    assert fast_peer.texts() == [f"m{n}" for n in range(5)]


@pytest.mark.asyncio
async def test_drop_oldest_keeps_the_connection_and_the_newest_frames() -> None:
    peer = FakePeer()
    websocket = await connected(peer, SendPolicy(max_queue=3, overflow=Overflow.DROP_OLDEST))
    peer.writable.clear()
    assert all(websocket.send_nowait(f"m{n}") for n in range(10))
    assert websocket.dropped == 6  # m1..m6 made room for m7..m9 (m0 was already in flight)
    assert websocket.application_state is WebSocketState.CONNECTED
    peer.writable.set()
    await settle()
    assert peer.texts() == ["m0", "m7", "m8", "m9"]


@pytest.mark.asyncio
async def test_a_direct_send_waits_for_queued_frames_to_keep_order() -> None:
    peer = FakePeer()
    websocket = await connected(peer)
    peer.writable.clear()
    websocket.send_nowait("queued 1")
    websocket.send_nowait("queued 2")
    direct = asyncio.ensure_future(websocket.send_text("direct"))
    await settle()
    assert not direct.done()
    peer.writable.set()
    await asyncio.wait_for(direct, 1)
    assert peer.texts() == ["queued 1", "queued 2", "direct"]


@pytest.mark.asyncio
async def test_a_peer_that_goes_away_while_frames_wait_is_marked_closed() -> None:
    peer = FakePeer()
    websocket = await connected(peer)
    peer.writable.clear()
    websocket.send_nowait("m0")
    websocket.send_nowait("m1")
    peer.gone = True
    peer.writable.set()
    await settle()
    assert websocket.application_state is WebSocketState.DISCONNECTED
    assert websocket.dropped == 1
    assert websocket.send_nowait("m2") is False


@pytest.mark.asyncio
async def test_send_nowait_on_a_closed_connection_returns_false() -> None:
    peer = FakePeer()
    websocket = await connected(peer)
    await websocket.close()
    assert websocket.send_nowait("late") is False


def test_send_policy_validates() -> None:
    with pytest.raises(ValueError, match="max_queue"):
        SendPolicy(max_queue=0)
    assert SendPolicy(overflow="drop_oldest").overflow is Overflow.DROP_OLDEST  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="nope"):
        SendPolicy(overflow="nope")  # type: ignore[arg-type]


@pytest.mark.asyncio
async def test_start_send_finishes_sends_that_yield() -> None:
    done: list[str] = []

    async def yields_twice() -> None:
        await asyncio.sleep(0)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_soon(future.set_result, None)
        await future
        done.append("sent")

    async def completes() -> None:
        done.append("now")

    assert start_send(completes()) is None
    assert done == ["now"]
    rest: Any = start_send(yields_twice())
    assert rest is not None
    await rest
    assert done == ["now", "sent"]


@pytest.mark.asyncio
async def test_fan_out_hands_every_recipient_the_same_frame_object() -> None:
    peers = [FakePeer() for _ in range(4)]
    websockets = [await connected(peer) for peer in peers]
    frame = '{"type":"chat_message","message":"hi"}'
    assert deliver(frame, websockets) == []
    sent = [peer.sent[-1] for peer in peers]
    assert all(message["text"] is frame for message in sent)  # encoded once, never copied
    assert all(message is sent[0] for message in sent)  # one ASGI message shared by all
