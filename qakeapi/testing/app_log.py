"""What the application under test logs, attributed to the test session whose task logged it.

A test session runs the application in a task of its own and marks that task (and every task
it starts) with a context variable. While at least one session is open, one logging handler
sits on the root logger and hands each record of level ``WARNING`` or above to the session
marked in the context it was logged from. Records logged anywhere else are left alone.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar
from typing import Protocol

__all__ = ["FRAMEWORK_LOGGER", "AppLogSink", "acquire", "describe", "framework_error", "release", "use_sink"]

FRAMEWORK_LOGGER = "qakeapi"
"""Exceptions logged with ``exc_info`` by this logger (or its children) are application errors."""


class AppLogSink(Protocol):
    """Receives the records logged on behalf of one test session (or one lifespan)."""

    def app_logged(self, record: logging.LogRecord) -> None:
        """Called, in the logging task, for each record of level ``WARNING`` or above."""


_sink: ContextVar[AppLogSink | None] = ContextVar("qakeapi_testing_app_log_sink", default=None)


class _Dispatcher(logging.Handler):
    """The handler on the root logger: hands a record to the sink of the current context."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.users = 0

    def emit(self, record: logging.LogRecord) -> None:
        sink = _sink.get()
        if sink is not None:
            sink.app_logged(record)


_dispatcher = _Dispatcher()


def use_sink(sink: AppLogSink) -> None:
    """Attribute what the current task (and the tasks it starts) logs to ``sink``.

    Call it first thing in the task that runs the application, between :func:`acquire` and
    :func:`release`.
    """
    _sink.set(sink)


def acquire() -> None:
    """Install the dispatching handler on the root logger (counted; see :func:`release`)."""
    if _dispatcher.users == 0:
        logging.getLogger().addHandler(_dispatcher)
    _dispatcher.users += 1


def release() -> None:
    """Undo one :func:`acquire`; the handler leaves the root logger after the last one."""
    _dispatcher.users -= 1
    if _dispatcher.users == 0:
        logging.getLogger().removeHandler(_dispatcher)


def framework_error(record: logging.LogRecord) -> BaseException | None:
    """The exception of a record that QakeAPI logged with ``exc_info``, else ``None``."""
    if record.name != FRAMEWORK_LOGGER and not record.name.startswith(FRAMEWORK_LOGGER + "."):
        return None
    if not record.exc_info or record.exc_info[1] is None:
        return None
    return record.exc_info[1]


def describe(record: logging.LogRecord) -> str:
    """One line for an error message: level, logger, message and the exception, if any."""
    line = f"{record.levelname} {record.name}: {record.getMessage()}"
    if record.exc_info and record.exc_info[1] is not None:
        exc = record.exc_info[1]
        line += f" [{type(exc).__name__}: {exc}]"
    return line
