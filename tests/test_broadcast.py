"""Tests for qakeapi.core.broadcast: one contract suite for every backend, then Redis faults.

The contract tests run against ``memory://`` and the shared Redis at 127.0.0.1:6379 (unique
channels per test). The fault tests start a private ``redis-server`` so they can kill its
connections and stop it without disturbing anything else.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from redis.asyncio import Redis

from qakeapi.core.broadcast import BroadcastBackend, Event, create_backend
from qakeapi.core.broadcast.memory import MemoryBackend
from qakeapi.core.broadcast.redis import RedisBackend, redact_url
from qakeapi.core.clustering import create_cluster_backend
from qakeapi.exceptions import BroadcastError, QakeAPIError
from tests.redis_server import RedisServer, free_port, wait_until

SHARED_REDIS = "redis://127.0.0.1:6379"
RECEIVE_TIMEOUT = 5.0
QUIET_TIMEOUT = 0.2


def unique(prefix: str = "test") -> str:
    return f"{prefix}:{uuid.uuid4().hex}"


class Receiver:
    """Consumes a backend's :meth:`~BroadcastBackend.events` in a task; every receive has a timeout.

    (Cancelling ``__anext__`` of the events generator directly would close it, so a timed-out
    receive could not be retried; the task keeps one iteration running for the whole test.)
    """

    def __init__(self, backend: BroadcastBackend) -> None:
        self._queue: asyncio.Queue[Event | None] = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._pump(backend))

    async def _pump(self, backend: BroadcastBackend) -> None:
        try:
            async for event in backend.events():
                self._queue.put_nowait(event)
        finally:
            self._queue.put_nowait(None)

    async def next(self, timeout: float = RECEIVE_TIMEOUT) -> Event:
        """The next event; ``TimeoutError`` if none arrives in time, ``StopAsyncIteration`` at the end."""
        item = await asyncio.wait_for(self._queue.get(), timeout)
        if item is None:
            self._queue.put_nowait(None)
            raise StopAsyncIteration
        return item

    async def payloads(self, count: int) -> list[bytes]:
        return [(await self.next()).payload for _ in range(count)]

    async def ended(self, timeout: float = RECEIVE_TIMEOUT) -> bool:
        """Whether the events end within ``timeout`` (nothing else may arrive first)."""
        try:
            event = await self.next(timeout)
        except StopAsyncIteration:
            return True
        except asyncio.TimeoutError:
            self._task.cancel()
            return False
        raise AssertionError(f"expected the end of events, got {event}")


@pytest_asyncio.fixture(params=["memory", "redis", "redis-stream"])
async def pair(request: pytest.FixtureRequest) -> AsyncIterator[tuple[BroadcastBackend, BroadcastBackend]]:
    """Two connected backends that see each other: two nodes of one cluster."""
    url = {
        "memory": f"memory://{unique('hub')}",
        "redis": SHARED_REDIS.replace("redis://", "redis+pubsub://", 1),
        "redis-stream": SHARED_REDIS,
    }[request.param]
    factory = create_cluster_backend if request.param == "redis-stream" else create_backend
    first, second = factory(url), factory(url)
    await first.connect()
    await second.connect()
    try:
        yield first, second
    finally:
        await first.disconnect()
        await second.disconnect()


# -- the contract every backend keeps ---------------------------------------------------------


@pytest.mark.asyncio
async def test_every_subscriber_receives_the_exact_bytes(pair: tuple[BroadcastBackend, BroadcastBackend]) -> None:
    first, second = pair
    channel = unique()
    await first.subscribe(channel)
    await second.subscribe(channel)
    received_first, received_second = Receiver(first), Receiver(second)
    payload = bytes(range(256)) + b"\n\r\x00 end"

    await first.publish(channel, payload)

    assert await received_first.next() == Event(channel, payload)
    assert await received_second.next() == Event(channel, payload)


@pytest.mark.asyncio
async def test_str_payload_arrives_utf8_encoded(pair: tuple[BroadcastBackend, BroadcastBackend]) -> None:
    first, second = pair
    channel = unique()
    await second.subscribe(channel)
    text = "héllo wörld ✓ 🚀"

    await first.publish(channel, text)

    event = await Receiver(second).next()
    assert event.payload == text.encode("utf-8")
    assert isinstance(event.payload, bytes)


@pytest.mark.asyncio
async def test_empty_payload_is_delivered(pair: tuple[BroadcastBackend, BroadcastBackend]) -> None:
    first, second = pair
    channel = unique()
    await second.subscribe(channel)

    await first.publish(channel, b"")

    assert await Receiver(second).next() == Event(channel, b"")


@pytest.mark.asyncio
async def test_only_subscribed_channels_are_received(pair: tuple[BroadcastBackend, BroadcastBackend]) -> None:
    first, second = pair
    mine, other = unique("mine"), unique("other")
    await second.subscribe(mine)
    receiver = Receiver(second)

    await first.publish(other, b"not for you")
    await first.publish(mine, b"for you")

    # Published in this order by one publisher: had "other" been delivered, it would come first.
    assert await receiver.next() == Event(mine, b"for you")


@pytest.mark.asyncio
async def test_unsubscribe_stops_delivery(pair: tuple[BroadcastBackend, BroadcastBackend]) -> None:
    first, second = pair
    channel, marker = unique("chan"), unique("marker")
    await first.subscribe(channel)
    await second.subscribe(channel)
    receiver_first, receiver_second = Receiver(first), Receiver(second)

    await second.unsubscribe(channel)
    # Subscribing waits for the server's confirmation, which comes after the unsubscribe took effect.
    await second.subscribe(marker)
    await first.publish(channel, b"after unsubscribe")
    await first.publish(marker, b"marker")

    assert await receiver_second.next() == Event(marker, b"marker")
    assert await receiver_first.next() == Event(channel, b"after unsubscribe")


@pytest.mark.asyncio
async def test_unsubscribe_of_an_unknown_channel_is_harmless(pair: tuple[BroadcastBackend, BroadcastBackend]) -> None:
    first, second = pair
    channel = unique()
    await second.subscribe(channel)

    await second.unsubscribe(unique("never-subscribed"))
    await first.publish(channel, b"still here")

    assert await Receiver(second).next() == Event(channel, b"still here")


@pytest.mark.asyncio
async def test_order_is_preserved_for_100_messages(pair: tuple[BroadcastBackend, BroadcastBackend]) -> None:
    first, second = pair
    channel = unique()
    await first.subscribe(channel)
    await second.subscribe(channel)
    receiver_first, receiver_second = Receiver(first), Receiver(second)
    expected = [f"message {i}".encode() for i in range(100)]

    for payload in expected:
        await first.publish(channel, payload)

    assert await receiver_second.payloads(100) == expected
    assert await receiver_first.payloads(100) == expected


@pytest.mark.asyncio
async def test_disconnect_ends_events(pair: tuple[BroadcastBackend, BroadcastBackend]) -> None:
    first, second = pair
    channel = unique()
    await second.subscribe(channel)
    collected: list[bytes] = []

    async def consume() -> list[bytes]:
        async for event in second.events():
            collected.append(event.payload)
        return collected

    consumer = asyncio.get_running_loop().create_task(consume())
    await first.publish(channel, b"one")
    await wait_until(lambda: len(collected) == 1, "the consumer received the first message")

    await second.disconnect()

    assert await asyncio.wait_for(consumer, RECEIVE_TIMEOUT) == [b"one"]


@pytest.mark.asyncio
async def test_events_after_disconnect_end_immediately(pair: tuple[BroadcastBackend, BroadcastBackend]) -> None:
    _first, second = pair
    await second.subscribe(unique())
    await second.disconnect()

    assert await Receiver(second).ended(), "events() after disconnect() must end"
    assert await Receiver(second).ended(timeout=1.0), "a second events() after disconnect() must end too"


@pytest.mark.asyncio
async def test_connect_and_disconnect_are_idempotent(pair: tuple[BroadcastBackend, BroadcastBackend]) -> None:
    first, second = pair
    channel = unique()
    await second.connect()
    await second.subscribe(channel)
    await first.publish(channel, b"once")

    receiver = Receiver(second)
    assert await receiver.next() == Event(channel, b"once")
    await second.disconnect()
    await second.disconnect()
    assert await receiver.ended()


# -- backend selection and construction ------------------------------------------------------


@pytest.mark.parametrize("url", ["kafka://localhost", "http://localhost:6379", "memory", "", "amqp://guest@h/"])
def test_create_backend_refuses_unknown_schemes(url: str) -> None:
    with pytest.raises(ValueError, match="unsupported broadcast URL scheme"):
        create_backend(url)


def test_create_backend_memory_uses_the_hub_name() -> None:
    backend = create_backend("memory://chat")
    assert isinstance(backend, MemoryBackend)
    assert backend.name == "chat"


def test_one_table_of_schemes_the_same_url_gives_the_same_backend_everywhere() -> None:
    from qakeapi.core.broadcast.redis_stream import RedisStreamBackend

    for url in ("redis://127.0.0.1:1", "rediss://h:1", "unix:///tmp/r.sock", "redis+cluster://h:7000"):
        assert type(create_backend(url)) is type(create_cluster_backend(url)) is RedisStreamBackend
    assert isinstance(create_backend("redis+pubsub://127.0.0.1:1"), RedisBackend)
    assert create_backend("redis://h:1", max_len=50, ttl=60).max_len == 50  # type: ignore[attr-defined]


@pytest.mark.parametrize("scheme", ["redis+pubsub", "rediss+pubsub"])
def test_create_backend_redis_touches_no_network(scheme: str) -> None:
    url = f"{scheme}://:pw@127.0.0.1:{free_port()}/2"  # nothing listens there
    backend = create_backend(url)
    assert isinstance(backend, RedisBackend)
    assert backend.url == url
    assert backend.safe_url == f"{scheme}://127.0.0.1:{url.rsplit(':', 1)[1]}"
    assert backend.listening is False
    assert backend.reconnects == 0


@pytest.mark.parametrize(
    ("url", "safe"),
    [
        ("redis://:s3cret@127.0.0.1:6379", "redis://127.0.0.1:6379"),
        ("redis://user:s3cret@cache.example:6380/1", "redis://cache.example:6380/1"),
        ("rediss://user@cache.example/0", "rediss://cache.example/0"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("redis://:s3cret@[::1]:6379", "redis://[::1]:6379"),
        ("redis://localhost", "redis://localhost"),
        ("redis://:s3cret/x@127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),  # "/" in the password
        ("redis://:s3cret?#@127.0.0.1:6379", "redis://127.0.0.1:6379"),
    ],
)
def test_redact_url_removes_credentials(url: str, safe: str) -> None:
    assert redact_url(url) == safe
    assert "s3cret" not in redact_url(url)


@pytest.mark.asyncio
async def test_redis_publish_before_connect_raises() -> None:
    backend = RedisBackend("redis://:s3cret@127.0.0.1:6379")
    with pytest.raises(BroadcastError, match="not connected; call connect") as info:
        await backend.publish(unique(), b"x")
    assert isinstance(info.value, ConnectionError)
    assert isinstance(info.value, QakeAPIError)
    assert "s3cret" not in str(info.value)


@pytest.mark.asyncio
async def test_redis_publish_after_disconnect_raises() -> None:
    backend = RedisBackend(SHARED_REDIS)
    await backend.connect()
    await backend.disconnect()
    with pytest.raises(BroadcastError, match="not connected"):
        await backend.publish(unique(), b"x")


# -- the memory backend ----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_memory_hubs_are_isolated() -> None:
    channel = unique()
    here, there = MemoryBackend(unique("hub")), MemoryBackend(unique("hub"))
    await here.connect()
    await there.connect()
    await here.subscribe(channel)
    await there.subscribe(channel)

    await there.publish(channel, b"other hub")
    await here.publish(channel, b"this hub")

    assert await Receiver(here).next() == Event(channel, b"this hub")
    assert await Receiver(there).next() == Event(channel, b"other hub")
    await here.disconnect()
    await there.disconnect()


@pytest.mark.asyncio
async def test_full_queue_drops_the_newest_and_counts(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="qakeapi.broadcast")
    hub, channel = unique("hub"), unique()
    publisher, subscriber = MemoryBackend(hub), MemoryBackend(hub, max_queue=3)
    await publisher.connect()
    await subscriber.connect()
    await subscriber.subscribe(channel)

    for i in range(5):
        await publisher.publish(channel, str(i))

    assert subscriber.dropped == 2
    receiver = Receiver(subscriber)
    assert await receiver.payloads(3) == [b"0", b"1", b"2"]
    await publisher.publish(channel, b"5")
    assert await receiver.next() == Event(channel, b"5")
    assert subscriber.dropped == 2
    drops = [r for r in caplog.records if r.name == "qakeapi.broadcast" and r.levelno == logging.WARNING]
    assert [r.getMessage() for r in drops] == [
        f"MemoryBackend: event queue full (3 waiting); dropped a message on {channel!r} (1 dropped so far)",
        f"MemoryBackend: event queue full (3 waiting); dropped a message on {channel!r} (2 dropped so far)",
    ]
    await subscriber.disconnect()
    await publisher.disconnect()


@pytest.mark.asyncio
async def test_disconnect_ends_events_even_with_a_full_queue() -> None:
    hub, channel = unique("hub"), unique()
    backend = MemoryBackend(hub, max_queue=2)
    await backend.connect()
    await backend.subscribe(channel)
    await backend.publish(channel, b"a")
    await backend.publish(channel, b"b")

    await backend.disconnect()

    async def drain() -> list[bytes]:
        return [event.payload async for event in backend.events()]

    received = await asyncio.wait_for(drain(), RECEIVE_TIMEOUT)
    assert received == [b"a", b"b"][: len(received)]


# -- Redis faults, on a private server --------------------------------------------------------


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    with RedisServer(tmp_path, password="s3cret") as server:
        yield server


def listener_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == "qakeapi.broadcast.redis" and record.levelno == logging.WARNING
    ]


async def connected(url: str, channel: str, *, min_backoff: float, max_backoff: float) -> tuple[RedisBackend, Receiver]:
    backend = RedisBackend(url, min_backoff=min_backoff, max_backoff=max_backoff)
    await backend.connect()
    await backend.subscribe(channel)
    return backend, Receiver(backend)


@pytest.mark.asyncio
async def test_killed_listener_connection_is_logged_and_resubscribed(
    private_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="qakeapi.broadcast.redis")
    channel = unique()
    backend, receiver = await connected(private_redis.url, channel, min_backoff=0.5, max_backoff=1.0)
    admin: Redis = Redis.from_url(private_redis.url)
    try:
        assert backend.listening is True
        await backend.publish(channel, b"before")
        assert await receiver.next() == Event(channel, b"before")

        killed = await admin.client_kill_filter(_type="pubsub")
        assert killed == 1

        await wait_until(lambda: backend.reconnects == 1, "the listener noticed the killed connection")
        # The backoff is 0.5 s: the listener is still waiting to reconnect, so it is not listening.
        assert backend.listening is False, "listening must be False while the listener is reconnecting"
        await wait_until(lambda: backend.listening, "the listener resubscribed")
        await backend.publish(channel, b"after")
        assert await receiver.next() == Event(channel, b"after")
        assert backend.reconnects == 1
        messages = listener_warnings(caplog)
        assert len(messages) == 2, messages  # down, and back: one line each
        assert messages[1].startswith(f"Redis listener on redis://127.0.0.1:{private_redis.port} reconnected after ")
        assert messages[0].startswith(
            f"Redis listener on redis://127.0.0.1:{private_redis.port} lost its connection (ConnectionError: "
        )
        assert messages[0].endswith("; retrying in 0.50s")
        assert "s3cret" not in messages[0]
    finally:
        await admin.aclose()
        await backend.disconnect()


@pytest.mark.asyncio
async def test_delivery_resumes_after_the_listener_connection_is_killed(private_redis: RedisServer) -> None:
    channel = unique()
    backend, receiver = await connected(private_redis.url, channel, min_backoff=0.05, max_backoff=0.2)
    admin: Redis = Redis.from_url(private_redis.url)
    try:
        assert await admin.client_kill_filter(_type="pubsub") == 1
        await wait_until(lambda: backend.reconnects == 1, "the listener noticed the killed connection")

        # Probe until a message gets through again (the observable sign of a resubscription).
        probes = 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while True:
            probes += 1
            await backend.publish(channel, f"probe {probes}")
            try:
                event = await receiver.next(timeout=0.1)
            except asyncio.TimeoutError:
                assert loop.time() < deadline, f"no probe was delivered within 10s ({probes} sent)"
                continue
            assert event.payload.startswith(b"probe ")
            break
        await backend.publish(channel, b"final")
        while (event := await receiver.next()).payload != b"final":
            assert event.payload.startswith(b"probe "), event
        assert backend.reconnects == 1
        assert backend.listening is True
    finally:
        await admin.aclose()
        await backend.disconnect()


@pytest.mark.asyncio
async def test_publish_while_redis_is_down_raises_then_delivery_resumes_after_restart(
    private_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="qakeapi")
    channel = unique()
    backend, receiver = await connected(private_redis.url, channel, min_backoff=0.02, max_backoff=0.2)
    try:
        await backend.publish(channel, b"before")
        assert await receiver.next() == Event(channel, b"before")

        private_redis.stop()

        with pytest.raises(BroadcastError) as info:
            await backend.publish(channel, b"while down")
        message = str(info.value)
        assert message.startswith(f"cannot publish to {channel!r} on redis://127.0.0.1:{private_redis.port}: ")
        assert "ConnectionError" in message
        assert "s3cret" not in message
        assert "s3cret" not in repr(info.value)
        assert isinstance(info.value, ConnectionError)
        # The listener keeps trying (a DEBUG line an attempt), and says so without the password.
        await wait_until(
            lambda: any("attempt 2 failed" in r.getMessage() for r in caplog.records),
            "the listener failed to reconnect at least once",
        )
        assert backend.listening is False

        await asyncio.to_thread(private_redis.start)
        await wait_until(lambda: backend.listening, "the listener resubscribed after the restart")

        await backend.publish(channel, b"after restart")
        assert await receiver.next() == Event(channel, b"after restart")
        warnings = listener_warnings(caplog)
        assert backend.reconnects == 1  # one outage: one line when it began, one when it ended
        assert len(warnings) == 2, warnings
        assert warnings[0].startswith(f"Redis listener on redis://127.0.0.1:{private_redis.port} lost its connection")
        assert warnings[1].startswith(f"Redis listener on redis://127.0.0.1:{private_redis.port} reconnected after")
        leaked = [r.getMessage() for r in caplog.records if "s3cret" in r.getMessage()]
        assert leaked == []
        tasks = [task.get_name() for task in asyncio.all_tasks() if "redis listener" in task.get_name()]
        assert tasks == [f"qakeapi redis listener redis://127.0.0.1:{private_redis.port}"]
    finally:
        await backend.disconnect()


@pytest.mark.asyncio
async def test_first_publish_after_a_restart_succeeds(private_redis: RedisServer) -> None:
    channel = unique()
    backend, receiver = await connected(private_redis.url, channel, min_backoff=0.02, max_backoff=0.2)
    try:
        await backend.publish(channel, b"before")  # the publishing connection is now pooled
        assert await receiver.next() == Event(channel, b"before")

        private_redis.stop()
        await wait_until(lambda: backend.backoff.failures >= 2, "the listener failed to reconnect at least once")
        await asyncio.to_thread(private_redis.start)
        await wait_until(lambda: backend.listening, "the listener resubscribed after the restart")

        await backend.publish(channel, b"after restart")
        assert await receiver.next() == Event(channel, b"after restart")
    finally:
        await backend.disconnect()


@pytest.mark.asyncio
async def test_subscribe_before_redis_is_up_returns_and_listener_connects_later(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="qakeapi.broadcast.redis")
    server = RedisServer(tmp_path, password="s3cret")  # not started yet: nothing listens on its port
    channel = unique()
    backend = RedisBackend(server.url, min_backoff=0.02, max_backoff=0.2, ready_timeout=0.3)
    try:
        await backend.connect()
        await backend.subscribe(channel)  # returns after ready_timeout instead of hanging

        assert backend.listening is False
        assert f"has not confirmed the subscription to {channel!r} within 0.3s" in "\n".join(listener_warnings(caplog))
        with pytest.raises(BroadcastError):
            await backend.publish(channel, b"nobody home")

        await asyncio.to_thread(server.start)
        await wait_until(lambda: backend.listening, "the listener connected once Redis came up")
        await backend.publish(channel, b"hello")
        assert await Receiver(backend).next() == Event(channel, b"hello")
        assert backend.reconnects >= 1
        assert all("s3cret" not in message for message in listener_warnings(caplog))
    finally:
        await backend.disconnect()
        server.stop()


@pytest.mark.asyncio
async def test_an_unexpected_listener_failure_is_logged_and_the_listener_recovers(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    channel = unique()
    backend = RedisBackend("redis://127.0.0.1:6379", min_backoff=0.01, max_backoff=0.05)
    original = RedisBackend._pump
    failures = [RuntimeError("a bug in the pump")]

    async def flaky_pump(self: RedisBackend, pubsub: Any) -> None:
        if failures:
            raise failures.pop()
        await original(self, pubsub)

    monkeypatch.setattr(RedisBackend, "_pump", flaky_pump)
    with caplog.at_level(logging.WARNING, logger="qakeapi.broadcast.redis"):
        await backend.connect()
        await backend.subscribe(channel)
        await wait_until(lambda: backend.listening, "the listener recovering from the failure", 5)
        receiver = Receiver(backend)
        await backend.publish(channel, b"after the failure")
        assert await receiver.next() == Event(channel, b"after the failure")
        await backend.disconnect()
    (failure,) = [r for r in caplog.records if "lost its connection" in r.getMessage()]
    assert "Redis listener on redis://127.0.0.1:6379 lost its connection (RuntimeError: a bug in the pump)" in (
        failure.getMessage()
    )
    assert failure.exc_info is not None  # not a Redis error: a bug, logged with its traceback
    assert backend.reconnects == 1
