"""A test object used with ``with`` instead of ``async with`` says what to write instead."""

from __future__ import annotations

from typing import ClassVar, NoReturn

__all__ = ["AsyncOnly"]


class AsyncOnly:
    """Mixed into the test client and the WebSocket test session, which are asynchronous context managers.

    ``with`` (a Starlette habit) raises :class:`TypeError` with the class's ``sync_use`` hint.
    """

    sync_use: ClassVar[str]
    """What to write instead of ``with``, shown in the error."""

    def __enter__(self) -> NoReturn:
        raise TypeError(self.sync_use)

    def __exit__(self, *args: object) -> None:  # pragma: no cover - __enter__ always raises
        return None
