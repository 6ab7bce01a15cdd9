"""A Redis Streams broadcast backend for clusters: what a reader missed while away is still there.

URLs: ``redis://``, ``rediss://``, ``unix://``; ``redis+sentinel://`` for a master behind
Sentinel (redis-py asks the Sentinels for the master again after a failover); and
``redis+cluster://`` for Redis Cluster (each stream is one key, so it lives on one shard).

Each channel is a stream key. :meth:`RedisStreamBackend.publish` appends (``XADD``, trimmed to
about ``max_len`` entries); a supervised reader task reads every subscribed stream
(``XREAD BLOCK``) from the last entry it saw. A reader that loses its connection (Redis
restarted, ``CLIENT KILL``, a network blip) reconnects with backoff and goes on from that
entry, so it misses nothing that is still in the stream. A reader starts at the moment
:meth:`~RedisStreamBackend.connect` was called, so a node gets what was published from then on
even if Redis was down when it started.

Creating and connecting the backend touch no network: a node starts at once with Redis down,
and the reader joins as soon as Redis answers. An outage is logged once when it starts and once
when it ends (with how long it lasted), never once per attempt.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, cast
from urllib.parse import parse_qs, unquote, urlsplit

from qakeapi.core.backoff import Backoff
from qakeapi.core.broadcast.base import DEFAULT_MAX_QUEUE, BroadcastBackend, Event
from qakeapi.core.broadcast.history import HistoryAppend, HistoryEntry, HistoryRead
from qakeapi.core.broadcast.redis import redact_url, redis_errors, with_one_retry
from qakeapi.core.tasks import stop_tasks
from qakeapi.exceptions import BroadcastError, MissingDependencyError

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = [
    "CLUSTER_SCHEMES",
    "DEFAULT_MAX_LEN",
    "SENTINEL_SCHEMES",
    "RedisStreamBackend",
    "SentinelTarget",
    "parse_sentinel_url",
]

logger = logging.getLogger("qakeapi.broadcast.redis")

DEFAULT_MAX_LEN = 10_000
"""About how many entries a stream keeps (``XADD ... MAXLEN ~``)."""

_FIELD = b"d"

# Room history (qakeapi.core.cluster.history). A history is a stream whose entry ids are
# "<offset>-0" (a publication, field d) or "<offset>-<n>" (a gap marker after <offset>, field
# gap), trimmed to exactly ``size`` entries, and a hash {epoch, top}; both expire ``ttl`` after
# the last append. The keys share the cluster channel's hash slot (Redis Cluster runs the scripts).
_APPEND = """
local epoch = redis.call('HGET', KEYS[3], 'epoch')
if not epoch then
  epoch = ARGV[3]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[3], 'epoch', epoch, 'top', 0)
end
if ARGV[9] ~= '' then
  local last = redis.call('HGET', KEYS[3], 'p:' .. ARGV[9])
  if last then
    local at = string.find(last, ':', 1, true)
    if string.sub(last, 1, at - 1) == ARGV[10] then
      return {epoch, tonumber(string.sub(last, at + 1))}
    end
  end
end
if ARGV[8] == '1' then
  redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[4], redis.call('HGET', KEYS[3], 'top') .. '-*', 'gap', '1')
end
local offset = redis.call('HINCRBY', KEYS[3], 'top', 1)
if ARGV[9] ~= '' then redis.call('HSET', KEYS[3], 'p:' .. ARGV[9], ARGV[10] .. ':' .. offset) end
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[4], offset .. '-0', 'd', ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[5])
redis.call('PEXPIRE', KEYS[3], ARGV[5])
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[6], '*', 'd',
  ARGV[1] .. ',"o":' .. offset .. ',"e":"' .. epoch .. '"}' .. string.char(10) .. ARGV[2])
if ARGV[7] ~= '' then redis.call('EXPIRE', KEYS[1], ARGV[7]) end
return {epoch, offset}
"""
_MARK_GAP = """
local top = redis.call('HGET', KEYS[2], 'top')
if not top then return 0 end
redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[1], top .. '-*', 'gap', '1')
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return 1
"""
_READ = """
local meta = redis.call('HMGET', KEYS[2], 'epoch', 'top')
local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
local entries = redis.call('XRANGE', KEYS[1], '(' .. ARGV[1] .. '-0', '+', 'COUNT', ARGV[2])
return {meta[1], meta[2], first, entries}
"""

SENTINEL_SCHEMES = frozenset({"redis+sentinel", "rediss+sentinel"})
"""URL schemes of a Redis behind Sentinel, as in ``redis+sentinel://[[user]:password@]host:port[,host:port...]/service[/db]``."""
CLUSTER_SCHEMES = frozenset({"redis+cluster", "rediss+cluster"})
"""URL schemes of a Redis Cluster, as in ``redis+cluster://[[user]:password@]host:port`` (any node of it)."""


@dataclass(frozen=True, slots=True)
class SentinelTarget:
    """Where a ``redis+sentinel://`` URL points.

    Attributes:
        sentinels: The Sentinel addresses.
        service: The monitored master's name.
        db: The database number.
        username: The Redis user, if any.
        password: The Redis password, if any.
        sentinel_auth: Whether the Sentinels take the same credentials (``?sentinel_auth=1``).
    """

    sentinels: list[tuple[str, int]]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_auth: bool = False


def parse_sentinel_url(url: str) -> SentinelTarget:
    """Parse ``redis+sentinel://[[user]:password@]host:port[,host:port...]/service[/db][?sentinel_auth=1]``.

    Args:
        url: The URL.

    Returns:
        The Sentinel addresses, the service and the credentials.

    Raises:
        ValueError: No Sentinel address, no service name, or a bad port or database.
    """
    parts = urlsplit(url)
    userinfo, _, hosts = parts.netloc.rpartition("@")
    username, _, password = userinfo.partition(":")
    sentinels = []
    for item in filter(None, hosts.split(",")):
        host, _, port = item.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"bad Sentinel address {item!r} in a redis+sentinel:// URL (want host:port)")
        sentinels.append((host.strip("[]"), int(port)))
    if not sentinels:
        raise ValueError("a redis+sentinel:// URL needs at least one host:port")
    path = [unquote(p) for p in parts.path.split("/") if p]
    if not path or len(path) > 2 or (len(path) == 2 and not path[1].isdigit()):
        raise ValueError("a redis+sentinel:// URL needs /service or /service/db after the addresses")
    query = parse_qs(parts.query)
    return SentinelTarget(
        sentinels=sentinels,
        service=path[0],
        db=int(path[1]) if len(path) == 2 else 0,
        username=unquote(username) or None,
        password=unquote(password) or None,
        sentinel_auth=query.get("sentinel_auth", ["0"])[0] in ("1", "true", "yes"),
    )


class RedisStreamBackend(BroadcastBackend):
    """Broadcast through Redis Streams, resuming from the last entry read after a reconnect.

    Received events wait in a bounded queue; when it is full the reader waits (the stream keeps
    the rest), so nothing is dropped on this side. Room histories are kept too (Redis 6.2 or
    later): each history publish is one Lua script that numbers the publication, appends it to
    the room's history and to the channel's stream.

    Args:
        url: The Redis URL (``redis://``, ``rediss://`` or ``unix://``).
        max_queue: How many received events may wait to be consumed.
        max_len: About how many entries each stream keeps.
        min_backoff: The first reconnect delay, in seconds.
        max_backoff: The largest reconnect delay, in seconds.
        block: How long one ``XREAD`` waits for new entries, in seconds.
        socket_timeout: How long a command may take before the connection counts as dead.
        ttl: Seconds a stream key lives after its last publish (so the keys of a cluster that
            is gone do not stay in Redis forever); ``None`` keeps them.

    Attributes:
        backoff: The reader's reconnect delay and outage record (see :class:`~qakeapi.core.backoff.Backoff`).
    """

    def __init__(
        self,
        url: str,
        *,
        max_queue: int = DEFAULT_MAX_QUEUE,
        max_len: int = DEFAULT_MAX_LEN,
        min_backoff: float = 0.05,
        max_backoff: float = 1.0,
        block: float = 1.0,
        socket_timeout: float = 3.0,
        ttl: int | None = 86_400,
    ) -> None:
        super().__init__(max_queue=max_queue)
        self.url = url
        self.safe_url = redact_url(url)
        self.max_len = max_len
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.block = block
        self.socket_timeout = socket_timeout
        self.ttl = ttl
        self.backoff = Backoff(f"Redis stream reader on {self.safe_url}", logger, min_backoff, max_backoff)
        self._positions: dict[str, str] = {}
        self._start_id = "0-0"
        self._writer: Redis | None = None
        self._scripts: dict[str, Any] = {}
        self._reader_client: Redis | None = None
        self._reader: asyncio.Task[None] | None = None
        self._sentinel_clients: list[Redis] = []
        self._stopping = False
        self._wake = asyncio.Event()

    supports_history: ClassVar[bool] = True

    def _client(self) -> Redis:
        try:
            from redis.asyncio import Redis
        except ImportError:  # pragma: no cover - depends on the environment
            raise MissingDependencyError("redis", "redis") from None
        timeouts: dict[str, Any] = {
            "socket_connect_timeout": min(1.0, self.socket_timeout),
            "socket_timeout": self.socket_timeout + self.block,
        }
        scheme = self.url.partition("://")[0]
        if scheme in SENTINEL_SCHEMES:
            from redis.asyncio.sentinel import Sentinel

            target = parse_sentinel_url(self.url)
            auth: dict[str, Any] = {"username": target.username, "password": target.password}
            # Called through a typed name: redis-py before 8.2 leaves Sentinel() unannotated, and
            # mypy --strict must pass on the floors and the newest versions alike.
            make_sentinel: Callable[..., Sentinel] = Sentinel
            sentinel = make_sentinel(
                target.sentinels,
                sentinel_kwargs={**timeouts, **(auth if target.sentinel_auth else {})},
                ssl=scheme.startswith("rediss"),
                **timeouts,
            )
            self._sentinel_clients.extend(sentinel.sentinels)
            master: Redis = sentinel.master_for(target.service, db=target.db, **auth, **timeouts)
            return master
        if scheme in CLUSTER_SCHEMES:
            from redis.asyncio.cluster import RedisCluster

            plain = self.url.replace("+cluster://", "://", 1)
            cluster: Any = RedisCluster.from_url(plain, **timeouts)
            return cast("Redis", cluster)
        client: Redis = Redis.from_url(self.url, **timeouts)  # typed Any before redis-py 8.2
        return client

    @property
    def reconnects(self) -> int:
        """How many times the reader lost Redis (outages, not attempts)."""
        return self.backoff.outages

    async def connect(self) -> None:
        """Create the clients and start the reader, without waiting for Redis. Idempotent."""
        if self._reader is not None:
            return
        self._writer = self._client()
        self._scripts = {}
        self._reader_client = self._client()
        self._open_events()
        self._stopping = False
        self._wake = asyncio.Event()
        self.connected_since = None
        # Read what is published from now on: an id of this wall-clock millisecond (Redis ids
        # are its server's clock in ms; on one host or NTP-synced hosts that is the same time).
        self._start_id = f"{int(time.time() * 1000) - 1}-0"
        for channel in self._positions:
            self._positions[channel] = self._start_id
        self._reader = asyncio.get_running_loop().create_task(
            self._read(), name=f"qakeapi stream reader {self.safe_url}"
        )

    async def disconnect(self) -> None:
        """Stop the reader, close the clients and end the event stream. Idempotent."""
        reader, self._reader = self._reader, None
        if reader is None:
            return
        self._stopping = True
        self._wake.set()
        # The reader stops by itself when its XREAD returns (within ``block``); cancelling a
        # command under redis-py's cluster client can leave its connections half-closed.
        await asyncio.wait((reader,), timeout=self.block + 0.5)
        if not reader.done():  # cancelled until it stops: a library may absorb one cancellation
            await stop_tasks((reader,), 1.0)
        self.connected_since = None
        self._end_events()
        clients = [self._writer, self._reader_client, *self._sentinel_clients]
        self._writer = self._reader_client = None
        self._sentinel_clients = []
        for client in clients:
            if client is not None:
                try:
                    await asyncio.wait_for(client.aclose(), 2.0)
                except Exception as exc:  # already broken: nothing left to close cleanly
                    logger.debug("closing a Redis client of %s failed: %s", self.safe_url, exc)
        if not reader.done():
            await asyncio.wait((reader,), timeout=2.0)
        if not reader.done():
            logger.warning("the Redis stream reader on %s did not stop within 3s; left to finish", self.safe_url)
        elif not reader.cancelled() and reader.exception() is not None:
            logger.error("the Redis stream reader on %s had failed", self.safe_url, exc_info=reader.exception())

    async def subscribe(self, channel: str) -> None:
        """Read ``channel`` from now on (no network round trip: the reader picks it up)."""
        if channel not in self._positions:
            self._positions[channel] = self._start_id if self._reader is not None else "0-0"
            self._wake.set()

    async def unsubscribe(self, channel: str) -> None:
        """Stop reading ``channel``."""
        self._positions.pop(channel, None)

    async def publish(self, channel: str, payload: str | bytes) -> None:
        """Append ``payload`` to the stream ``channel``.

        Raises:
            BroadcastError: Not connected, or Redis could not be reached.
        """
        await self.publish_many(channel, (payload,))

    async def publish_many(self, channel: str, payloads: Sequence[str | bytes]) -> None:
        """Append ``payloads`` to the stream ``channel`` in order, in one round trip.

        A broken pooled connection is retried once on a fresh one. If it broke after Redis took
        some of the payloads, the retry appends those again: receivers drop duplicates by the
        sequence numbers inside the payloads.

        Raises:
            BroadcastError: Not connected, or Redis could not be reached.
        """
        writer = self._writer
        if writer is None:
            raise BroadcastError(f"Redis stream backend {self.safe_url} is not connected; call connect() first")

        async def append() -> None:
            async with writer.pipeline(transaction=False) as pipe:
                for payload in payloads:
                    pipe.xadd(channel, {_FIELD: payload}, maxlen=self.max_len, approximate=True)
                if self.ttl is not None:
                    pipe.expire(channel, self.ttl)
                await pipe.execute()

        await with_one_retry(append, f"publish to {channel!r}", self.safe_url)

    async def _script(self, source: str, keys: list[str], args: list[Any], what: str) -> Any:
        """Run a Lua script (a broken pooled connection is retried once, see :func:`with_one_retry`)."""
        if self._writer is None:
            raise BroadcastError(f"Redis stream backend {self.safe_url} is not connected; call connect() first")
        script = self._scripts.get(source)
        if script is None:
            script = self._scripts[source] = self._writer.register_script(source)
        return await with_one_retry(lambda: script(keys=keys, args=args), what, self.safe_url)

    async def append_history(self, append: HistoryAppend) -> tuple[str, int]:
        """Number, keep and publish a publication in one script (see the base class)."""
        a = append
        publisher, number = a.publication if a.publication is not None else ("", 0)
        args = [a.header, a.data, a.epoch, a.size, max(1, int(a.ttl * 1000)), self.max_len, self.ttl or "", int(a.gap)]
        args += [publisher, number]  # the meta hash keeps each publisher's last one: a retry is not appended twice
        result = await self._script(_APPEND, [a.channel, *a.keys], args, f"append to the history {a.keys[0]!r}")
        return _text(result[0]), int(result[1])

    async def mark_history_gap(self, keys: tuple[str, str], *, size: int, ttl: float) -> None:
        """Record a stretch of unnumbered publications (see the base class)."""
        await self._script(_MARK_GAP, list(keys), [size, max(1, int(ttl * 1000))], f"mark a gap in {keys[0]!r}")

    async def read_history(self, keys: tuple[str, str], since: int, limit: int) -> HistoryRead:
        """Read a room's history after ``since`` in one script (see the base class)."""
        epoch, top, first, entries = await self._script(
            _READ, list(keys), [since, limit], f"read the history {keys[0]!r}"
        )
        if epoch is None:
            return HistoryRead(None, 0, None, [])
        first_offset = None
        if first:
            offset, _, n = _text(first[0][0]).partition("-")
            first_offset = int(offset) + (n != "0")  # a gap marker first: its publication was trimmed
        read = []
        for entry_id, fields in entries:
            offset, _, n = _text(entry_id).partition("-")
            values = dict(zip(fields[::2], fields[1::2], strict=False))
            data = values.get(b"d")
            read.append(HistoryEntry(int(offset), None if n != "0" or data is None else _text(data)))
        return HistoryRead(_text(epoch), int(top), first_offset, read)

    async def _read(self) -> None:
        """Supervise the reader: read from the last entry seen, reconnect with backoff, log state changes."""
        backoff = self.backoff
        backoff.expected = redis_errors()  # anything else is a bug: its traceback is logged, once an outage
        while not self._stopping:
            if not self._positions:
                self._wake.clear()
                await self._wake.wait()
                continue
            client = self._reader_client
            if client is None:
                return
            try:
                streams: dict[Any, Any] = dict(self._positions)
                response: Any = await client.xread(streams, count=1000, block=max(1, int(self.block * 1000)))
            except Exception as exc:  # whatever it is, the reader retries: it must not die
                if self._stopping:  # disconnect() closed the client under the read
                    return
                self.connected_since = None
                backoff.failed(exc)
                await backoff.wait()
                continue
            if self.connected_since is None:
                self.connected_since = time.monotonic()
                backoff.succeeded()
            for key, entries in response or ():
                channel = _text(key)
                for entry_id, fields in entries:
                    if channel in self._positions:
                        self._positions[channel] = _text(entry_id)
                    payload = fields.get(_FIELD)
                    if payload is None:
                        logger.warning("ignoring an entry without a payload on stream %r", channel)
                        continue
                    await self._queue.put(Event(channel, bytes(payload)))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
