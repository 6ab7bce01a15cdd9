"""The hooks of a :class:`~qakeapi.core.websockets.handler.WebSocketHandler`: registered, checked, called.

A hook that could never be called as QakeAPI calls it (not ``async def``, the wrong number of
parameters) is refused when it is registered, with a message that says what to write; a hook
that raises is logged with its connection's context and never takes the connection down with a
traceback the peer caused.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from time import perf_counter
from typing import Any, TypeVar

from qakeapi.core.counters import TIMING_SCOPE_KEY, counters
from qakeapi.core.websockets.connection import WebSocket
from qakeapi.exceptions import WebSocketClosedError, WebSocketDisconnect
from qakeapi.status import CloseCode

__all__ = ["ConnectionHook", "Hooks", "MessageHook", "MessageInterceptor"]

logger = logging.getLogger("qakeapi.websockets")

ConnectionHook = Callable[[WebSocket], Awaitable[Any]]
"""``async def hook(websocket)`` — called on connect and on disconnect."""
MessageHook = Callable[[WebSocket, Any], Awaitable[Any]]
"""``async def hook(websocket, message)`` — called for every message received."""

MessageInterceptor = Callable[[WebSocket, Any], Awaitable[bool]]
"""``async def interceptor(websocket, message) -> bool`` — sees a message before the
``on_message`` hooks; returning ``True`` consumes it."""

_C = TypeVar("_C", bound=ConnectionHook)
_M = TypeVar("_M", bound=MessageHook)
_H = TypeVar("_H", bound=Callable[..., Awaitable[Any]])
_ONE = ("websocket",)
_TWO = ("websocket", "message")


class Hooks:
    """The hooks of one handler, in registration order (the base of :class:`WebSocketHandler
    <qakeapi.core.websockets.handler.WebSocketHandler>`)."""

    def __init__(self) -> None:
        self._connect_hooks: list[ConnectionHook] = []
        self._message_hooks: list[MessageHook] = []
        self._disconnect_hooks: list[ConnectionHook] = []
        self._interceptors: list[MessageInterceptor] = []

    def on_connect(self, hook: _C) -> _C:
        """Register ``async def hook(websocket)`` to run when a connection is accepted.

        Raises:
            TypeError: ``hook`` is not an ``async def`` taking ``(websocket)`` (the message says how to fix it).
        """
        return _register(self._connect_hooks, "on_connect", hook, _ONE)

    def on_message(self, hook: _M) -> _M:
        """Register ``async def hook(websocket, message)`` to run for every message.

        Raises:
            TypeError: ``hook`` is not an ``async def`` taking ``(websocket, message)``.
        """
        return _register(self._message_hooks, "on_message", hook, _TWO)

    def on_disconnect(self, hook: _C) -> _C:
        """Register ``async def hook(websocket)`` to run once when a connection ends, however it ends.

        Raises:
            TypeError: ``hook`` is not an ``async def`` taking ``(websocket)``.
        """
        return _register(self._disconnect_hooks, "on_disconnect", hook, _ONE)

    def intercept(self, interceptor: MessageInterceptor) -> MessageInterceptor:
        """Register ``async def interceptor(websocket, message) -> bool``, run before ``on_message``.

        Interceptors run in registration order on every (decoded) message; the first that
        returns ``True`` consumes the message, and the ``on_message`` hooks do not see it. An
        exception in an interceptor is logged and consumes the message too (it may carry a
        credential that hooks must not see). The authentication middleware routes its in-band
        ``{"type": "auth"}`` messages this way.

        Args:
            interceptor: The coroutine function.

        Returns:
            ``interceptor``, unchanged.

        Raises:
            TypeError: ``interceptor`` is not an ``async def`` function taking two arguments.
        """
        return _register(self._interceptors, "intercept", interceptor, _TWO)

    async def _intercepted(self, websocket: WebSocket, message: Any) -> bool:
        for interceptor in self._interceptors:
            try:
                if await interceptor(websocket, message):
                    return True
            except Exception as exc:
                self._hook_failed(interceptor, websocket, exc)
                return True
        return False

    async def _run_connect_hooks(self, websocket: WebSocket) -> bool:
        for hook in self._connect_hooks:
            if not await self._call(hook, websocket):
                await websocket.close(CloseCode.INTERNAL_ERROR, "connection setup failed")
                return False
        return True

    @classmethod
    async def _call(cls, hook: Callable[..., Awaitable[Any]], websocket: WebSocket, kind: str = "on_connect") -> bool:
        started = perf_counter() if TIMING_SCOPE_KEY in websocket.scope else None
        try:
            await hook(websocket)
        except Exception as exc:
            cls._hook_failed(hook, websocket, exc)
            return False
        finally:
            if started is not None:
                counters.hook_timer(kind, hook).observe(perf_counter() - started)
        return True

    async def _run_timed(self, websocket: WebSocket, message: Any) -> None:
        """The message hooks, each timed (one message in :data:`~qakeapi.core.counters.MESSAGE_SAMPLE`)."""
        for hook in self._message_hooks:
            started = perf_counter()
            try:
                await hook(websocket, message)
            except Exception as exc:
                self._hook_failed(hook, websocket, exc)
            counters.hook_timer("on_message", hook).observe(perf_counter() - started)

    @staticmethod
    def _hook_failed(hook: Callable[..., Awaitable[Any]], websocket: WebSocket, exc: Exception) -> None:
        name = getattr(hook, "__qualname__", hook)
        if isinstance(exc, (WebSocketClosedError, WebSocketDisconnect)):
            # The peer went away while the hook was sending: expected in real time, not a bug.
            logger.info(
                "WebSocket hook %s stopped: connection %s (path=%s) is closed: %s",
                name,
                websocket.id,
                websocket.path,
                exc,
            )
            return
        counters.hook_failed(hook)
        logger.error(
            "WebSocket hook %s failed (connection=%s path=%s client=%s user=%s)",
            name,
            websocket.id,
            websocket.path,
            websocket.client,
            websocket.user_id,
            exc_info=exc,
        )


def _register(hooks: list[Any], kind: str, hook: _H, params: tuple[str, ...]) -> _H:
    _check_hook(kind, hook, params)
    hooks.append(hook)
    return hook


def _is_async(hook: Callable[..., Any]) -> bool:
    if inspect.iscoroutinefunction(hook):
        return True
    call = type(hook).__call__  # an instance with an async __call__
    return not inspect.isroutine(hook) and not inspect.isclass(hook) and inspect.iscoroutinefunction(call)


def _check_hook(kind: str, hook: Callable[..., Any], params: tuple[str, ...]) -> None:
    """Refuse, at registration, a hook that would fail at its first call."""
    name = getattr(hook, "__qualname__", None) or repr(hook)
    wanted = f"async def {getattr(hook, '__name__', 'hook')}({', '.join(params)})"
    if not callable(hook):
        raise TypeError(f"{kind} hook {name!r} is not callable; register a function: {wanted}")
    if not _is_async(hook):
        raise TypeError(
            f"{kind} hook {name!r} is not a coroutine function; QakeAPI awaits every hook, so define it "
            f"with 'async def': {wanted}"
        )
    try:
        signature = inspect.signature(hook)
    except (TypeError, ValueError):  # no signature to check (some builtins, C callables)
        return
    try:
        signature.bind(*params)
    except TypeError as exc:
        raise TypeError(
            f"{kind} hook {name!r} has the signature {signature}, but QakeAPI calls it with "
            f"{len(params)} argument{'s' if len(params) > 1 else ''} ({', '.join(params)}): {exc}; "
            f"define it as {wanted}"
        ) from None
