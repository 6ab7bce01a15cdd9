"""The client side of an in-process WebSocket connection: ``WebSocket`` with the directions swapped."""

from __future__ import annotations

import asyncio
from collections.abc import Generator
from types import TracebackType
from typing import Any

from qakeapi.core.codec import decode_json
from qakeapi.exceptions import WebSocketClosedError, WebSocketDenied, WebSocketDisconnect
from qakeapi.status import CloseCode
from qakeapi.testing import app_log
from qakeapi.testing.app_report import AppReport
from qakeapi.testing.async_only import AsyncOnly
from qakeapi.testing.session_messages import SessionMessages
from qakeapi.testing.transport import AppEnd, AppFinished, AppLogged, ClientDisconnectedError
from qakeapi.types import ASGIApp, Message, Scope

__all__ = ["ClientDisconnectedError", "WebSocketTestSession"]

_LOG_LINES = 20
_RETURNED_IN_HANDSHAKE = (
    "the application returned without accepting or closing the WebSocket handshake (a server answers HTTP 500)"
)
_RETURNED_IN_RESPONSE = (
    "the application returned in the middle of its denial response: send 'websocket.http.response.body' "
    "messages until one has more_body=False"
)


class WebSocketTestSession(SessionMessages, AsyncOnly):
    """A WebSocket connection to an ASGI app running in the same event loop.

    Get one from :meth:`TestClient.websocket_connect <qakeapi.testing.client.TestClient.websocket_connect>`
    and either ``await`` it or use it as ``async with``. Every receive has a timeout, so a test
    never hangs.

    **Application errors.** With ``raise_server_exceptions`` (the default), an exception that
    escapes the application, or that QakeAPI logs with its traceback while running this
    connection (a failing ``on_message`` hook, say, which the handler logs and survives), is
    raised by the session's next receive or send -- the original exception object, with its
    traceback. A receive that times out says what the application logged meanwhile. Without
    ``raise_server_exceptions``, the test sees only what a client would (HTTP statuses, close codes).

    **Refusals.** The scope offers the ASGI ``websocket.http.response`` extension, as uvicorn
    does, so a handshake the application refuses with an HTTP response (QakeAPI's 404 for a
    path without a route, 403 for a refused origin, 401 from the authentication middleware, 500
    for a failure before the accept) raises :class:`~qakeapi.exceptions.WebSocketDenied` with
    the status, headers and body a real client gets. A refusal with a close (``close()`` before
    ``accept()``) raises :class:`~qakeapi.exceptions.WebSocketDisconnect` with its close code.

    **Backpressure.** :meth:`pause_reading` makes the session stop reading, as a slow client
    does: the application's ``send`` then waits (once ``buffer`` more frames were taken) until
    :meth:`resume_reading` or until the session closes, as it does on a real server whose
    socket buffers are full.

    The transport mirrors uvicorn: it refuses data before the accept and anything after a
    close or a denial response (``RuntimeError`` in the application), answers the application's
    close (and the end of its denial response) with a ``websocket.disconnect``, raises
    :class:`ClientDisconnectedError` in the application when it sends after the client left, and
    reports an application that returned without closing as an abnormal closure (1006).

    Args:
        app: The ASGI application.
        scope: The ``websocket`` scope to run it with.
        timeout: The default timeout of each receive, in seconds.
        raise_server_exceptions: Re-raise the application's exceptions in the test.

    Attributes:
        accepted_subprotocol: The subprotocol the application selected.
        response_headers: Extra headers the application sent with the accept.
        close_code: The close code, once the application closed the connection.
        close_reason: The close reason, once the application closed the connection.
    """

    sync_use = (
        "a WebSocket test session is asynchronous: use 'async with client.websocket_connect(...) as session' "
        "(or 'session = await client.websocket_connect(...)') inside an async test"
    )

    def __init__(self, app: ASGIApp, scope: Scope, *, timeout: float, raise_server_exceptions: bool = True) -> None:
        self.app = app
        self.scope = scope
        self.timeout = timeout
        self.raise_server_exceptions = raise_server_exceptions
        self.accepted_subprotocol: str | None = None
        self.response_headers: list[tuple[bytes, bytes]] = []
        self.close_code: int | None = None
        self.close_reason = ""
        self._end = AppEnd()
        self._from_app = self._end.from_app
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._report = AppReport(raise_server_exceptions, self._logged_error)

    def __repr__(self) -> str:
        return f"<WebSocketTestSession {self.scope.get('path')!r} close_code={self.close_code}>"

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
            WebSocketDenied: The application refused the handshake with an HTTP response (its
                status, headers and body), as a real server answers it.
            WebSocketDisconnect: The application refused the handshake with a close (its close
                code; a server answers it with a bare 403).
            RuntimeError: The application returned without accepting or refusing (a server
                answers HTTP 500), or sent something else than an accept, a close or a response.
            TimeoutError: The application neither accepted nor refused in time.
        """
        if self._task is not None:
            return self
        self._loop = asyncio.get_running_loop()
        self._report.capture(self._loop)
        self._task = self._loop.create_task(self._run_app())
        self._end.to_app.put_nowait({"type": "websocket.connect"})
        try:
            message = await self._next(self.timeout, unfinished=_RETURNED_IN_HANDSHAKE)
        except BaseException:
            self._report.release()
            raise
        if message["type"] == "websocket.accept":
            self.accepted_subprotocol = message.get("subprotocol")
            self.response_headers = list(message.get("headers") or [])
            return self
        try:
            refusal = await self._refusal(message)
            await self._wait_app()
        finally:
            self._report.release()
        self._report.raise_pending()
        raise refusal

    async def _refusal(self, message: Message) -> WebSocketDisconnect:
        """The exception for a handshake the application refused with ``message``: a close or a response."""
        if message["type"] == "websocket.close":
            self.close_code = message.get("code", CloseCode.NORMAL_CLOSURE)
            self.close_reason = message.get("reason") or ""
            return WebSocketDisconnect(self.close_code, self.close_reason)
        chunks: list[bytes] = []
        while True:  # the transport lets only body chunks through now
            body = await self._next(self.timeout, unfinished=_RETURNED_IN_RESPONSE)
            chunks.append(body.get("body", b""))
            if not body.get("more_body", False):
                break
        denied = WebSocketDenied(message["status"], message.get("headers") or (), b"".join(chunks), decode=decode_json)
        self.close_code, self.close_reason = denied.code, denied.reason
        return denied

    # -- the application's side of the transport --------------------------------------

    async def _run_app(self) -> None:
        app_log.use_sink(self._report)
        error: BaseException | None = None
        try:
            await self.app(self.scope, self._end.receive, self._end.send)
        except ClientDisconnectedError:
            pass  # the client left while the app was sending: not an error (uvicorn ignores it too)
        except Exception as exc:
            error = exc
        finally:
            if error is not None:
                self._report.errors.append(error)
            self._report.release()  # nothing more of the app's to capture, even if the test never closes
            self._from_app.put_nowait(AppFinished(error))

    # -- backpressure -------------------------------------------------------------------

    @property
    def reading_paused(self) -> bool:
        """Whether :meth:`pause_reading` is in effect."""
        return self._end.paused

    def pause_reading(self, buffer: int = 0) -> None:
        """Stop reading, as a slow client does: the application's sends start to wait.

        Frames the application sent before (and the next ``buffer`` frames) can still be
        received; after that, the application's ``send`` -- data or close -- waits until
        :meth:`resume_reading`, or until this session closes (then it raises
        :class:`ClientDisconnectedError` in the application).

        Args:
            buffer: How many more frames the transport takes before ``send`` waits (what a
                server's and a kernel's buffers would hold).

        Raises:
            ValueError: ``buffer`` is negative.
        """
        self._end.pause(buffer)

    def resume_reading(self) -> None:
        """Start reading again: the application's waiting sends go through, in order."""
        self._end.resume()

    async def wait_for_backpressure(self, timeout: float | None = None) -> None:
        """Wait until an application ``send`` is waiting on this paused session.

        Args:
            timeout: Seconds to wait; defaults to the session's timeout.

        Raises:
            RuntimeError: Reading is not paused.
            TimeoutError: No send waited in time.
        """
        wait = self.timeout if timeout is None else timeout
        if not await self._end.blocked(wait):
            raise TimeoutError(f"no send of the application waited within {wait}s{self._report.meanwhile()}")

    # -- receiving ----------------------------------------------------------------------

    async def _next(self, timeout: float | None, *, unfinished: str = "") -> Message:
        """The application's next message; ``unfinished``: the error if it returns instead (a close if ``""``)."""
        queue = self._from_app
        while True:
            if queue.empty():
                wait = self.timeout if timeout is None else timeout
                try:
                    item = await asyncio.wait_for(queue.get(), wait)
                except asyncio.TimeoutError:
                    raise TimeoutError(self._timeout_message(wait)) from None
            else:
                item = queue.get_nowait()
            if isinstance(item, AppLogged):
                self._report.raise_pending()
                continue
            if isinstance(item, AppFinished):
                queue.put_nowait(item)  # every later receive sees the end too
                self._report.release()
                self._report.raise_pending()
                if unfinished:
                    raise RuntimeError(unfinished)
                if self.close_code is None:
                    self.close_code = CloseCode.ABNORMAL_CLOSURE
                    self.close_reason = "the application returned without closing the connection"
                raise WebSocketDisconnect(self.close_code, self.close_reason)
            self._report.logged.clear()
            return item

    def _logged_error(self, error: BaseException) -> None:
        if not self._end.client_closed:  # after the disconnect, close() raises it
            self._from_app.put_nowait(AppLogged(error))

    def _timeout_message(self, wait: float) -> str:
        message = f"no message from the application within {wait}s"
        if self._end.paused:
            message += " (reading is paused: call resume_reading() to let the application send)"
        return message + self._report.meanwhile()

    async def receive(self, timeout: float | None = None) -> Message:
        """Receive the next raw ASGI message the application sent.

        Args:
            timeout: Seconds to wait; defaults to the session's timeout.

        Returns:
            A ``websocket.send`` message.

        Raises:
            WebSocketDisconnect: The application closed the connection.
            TimeoutError: Nothing arrived in time (the message says what the app logged meanwhile).
            Exception: The application raised it (see the class description).
        """
        if self.close_code is not None:
            self._report.raise_pending()
            raise WebSocketDisconnect(self.close_code, self.close_reason)
        message = await self._next(timeout)
        if message["type"] == "websocket.close":
            self.close_code = message.get("code", CloseCode.NORMAL_CLOSURE)
            self.close_reason = message.get("reason") or ""
            self._report.raise_pending()  # the app closed because it failed (1011, say): show why
            raise WebSocketDisconnect(self.close_code, self.close_reason)
        return message

    # -- sending ------------------------------------------------------------------------

    def _put(self, message: Message) -> None:
        """Hand ``message`` to the application (after the checks every send makes)."""
        if self._task is None:
            raise RuntimeError("the session is not connected; await it or use 'async with'")
        self._report.raise_pending()
        if self._end.client_closed or self.close_code is not None:
            raise WebSocketClosedError("cannot send: the WebSocket test session is closed")
        self._end.to_app.put_nowait(message)

    # -- closing ------------------------------------------------------------------------

    async def close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "", *, raise_errors: bool = True) -> None:
        """Disconnect and wait for the application to finish with the connection. Idempotent.

        Sends waiting on a paused session are released (they raise
        :class:`ClientDisconnectedError` in the application).

        Args:
            code: The close code sent to the application.
            reason: The close reason sent to the application.
            raise_errors: Re-raise an exception of the application that no receive or send raised.
        """
        if self._task is None or self._end.client_closed:
            return
        self._end.disconnect(code, reason)
        try:
            await self._wait_app()
        finally:
            self._report.release()
        if raise_errors:
            self._report.raise_pending()

    async def _wait_app(self) -> None:
        assert self._task is not None
        try:
            await asyncio.wait_for(asyncio.shield(self._task), self.timeout)
        except asyncio.TimeoutError:
            self._task.cancel()
            raise TimeoutError(
                f"the application did not finish within {self.timeout}s of the disconnect{self._report.meanwhile()}"
            ) from None
