"""The ASGI application: route decorators, lifespan hooks and error responses."""

from __future__ import annotations

import inspect
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from qakeapi.core.datastructures import State
from qakeapi.core.requests import DEFAULT_MAX_BODY_SIZE, Request
from qakeapi.core.responses import JSONResponse, PlainTextResponse, Response
from qakeapi.core.routing import Endpoint, Route, Router
from qakeapi.core.websockets.connection import WebSocket
from qakeapi.exceptions import HTTPException, WebSocketDisconnect
from qakeapi.status import CloseCode
from qakeapi.types import Receive, Scope, Send

__all__ = ["Application", "LifespanHook", "to_response"]

logger = logging.getLogger("qakeapi.application")

LifespanHook = Callable[[], Awaitable[Any] | Any]
"""The type of startup and shutdown hooks (plain or ``async`` functions without arguments)."""

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

    Args:
        max_body_size: The largest request body accepted, in bytes (413 beyond it).
    """

    def __init__(self, *, max_body_size: int = DEFAULT_MAX_BODY_SIZE) -> None:
        self.router = Router()
        self.state = State()
        self.max_body_size = max_body_size
        self._startup: list[LifespanHook] = []
        self._shutdown: list[LifespanHook] = []

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

    def on_startup(self, hook: _H) -> _H:
        """Register a hook to run when the server starts (ASGI lifespan)."""
        self._startup.append(hook)
        return hook

    def on_shutdown(self, hook: _H) -> _H:
        """Register a hook to run when the server stops (ASGI lifespan)."""
        self._shutdown.append(hook)
        return hook

    # -- ASGI ---------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI 3 entry point."""
        kind = scope["type"]
        if kind == "websocket":
            # Inlined (not a helper coroutine): this frame lives as long as the connection.
            websocket = WebSocket(scope, receive, send)
            match = self.router.match("websocket", scope["path"])
            if match.route is None:
                await websocket.close(CloseCode.POLICY_VIOLATION, "no WebSocket route for this path")
                return
            scope["path_params"] = match.params
            try:
                await match.route.endpoint(websocket, **match.params)
            except WebSocketDisconnect as exc:  # the peer left while the endpoint was receiving
                logger.debug("WebSocket %s at %s: peer disconnected (%s)", websocket.id, scope["path"], exc.code)
            except Exception as exc:
                _add_context(exc, f"while handling WebSocket {websocket.id} at {scope['path']}")
                await websocket.close(CloseCode.INTERNAL_ERROR, "internal error")
                raise
            await websocket.close()
        elif kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
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

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    for hook in self._startup:
                        await _run_hook(hook)
                except Exception as exc:
                    logger.exception("startup hook failed")
                    await send({"type": "lifespan.startup.failed", "message": f"{type(exc).__name__}: {exc}"})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                failed = False
                for hook in self._shutdown:
                    try:
                        await _run_hook(hook)
                    except Exception:
                        failed = True
                        logger.exception("shutdown hook %s failed", getattr(hook, "__qualname__", hook))
                kind = "lifespan.shutdown.failed" if failed else "lifespan.shutdown.complete"
                await send({"type": kind, "message": "a shutdown hook failed"} if failed else {"type": kind})
                return


async def _run_hook(hook: LifespanHook) -> None:
    result = hook()
    if inspect.isawaitable(result):
        await result
