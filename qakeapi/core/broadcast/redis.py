"""A Redis pub/sub broadcast backend for clusters: ``redis://host:port/db`` (or ``rediss://``).

One connection publishes; a supervised listener task owns the subscription connection. When
Redis goes away the listener logs, backs off exponentially, reconnects and resubscribes every
channel; publishing meanwhile raises :class:`~qakeapi.exceptions.BroadcastError`. Messages
published while a listener is disconnected are not delivered to it (Redis pub/sub keeps none).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from qakeapi.core.backoff import Backoff
from qakeapi.core.broadcast.base import DEFAULT_MAX_QUEUE, BroadcastBackend, Event
from qakeapi.exceptions import BroadcastError, MissingDependencyError

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.client import PubSub

__all__ = ["RedisBackend", "redact_url", "redis_errors", "with_one_retry"]

logger = logging.getLogger("qakeapi.broadcast.redis")


_T = TypeVar("_T")


async def with_one_retry(operation: Callable[[], Awaitable[_T]], what: str, safe_url: str) -> _T:
    """Run a Redis command, retrying once when its pooled connection turns out to be broken.

    A connection that Redis closed (it restarted, or ``CLIENT KILL``) ran nothing; the retry
    takes a fresh one from the pool.

    Args:
        operation: Sends the command(s) and returns the reply.
        what: What it does, for the error ("publish to 'chat'").
        safe_url: The server's URL without credentials (:func:`redact_url`).

    Returns:
        The reply.

    Raises:
        BroadcastError: Redis could not be reached, or refused the command.
    """
    from redis.exceptions import ConnectionError as RedisConnectionError

    for attempt in (1, 2):
        try:
            return await operation()
        except RedisConnectionError as exc:
            if attempt == 1:
                continue
            error: Exception = exc
        except redis_errors() as exc:
            error = exc
        raise BroadcastError(f"cannot {what} on {safe_url}: {type(error).__name__}: {error}") from error
    raise AssertionError("unreachable")  # pragma: no cover


def redis_errors() -> tuple[type[Exception], ...]:
    """What redis-py raises when Redis cannot be reached or refuses a command.

    ``RedisClusterException`` (an unreachable or not yet created Redis Cluster, a slot nobody
    serves) is not a ``RedisError``: a loop that caught only ``RedisError`` died on it.
    """
    from redis.exceptions import RedisClusterException, RedisError

    return (RedisError, RedisClusterException, OSError)


def redact_url(url: str) -> str:
    """Return ``url`` without its user name and password, safe to log.

    Args:
        url: A ``redis://`` URL.

    Returns:
        ``scheme://host:port/path`` with any credentials removed.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "<unparsable Redis URL>"
    # Credentials end at the last "@" before the host; a password may hold "/", "?" or "#".
    authority_end = len(rest)
    at = rest.rfind("@")
    if at >= 0:
        rest = rest[at + 1 :]
    for mark in "?#":
        cut = rest.find(mark)
        if cut >= 0:
            authority_end = min(authority_end, cut)
    return f"{scheme}://{rest[:authority_end]}"


class RedisBackend(BroadcastBackend):
    """Broadcast through Redis pub/sub.

    Creating it touches no network; :meth:`connect` starts the listener.

    Args:
        url: The Redis URL.
        max_queue: How many received events may wait to be consumed.
        min_backoff: The first reconnect delay, in seconds.
        max_backoff: The largest reconnect delay, in seconds.
        ready_timeout: How long :meth:`subscribe` waits for Redis to confirm a subscription
            before it returns anyway (the listener keeps trying), in seconds.
        health_interval: After this many idle seconds the listener pings Redis, so a dead
            connection is noticed even when nothing is published.

    Attributes:
        backoff: The listener's reconnect delay and outage record (see :class:`~qakeapi.core.backoff.Backoff`).
    """

    def __init__(
        self,
        url: str,
        *,
        max_queue: int = DEFAULT_MAX_QUEUE,
        min_backoff: float = 0.05,
        max_backoff: float = 5.0,
        ready_timeout: float = 5.0,
        health_interval: float = 15.0,
    ) -> None:
        super().__init__(max_queue=max_queue)
        self.url = url
        self.safe_url = redact_url(url)
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.ready_timeout = ready_timeout
        self.health_interval = health_interval
        self.backoff = Backoff(f"Redis listener on {self.safe_url}", logger, min_backoff, max_backoff)
        self._channels: dict[str, asyncio.Event] = {}
        self._client: Redis | None = None
        self._pubsub: PubSub | None = None
        self._listener: asyncio.Task[None] | None = None
        self._has_channels = asyncio.Event()

    @property
    def reconnects(self) -> int:
        """How many times the listener lost Redis (outages, not attempts)."""
        return self.backoff.outages

    @property
    def listening(self) -> bool:
        """Whether Redis has confirmed the subscription of every channel on a live connection."""
        return bool(self._channels) and all(ready.is_set() for ready in self._channels.values())

    async def connect(self) -> None:
        """Create the clients and start the listener. Idempotent."""
        if self._listener is not None:
            return
        try:
            from redis.asyncio import Redis
        except ImportError:  # pragma: no cover - depends on the environment
            raise MissingDependencyError("redis", "redis") from None
        self._client = Redis.from_url(self.url.replace("+pubsub://", "://", 1))  # redis+pubsub:// is ours
        # Fresh asyncio primitives: a backend may be connected again in another event loop.
        self._open_events()
        self._channels = {channel: asyncio.Event() for channel in self._channels}
        self._has_channels = asyncio.Event()
        if self._channels:
            self._has_channels.set()
        self._listener = asyncio.get_running_loop().create_task(
            self._listen(), name=f"qakeapi redis listener {self.safe_url}"
        )

    async def disconnect(self) -> None:
        """Stop the listener, close the connections and end the event stream. Idempotent."""
        listener, self._listener = self._listener, None
        if listener is None:
            return
        listener.cancel()
        try:
            with contextlib.suppress(asyncio.CancelledError):
                await listener
        finally:
            client, self._client = self._client, None
            self._end_events()
            if client is not None:
                await client.aclose()

    async def subscribe(self, channel: str) -> None:
        """Subscribe to ``channel`` and wait (up to ``ready_timeout``) until Redis confirms it.

        If Redis cannot be reached in time this logs a warning and returns; the listener
        subscribes as soon as it connects.
        """
        if channel not in self._channels:
            self._channels[channel] = asyncio.Event()
            self._has_channels.set()
            pubsub = self._pubsub
            if pubsub is not None:
                from redis.exceptions import RedisError

                try:
                    await pubsub.subscribe(channel)
                except (RedisError, OSError) as exc:  # the listener resubscribes on reconnect
                    logger.debug("subscribing %r on %s failed: %s", channel, self.safe_url, exc)
        ready = self._channels[channel]
        if self._listener is None:
            return
        try:
            await asyncio.wait_for(ready.wait(), self.ready_timeout)
        except asyncio.TimeoutError:
            logger.warning(
                "Redis at %s has not confirmed the subscription to %r within %.1fs; "
                "broadcasts are not received until it does",
                self.safe_url,
                channel,
                self.ready_timeout,
            )

    async def unsubscribe(self, channel: str) -> None:
        """Stop receiving ``channel``."""
        if self._channels.pop(channel, None) is None:
            return
        if not self._channels:
            self._has_channels.clear()
        pubsub = self._pubsub
        if pubsub is not None:
            from redis.exceptions import RedisError

            try:
                await pubsub.unsubscribe(channel)
            except (RedisError, OSError) as exc:
                logger.debug("unsubscribing %r on %s failed: %s", channel, self.safe_url, exc)

    async def publish(self, channel: str, payload: str | bytes) -> None:
        """Publish ``payload`` on ``channel``.

        A connection that died in the pool (Redis restarted) is retried once on a fresh one.
        If it died after Redis had already taken the ``PUBLISH``, that retry delivers the
        message twice: delivery is at most once except in that case.

        Raises:
            BroadcastError: Not connected, or Redis could not be reached.
        """
        client = self._client
        if client is None:
            raise BroadcastError(f"Redis backend {self.safe_url} is not connected; call connect() first")
        await with_one_retry(lambda: client.publish(channel, payload), f"publish to {channel!r}", self.safe_url)

    async def _listen(self) -> None:
        """Supervise the subscription connection: reconnect with backoff, resubscribe, pump."""
        self.backoff.expected = redis_errors()  # anything else is a bug: its traceback is logged
        assert self._client is not None
        while True:
            await self._has_channels.wait()
            pubsub = self._client.pubsub()
            error: Exception | None = None
            try:
                self._pubsub = pubsub  # subscribe() calls from now on go to this connection too
                await pubsub.subscribe(*self._channels)
                await self._pump(pubsub)
            except Exception as exc:  # Redis went away, or a bug (logged with its traceback): listen on
                error = exc
            finally:
                # Give the broken connection up before backing off, so nothing (redis-py's own
                # reconnect included) keeps using it while this listener is not listening.
                self._lost(pubsub)
                await _close_quietly(pubsub)
            if error is not None:
                self.backoff.failed(error)
                await self.backoff.wait()

    def _lost(self, pubsub: PubSub) -> None:
        if self._pubsub is pubsub:
            self._pubsub = None
        self.connected_since = None
        for ready in self._channels.values():
            ready.clear()

    async def _pump(self, pubsub: PubSub) -> None:
        pinged = False
        while True:
            message = await pubsub.get_message(timeout=self.health_interval)
            if message is None:
                if pinged:  # a whole interval without even the answer to PING: a dead connection
                    raise ConnectionError(f"no answer to PING within {self.health_interval}s")
                await pubsub.ping()
                pinged = True
                continue
            pinged = False
            kind = message.get("type")
            if kind == "message":
                self._received(Event(_text(message["channel"]), bytes(message["data"])))
            elif kind == "subscribe":
                ready = self._channels.get(_text(message["channel"]))
                if ready is not None:
                    ready.set()
                if self.connected_since is None:
                    self.connected_since = time.monotonic()
                    self.backoff.succeeded()
            elif kind == "unsubscribe" and not self._channels:
                return


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def _close_quietly(pubsub: PubSub) -> None:
    # Typed through a variable: redis-py before 8.2 leaves aclose() unannotated, 8.2 annotates it,
    # and mypy --strict must pass on both (the floors and the newest versions of the extras).
    aclose: Callable[[], Awaitable[object]] = pubsub.aclose
    try:
        await aclose()
    except Exception as exc:  # the connection may already be broken
        logger.debug("closing a Redis pub/sub connection failed: %s", exc)
