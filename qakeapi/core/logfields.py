"""Structured logs: every line about a connection carries its connection id, user, route and node.

While the application runs a WebSocket endpoint it marks the connection in a context variable
(:func:`bind`). :class:`ConnectionLogFilter`, on a logging handler, gives every record it
passes the fields of that connection as attributes -- ``connection_id``, ``user_id`` (``None``
until authenticated), ``route`` (the route's *template*, ``/chat/{room}``) and ``node_id`` --
so a handler's formatter can print them (``%(connection_id)s``) and :class:`JSONFormatter`
writes them as JSON keys. A line about a connection logged from another task (a fan-out that
closes a slow consumer) names it with ``extra=fields(websocket)``, which the filter keeps.

Neither adds a credential: the fields are ids, and :class:`JSONFormatter` passes the message
and every string field through :func:`~qakeapi.core.redaction.redact`, so a token in a query
string or a header never reaches the output.

The quickest set-up is :func:`configure_logging` (one JSON line per record on stderr)::

    from qakeapi.core.logfields import configure_logging

    configure_logging(json=True)
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from contextvars import ContextVar
from typing import IO, Any, Protocol

from qakeapi.core.counters import default_node
from qakeapi.core.redaction import TokenRedactingFilter, redact
from qakeapi.types import Scope

__all__ = [
    "FIELDS",
    "ROUTE_SCOPE_KEY",
    "ConnectionLogFilter",
    "JSONFormatter",
    "bind",
    "configure_logging",
    "fields",
    "unbind",
]

FIELDS = ("connection_id", "user_id", "route", "node_id")
"""The attributes :class:`ConnectionLogFilter` gives every record."""

ROUTE_SCOPE_KEY = "qakeapi.route"
"""The scope key where the application leaves the template of the route it matched."""


class _Named(Protocol):
    """What :func:`fields` reads of a connection (a :class:`~qakeapi.core.websockets.connection.WebSocket`)."""

    id: int
    scope: Scope

    @property
    def user_id(self) -> str | None: ...


_current: ContextVar[_Named | None] = ContextVar("qakeapi_connection", default=None)

_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


def bind(websocket: _Named) -> contextvars.Token[_Named | None]:
    """Mark ``websocket`` as the connection the current task (and the tasks it starts) works for.

    Returns:
        The token for :func:`unbind`.
    """
    return _current.set(websocket)


def unbind(token: contextvars.Token[_Named | None]) -> None:
    """Undo :func:`bind`."""
    _current.reset(token)


def fields(websocket: _Named, node_id: str | None = None) -> dict[str, Any]:
    """The log fields of ``websocket``: pass them as ``extra=`` to name it from another task.

    Args:
        websocket: The connection.
        node_id: The node (``None``: :func:`~qakeapi.core.counters.default_node`).

    Returns:
        ``{"connection_id": ..., "user_id": ..., "route": ..., "node_id": ...}``.
    """
    scope = websocket.scope
    return {
        "connection_id": websocket.id,
        "user_id": websocket.user_id,
        "route": scope.get(ROUTE_SCOPE_KEY) or scope.get("path"),
        "node_id": node_id if node_id is not None else default_node(),
    }


class ConnectionLogFilter(logging.Filter):
    """Gives each record the fields of the connection it was logged for (never drops one).

    A record that already has them (logged with ``extra=fields(websocket)``) keeps them;
    otherwise they come from the connection bound to the logging task (:func:`bind`), and are
    ``None`` outside any connection (``node_id`` excepted).

    Args:
        node_id: The ``node_id`` field (``None``: :func:`~qakeapi.core.counters.default_node`).
    """

    def __init__(self, node_id: str | None = None) -> None:
        super().__init__()
        self.node_id = node_id

    def filter(self, record: logging.LogRecord) -> bool:
        """Add the fields to ``record``; always ``True``."""
        if getattr(record, "connection_id", None) is not None:
            return True
        websocket = _current.get()
        if websocket is not None:
            values = fields(websocket, self.node_id)
        else:
            values = {"connection_id": None, "user_id": None, "route": None, "node_id": self.node_id or default_node()}
        for name, value in values.items():
            setattr(record, name, value)
        return True


class JSONFormatter(logging.Formatter):
    """One JSON object per record, credentials redacted.

    Keys: ``time`` (ISO 8601, UTC), ``level``, ``logger``, ``message``, the connection fields
    (:data:`FIELDS`, when the record has them), any other ``extra`` given to the log call,
    ``exc_info`` (the traceback, when there is one) and ``process``.
    """

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` as a line of JSON."""
        out: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        for name, value in record.__dict__.items():
            if name in _STANDARD or name.startswith("_"):
                continue
            out[name] = _plain(value)
        if record.exc_info:
            out["exc_info"] = redact(self.formatException(record.exc_info))
        out["process"] = record.process
        return json.dumps(out, ensure_ascii=False, default=str)


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return redact(value if isinstance(value, str) else str(value))


_TEXT_FORMAT = (
    "%(asctime)s %(levelname)s %(name)s "
    "[conn=%(connection_id)s user=%(user_id)s route=%(route)s node=%(node_id)s] %(message)s"
)


def configure_logging(
    *,
    json: bool = False,
    level: int = logging.INFO,
    stream: IO[str] | None = None,
    node_id: str | None = None,
) -> logging.Handler:
    """Log to ``stream`` (stderr) from the root logger, every line with its connection fields.

    Adds one handler with :class:`ConnectionLogFilter` and
    :class:`~qakeapi.core.redaction.TokenRedactingFilter` to the root logger, formatted by
    :class:`JSONFormatter` (``json=True``) or as text with the fields in brackets.

    Args:
        json: One JSON object per line instead of text.
        level: The root logger's level.
        stream: Where lines go (``None``: ``sys.stderr``).
        node_id: The ``node_id`` field (``None``: the cluster node's id, else the host name).

    Returns:
        The handler (remove it from the root logger to undo).
    """
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.addFilter(ConnectionLogFilter(node_id))
    handler.addFilter(TokenRedactingFilter())
    handler.setFormatter(JSONFormatter() if json else logging.Formatter(_TEXT_FORMAT))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level)
    return handler
