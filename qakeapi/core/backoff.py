"""Retrying a connection with backoff, and the one way every retrying loop logs it.

Every loop that talks to Redis (the pub/sub listener, the stream reader, the cluster publisher)
keeps a :class:`Backoff`. The policy is the same everywhere:

- the first failure of an outage is one WARNING line, saying what failed and why (with a
  traceback only when the error is not one the loop expects, such as a bug);
- the attempts that fail after it are DEBUG lines: an outage of an hour is two lines, not
  thousands;
- getting through again is one WARNING line, saying for how long it was down and after how many
  failed attempts;
- between attempts the loop sleeps, from ``min_delay`` doubling up to ``max_delay``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["Backoff"]


@dataclass(eq=False)
class Backoff:
    """The retry delay and the outage log of one loop.

    Args:
        what: What retries, for the log (``"Redis stream reader on redis://host:6379"``; never
            a secret: pass a redacted URL).
        logger: Where to log.
        min_delay: The first delay, in seconds.
        max_delay: The largest delay, in seconds.
        expected: The errors of an outage (anything else also logs its traceback, once).

    Attributes:
        down_since: When the outage began (:func:`time.monotonic`), ``None`` while up.
        failures: How many attempts failed in this outage.
        outages: How many outages there were.
        down_seconds: How long the outages that ended lasted, in seconds, added up.
    """

    what: str
    logger: logging.Logger
    min_delay: float
    max_delay: float
    expected: tuple[type[BaseException], ...] = (OSError,)
    down_since: float | None = field(default=None, init=False)
    failures: int = field(default=0, init=False)
    outages: int = field(default=0, init=False)
    down_seconds: float = field(default=0.0, init=False)
    _delay: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        if not 0 < self.min_delay <= self.max_delay:
            raise ValueError("the delays must be positive, min_delay at most max_delay")
        self._delay = self.min_delay

    @property
    def delay(self) -> float:
        """How long the next :meth:`wait` sleeps."""
        return self._delay

    def failed(self, error: BaseException, meanwhile: str = "") -> bool:
        """Note a failed attempt and log it as the policy says.

        Args:
            error: What the attempt raised.
            meanwhile: What the loop does until it is back, for the first line
                (``"buffering publishes for up to 5.0s"``).

        Returns:
            Whether this failure began an outage (it was logged at WARNING).
        """
        self.failures += 1
        if self.down_since is not None:
            self.logger.debug("%s: attempt %d failed: %s: %s", self.what, self.failures, type(error).__name__, error)
            return False
        self.down_since = time.monotonic()
        self.outages += 1
        self.logger.warning(
            "%s lost its connection (%s: %s); retrying in %.2fs%s",
            self.what,
            type(error).__name__,
            error,
            self._delay,
            f"; {meanwhile}" if meanwhile else "",
            exc_info=None if isinstance(error, self.expected) else error,
        )
        return True

    async def wait(self) -> None:
        """Sleep the current delay, then double it (up to ``max_delay``)."""
        await asyncio.sleep(self._delay)
        self._delay = min(self._delay * 2, self.max_delay)

    def succeeded(self, outcome: Callable[[], str] | None = None) -> float | None:
        """Note an attempt that got through; ends an outage (one WARNING line) and resets the delay.

        Args:
            outcome: Says, for that line, what the outage cost (called only when one ends).

        Returns:
            How many seconds the outage lasted, or ``None`` when there was none.
        """
        self._delay = self.min_delay
        if self.down_since is None:
            return None
        down_for = time.monotonic() - self.down_since
        self.down_seconds += down_for
        self.logger.warning(
            "%s reconnected after %.1fs (%d failed attempts)%s",
            self.what,
            down_for,
            self.failures,
            "" if outcome is None else ": " + outcome(),
        )
        self.down_since, self.failures = None, 0
        return down_for
