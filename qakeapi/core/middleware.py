"""ASGI middleware, declared in the Starlette convention: a class and the options to build it with.

A middleware is any callable that takes the ASGI application to wrap (plus its options) and
returns an ASGI application -- typically a class whose ``__init__(self, app, **options)``
keeps ``app`` and whose ``async __call__(self, scope, receive, send)`` calls it::

    class ServerHeader:
        def __init__(self, app: ASGIApp, *, value: str = "qakeapi") -> None:
            self.app = app
            self.value = value.encode()

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await self.app(scope, receive, send)  # WebSocket and lifespan: unchanged
                return

            async def send_with_header(message: Message) -> None:
                if message["type"] == "http.response.start":
                    message["headers"] = [*message.get("headers", []), (b"server", self.value)]
                await send(message)

            await self.app(scope, receive, send_with_header)

    app = Application(middleware=[Middleware(ServerHeader, value="demo")])
    app.add_middleware(ServerHeader, value="outer")  # added last: outermost

The application applies its middleware to every scope it is called with -- ``http``,
``websocket`` and ``lifespan`` -- so a middleware that does not handle a scope type passes it
through unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from qakeapi.types import ASGIApp

__all__ = ["Middleware"]


class Middleware:
    """A middleware class (or factory) and the options it is built with.

    Args:
        cls: Called as ``cls(app, *args, **kwargs)`` to wrap ``app``.
        *args: Positional options.
        **kwargs: Keyword options.

    Raises:
        TypeError: ``cls`` is not callable.
    """

    def __init__(self, cls: Callable[..., ASGIApp], /, *args: Any, **kwargs: Any) -> None:
        if not callable(cls):
            raise TypeError(f"a middleware must be a class or factory called with the app, not {cls!r}")
        self.cls = cls
        self.args: tuple[Any, ...] = args
        self.kwargs: dict[str, Any] = kwargs

    def __iter__(self) -> Iterator[Any]:
        """Unpack as ``cls, args, kwargs`` (as Starlette's ``Middleware`` does)."""
        return iter((self.cls, self.args, self.kwargs))

    def wrap(self, app: ASGIApp) -> ASGIApp:
        """Build this middleware around ``app``.

        Args:
            app: The ASGI application to wrap.

        Returns:
            The middleware instance (an ASGI application).
        """
        return self.cls(app, *self.args, **self.kwargs)

    def __repr__(self) -> str:
        name = getattr(self.cls, "__name__", repr(self.cls))
        options = [repr(arg) for arg in self.args] + [f"{key}={value!r}" for key, value in self.kwargs.items()]
        return f"Middleware({', '.join([name, *options])})"
