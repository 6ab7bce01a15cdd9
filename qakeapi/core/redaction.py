"""Keeping credentials out of log lines: a :class:`logging.Filter` that redacts them from records.

ASGI servers log the handshake's request line with its query string: uvicorn writes
``"WebSocket /ws?token=<the whole JWT>" [accepted]`` through the ``uvicorn.error`` logger at
INFO on every WebSocket implementation, so ``--no-access-log`` does not hide it; at DEBUG the
``websockets`` implementation also logs every request header, ``Authorization`` and
``Sec-WebSocket-Protocol`` included. :func:`install_log_redaction` puts a
:class:`TokenRedactingFilter` on those loggers; what it redacts:

* the value of every query parameter named in :data:`REDACTED_QUERY_PARAMS` (case-insensitive),
  wherever ``name=value`` appears after ``?``, ``&``, ``;``, a quote, a space, a comma or an
  opening bracket, or at the start of a text (a raw ``query_string``), in the message or its
  arguments (arguments that are not text, such as the scope dict uvicorn logs at TRACE, are
  redacted as the text ``%s`` would print);
* the credentials after ``Bearer`` (an ``Authorization`` header) and the subprotocol after
  ``bearer,`` (the ``["bearer", token]`` subprotocol pair);
* the token of a Kubernetes-style ``base64url.bearer.authorization.k8s.io.<token>`` subprotocol;
* anything shaped like a JSON Web Token (``eyJ...``, three base64url segments);
* the value of a ``Cookie`` or ``Set-Cookie`` header, written as ``Cookie: <value>`` or as the
  pair ``(b'cookie', b'<value>')`` of a scope, and the argument after a ``Cookie``,
  ``Set-Cookie``, ``Authorization`` or ``Proxy-Authorization`` argument (the ``websockets``
  library logs each request header at DEBUG as ``"< %s: %s", name, value``).

daphne writes its access log to a stream, not through :mod:`logging`; when daphne runs the
application (``daphne.access`` is loaded), :func:`install_log_redaction` also redacts the
request its ``AccessLogGenerator`` writes (an HTTP request's path comes with its query string).

Each is replaced by :data:`REDACTED`. The filter never drops a record and keeps the shape of
``record.args`` (uvicorn's access formatter unpacks it), so log lines stay useful.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable
from typing import Any

__all__ = [
    "DEFAULT_REDACTED_LOGGERS",
    "REDACTED",
    "REDACTED_QUERY_PARAMS",
    "TokenRedactingFilter",
    "install_log_redaction",
    "redact",
]

REDACTED = "[redacted]"
"""What a redacted credential is replaced with."""

REDACTED_QUERY_PARAMS = frozenset(
    {
        "token",
        "access_token",
        "id_token",
        "refresh_token",
        "jwt",
        "auth",
        "authorization",
        "bearer",
        "api_key",
        "apikey",
        "key",
        "secret",
        "password",
        "ticket",
        "session",
        "sig",
        "signature",
    }
)
"""Query parameters whose values are redacted (names compared case-insensitively)."""

DEFAULT_REDACTED_LOGGERS = (
    "uvicorn",
    "uvicorn.error",
    "uvicorn.access",
    "uvicorn.asgi",
    "websockets",
    "websockets.server",
    "websockets.protocol",
    "hypercorn.error",
    "hypercorn.access",
    "daphne",
    "daphne.server",
    "daphne.http_protocol",
    "daphne.ws_protocol",
    "granian.access",
    "_granian",
)
"""The loggers :func:`install_log_redaction` filters by default (the ASGI servers' own)."""

_B64URL = r"[A-Za-z0-9_\-]"
_JWT = re.compile(rf"eyJ{_B64URL}+\.{_B64URL}+\.{_B64URL}*")
_BEARER = re.compile(r"(?i)(\bbearer(?:\s*,\s*|\s+))([^\s,;\"'<>]+)")
_K8S = re.compile(r"(?i)(base64url\.bearer\.authorization\.k8s\.io\.)([A-Za-z0-9_\-=%.]+)")
_COOKIE = re.compile(r"(?i)(\b(?:set-)?cookie(?:\s*:\s*|['\"],\s*b?['\"]))([^\r\n'\"]+)")
_SECRET_HEADERS = frozenset({"cookie", "set-cookie", "authorization", "proxy-authorization"})


def _query_pattern(names: Iterable[str]) -> re.Pattern[str]:
    alternatives = "|".join(sorted((re.escape(name) for name in names), key=len, reverse=True))
    return re.compile(rf"(?i)((?:(?<=[?&;'\"\s,(\[{{])|^)(?:{alternatives})=)([^&#;\s\"']*)")


_QUERY = _query_pattern(REDACTED_QUERY_PARAMS)


def redact(text: str, query: re.Pattern[str] = _QUERY) -> str:
    """Return ``text`` with every credential :mod:`qakeapi.core.redaction` knows replaced.

    Args:
        text: A log message, a request path with its query string, a header value ...
        query: The compiled query-parameter pattern (the default covers
            :data:`REDACTED_QUERY_PARAMS`).

    Returns:
        The text with :data:`REDACTED` in place of each credential; ``text`` itself when
        there was nothing to redact.
    """
    if "=" in text:
        text = query.sub(rf"\1{REDACTED}", text)
    if "eyJ" in text:
        text = _JWT.sub(REDACTED, text)
    lowered = text.lower()
    if "bearer" in lowered:
        text = _K8S.sub(rf"\1{REDACTED}", text)
        text = _BEARER.sub(lambda m: m.group(0) if m.group(2) == REDACTED else m.group(1) + REDACTED, text)
    if "cookie" in lowered:
        text = _COOKIE.sub(rf"\1{REDACTED}", text)
    return text


def _redact_value(value: Any, query: re.Pattern[str]) -> Any:
    if isinstance(value, str):
        return redact(value, query)
    if value is None or isinstance(value, (int, float)):
        return value  # may be formatted with %d or %f: keep the type
    if isinstance(value, bytes):
        try:
            text = value.decode("latin-1")
        except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
            return value
        redacted = redact(text, query)
        return value if redacted == text else redacted.encode("latin-1")
    text = str(value)  # a scope dict, an exception ...: what %s would print
    redacted = redact(text, query)
    return value if redacted == text else redacted


class TokenRedactingFilter(logging.Filter):
    """Redacts credentials from a record's message and arguments; never drops a record.

    Args:
        query_params: Extra query parameter names to redact, on top of
            :data:`REDACTED_QUERY_PARAMS`.
    """

    def __init__(self, query_params: Iterable[str] = ()) -> None:
        super().__init__()
        self.query_params = REDACTED_QUERY_PARAMS | {name.lower() for name in query_params}
        self._query = _query_pattern(self.query_params)

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact ``record`` in place.

        Args:
            record: The record being logged.

        Returns:
            Always ``True``: the record is kept, without credentials.
        """
        if isinstance(record.msg, str):
            record.msg = redact(record.msg, self._query)
        args = record.args
        if isinstance(args, tuple):
            redacted = [_redact_value(arg, self._query) for arg in args]
            for index in range(1, len(args)):  # "< %s: %s", "Cookie", value: the value goes
                name = args[index - 1]
                if isinstance(name, str) and name.strip().lower() in _SECRET_HEADERS:
                    redacted[index] = REDACTED if isinstance(args[index], (str, bytes)) else redacted[index]
            record.args = tuple(redacted)
        elif isinstance(args, dict):
            record.args = {key: _redact_value(value, self._query) for key, value in args.items()}
        return True


def install_log_redaction(
    loggers: Iterable[str] = DEFAULT_REDACTED_LOGGERS, *, query_params: Iterable[str] = ()
) -> TokenRedactingFilter:
    """Put a :class:`TokenRedactingFilter` on ``loggers``; calling it again adds no second filter.

    A filter on a logger sees the records logged through that very logger (not those of its
    children), which is how uvicorn logs: through ``uvicorn.error`` and ``uvicorn.access``
    themselves. Filters survive :func:`logging.config.dictConfig` (``--log-config``), which
    replaces handlers but keeps a logger's filters.

    Args:
        loggers: The logger names to filter (default :data:`DEFAULT_REDACTED_LOGGERS`).
        query_params: Extra query parameter names to redact; a logger that already has a
            filter gets one covering these names too.

    Returns:
        The filter installed (the existing one when every logger already had it).
    """
    extra = frozenset(name.lower() for name in query_params)
    installed: TokenRedactingFilter | None = None
    for name in loggers:
        logger = logging.getLogger(name)
        existing = [f for f in logger.filters if isinstance(f, TokenRedactingFilter)]
        if any(extra <= f.query_params for f in existing):
            installed = installed or next(f for f in existing if extra <= f.query_params)
            continue
        if installed is None or not extra <= installed.query_params:
            installed = TokenRedactingFilter(extra)
        logger.addFilter(installed)
    if installed is None:
        installed = TokenRedactingFilter(extra)
    _redact_daphne_access_log(installed)
    return installed


def _redact_daphne_access_log(installed: TokenRedactingFilter) -> None:
    """Redact the request of daphne's access log (a stream, not a logger) when daphne is loaded."""
    global _daphne_query  # covers the widest set of names asked for so far
    access = sys.modules.get("daphne.access")
    generator = getattr(access, "AccessLogGenerator", None)
    if generator is None:
        return
    if not installed.query_params <= _daphne_names:
        _daphne_names.update(installed.query_params)
        _daphne_query = _query_pattern(_daphne_names)
    if getattr(generator.write_entry, "_qakeapi_redacted", False):
        return
    original = generator.write_entry

    def write_entry(self: Any, host: Any, date: Any, request: str, *args: Any, **kwargs: Any) -> Any:
        return original(self, host, date, redact(request, _daphne_query), *args, **kwargs)

    write_entry._qakeapi_redacted = True  # type: ignore[attr-defined]
    generator.write_entry = write_entry


_daphne_names: set[str] = set(REDACTED_QUERY_PARAMS)
_daphne_query = _QUERY
