"""Tests for qakeapi.core.limits and the limits WebSocketHandler enforces with them."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest

from qakeapi import Application, WebSocket, WebSocketDisconnect, WebSocketHandler
from qakeapi.core.limits import (
    DEFAULT_MAX_CONNECTIONS_PER_IP,
    DEFAULT_RATE_LIMIT,
    ConnectionCounter,
    PenaltyBox,
    RateLimit,
    RejectionLog,
    TokenBucket,
)
from qakeapi.status import CloseCode
from qakeapi.testing import TestClient, WebSocketDenied

# -- TokenBucket ----------------------------------------------------------------------------------


def test_a_bucket_starts_full_and_empties() -> None:
    bucket = TokenBucket(rate=10, burst=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]


def test_a_bucket_refills_at_the_rate_up_to_the_burst() -> None:
    bucket = TokenBucket(rate=10, burst=3, now=0.0)
    for _ in range(3):
        assert bucket.take(0.0)
    assert not bucket.take(0.05)  # half a token
    assert bucket.take(0.1)  # one token after 0.1 s at 10/s
    assert not bucket.take(0.1)
    assert [bucket.take(100.0) for _ in range(4)] == [True, True, True, False]  # never more than the burst


def test_a_sustained_rate_at_the_limit_passes_and_above_it_fails() -> None:
    at_limit = TokenBucket(rate=100, burst=1, now=0.0)
    assert all(at_limit.take(i / 100) for i in range(1, 1000))
    above = TokenBucket(rate=100, burst=10, now=0.0)
    results = [above.take(i / 200) for i in range(1, 1000)]  # 200/s against 100/s
    assert not all(results)
    assert results.index(False) == 19  # the burst of 10 plus the refill covered the first ones


def test_a_clock_going_backwards_gives_nothing() -> None:
    bucket = TokenBucket(rate=10, burst=1, now=5.0)
    assert bucket.take(5.0)
    assert not bucket.take(1.0)
    assert not bucket.take(5.05)
    assert bucket.take(5.1)


def test_a_penalty_refuses_its_key_until_it_ends() -> None:
    box = PenaltyBox()
    assert not box
    box.penalize("1.2.3.4", now=100.0, seconds=10.0)
    assert box.retry_after("1.2.3.4", 100.0) == 10.0
    assert box.retry_after("1.2.3.4", 109.5) == 0.5
    assert box.retry_after("5.6.7.8", 100.0) == 0.0
    assert box.retry_after("1.2.3.4", 110.0) == 0.0  # over: forgotten
    assert len(box) == 0


def test_a_later_penalty_extends_an_earlier_one_never_shortens_it() -> None:
    box = PenaltyBox()
    box.penalize("a", now=0.0, seconds=10.0)
    box.penalize("a", now=5.0, seconds=10.0)
    assert box.retry_after("a", 5.0) == 10.0
    box.penalize("a", now=6.0, seconds=1.0)
    assert box.retry_after("a", 6.0) == 9.0


def test_a_full_penalty_box_forgets_expired_then_oldest_keys() -> None:
    box = PenaltyBox(max_keys=3)
    for n, key in enumerate("abc"):
        box.penalize(key, now=float(n), seconds=10.0)
    box.penalize("d", now=10.5, seconds=10.0)  # "a" expired at 10: it goes
    assert (box.retry_after("a", 10.5), len(box)) == (0.0, 3)
    box.penalize("e", now=10.5, seconds=10.0)  # nothing expired: the oldest ("b") goes
    assert box.retry_after("b", 10.5) == 0.0
    assert box.retry_after("c", 10.5) > 0
    assert box.retry_after("e", 10.5) > 0
    assert len(box) == 3
    with pytest.raises(ValueError, match="max_keys"):
        PenaltyBox(max_keys=0)


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 1), (1, 0)])
def test_bad_rate_limits_are_refused(rate: float, burst: int) -> None:
    with pytest.raises(ValueError, match="must be"):
        RateLimit(rate, burst)


def test_the_handler_is_limited_by_default() -> None:
    handler = WebSocketHandler()
    assert handler.rate_limit is DEFAULT_RATE_LIMIT
    assert handler.max_connections_per_ip == DEFAULT_MAX_CONNECTIONS_PER_IP


# -- ConnectionCounter ----------------------------------------------------------------------------


def test_counter_caps_per_key_and_forgets_empty_keys() -> None:
    counter = ConnectionCounter()
    assert counter.acquire("a", 2)
    assert counter.acquire("a", 2)
    assert not counter.acquire("a", 2)
    assert counter.acquire("b", 2)
    assert counter.count("a") == 2
    counter.release("a")
    assert counter.acquire("a", 2)
    for _ in range(2):
        counter.release("a")
    counter.release("b")
    assert len(counter) == 0
    assert counter.acquire("c", None)


# -- RejectionLog ---------------------------------------------------------------------------------


def test_rejection_log_counts_everything_and_logs_each_kind_and_key_once(caplog: pytest.LogCaptureFixture) -> None:
    log = RejectionLog(logging.getLogger("qakeapi.test"), remember=3)
    with caplog.at_level(logging.WARNING, logger="qakeapi.test"):
        logged = [log.reject("rate", "1.2.3.4", "too fast: %s", n) for n in range(1000)]
        logged.append(log.reject("size", "1.2.3.4", "too big"))
        logged.append(log.reject("rate", "5.6.7.8", "too fast: %s", "x"))
    assert logged.count(True) == 3
    assert log.counts == {"rate": 1001, "size": 1}
    assert [r.getMessage() for r in caplog.records] == [
        "too fast: 0 (further ones are counted, not logged)",
        "too big (further ones are counted, not logged)",
        "too fast: x (further ones are counted, not logged)",
    ]
    assert log.reject("other", "k", "m")  # past `remember` the memory is cleared, never unbounded
    assert log.reject("rate", "1.2.3.4", "again")


# -- the handler ----------------------------------------------------------------------------------


def serve(handler: WebSocketHandler) -> TestClient:
    app = Application()

    @handler.on_message
    async def echo(websocket: WebSocket, message: Any) -> None:
        await websocket.send_json(message)

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket) -> None:
        await handler.handle_connection(websocket)

    return TestClient(app, timeout=2.0)


@pytest.mark.asyncio
async def test_a_flood_is_closed_with_1008_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    no_penalty = RateLimit(rate=1, burst=5, penalty=0)  # every connection is from the test client's address
    handler = WebSocketHandler(rate_limit=no_penalty, connections=ConnectionCounter())
    client = serve(handler)
    with caplog.at_level(logging.WARNING, logger="qakeapi"):
        for _ in range(3):
            async with client.websocket_connect("/ws") as session:
                for n in range(5):
                    await session.send_json(n)
                    assert await session.receive_json() == n
                await session.send_json("one too many")
                with pytest.raises(WebSocketDisconnect) as closed:
                    await session.receive_json()
                assert (closed.value.code, closed.value.reason) == (CloseCode.POLICY_VIOLATION, "rate limit exceeded")
    assert handler.rejections.counts["rate"] == 3
    lines = [r.getMessage() for r in caplog.records if "messages a second" in r.getMessage()]
    assert len(lines) == 1
    assert "more than 1 messages a second (bursts of 5)" in lines[0]


@pytest.mark.asyncio
async def test_after_a_rate_limit_close_the_address_is_refused_for_the_penalty(
    caplog: pytest.LogCaptureFixture,
) -> None:
    handler = WebSocketHandler(rate_limit=RateLimit(rate=1, burst=2, penalty=10), connections=ConnectionCounter())
    client = serve(handler)
    with caplog.at_level(logging.WARNING, logger="qakeapi"):
        for _ in range(2):  # the address is refused at its second flood (the first one costs the connection)
            async with client.websocket_connect("/ws") as flooder:
                for n in range(3):
                    await flooder.send_json(n)
                assert [await flooder.receive_json() for _ in range(2)] == [0, 1]
                with pytest.raises(WebSocketDisconnect) as closed:
                    await flooder.receive_json()
                assert closed.value.code == CloseCode.POLICY_VIOLATION
        for _ in range(3):  # refused before the upgrade: 429, and when to come back
            with pytest.raises(WebSocketDenied) as refused:
                await client.websocket_connect("/ws")
            assert (refused.value.status_code, refused.value.detail) == (429, "rate limit exceeded; retry later")
            assert 9 <= int(refused.value.headers["retry-after"]) <= 10
    assert 9.0 < handler.penalties.retry_after("testclient", time.monotonic()) <= 10.0
    assert handler.rejections.counts == {"rate": 2, "rate_penalty": 3}
    refusals = [r.getMessage() for r in caplog.records if "exceeded the rate limit" in r.getMessage()]
    assert len(refusals) == 1
    assert "from testclient for 10s more" in refusals[0]


def test_a_shared_penalty_box_refuses_on_every_handler_that_has_it() -> None:
    box = PenaltyBox()
    first, second = WebSocketHandler(penalties=box), WebSocketHandler(penalties=box)
    assert first.penalties is second.penalties is box
    assert WebSocketHandler().penalties is not WebSocketHandler().penalties
    assert DEFAULT_RATE_LIMIT.penalty == 10.0
    with pytest.raises(ValueError, match="penalty"):
        RateLimit(1, 1, penalty=-1)


@pytest.mark.asyncio
async def test_no_rate_limit_when_disabled() -> None:
    client = serve(WebSocketHandler(rate_limit=None, connections=ConnectionCounter()))
    async with client.websocket_connect("/ws") as session:
        for n in range(2000):
            await session.send_json(n)
        for n in range(2000):
            assert await session.receive_json() == n


@pytest.mark.asyncio
async def test_connections_per_ip_are_capped_and_freed() -> None:
    counter = ConnectionCounter()
    handler = WebSocketHandler(max_connections_per_ip=2, connections=counter)
    client = serve(handler)
    first = await client.websocket_connect("/ws")
    second = await client.websocket_connect("/ws")
    with pytest.raises(WebSocketDenied) as refused:
        await client.websocket_connect("/ws")
    assert (refused.value.status_code, refused.value.json()) == (429, {"detail": "too many connections"})
    assert handler.rejections.counts["connections_per_ip"] == 1
    await first.send_json("still served")
    assert await first.receive_json() == "still served"
    await first.close()
    third = await client.websocket_connect("/ws")
    await third.send_json("room again")
    assert await third.receive_json() == "room again"
    await second.close()
    await third.close()
    assert len(counter) == 0


@pytest.mark.asyncio
async def test_the_cap_counts_across_handlers_sharing_a_counter() -> None:
    counter = ConnectionCounter()
    one = serve(WebSocketHandler(max_connections_per_ip=1, connections=counter))
    two = serve(WebSocketHandler(max_connections_per_ip=1, connections=counter))
    session = await one.websocket_connect("/ws")
    with pytest.raises(WebSocketDenied) as refused:
        await two.websocket_connect("/ws")
    assert (refused.value.status_code, refused.value.detail) == (429, "too many connections")
    await session.close()


def test_bad_cap_is_refused() -> None:
    with pytest.raises(ValueError, match="max_connections_per_ip"):
        WebSocketHandler(max_connections_per_ip=0)


# -- the penalty: the flooder first, its address on a repeat -------------------------------------


def test_a_strike_penalizes_a_key_only_at_the_second_within_the_memory() -> None:
    box = PenaltyBox(strikes=2, memory=60.0)
    assert box.strike("nat", now=0.0, seconds=10.0) is False
    assert box.retry_after("nat", now=0.0) == 0.0
    assert box.strike("nat", now=30.0, seconds=10.0) is True
    assert box.retry_after("nat", now=30.0) == 10.0
    assert box.strike("far", now=0.0, seconds=10.0) is False
    assert box.strike("far", now=61.0, seconds=10.0) is False  # the first was forgotten
    assert box.retry_after("far", now=61.0) == 0.0
    assert PenaltyBox(strikes=1).strike("once", now=0.0, seconds=5.0) is True  # the former rule


def test_strikes_are_bounded_in_memory() -> None:
    box = PenaltyBox(max_keys=2)
    for n, key in enumerate("abc"):
        box.strike(key, now=float(n), seconds=10.0)
    assert box.strike("a", now=3.0, seconds=10.0) is False  # "a" was forgotten to make room
    assert box.strike("c", now=3.0, seconds=10.0) is True
    with pytest.raises(ValueError, match="strikes"):
        PenaltyBox(strikes=0)


def nat_app(handler: WebSocketHandler) -> Application:
    """``handler`` behind an endpoint that takes the user from ``?user=`` (as a middleware would)."""
    app = Application()

    @handler.on_message
    async def echo(websocket: WebSocket, message: Any) -> None:
        await websocket.send_json(message)

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket) -> None:
        websocket.user_id = websocket.query_params.get("user")
        await handler.handle_connection(websocket)

    return app


async def flood_once(client: TestClient, path: str) -> None:
    async with client.websocket_connect(path) as flooder:
        for n in range(3):
            await flooder.send_json(n)
        with pytest.raises(WebSocketDisconnect) as closed:  # noqa: PT012 - the echoes come first
            for _ in range(3):
                await flooder.receive_json()
        assert closed.value.code == CloseCode.POLICY_VIOLATION


@pytest.mark.asyncio
async def test_one_flood_leaves_the_other_users_of_its_address_in() -> None:
    # Every test client connection has the address "testclient": a NAT of many users.
    handler = WebSocketHandler(rate_limit=RateLimit(rate=1, burst=2, penalty=10), connections=ConnectionCounter())
    client = TestClient(nat_app(handler), timeout=2.0)
    await flood_once(client, "/ws?user=mallory")
    for n in range(50):  # new users behind the same NAT
        async with client.websocket_connect(f"/ws?user=user{n}") as session:
            await session.send_json(n)
            assert await session.receive_json() == n
    with pytest.raises(WebSocketDenied) as refused:  # the flooder itself is refused at once
        await client.websocket_connect("/ws?user=mallory")
    assert refused.value.status_code == 429
    assert handler.rejections.counts["rate_penalty"] == 1
    await flood_once(client, "/ws")  # a second flood from the address: now the address is refused
    with pytest.raises(WebSocketDenied) as refused:
        await client.websocket_connect("/ws?user=someone-else")
    assert refused.value.status_code == 429
