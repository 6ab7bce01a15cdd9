"""The application's end of an in-process WebSocket connection: what a server would be to the app.

:class:`AppEnd` is handed to the application as its ASGI ``receive`` and ``send``. It refuses
what uvicorn refuses (data before the accept, anything after a close: ``RuntimeError`` in the
application), answers the application's close with a ``websocket.disconnect``, raises
:class:`ClientDisconnectedError` when the application sends after the client left, and, while
the client is paused, makes the application's ``send`` wait as a full socket buffer would.
"""

from __future__ import annotations

import asyncio
from enum import Enum

from qakeapi.status import CloseCode
from qakeapi.types import Message

__all__ = ["DENIAL_EXTENSION", "AppEnd", "AppFinished", "AppLogged", "ClientDisconnectedError", "Stage"]

DENIAL_EXTENSION = "websocket.http.response"
"""The ASGI extension that lets an application refuse a handshake with an HTTP response."""


class Stage(Enum):
    """Where the application's side of the connection is: what it may send next."""

    HANDSHAKE = "handshake"
    """Nothing sent yet: an accept, a close or a denial response may come."""
    ACCEPTED = "accepted"
    """Accepted: data frames or a close may come."""
    RESPONDING = "responding"
    """A denial response started: its body chunks come."""
    CLOSED = "closed"
    """Closed, or the denial response ended: nothing more may come."""


_EXPECTED: dict[Stage, tuple[str, ...]] = {
    Stage.HANDSHAKE: ("websocket.accept", "websocket.close", "websocket.http.response.start"),
    Stage.ACCEPTED: ("websocket.send", "websocket.close"),
    Stage.RESPONDING: ("websocket.http.response.body",),
    Stage.CLOSED: (),
}
"""What the application may send at each stage (as uvicorn checks it)."""


class ClientDisconnectedError(OSError):
    """Raised to the application when it sends after the test client disconnected (ASGI spec)."""


class AppFinished:
    """Put on the client's queue when the application's task ends."""

    def __init__(self, error: BaseException | None) -> None:
        self.error = error


class AppLogged:
    """Put on the client's queue when QakeAPI logged an exception of the application."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


class AppEnd:
    """The application's ``receive`` and ``send`` for one in-process connection.

    Attributes:
        to_app: What the client sent, for the application's ``receive``.
        from_app: What the application sent (and the ends of its task), for the client.
        client_closed: Whether the client disconnected.
        paused: Whether the client stopped reading (see :meth:`pause`).
        stage: What the application may send next.
    """

    def __init__(self) -> None:
        self.to_app: asyncio.Queue[Message] = asyncio.Queue()
        self.from_app: asyncio.Queue[Message | AppFinished | AppLogged] = asyncio.Queue()
        self.client_closed = False
        self.paused = False
        self.stage = Stage.HANDSHAKE
        self._allowance = 0
        self._resumed: asyncio.Event | None = None  # made by pause(), set by resume()
        self._blocked: asyncio.Event | None = None  # set when a send waits on the pause

    async def receive(self) -> Message:
        """The application's ASGI ``receive``."""
        return await self.to_app.get()

    async def send(self, message: Message) -> None:
        """The application's ASGI ``send``: refuses what a real server (uvicorn) refuses, so tests catch it too."""
        if self.paused and not self.client_closed:
            if self._allowance > 0:
                self._allowance -= 1
            else:
                assert self._blocked is not None
                assert self._resumed is not None
                self._blocked.set()
                await self._resumed.wait()
        kind = message["type"]
        if self.client_closed:
            raise ClientDisconnectedError("the test client has disconnected")
        expected = _EXPECTED[self.stage]
        if kind not in expected:
            if self.stage is Stage.CLOSED:
                raise RuntimeError(f"Unexpected ASGI message {kind!r}, after sending 'websocket.close' or a response")
            raise RuntimeError(f"Expected ASGI message {' or '.join(map(repr, expected))}, but got {kind!r}")
        if kind == "websocket.accept":
            self.stage = Stage.ACCEPTED
        elif kind == "websocket.close":
            # As uvicorn does: the application's next receive reports the close it sent.
            accepted = self.stage is Stage.ACCEPTED
            code = message.get("code", CloseCode.NORMAL_CLOSURE) if accepted else CloseCode.ABNORMAL_CLOSURE
            self._end(code, message.get("reason") or "")
        elif kind == "websocket.http.response.start":
            self.stage = Stage.RESPONDING
        elif kind == "websocket.http.response.body" and not message.get("more_body", False):
            self._end(CloseCode.ABNORMAL_CLOSURE, "")  # the handshake never completed
        self.from_app.put_nowait(message)

    def _end(self, code: int, reason: str) -> None:
        self.stage = Stage.CLOSED
        self.to_app.put_nowait({"type": "websocket.disconnect", "code": code, "reason": reason})

    def pause(self, buffer: int) -> None:
        """Stop taking the application's frames after ``buffer`` more (its ``send`` then waits)."""
        if buffer < 0:
            raise ValueError(f"buffer must be >= 0, not {buffer}")
        if not self.paused:
            self._resumed, self._blocked = asyncio.Event(), asyncio.Event()
        self.paused = True
        self._allowance = buffer

    def resume(self) -> None:
        """Take the application's frames again: its waiting sends go through, in order."""
        self.paused = False
        self._allowance = 0
        if self._resumed is not None:
            self._resumed.set()

    async def blocked(self, timeout: float) -> bool:
        """Wait until a ``send`` of the application waits on the pause; ``False`` after ``timeout`` seconds.

        Raises:
            RuntimeError: The client is not paused.
        """
        if not self.paused or self._blocked is None:
            raise RuntimeError("reading is not paused: call pause_reading() first")
        try:
            await asyncio.wait_for(self._blocked.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    def disconnect(self, code: int, reason: str) -> None:
        """The client leaves: sends waiting on a pause are released (they see the disconnect)."""
        self.client_closed = True
        if self._resumed is not None:
            self._resumed.set()
        self.to_app.put_nowait({"type": "websocket.disconnect", "code": int(code), "reason": reason})
