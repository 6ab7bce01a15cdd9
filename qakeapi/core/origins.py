"""Which web origins may open a WebSocket: a pure policy checked before the upgrade.

Browsers attach cookies and HTTP authentication to a WebSocket handshake whatever page starts
it, and the same-origin policy does not apply to WebSockets: without a check, any site can
open a connection in the name of a logged-in user (cross-site WebSocket hijacking). Browsers
always send an ``Origin`` header on the handshake; :class:`OriginPolicy` decides from it.

The rules, in order (:meth:`OriginPolicy.check`):

1. More than one ``Origin`` header: refused (``"ambiguous"``).
2. No ``Origin`` header: allowed by default (``allow_missing=True``). Browsers always send one,
   so a handshake without it comes from a non-browser client (a CLI, a server, a test), which
   cannot be hijacked this way; set ``allow_missing=False`` to require it.
3. ``Origin: null`` (sandboxed iframes, ``file://`` pages, some redirects): refused by default
   (``allow_null=False``): many unrelated documents share that origin.
4. An origin that is not ``scheme://host[:port]`` with scheme ``http`` or ``https`` (a path,
   user info, another scheme, a bad port): refused (``"malformed"``).
5. An origin on the allow-list: allowed. Entries match exactly on scheme, host and port (the
   default port of the scheme when none is written); an entry ``https://*.example.com``
   matches every subdomain of ``example.com`` (not ``example.com`` itself), on that scheme and
   port only.
6. Same host (``same_host=True``, the default): allowed when the origin's host and port equal
   the ``Host`` header's (a ``Host`` without a port means the default port of the origin's
   scheme). On a ``wss`` connection the origin must be ``https``. The ``Host`` header is
   trusted only where another site cannot have chosen it (DNS rebinding: a page of
   ``http://evil.example:8000`` whose name the attacker re-points at your server's address
   sends ``Origin`` and ``Host`` that match): an ``https`` origin (the browser checked the
   server's certificate for that name, and refuses ``ws://`` from an ``https`` page), an IP
   address, ``localhost`` and its subdomains, or a host in ``allowed_hosts``
   (``"*.example.com"`` for subdomains, ``"*"`` for any host: the rule without this check).
   A matching origin on another host is refused with ``"host_not_allowed"``.
7. Anything else: refused (``"not_allowed"``).

Hosts compare case-insensitively; a trailing dot is ignored.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

__all__ = ["DEFAULT_ORIGIN_POLICY", "Origin", "OriginDecision", "OriginPolicy", "OriginReason"]

_DEFAULT_PORTS = {"http": 80, "https": 443}


class OriginReason(str, enum.Enum):
    """Why an origin was allowed or refused."""

    LISTED = "listed"
    SAME_HOST = "same_host"
    MISSING_ALLOWED = "missing_allowed"
    NULL_ALLOWED = "null_allowed"
    MISSING = "missing"
    NULL = "null"
    AMBIGUOUS = "ambiguous"
    MALFORMED = "malformed"
    NOT_ALLOWED = "not_allowed"
    HOST_NOT_ALLOWED = "host_not_allowed"

    @property
    def advice(self) -> str:
        """What to write about a refusal for this reason, or ``""``."""
        if self is OriginReason.HOST_NOT_ALLOWED:
            return (
                "a plain-http origin's host is trusted when it is an IP address, localhost or listed: "
                "Application(origins=OriginPolicy(allowed_hosts=['chat.example.com']))"
            )
        return ""


@dataclass(frozen=True)
class Origin:
    """A parsed web origin: scheme, host and port (the scheme's default when not written).

    Attributes:
        scheme: ``"http"`` or ``"https"``.
        host: The lower-cased host name or IP address (IPv6 without brackets).
        port: The port.
    """

    scheme: str
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Origin:
        """Parse ``scheme://host[:port]``.

        Args:
            text: The origin, as in an ``Origin`` header or an allow-list entry.

        Returns:
            The origin.

        Raises:
            ValueError: ``text`` is not an ``http``/``https`` origin without path, query,
                fragment or user info.
        """
        try:
            parts = urlsplit(text.strip())
            port = parts.port
        except ValueError as exc:
            raise ValueError(f"{text!r} is not an origin: {exc}") from None
        scheme = parts.scheme.lower()
        if scheme not in _DEFAULT_PORTS:
            raise ValueError(f"{text!r} is not an origin: the scheme must be http or https")
        if parts.path not in ("", "/") or parts.query or parts.fragment or "@" in parts.netloc:
            raise ValueError(f"{text!r} is not an origin: expected scheme://host[:port] and nothing else")
        host = (parts.hostname or "").rstrip(".")
        if not host:
            raise ValueError(f"{text!r} is not an origin: it has no host")
        return cls(scheme, host.lower(), port if port is not None else _DEFAULT_PORTS[scheme])

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = "" if _DEFAULT_PORTS[self.scheme] == self.port else f":{self.port}"
        return f"{self.scheme}://{host}{port}"


@dataclass(frozen=True)
class OriginDecision:
    """The outcome of :meth:`OriginPolicy.check`.

    Attributes:
        allowed: Whether the handshake may proceed.
        reason: Why.
        origin: The ``Origin`` header as sent (``None`` when there was none), for the log.
    """

    allowed: bool
    reason: OriginReason
    origin: str | None


def _header_values(scope: Any, name: bytes) -> list[str]:
    return [value.decode("latin-1") for key, value in scope.get("headers", ()) if key.lower() == name]


def _host_and_port(host_header: str, default_port: int) -> tuple[str, int] | None:
    try:
        parts = urlsplit(f"//{host_header.strip()}")
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname:
        return None
    return parts.hostname.rstrip(".").lower(), port if port is not None else default_port


class OriginPolicy:
    """Decides from a handshake's ``Origin`` header whether it may proceed (see the module).

    Args:
        allowed: Origins allowed besides the same host, as ``scheme://host[:port]``; a host
            may start with ``*.`` to allow its subdomains.
        same_host: Allow an origin whose host and port are the ``Host`` header's.
        allow_missing: Allow a handshake without an ``Origin`` header (non-browser clients).
        allow_null: Allow ``Origin: null``.
        allowed_hosts: Host names the same-host rule trusts over plain ``http`` besides IP
            addresses and ``localhost`` (see the module); ``"*.example.com"`` trusts the
            subdomains of ``example.com``, ``"*"`` every host.

    Raises:
        ValueError: An ``allowed`` entry is not an origin.
    """

    def __init__(
        self,
        allowed: Iterable[str] = (),
        *,
        same_host: bool = True,
        allow_missing: bool = True,
        allow_null: bool = False,
        allowed_hosts: Iterable[str] = (),
    ) -> None:
        self.same_host = same_host
        hosts = {host.strip().rstrip(".").lower() for host in allowed_hosts}
        self.allowed_hosts: frozenset[str] = frozenset(h for h in hosts if not h.startswith("*."))
        self.allowed_host_suffixes: tuple[str, ...] = tuple(sorted(h[1:] for h in hosts if h.startswith("*.")))
        self.allow_missing = allow_missing
        self.allow_null = allow_null
        exact: set[Origin] = set()
        wildcards: set[Origin] = set()
        for entry in allowed:
            wildcard = "://*." in entry
            origin = Origin.parse(entry.replace("://*.", "://", 1) if wildcard else entry)
            (wildcards if wildcard else exact).add(origin)
        self.allowed: frozenset[Origin] = frozenset(exact)
        self.allowed_subdomains: frozenset[Origin] = frozenset(wildcards)

    def __repr__(self) -> str:
        listed = sorted(
            [str(o) for o in self.allowed] + [str(o).replace("://", "://*.") for o in self.allowed_subdomains]
        )
        hosts = sorted(self.allowed_hosts) + ["*" + suffix for suffix in self.allowed_host_suffixes]
        return (
            f"OriginPolicy({listed!r}, same_host={self.same_host}, allow_missing={self.allow_missing}, "
            f"allow_null={self.allow_null}" + (f", allowed_hosts={hosts!r})" if hosts else ")")
        )

    def trusts_host(self, origin: Origin) -> bool:
        """Whether the same-host rule may trust a ``Host`` header equal to ``origin``'s host.

        Args:
            origin: The origin, whose host and port equal the ``Host`` header's.

        Returns:
            ``True`` for an ``https`` origin, an IP address, ``localhost`` (and its subdomains)
            and a host of ``allowed_hosts``.
        """
        host = origin.host
        if origin.scheme == "https" or host == "localhost" or host.endswith(".localhost"):
            return True
        if "*" in self.allowed_hosts or host in self.allowed_hosts:
            return True
        if any(host.endswith(suffix) for suffix in self.allowed_host_suffixes):
            return True
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return False
        return True

    def is_listed(self, origin: Origin) -> bool:
        """Whether ``origin`` is on the allow-list (exactly, or as a listed subdomain).

        Args:
            origin: The origin.

        Returns:
            ``True`` when listed.
        """
        if origin in self.allowed:
            return True
        return any(
            origin.scheme == parent.scheme and origin.port == parent.port and origin.host.endswith("." + parent.host)
            for parent in self.allowed_subdomains
        )

    def check(self, scope: Any) -> OriginDecision:
        """Decide whether the handshake of ``scope`` may proceed. Pure: reads only ``scope``.

        Args:
            scope: The ASGI ``websocket`` (or ``http``) scope.

        Returns:
            The decision, with the reason and the origin as sent.
        """
        values = _header_values(scope, b"origin")
        if not values:
            reason = OriginReason.MISSING_ALLOWED if self.allow_missing else OriginReason.MISSING
            return OriginDecision(self.allow_missing, reason, None)
        if len(values) > 1:
            return OriginDecision(False, OriginReason.AMBIGUOUS, ", ".join(values))
        sent = values[0]
        if sent.strip() == "null":
            return OriginDecision(
                self.allow_null, OriginReason.NULL_ALLOWED if self.allow_null else OriginReason.NULL, sent
            )
        try:
            origin = Origin.parse(sent)
        except ValueError:
            return OriginDecision(False, OriginReason.MALFORMED, sent)
        if self.is_listed(origin):
            return OriginDecision(True, OriginReason.LISTED, sent)
        if self.same_host and self._same_host(origin, scope):
            if not self.trusts_host(origin):
                return OriginDecision(False, OriginReason.HOST_NOT_ALLOWED, sent)
            return OriginDecision(True, OriginReason.SAME_HOST, sent)
        return OriginDecision(False, OriginReason.NOT_ALLOWED, sent)

    @staticmethod
    def _same_host(origin: Origin, scope: Any) -> bool:
        hosts = _header_values(scope, b"host")
        if len(hosts) != 1:
            return False
        if scope.get("scheme") in ("wss", "https") and origin.scheme != "https":
            return False
        target = _host_and_port(hosts[0], _DEFAULT_PORTS[origin.scheme])
        return target == (origin.host, origin.port)


DEFAULT_ORIGIN_POLICY = OriginPolicy()
"""The policy of an :class:`~qakeapi.Application` nobody configured: same host and port only
(a plain-``http`` host trusted when it is an IP address or ``localhost``), no ``null``, a
missing ``Origin`` allowed."""
