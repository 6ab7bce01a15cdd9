"""An in-process, async test client for any ASGI application."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Coroutine, Generator, Mapping, Sequence
from types import TracebackType
from typing import Any, NoReturn
from urllib.parse import unquote, urlencode, urlsplit

from qakeapi.core.codec import decode_json, encode_json
from qakeapi.core.datastructures import Headers
from qakeapi.testing import app_log
from qakeapi.testing.async_only import AsyncOnly
from qakeapi.testing.transport import DENIAL_EXTENSION
from qakeapi.testing.websocket_session import WebSocketTestSession
from qakeapi.types import ASGIApp, Message, Scope

__all__ = ["PendingResponse", "TestClient", "TestResponse"]

DEFAULT_TIMEOUT = 5.0


class TestResponse:
    """A complete HTTP response.

    Attributes:
        status_code: The HTTP status.
        headers: The response headers (case-insensitive).
        content: The body.
    """

    __test__ = False

    def __init__(self, status_code: int, headers: Headers, content: bytes) -> None:
        self.status_code = status_code
        self.headers = headers
        self.content = content

    @property
    def text(self) -> str:
        """The body decoded as UTF-8."""
        return self.content.decode()

    def json(self) -> Any:
        """The body decoded as JSON."""
        return decode_json(self.content)

    def __repr__(self) -> str:
        return f"<TestResponse {self.status_code}>"


class PendingResponse:
    """A request on its way: ``await`` it for the :class:`TestResponse`.

    What :meth:`TestClient.get` and the other request methods return. A test that reads a
    response attribute off it without ``await`` (a habit from Starlette's synchronous test
    client: ``client.get("/").status_code``) gets an :class:`AttributeError` that says what to
    write, instead of ``'coroutine' object has no attribute 'status_code'``.

    Args:
        call: How the request was made, for the message (``"get('/health')"``).
        coroutine: The request itself.
    """

    __slots__ = ("_call", "_coroutine")

    def __init__(self, call: str, coroutine: Coroutine[Any, Any, TestResponse]) -> None:
        self._call = call
        self._coroutine = coroutine

    def __await__(self) -> Generator[Any, None, TestResponse]:
        return self._coroutine.__await__()

    def __getattr__(self, name: str) -> NoReturn:
        if name.startswith("__"):
            raise AttributeError(name)
        self._coroutine.close()  # it can never be awaited now; no second "never awaited" warning
        method = self._call.split("(", 1)[0]
        raise AttributeError(
            f"client.{self._call} was not awaited, so there is no .{name} yet: QakeAPI's TestClient is "
            f"asynchronous; write 'response = await client.{method}(...)' inside an 'async def' test"
        )

    def __repr__(self) -> str:
        return f"<PendingResponse client.{self._call}: await it>"


class TestClient(AsyncOnly):
    """Calls an ASGI application in the running event loop, without a server or sockets.

    ``await client.get(...)`` and friends return a :class:`TestResponse`;
    :meth:`websocket_connect` opens a :class:`~qakeapi.testing.websocket_session.WebSocketTestSession`.
    Use ``async with TestClient(app) as client`` to run the application's lifespan
    (startup hooks on entry, shutdown hooks on exit); without it no lifespan events are sent.

    Args:
        app: The ASGI application.
        base_url: Scheme and host used to build request scopes.
        raise_server_exceptions: Re-raise the application's exceptions in the test (default):
            an exception escaping an HTTP endpoint, and in WebSocket sessions an exception
            escaping the application or logged by QakeAPI with its traceback (see
            :class:`~qakeapi.testing.websocket_session.WebSocketTestSession`). Turn it off to
            see only what a client would: a 500, a close code.
        timeout: The default timeout, in seconds, of each WebSocket receive and of lifespan.
    """

    sync_use = (
        "TestClient is asynchronous: use 'async with TestClient(app) as client' inside an async test "
        "(and 'await client.get(...)', 'async with client.websocket_connect(...)')"
    )

    __test__ = False

    def __init__(
        self,
        app: ASGIApp,
        base_url: str = "http://testserver",
        *,
        raise_server_exceptions: bool = True,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.app = app
        parts = urlsplit(base_url)
        self._scheme = parts.scheme or "http"
        self._host = parts.hostname or "testserver"
        self._port = parts.port or (443 if self._scheme == "https" else 80)
        self.raise_server_exceptions = raise_server_exceptions
        self.timeout = timeout
        self._lifespan: asyncio.Task[None] | None = None
        self._lifespan_in: asyncio.Queue[Message] = asyncio.Queue()
        self._lifespan_out: asyncio.Queue[Message] = asyncio.Queue()
        self._lifespan_errors: deque[BaseException] = deque(maxlen=8)  # tasks started at startup log here too

    # -- lifespan -----------------------------------------------------------------------

    async def __aenter__(self) -> TestClient:
        app_log.acquire()
        self._lifespan = asyncio.get_running_loop().create_task(self._run_lifespan())
        try:
            await self._lifespan_event("startup")
        except BaseException:
            task, self._lifespan = self._lifespan, None
            task.cancel()  # it failed or hangs: the test sees why, not a second timeout
            await asyncio.wait({task})
            app_log.release()
            raise
        return self

    def app_logged(self, record: logging.LogRecord) -> None:
        """Take a record the application logged during the lifespan (see ``qakeapi.testing.app_log``)."""
        error = app_log.framework_error(record)
        if error is not None:
            self._lifespan_errors.append(error)

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Run the shutdown hooks if the lifespan was started. Idempotent."""
        if self._lifespan is None:
            return
        try:
            if not self._lifespan.done():
                await self._lifespan_event("shutdown")
        finally:
            await self._stop_lifespan()

    async def _stop_lifespan(self) -> None:
        task, self._lifespan = self._lifespan, None
        if task is None:
            return
        try:
            await asyncio.wait_for(task, self.timeout)
        finally:
            app_log.release()

    async def _run_lifespan(self) -> None:
        app_log.use_sink(self)
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": {}}
        try:
            await self.app(scope, self._lifespan_in.get, self._lifespan_out.put)
        except Exception as exc:  # an app without lifespan support raises; that is allowed
            await self._lifespan_out.put({"type": "lifespan.unsupported", "error": exc})

    async def _lifespan_event(self, event: str) -> None:
        await self._lifespan_in.put({"type": f"lifespan.{event}"})
        try:
            reply = await asyncio.wait_for(self._lifespan_out.get(), self.timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(f"the application did not answer lifespan.{event} within {self.timeout}s") from None
        if reply["type"] == f"lifespan.{event}.failed":
            cause = self._lifespan_errors[0] if self._lifespan_errors else None
            self._lifespan_errors.clear()
            raise RuntimeError(f"lifespan {event} failed: {reply.get('message', '')}") from cause
        if reply["type"] == "lifespan.unsupported" and event == "shutdown" and self.raise_server_exceptions:
            raise reply["error"]

    # -- HTTP ---------------------------------------------------------------------------

    def _scope(self, kind: str, url: str, headers: Mapping[str, str] | None, params: Mapping[str, Any] | None) -> Scope:
        parts = urlsplit(url)
        query = parts.query
        if params:
            query = "&".join(filter(None, [query, urlencode(params, doseq=True)]))
        raw_headers = [(b"host", self._host.encode())]
        raw_headers += [(k.lower().encode("latin-1"), str(v).encode("latin-1")) for k, v in (headers or {}).items()]
        path = parts.path or "/"
        return {
            "type": kind,
            "asgi": {"version": "3.0", "spec_version": "2.4"},
            "http_version": "1.1",
            "scheme": ("wss" if self._scheme == "https" else "ws") if kind == "websocket" else self._scheme,
            "path": unquote(path),
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": query.encode(),
            "headers": raw_headers,
            "client": ("testclient", 50000),
            "server": (self._host, self._port),
            "state": {},
        }

    async def request(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        content: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> TestResponse:
        """Send an HTTP request to the application.

        Args:
            method: The HTTP method.
            url: The path, optionally with a query string.
            json: A value to send as a JSON body.
            content: A raw body.
            headers: Request headers.
            params: Query parameters to add.

        Returns:
            The response.
        """
        all_headers = dict(headers or {})
        body = b""
        if json is not None:
            body = encode_json(json).encode()
            all_headers.setdefault("content-type", "application/json")
        elif content is not None:
            body = content.encode() if isinstance(content, str) else content
        if body:
            all_headers.setdefault("content-length", str(len(body)))
        scope = self._scope("http", url, all_headers, params)
        scope["method"] = method.upper()
        sent_body = False
        finished = asyncio.Event()
        start: Message = {}
        chunks: list[bytes] = []

        async def receive() -> Message:
            nonlocal sent_body
            if not sent_body:
                sent_body = True
                return {"type": "http.request", "body": body, "more_body": False}
            await finished.wait()
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    finished.set()

        try:
            await self.app(scope, receive, send)
        except Exception:
            if self.raise_server_exceptions:
                raise
            if not start:
                return TestResponse(500, Headers(), b"")
        finally:
            finished.set()
        if not start:
            raise RuntimeError("the application returned without starting a response")
        return TestResponse(start["status"], Headers(start.get("headers", ())), b"".join(chunks))

    def get(self, url: str, **kwargs: Any) -> PendingResponse:
        """Send a ``GET`` request (see :meth:`request`); ``await`` the result."""
        return PendingResponse(f"get({url!r})", self.request("GET", url, **kwargs))

    def head(self, url: str, **kwargs: Any) -> PendingResponse:
        """Send a ``HEAD`` request (see :meth:`request`); ``await`` the result."""
        return PendingResponse(f"head({url!r})", self.request("HEAD", url, **kwargs))

    def post(self, url: str, **kwargs: Any) -> PendingResponse:
        """Send a ``POST`` request (see :meth:`request`); ``await`` the result."""
        return PendingResponse(f"post({url!r})", self.request("POST", url, **kwargs))

    def put(self, url: str, **kwargs: Any) -> PendingResponse:
        """Send a ``PUT`` request (see :meth:`request`); ``await`` the result."""
        return PendingResponse(f"put({url!r})", self.request("PUT", url, **kwargs))

    def patch(self, url: str, **kwargs: Any) -> PendingResponse:
        """Send a ``PATCH`` request (see :meth:`request`); ``await`` the result."""
        return PendingResponse(f"patch({url!r})", self.request("PATCH", url, **kwargs))

    def delete(self, url: str, **kwargs: Any) -> PendingResponse:
        """Send a ``DELETE`` request (see :meth:`request`); ``await`` the result."""
        return PendingResponse(f"delete({url!r})", self.request("DELETE", url, **kwargs))

    # -- WebSocket ----------------------------------------------------------------------

    def websocket_connect(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        subprotocols: Sequence[str] | None = None,
        timeout: float | None = None,
    ) -> WebSocketTestSession:
        """Prepare a WebSocket connection; ``await`` it or use ``async with`` to connect.

        Args:
            url: The path, optionally with a query string.
            headers: Handshake request headers.
            subprotocols: Subprotocols to offer.
            timeout: The default receive timeout of the session, in seconds.

        Returns:
            The session. Connecting raises :class:`~qakeapi.exceptions.WebSocketDenied` when the
            application refuses the handshake with an HTTP status, as a real server answers it.
        """
        all_headers = dict(headers or {})
        if subprotocols:
            all_headers["sec-websocket-protocol"] = ", ".join(subprotocols)
        scope = self._scope("websocket", url, all_headers, None)
        scope["subprotocols"] = list(subprotocols or ())
        scope["extensions"] = {DENIAL_EXTENSION: {}}  # as uvicorn: a refusal can be an HTTP response
        return WebSocketTestSession(
            self.app,
            scope,
            timeout=self.timeout if timeout is None else timeout,
            raise_server_exceptions=self.raise_server_exceptions,
        )
