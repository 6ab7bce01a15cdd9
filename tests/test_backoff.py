"""The one retry policy of every Redis loop (qakeapi.core.backoff): delays, and two lines an outage."""

from __future__ import annotations

import logging

import pytest

from qakeapi.core.backoff import Backoff


def test_an_outage_is_one_line_down_and_one_line_up_whatever_the_attempts(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("qakeapi.test.backoff")
    backoff = Backoff("reader on redis://h:1", logger, 0.1, 0.5)
    caplog.set_level(logging.DEBUG, logger.name)
    assert backoff.succeeded() is None  # up, no outage: nothing to say
    assert [backoff.failed(ConnectionError("refused"), "buffering") for _ in range(5)] == [True] + [False] * 4
    assert backoff.succeeded(lambda: "3 flushed") is not None
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert (
        warnings[0]
        == "reader on redis://h:1 lost its connection (ConnectionError: refused); retrying in 0.10s; buffering"
    )
    assert warnings[1].startswith("reader on redis://h:1 reconnected after ")
    assert warnings[1].endswith(" (5 failed attempts): 3 flushed")
    assert len(warnings) == 2
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG][-1].endswith(
        "attempt 5 failed: ConnectionError: refused"
    )
    assert (backoff.outages, backoff.failures, backoff.down_since) == (1, 0, None)
    assert all(r.exc_info is None for r in caplog.records)  # an expected error: no traceback


def test_an_unexpected_error_logs_its_traceback_once(caplog: pytest.LogCaptureFixture) -> None:
    backoff = Backoff("publisher", logging.getLogger("qakeapi.test.backoff"), 0.1, 0.5, (ConnectionError,))
    with caplog.at_level(logging.DEBUG, "qakeapi.test.backoff"):
        backoff.failed(KeyError("bug"))
        backoff.failed(KeyError("bug"))
    assert [r.exc_info is not None for r in caplog.records] == [True, False]


@pytest.mark.asyncio
async def test_the_delay_doubles_up_to_the_most_and_starts_over_once_through() -> None:
    backoff = Backoff("x", logging.getLogger("qakeapi.test.backoff"), 0.001, 0.004)
    delays = []
    for _ in range(4):
        delays.append(backoff.delay)
        await backoff.wait()
    assert delays == [0.001, 0.002, 0.004, 0.004]
    backoff.succeeded()
    assert backoff.delay == 0.001
    with pytest.raises(ValueError, match="positive"):
        Backoff("x", logging.getLogger("x"), 0.5, 0.1)
