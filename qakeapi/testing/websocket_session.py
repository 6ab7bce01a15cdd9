"""The client side of an in-process WebSocket connection: ``WebSocket`` with the directions swapped."""

from __future__ import annotations

import asyncio
from collections.abc import Generator
from types import TracebackType
from typing import Any

from qakeapi.core.codec import decode_json, encode_json
from qakeapi.exceptions import WebSocketClosedError, WebSocketDisconnect
from qakeapi.status import CloseCode
from qakeapi.types import ASGIApp, Message, Scope

__all__ = ["ClientDisconnectedError", "WebSocketTestSession"]


class ClientDisconnectedError(OSError):
    """Raised to the application when it sends after the test client disconnected (ASGI spec)."""


class _AppFinished:
    """Put on the client's queue when the application's task ends."""

    def __init__(self, error: BaseException | None) -> None:
        self.error = error


class WebSocketTestSession:
    """A WebSocket connection to an ASGI app running in the same event loop.

    Get one from :meth:`TestClient.websocket_connect <qakeapi.testing.client.TestClient.websocket_connect>`
    and either ``await`` it or use it as ``async with``. Every receive has a timeout, so a test
    never hangs; exceptions raised by the application are re-raised in the test.

    Args:
        app: The ASGI application.
        scope: The ``websocket`` scope to run it with.
        timeout: The default timeout of each receive, in seconds.
        raise_server_exceptions: Re-raise exceptions that escape the application.

    Attributes:
        accepted_subprotocol: The subprotocol the application selected.
        response_headers: Extra headers the application sent with the accept.
        close_code: The close code, once the application closed the connection.
        close_reason: The close reason, once the application closed the connection.
    """

    def __init__(self, app: ASGIApp, scope: Scope, *, timeout: float, raise_server_exceptions: bool = True) -> None:
        self.app = app
        self.scope = scope
        self.timeout = timeout
        self.raise_server_exceptions = raise_server_exceptions
        self.accepted_subprotocol: str | None = None
        self.response_headers: list[tuple[bytes, bytes]] = []
        self.close_code: int | None = None
        self.close_reason = ""
        self._to_app: asyncio.Queue[Message] = asyncio.Queue()
        self._from_app: asyncio.Queue[Message | _AppFinished] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._client_closed = False
        self._app_accepted = False
        self._app_closed = False
        self._error: BaseException | None = None
        self._error_raised = False

    # -- connecting ---------------------------------------------------------------------

    def __await__(self) -> Generator[Any, None, WebSocketTestSession]:
        return self.connect().__await__()

    async def __aenter__(self) -> WebSocketTestSession:
        return await self.connect()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close(raise_errors=exc is None)

    async def connect(self) -> WebSocketTestSession:
        """Open the connection (idempotent).

        Returns:
            This session.

        Raises:
            WebSocketDisconnect: The application refused the handshake (its close code).
            TimeoutError: The application neither accepted nor refused in time.
        """
        if self._task is not None:
            return self
        self._task = asyncio.get_running_loop().create_task(self._run_app())
        self._to_app.put_nowait({"type": "websocket.connect"})
        message = await self._next(self.timeout)
        if message["type"] == "websocket.accept":
            self.accepted_subprotocol = message.get("subprotocol")
            self.response_headers = list(message.get("headers") or [])
            return self
        if message["type"] == "websocket.close":
            await self._wait_app()
            raise WebSocketDisconnect(message.get("code", CloseCode.NORMAL_CLOSURE), message.get("reason") or "")
        raise RuntimeError(f"expected 'websocket.accept' or 'websocket.close', got {message['type']!r}")

    async def _run_app(self) -> None:
        error: BaseException | None = None
        try:
            await self.app(self.scope, self._app_receive, self._app_send)
        except Exception as exc:
            error = exc
        finally:
            self._error = error
            self._from_app.put_nowait(_AppFinished(error))

    async def _app_receive(self) -> Message:
        return await self._to_app.get()

    async def _app_send(self, message: Message) -> None:
        # Refuse what a real server (uvicorn) refuses, so tests catch it too.
        kind = message["type"]
        if self._app_closed:
            raise RuntimeError(f"Unexpected ASGI message {kind!r}, after sending 'websocket.close'")
        if self._client_closed:
            raise ClientDisconnectedError("the test client has disconnected")
        if not self._app_accepted and kind not in ("websocket.accept", "websocket.close"):
            raise RuntimeError(f"Expected ASGI message 'websocket.accept' or 'websocket.close', but got {kind!r}")
        if self._app_accepted and kind not in ("websocket.send", "websocket.close"):
            raise RuntimeError(f"Expected ASGI message 'websocket.send' or 'websocket.close', but got {kind!r}")
        if kind == "websocket.accept":
            self._app_accepted = True
        elif kind == "websocket.close":
            self._app_closed = True
        self._from_app.put_nowait(message)

    # -- receiving ----------------------------------------------------------------------

    async def _next(self, timeout: float | None) -> Message:
        queue = self._from_app
        if queue.empty():
            wait = self.timeout if timeout is None else timeout
            try:
                item = await asyncio.wait_for(queue.get(), wait)
            except asyncio.TimeoutError:
                raise TimeoutError(f"no message from the application within {wait}s") from None
        else:
            item = queue.get_nowait()
        if isinstance(item, _AppFinished):
            queue.put_nowait(item)  # every later receive sees the end too
            self._raise_app_error()
            raise WebSocketDisconnect(self.close_code or CloseCode.NORMAL_CLOSURE, self.close_reason)
        return item

    def _raise_app_error(self) -> None:
        if self._error is not None and self.raise_server_exceptions and not self._error_raised:
            self._error_raised = True
            raise self._error

    async def receive(self, timeout: float | None = None) -> Message:
        """Receive the next raw ASGI message the application sent.

        Args:
            timeout: Seconds to wait; defaults to the session's timeout.

        Returns:
            A ``websocket.send`` message.

        Raises:
            WebSocketDisconnect: The application closed the connection.
            TimeoutError: Nothing arrived in time.
        """
        if self.close_code is not None:
            raise WebSocketDisconnect(self.close_code, self.close_reason)
        message = await self._next(timeout)
        if message["type"] == "websocket.close":
            self.close_code = message.get("code", CloseCode.NORMAL_CLOSURE)
            self.close_reason = message.get("reason") or ""
            raise WebSocketDisconnect(self.close_code, self.close_reason)
        return message

    async def receive_text(self, timeout: float | None = None) -> str:
        """Receive a text message (see :meth:`receive`).

        Raises:
            TypeError: The application sent a binary message.
        """
        message = await self.receive(timeout)
        if message.get("text") is None:
            raise TypeError("expected a text message, got a binary one")
        return str(message["text"])

    async def receive_bytes(self, timeout: float | None = None) -> bytes:
        """Receive a binary message (see :meth:`receive`).

        Raises:
            TypeError: The application sent a text message.
        """
        message = await self.receive(timeout)
        if message.get("bytes") is None:
            raise TypeError("expected a binary message, got a text one")
        return bytes(message["bytes"])

    async def receive_json(self, timeout: float | None = None) -> Any:
        """Receive a message and decode it as JSON (see :meth:`receive`).

        Raises:
            ValueError: The message is not JSON.
        """
        message = await self.receive(timeout)
        text = message.get("text")
        return decode_json(text if text is not None else message.get("bytes") or b"")

    # -- sending ------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._task is None:
            raise RuntimeError("the session is not connected; await it or use 'async with'")
        if self._client_closed or self.close_code is not None:
            raise WebSocketClosedError("cannot send: the WebSocket test session is closed")

    async def send_text(self, data: str) -> None:
        """Send a text message to the application.

        Raises:
            WebSocketClosedError: The session is closed.
        """
        self._check_open()
        self._to_app.put_nowait({"type": "websocket.receive", "text": data})

    async def send_bytes(self, data: bytes) -> None:
        """Send a binary message to the application.

        Raises:
            WebSocketClosedError: The session is closed.
        """
        self._check_open()
        self._to_app.put_nowait({"type": "websocket.receive", "bytes": data})

    async def send_json(self, data: Any, mode: str = "text") -> None:
        """Send ``data`` as JSON, in a text (default) or binary message.

        Raises:
            WebSocketClosedError: The session is closed.
            ValueError: ``mode`` is neither ``"text"`` nor ``"binary"``.
        """
        if mode not in ("text", "binary"):
            raise ValueError(f"mode must be 'text' or 'binary', not {mode!r}")
        text = encode_json(data)
        if mode == "binary":
            await self.send_bytes(text.encode())
        else:
            await self.send_text(text)

    # -- closing ------------------------------------------------------------------------

    async def close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "", *, raise_errors: bool = True) -> None:
        """Disconnect and wait for the application to finish with the connection. Idempotent.

        Args:
            code: The close code sent to the application.
            reason: The close reason sent to the application.
            raise_errors: Re-raise an exception the application raised and no receive surfaced.
        """
        if self._task is None or self._client_closed:
            return
        self._client_closed = True
        self._to_app.put_nowait({"type": "websocket.disconnect", "code": int(code), "reason": reason})
        await self._wait_app()
        if raise_errors:
            self._raise_app_error()

    async def _wait_app(self) -> None:
        assert self._task is not None
        try:
            await asyncio.wait_for(asyncio.shield(self._task), self.timeout)
        except asyncio.TimeoutError:
            self._task.cancel()
            raise TimeoutError(f"the application did not finish within {self.timeout}s of the disconnect") from None
