"""The ASGI application: route decorators, lifespan hooks and error responses."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from qakeapi.core.counters import TIMING_SCOPE_KEY, counters
from qakeapi.core.datastructures import State
from qakeapi.core.denials import deny_missing_route, deny_origin, fail
from qakeapi.core.lifespan import Lifespan, LifespanHook
from qakeapi.core.logfields import ROUTE_SCOPE_KEY, bind, unbind
from qakeapi.core.middleware import Middleware
from qakeapi.core.origins import DEFAULT_ORIGIN_POLICY, OriginPolicy
from qakeapi.core.requests import DEFAULT_MAX_BODY_SIZE, Request
from qakeapi.core.responses import JSONResponse, PlainTextResponse, Response
from qakeapi.core.routing import Endpoint, Route, Router
from qakeapi.core.websockets.connection import WebSocket
from qakeapi.exceptions import HTTPException, WebSocketDisconnect
from qakeapi.status import CloseCode
from qakeapi.types import ASGIApp, Receive, Scope, Send

__all__ = ["Application", "LifespanHook", "to_response"]

logger = logging.getLogger("qakeapi.application")

_E = TypeVar("_E", bound=Endpoint)
_H = TypeVar("_H", bound=LifespanHook)


def to_response(result: Any) -> Response:
    """Turn what an HTTP endpoint returned into a :class:`~qakeapi.core.responses.Response`.

    ``Response`` objects pass through; ``str`` becomes ``text/plain``; ``bytes`` becomes
    ``application/octet-stream``; ``None`` becomes an empty 204; anything else is JSON.
    """
    if isinstance(result, Response):
        return result
    if isinstance(result, str):
        return PlainTextResponse(result)
    if isinstance(result, bytes):
        return Response(result, media_type="application/octet-stream")
    if result is None:
        return Response(b"", status_code=204)
    return JSONResponse(result)


def _add_context(exc: BaseException, context: str) -> None:
    if sys.version_info >= (3, 11):
        exc.add_note(context)


class Application:
    """An ASGI 3 application.

    Register endpoints with the decorators and serve it with any ASGI server, for example
    ``uvicorn module:app``. An endpoint receives the :class:`~qakeapi.core.requests.Request`
    (or :class:`~qakeapi.core.websockets.connection.WebSocket`) and the path parameters as keyword
    arguments.

    Errors become JSON: ``{"detail": ...}`` with 404, 405 (and ``Allow``), 400 for malformed
    JSON bodies, the status of any :class:`~qakeapi.exceptions.HTTPException`, and a bare 500
    for anything else. Unhandled exceptions are re-raised after the 500 is sent (with the
    request line attached as a note) so the server logs them and test clients surface them.

    Middleware (see :mod:`qakeapi.core.middleware`) wraps the application for every scope --
    HTTP, WebSocket and lifespan -- in the order given, the first one outermost;
    :meth:`add_middleware` adds one around all of them.

    WebSocket handshakes are checked against an origin policy before the endpoint runs
    (cross-site WebSocket hijacking): by default only pages of the same host and port may
    connect, clients that send no ``Origin`` (non-browser clients) may, and ``Origin: null``
    (sandboxed frames, ``file://`` pages) may not. A refused handshake gets HTTP 403 and a
    WARNING line naming the origin. See :class:`~qakeapi.core.origins.OriginPolicy`.

    A client can tell the refusals apart: a path without a WebSocket route gets 404, a refused
    origin or ``Host`` 403 (``{"detail": "origin not allowed"}`` or ``"host not allowed"``), an
    endpoint that fails before accepting 500, one that fails after it the close 1011. The
    statuses need the ASGI ``websocket.http.response`` extension; without it (daphne) a refusal
    is a close before the accept (1008, with the reason), which servers answer with a bare 403.

    Args:
        max_body_size: The largest request body accepted, in bytes (413 beyond it).
        middleware: ASGI middleware to wrap the application in, outermost first.
        origins: The origin policy for WebSocket handshakes; ``None`` turns the check off.

    Attributes:
        origin_policy: The origin policy in force (``None``: no check).
        lifespan: The startup and shutdown hooks (:meth:`on_startup`, :meth:`on_shutdown`).
    """

    def __init__(
        self,
        *,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
        middleware: Sequence[Middleware] | None = None,
        origins: OriginPolicy | None = DEFAULT_ORIGIN_POLICY,
    ) -> None:
        self.origin_policy = origins
        self.router = Router()
        self.state = State()
        self.max_body_size = max_body_size
        self.user_middleware: list[Middleware] = list(middleware or ())
        for item in self.user_middleware:
            if not isinstance(item, Middleware):
                raise TypeError(f"middleware items must be Middleware(cls, **options), not {item!r}")
        self._stack: ASGIApp | None = None
        self._started = False
        self.lifespan = Lifespan()
        self._timed = False  # hooks of this application's connections are timed (metrics exposed)

    # -- middleware ---------------------------------------------------------------------

    def add_middleware(self, cls: Callable[..., ASGIApp], /, *args: Any, **kwargs: Any) -> None:
        """Wrap the application (and the middleware added before) in ``cls(app, *args, **kwargs)``.

        Args:
            cls: The middleware class or factory.
            *args: Its positional options.
            **kwargs: Its keyword options.

        Raises:
            RuntimeError: The application has already been called: its stack is built.
        """
        if self._started:
            raise RuntimeError("cannot add middleware after the application has started serving")
        self.user_middleware.insert(0, Middleware(cls, *args, **kwargs))

    def _build_stack(self) -> ASGIApp:
        async def routes(scope: Scope, receive: Receive, send: Send) -> None:
            await self.__call__(scope, receive, send, _middleware=False)

        app: ASGIApp = routes
        for item in reversed(self.user_middleware):
            app = item.wrap(app)
        return app

    # -- registration -------------------------------------------------------------------

    def route(self, path: str, methods: list[str] | tuple[str, ...] = ("GET",)) -> Callable[[_E], _E]:
        """Register an HTTP endpoint for ``path`` and ``methods``.

        Args:
            path: A path template such as ``/items/{item_id:int}``.
            methods: The HTTP methods served.

        Returns:
            A decorator that registers the endpoint and returns it unchanged.
        """

        def decorator(endpoint: _E) -> _E:
            self.router.add(Route(path, endpoint, frozenset(m.upper() for m in methods)))
            return endpoint

        return decorator

    def get(self, path: str) -> Callable[[_E], _E]:
        """Register a ``GET`` (and ``HEAD``) endpoint."""
        return self.route(path, ("GET",))

    def post(self, path: str) -> Callable[[_E], _E]:
        """Register a ``POST`` endpoint."""
        return self.route(path, ("POST",))

    def put(self, path: str) -> Callable[[_E], _E]:
        """Register a ``PUT`` endpoint."""
        return self.route(path, ("PUT",))

    def patch(self, path: str) -> Callable[[_E], _E]:
        """Register a ``PATCH`` endpoint."""
        return self.route(path, ("PATCH",))

    def delete(self, path: str) -> Callable[[_E], _E]:
        """Register a ``DELETE`` endpoint."""
        return self.route(path, ("DELETE",))

    def websocket(self, path: str) -> Callable[[_E], _E]:
        """Register ``async def endpoint(websocket, **path_params)`` for WebSocket ``path``."""

        def decorator(endpoint: _E) -> _E:
            self.router.add(Route(path, endpoint, websocket=True))
            return endpoint

        return decorator

    def serve_client(self, prefix: str = "/qakeapi") -> str:
        """Serve the browser client ``qakeapi.js`` (and ``qakeapi.d.ts``) under ``prefix``.

        The URL names the client's version and a digest of its content, and the files are sent
        with ``Cache-Control: public, max-age=31536000, immutable`` (see :mod:`qakeapi.core.client`).

        Args:
            prefix: Where the files go (``/qakeapi`` by default; no trailing slash).

        Returns:
            The URL path of ``qakeapi.js``, to ``import`` from a page.
        """
        from qakeapi.core.client import serve_client

        return serve_client(self, prefix)

    def on_startup(self, hook: _H) -> _H:
        """Register a hook to run when the server starts (ASGI lifespan)."""
        self.lifespan.startup.append(hook)
        return hook

    def on_shutdown(self, hook: _H) -> _H:
        """Register a hook to run when the server stops (ASGI lifespan)."""
        self.lifespan.shutdown.append(hook)
        return hook

    # -- observability ------------------------------------------------------------------

    def expose_metrics(
        self,
        path: str = "/metrics",
        *,
        node: str | None = None,
        registry: Any = None,
        directory: str | None = None,
    ) -> None:
        """Serve Prometheus metrics at ``GET path`` (needs the ``metrics`` extra: prometheus-client).

        QakeAPI's metrics (see :doc:`/topics/observability`) follow whatever ``registry`` holds
        (prometheus-client's default registry when ``None``: the process collector and the
        application's own metrics). The hooks of this application's connections are timed
        from now on.

        Args:
            path: The endpoint's path.
            node: The ``node`` label (``None``: the node id of this process's cluster node,
                else the host name).
            registry: A prometheus-client ``CollectorRegistry`` to serve first.
            directory: Where the workers of a multi-process server share their readings, so
                that any of them answers for all (``None``: ``QAKEAPI_METRICS_DIR``, if set).

        Raises:
            qakeapi.exceptions.MissingDependencyError: prometheus-client is not installed.
        """
        from qakeapi.core.metrics import expose_metrics

        expose_metrics(self, path, node=node, registry=registry, directory=directory)
        self._timed = True

    def expose_dashboard(
        self, path: str = "/dashboard", *, token: str, node: str | None = None, interval: float = 1.0
    ) -> None:
        """Serve the live dashboard at ``GET path``, updated over a WebSocket at ``path + "/ws"``.

        Off unless called. The page shows the cluster's nodes, this node's connections, message
        rates and slow consumers, and the rooms with their members; its WebSocket shows nothing
        to a client that does not send ``token`` first (the page reads it from the URL's
        fragment: open ``/dashboard#token=...``). See :mod:`qakeapi.core.dashboard`.

        Args:
            path: Where the page is.
            token: The secret a viewer needs (at least 16 characters).
            node: This node's label (``None``: the cluster node's id, else the host name).
            interval: Seconds between two updates.

        Raises:
            ValueError: ``token`` is too short, or ``interval`` is not positive.
        """
        from qakeapi.core.dashboard import expose_dashboard

        expose_dashboard(self, path, token=token, node=node, interval=interval)

    # -- ASGI ---------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send, *, _middleware: bool = True) -> None:
        """The ASGI 3 entry point."""
        if _middleware:
            if not self._started:
                self._started = True
                if self.user_middleware:
                    self._stack = self._build_stack()
            if self._stack is not None:
                await self._stack(scope, receive, send)
                return
        kind = scope["type"]
        if kind == "websocket":
            # Inlined (not a helper coroutine): this frame lives as long as the connection.
            websocket = WebSocket(scope, receive, send)
            match = self.router.match("websocket", scope["path"])
            if match.route is None:
                await deny_missing_route(websocket, (route.path for route in self.router.routes if route.websocket))
                return
            scope["path_params"] = match.params
            policy = self.origin_policy
            if policy is not None:
                decision = policy.check(scope)
                if not decision.allowed:
                    await deny_origin(websocket, decision)
                    return
            route = scope[ROUTE_SCOPE_KEY] = match.route.path  # the template: a bounded metrics label
            if self._timed:
                scope[TIMING_SCOPE_KEY] = True
            counters.connected(route)
            bound = bind(websocket)  # log lines of this connection carry its fields
            try:
                try:
                    await match.route.endpoint(websocket, **match.params)
                except WebSocketDisconnect as exc:  # the peer left while the endpoint was receiving
                    logger.debug("WebSocket %s at %s: peer disconnected (%s)", websocket.id, scope["path"], exc.code)
                except Exception as exc:
                    _add_context(exc, f"while handling WebSocket {websocket.id} at {scope['path']}")
                    await fail(websocket)
                    raise
                await websocket.close()
            finally:
                code = websocket.closed_with if websocket.closed_with is not None else websocket.close_code
                counters.disconnected(route, CloseCode.ABNORMAL_CLOSURE if code is None else code)
                unbind(bound)
        elif kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self.lifespan(receive, send)
        else:
            raise ValueError(f"unsupported ASGI scope type {kind!r}")

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        method, path = scope["method"], scope["path"]
        match = self.router.match("http", path, method)
        if match.route is None:
            if match.allowed:
                allow = ", ".join(sorted(match.allowed))
                response: Response = JSONResponse({"detail": "Method Not Allowed"}, 405, {"Allow": allow})
            else:
                response = JSONResponse({"detail": "Not Found"}, 404)
            await response(scope, receive, send)
            return
        scope["path_params"] = match.params
        request = Request(scope, receive, self.max_body_size)
        try:
            response = to_response(await match.route.endpoint(request, **match.params))
        except HTTPException as exc:
            response = JSONResponse({"detail": exc.detail}, exc.status_code, exc.headers)
        except Exception as exc:
            _add_context(exc, f"while handling {method} {path}")
            await JSONResponse({"detail": "Internal Server Error"}, 500)(scope, receive, send)
            raise
        await response(scope, receive, send)
