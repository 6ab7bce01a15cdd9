"""Resource limits for WebSocket connections: pure decisions, no I/O.

* :class:`TokenBucket` — the per-connection message rate limit: ``rate`` tokens a second, at
  most ``burst`` saved up; a message takes one; an empty bucket closes the connection with
  1008 (:attr:`~qakeapi.status.CloseCode.POLICY_VIOLATION`).
* :class:`PenaltyBox` — keys refused new handshakes until their penalty (:class:`RateLimit`'s
  ``penalty``) is over, so that reconnecting does not buy a fresh burst. The penalty is aimed
  at the flooder first, at its address only on repeat: a connection closed for flooding
  refuses its *user* (when it was authenticated) at once, and its *address* only at the
  second such close from that address within ``memory`` seconds (60). Many clients share an
  address behind a NAT or a proxy; refusing the address at the first flood would lock all of
  them out for one client's doing. The cost: an anonymous flooder gets two bursts, not one,
  before its address is refused (then the NAT is refused too, for the penalty).
* :class:`ConnectionCounter` — connections per key (the client's IP address), shared by every
  handler that uses it (by default one counter for the whole process, so a cap counts
  connections across paths).
* :class:`RejectionLog` — counts every rejection by kind and logs the first one of each kind
  and key once, so a flood writes a line, not a line per message or per handshake.

The defaults (:class:`~qakeapi.core.websockets.handler.WebSocketHandler` uses them):
:data:`DEFAULT_RATE_LIMIT` (200 messages a second, bursts of 1,000, then the flooder is refused
for 10 seconds: its user at once, its address on a repeat) and
:data:`DEFAULT_MAX_CONNECTIONS_PER_IP` (1,024). Behind a reverse proxy every client has the
proxy's address unless the server rewrites it (``uvicorn --proxy-headers
--forwarded-allow-ips=...``); raise or disable the per-IP cap there.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass

from qakeapi.core.counters import observed

__all__ = [
    "DEFAULT_MAX_CONNECTIONS_PER_IP",
    "DEFAULT_RATE_LIMIT",
    "ConnectionCounter",
    "PenaltyBox",
    "RateLimit",
    "RejectionLog",
    "TokenBucket",
    "cap",
    "connection_counter",
]


def cap(name: str, value: int | None) -> int | None:
    """Check a cap on how many of something one key may have: ``None`` (no cap) or at least 1.

    Args:
        name: The setting's name, for the error message.
        value: The cap.

    Returns:
        ``value``.

    Raises:
        ValueError: ``value`` is below 1.
    """
    if value is not None and value < 1:
        raise ValueError(f"{name} must be at least 1 (or None), got {value}")
    return value


@dataclass(frozen=True)
class RateLimit:
    """A message rate limit: ``rate`` messages a second on average, bursts up to ``burst``.

    Args:
        rate: Messages a second, sustained.
        burst: Messages that may arrive at once (the bucket's size).
        penalty: Seconds during which a connection closed for exceeding the limit has its
            user (when authenticated) refused new handshakes (HTTP 429 with ``Retry-After``),
            and its client address too when that address flooded before within a minute
            (:class:`PenaltyBox`); without it a flooding client reconnects at once and gets a
            fresh burst. ``0``: no penalty.

    Raises:
        ValueError: ``rate`` is not positive, ``burst`` is below 1 or ``penalty`` is negative.
    """

    rate: float
    burst: int
    penalty: float = 10.0

    def __post_init__(self) -> None:
        if not self.rate > 0:
            raise ValueError(f"rate must be positive, got {self.rate}")
        if self.burst < 1:
            raise ValueError(f"burst must be at least 1, got {self.burst}")
        if not self.penalty >= 0:
            raise ValueError(f"penalty must be 0 or more seconds, got {self.penalty}")

    def bucket(self, now: float) -> TokenBucket:
        """A full bucket for one connection.

        Args:
            now: The current time (``time.monotonic()``).

        Returns:
            The bucket.
        """
        return TokenBucket(self.rate, self.burst, now)


DEFAULT_RATE_LIMIT = RateLimit(rate=200.0, burst=1000)
"""The default per-connection message rate limit."""
DEFAULT_MAX_CONNECTIONS_PER_IP = 1024
"""The default cap of simultaneous connections from one IP address."""


_ONE = 1.0 - 1e-9  # a whole token, forgiving the rounding of float time arithmetic


class TokenBucket:
    """A token bucket: refills ``rate`` tokens a second up to ``burst``; :meth:`take` spends one.

    Args:
        rate: Tokens a second.
        burst: The bucket's size (it starts full).
        now: The current time, in seconds (any monotonic clock).
    """

    __slots__ = ("_last", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._last = now

    def take(self, now: float) -> bool:
        """Spend one token.

        Args:
            now: The current time, on the clock given at construction.

        Returns:
            ``True`` when a token was there; ``False`` when the bucket is empty (the limit is
            exceeded; nothing is spent).
        """
        # Plain comparisons rather than min()/max(), locals rather than repeated attribute
        # reads: this runs for every message received.
        tokens = self._tokens
        last = self._last
        if now > last:
            tokens += (now - last) * self.rate
            if tokens > self.burst:
                tokens = self.burst
            self._last = now
        if tokens < _ONE:
            self._tokens = tokens
            return False
        tokens -= 1.0
        self._tokens = tokens if tokens > 0.0 else 0.0
        return True

    @property
    def tokens(self) -> float:
        """Tokens left at the last :meth:`take`."""
        return self._tokens


class ConnectionCounter:
    """Counts open connections per key (an IP address, a user id)."""

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()

    def acquire(self, key: str, cap: int | None) -> bool:
        """Count one more connection for ``key`` unless it already has ``cap``.

        Args:
            key: The key.
            cap: The most connections allowed for a key; ``None``: no cap.

        Returns:
            ``True`` when counted (call :meth:`release` when it ends); ``False`` at the cap.
        """
        if cap is not None and self._counts[key] >= cap:
            return False
        self._counts[key] += 1
        return True

    def release(self, key: str) -> None:
        """Count one connection of ``key`` less.

        Args:
            key: The key given to a successful :meth:`acquire`.
        """
        left = self._counts[key] - 1
        if left > 0:
            self._counts[key] = left
        else:
            del self._counts[key]

    def count(self, key: str) -> int:
        """How many connections ``key`` has.

        Args:
            key: The key.

        Returns:
            The count.
        """
        return self._counts.get(key, 0)

    def __len__(self) -> int:
        return len(self._counts)


connection_counter = ConnectionCounter()
"""The process-wide per-IP counter the handlers share by default."""


class PenaltyBox:
    """Keys (client addresses, users) refused until a deadline; bounded in memory.

    Args:
        max_keys: How many keys it holds at most (penalties and strikes each). When full,
            expired entries are dropped, then the oldest ones, so a flood of addresses costs
            bounded memory (an address dropped that way is served again before its penalty ends).
        strikes: How many :meth:`strike` calls for one key within ``memory`` seconds penalize it.
        memory: Seconds a strike is remembered.

    Raises:
        ValueError: ``max_keys`` or ``strikes`` is below 1, or ``memory`` is negative.
    """

    __slots__ = ("_strikes", "_until", "max_keys", "memory", "strikes")

    def __init__(self, max_keys: int = 65536, *, strikes: int = 2, memory: float = 60.0) -> None:
        if max_keys < 1:
            raise ValueError(f"max_keys must be at least 1, got {max_keys}")
        if strikes < 1:
            raise ValueError(f"strikes must be at least 1, got {strikes}")
        if not memory >= 0:
            raise ValueError(f"memory must be 0 or more seconds, got {memory}")
        self.max_keys = max_keys
        self.strikes = strikes
        self.memory = memory
        self._until: dict[str, float] = {}
        self._strikes: dict[str, tuple[int, float]] = {}  # key -> (strikes, time of the last one)

    def strike(self, key: str, now: float, seconds: float) -> bool:
        """Count a strike against ``key``; at the ``strikes``-th within ``memory`` seconds, penalize it.

        Args:
            key: The key (a client address).
            now: The current time, on the clock :meth:`retry_after` is given.
            seconds: The penalty, when this strike earns one.

        Returns:
            Whether ``key`` is now refused for ``seconds``.
        """
        counts = self._strikes
        count, last = counts.pop(key, (0, now))
        count = count + 1 if now - last <= self.memory else 1
        if count >= self.strikes:
            self.penalize(key, now, seconds)
            return True
        if len(counts) >= self.max_keys:
            expired = [old for old, (_, at) in counts.items() if now - at > self.memory]
            for old in expired or [next(iter(counts))]:  # else the oldest strike goes
                del counts[old]
        counts[key] = (count, now)  # re-inserted: the dict stays in the order of the last strikes
        return False

    def penalize(self, key: str, now: float, seconds: float) -> None:
        """Refuse ``key`` for ``seconds`` from ``now`` (a later end of the same key's penalty wins).

        Args:
            key: The key.
            now: The current time, on the clock :meth:`retry_after` is given.
            seconds: How long.
        """
        until = now + seconds
        deadlines = self._until
        if key in deadlines:
            if until > deadlines[key]:
                del deadlines[key]  # re-inserted below: the dict stays in the order penalties began
                deadlines[key] = until
            return
        if len(deadlines) >= self.max_keys:
            expired = [old for old, end in deadlines.items() if end <= now]
            for old in expired or [next(iter(deadlines))]:  # else the oldest penalty goes
                del deadlines[old]
        deadlines[key] = until

    def retry_after(self, key: str, now: float) -> float:
        """How long ``key`` is still refused.

        Args:
            key: The key.
            now: The current time.

        Returns:
            The seconds left, or ``0.0`` when ``key`` is not (or no longer) refused.
        """
        until = self._until.get(key)
        if until is None:
            return 0.0
        if until <= now:
            del self._until[key]
            return 0.0
        return until - now

    def __len__(self) -> int:
        return len(self._until)


class RejectionLog:
    """Counts rejections by kind; logs the first of each ``(kind, key)`` once.

    Args:
        logger: Where the lines go.
        remember: How many ``(kind, key)`` pairs to remember as logged; past it the memory
            is cleared (so a pair may be logged again, never unboundedly often).
    """

    def __init__(self, logger: logging.Logger, remember: int = 4096) -> None:
        self.logger = logger
        self.remember = remember
        self.counts: Counter[str] = Counter()
        """Rejections so far, by kind (``"rate"``, ``"size"``, ``"connections_per_ip"`` ...)."""
        self._logged: set[tuple[str, str]] = set()
        observed.rejection_logs.add(self)  # weakly: its counts are exported at scrape time

    def reject(self, kind: str, key: str, message: str, *args: object) -> bool:
        """Count a rejection; log ``message % args`` at WARNING if it is the first for ``(kind, key)``.

        Args:
            kind: What was exceeded.
            key: Whose rejection (an IP address, a connection id).
            message: The log message (``%``-style).
            *args: Its arguments.

        Returns:
            Whether it was logged.
        """
        self.counts[kind] += 1
        if (kind, key) in self._logged:
            return False
        if len(self._logged) >= self.remember:
            self._logged.clear()
        self._logged.add((kind, key))
        self.logger.warning(message + " (further ones are counted, not logged)", *args)
        return True
