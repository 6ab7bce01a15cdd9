"""Routes and path matching: ``/users/{user_id:int}`` style templates."""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from qakeapi.core.lifespan import LifespanHook

__all__ = ["Match", "Route", "Router", "Routes", "compile_path"]

Endpoint = Callable[..., Awaitable[Any]]

_E = TypeVar("_E", bound=Endpoint)
_H = TypeVar("_H", bound=LifespanHook)

_PARAM = re.compile(r"{([A-Za-z_][A-Za-z0-9_]*)(?::(str|int|float|path))?}")
_CONVERTERS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "str": (r"[^/]+", str),
    "int": (r"-?[0-9]+", int),
    "float": (r"-?[0-9]+(?:\.[0-9]+)?", float),
    "path": (r".*", str),
}


def compile_path(path: str) -> tuple[re.Pattern[str], dict[str, Callable[[str], Any]]]:
    """Compile a path template into a regular expression and its parameter converters.

    Args:
        path: A template such as ``/rooms/{name}`` or ``/users/{user_id:int}``.

    Returns:
        The anchored pattern and a mapping of parameter name to converter.

    Raises:
        ValueError: The template does not start with ``/`` or repeats a parameter name.
    """
    if not path.startswith("/"):
        raise ValueError(f"route path must start with '/': {path!r}")
    pattern, converters, pos = "^", {}, 0
    for m in _PARAM.finditer(path):
        name, kind = m.group(1), m.group(2) or "str"
        if name in converters:
            raise ValueError(f"duplicate parameter {name!r} in route path {path!r}")
        regex, convert = _CONVERTERS[kind]
        pattern += re.escape(path[pos : m.start()]) + f"(?P<{name}>{regex})"
        converters[name] = convert
        pos = m.end()
    pattern += re.escape(path[pos:]) + "$"
    return re.compile(pattern), converters


@dataclass
class Route:
    """An endpoint bound to a path template, for HTTP (``methods``) or WebSocket (``websocket``).

    Args:
        path: The path template.
        endpoint: ``async def endpoint(request_or_websocket, **path_params)``.
        methods: HTTP methods served (``HEAD`` is added with ``GET``); empty for WebSocket.
        websocket: Whether this is a WebSocket route.
    """

    path: str
    endpoint: Endpoint
    methods: frozenset[str] = frozenset()
    websocket: bool = False
    pattern: re.Pattern[str] = field(init=False, repr=False)
    converters: dict[str, Callable[[str], Any]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.pattern, self.converters = compile_path(self.path)
        if "GET" in self.methods:
            self.methods = self.methods | {"HEAD"}
        if not _is_async(self.endpoint):
            name = _name(self.endpoint)
            argument = "websocket" if self.websocket else "request"
            raise TypeError(
                f"the endpoint {name} for {self.describe()} is not a coroutine function; "
                f"define it with 'async def {name.rpartition('.')[2]}({argument}, ...)'"
            )

    @property
    def shape(self) -> str:
        """The path with each parameter replaced by its type, as in ``/items/{int}``.

        Two routes of one shape match the same paths.
        """
        return _PARAM.sub(lambda m: "{" + (m.group(2) or "str") + "}", self.path)

    def describe(self) -> str:
        """The route as a log line names it: ``GET, HEAD /items/{id}`` or ``WebSocket /ws``."""
        if self.websocket:
            return f"WebSocket {self.path}"
        return f"{', '.join(sorted(self.methods))} {self.path}"

    def match(self, path: str) -> dict[str, Any] | None:
        """Return the converted path parameters if ``path`` matches, else ``None``."""
        m = self.pattern.match(path)
        if m is None:
            return None
        return {name: self.converters[name](value) for name, value in m.groupdict().items()}


@dataclass
class Match:
    """The outcome of routing a request.

    Attributes:
        route: The matched route, or ``None``.
        params: The path parameters.
        allowed: When the path matched but not the method: the methods that would have.
    """

    route: Route | None
    params: dict[str, Any] = field(default_factory=dict)
    allowed: frozenset[str] = frozenset()


class Router:
    """An ordered collection of routes; the first match wins."""

    def __init__(self, routes: Iterable[Route] = ()) -> None:
        self.routes: list[Route] = []
        for route in routes:
            self.add(route)

    def add(self, route: Route) -> None:
        """Append a route.

        Raises:
            ValueError: A route already serves the same path (the same template up to parameter
                names) for the same HTTP method, or WebSocket.
        """
        for existing in self.routes:
            if existing.websocket is not route.websocket or existing.shape != route.shape:
                continue
            overlap = existing.methods & route.methods
            if route.websocket or overlap:
                what = f"WebSocket {route.path}" if route.websocket else f"{', '.join(sorted(overlap))} {route.path}"
                raise ValueError(
                    f"duplicate route: {what} is already served by {_name(existing.endpoint)} "
                    f"(registered for {existing.describe()}); register {_name(route.endpoint)} under another "
                    "path, or serve several methods from one endpoint with methods=[...]"
                )
        self.routes.append(route)

    def match(self, scope_type: str, path: str, method: str = "") -> Match:
        """Find the route for a request.

        Args:
            scope_type: ``"http"`` or ``"websocket"``.
            path: The request path.
            method: The HTTP method (ignored for WebSocket).

        Returns:
            The :class:`Match`; ``route`` is ``None`` when nothing matched.
        """
        websocket = scope_type == "websocket"
        allowed: set[str] = set()
        for route in self.routes:
            if route.websocket is not websocket:
                continue
            params = route.match(path)
            if params is None:
                continue
            if websocket or method in route.methods:
                return Match(route, params)
            allowed |= route.methods
        return Match(None, allowed=frozenset(allowed))


def _is_async(endpoint: Callable[..., Any]) -> bool:
    """Whether ``endpoint`` is an ``async def`` function, or an object with one as ``__call__``."""
    if inspect.iscoroutinefunction(endpoint):
        return True
    call = getattr(endpoint, "__call__", None)  # noqa: B004 - the method itself is inspected
    return not inspect.isroutine(endpoint) and inspect.iscoroutinefunction(call)


def _name(endpoint: Callable[..., Any]) -> str:
    return str(getattr(endpoint, "__qualname__", None) or type(endpoint).__qualname__)


class Routes(Protocol):
    """What an add-on that serves its own endpoints needs of an application.

    :class:`~qakeapi.core.application.Application` is one. The browser client
    (:mod:`qakeapi.core.client`), the metrics (:mod:`qakeapi.core.metrics`) and the dashboard
    (:mod:`qakeapi.core.dashboard`) take this rather than the application, so that they do not
    depend on it.
    """

    def get(self, path: str) -> Callable[[_E], _E]:
        """Register an HTTP ``GET`` endpoint for ``path``."""
        ...

    def websocket(self, path: str) -> Callable[[_E], _E]:
        """Register a WebSocket endpoint for ``path``."""
        ...

    def on_startup(self, hook: _H) -> _H:
        """Register a hook to run when the server starts."""
        ...

    def on_shutdown(self, hook: _H) -> _H:
        """Register a hook to run when the server stops."""
        ...
