"""What the application logged and raised while a test session ran it, and when the test sees it."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable

from qakeapi.testing import app_log

__all__ = ["AppReport"]

_LOG_LINES = 20


class AppReport:
    """The application's log lines and errors for one test session (an ``app_log`` sink).

    Args:
        raise_errors: Whether the application's errors are raised in the test (the session's
            ``raise_server_exceptions``).
        on_error: Told of an error QakeAPI logged with its traceback (the session wakes its reader).

    Attributes:
        errors: The application's errors, in the order they happened.
        logged: The application's last log lines since the test last received a message.
    """

    def __init__(self, raise_errors: bool, on_error: Callable[[BaseException], None]) -> None:
        self.raise_errors = raise_errors
        self.errors: list[BaseException] = []
        self.logged: deque[str] = deque(maxlen=_LOG_LINES)
        self._on_error = on_error
        self._raised: list[BaseException] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._capturing = False

    def capture(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start taking the application's log records (until :meth:`release`)."""
        app_log.acquire()
        self._capturing, self._loop = True, loop

    def release(self) -> None:
        """Stop taking log records (idempotent)."""
        if self._capturing:
            self._capturing = False
            app_log.release()

    def app_logged(self, record: logging.LogRecord) -> None:
        """Take a record the application logged while running this connection (see ``qakeapi.testing.app_log``).

        Records logged in another thread (``asyncio.to_thread`` carries the context along) are
        handed over to the session's event loop.
        """
        line, error = app_log.describe(record), app_log.framework_error(record)
        try:
            in_loop = asyncio.get_running_loop() is self._loop
        except RuntimeError:
            in_loop = False
        if in_loop:
            self._take(line, error)
        elif self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._take, line, error)

    def _take(self, line: str, error: BaseException | None) -> None:
        self.logged.append(line)
        if error is None or not self.raise_errors or any(error is known for known in self.errors):
            return
        self.errors.append(error)
        self._on_error(error)

    def meanwhile(self) -> str:
        """What the application logged since the last message, for an error message ("" if nothing)."""
        if not self.logged:
            return ""
        return "; meanwhile the application logged:\n" + "\n".join(f"  {line}" for line in self.logged)

    def raise_pending(self) -> None:
        """Raise the oldest application error not raised yet (when errors are raised in the test)."""
        if not self.raise_errors:
            return
        for error in self.errors:
            if not any(error is raised for raised in self._raised):
                self._raised.append(error)
                raise error
