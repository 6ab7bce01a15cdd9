"""Settings the example apps read from the environment."""

from __future__ import annotations

import functools
import logging
import os
import secrets
from datetime import timedelta
from typing import Any

from qakeapi import RateLimit
from qakeapi.security import AuthConfig

__all__ = ["allowed_hosts", "allowed_origins", "auth_config", "auth_options", "handler_options", "node_id", "redis_url"]

logger = logging.getLogger("examples_app")


def _seconds(name: str, default: float | None) -> float | None:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    if value.lower() == "none":
        return None
    seconds = float(value)
    if seconds < 0:
        raise ValueError(f"{name} must not be negative, got {value!r}")
    return seconds


def auth_options() -> dict[str, Any]:
    """The authentication middleware's options from the environment (each with a safe default).

    ``QAKEAPI_AUTH_REQUIRED`` (``1``: refuse handshakes without a valid token; default off, as
    in the guide), ``QAKEAPI_EXPIRY_GRACE`` (seconds, default 10), ``QAKEAPI_AUTH_TIMEOUT``
    (seconds or ``none``, default 60), ``QAKEAPI_MAX_CONNECTIONS_PER_USER`` (default 16).
    """
    cap = os.environ.get("QAKEAPI_MAX_CONNECTIONS_PER_USER", "")
    return {
        "required": os.environ.get("QAKEAPI_AUTH_REQUIRED", "") in ("1", "true", "yes"),
        "expiry_grace": _seconds("QAKEAPI_EXPIRY_GRACE", 10.0),
        "auth_timeout": _seconds("QAKEAPI_AUTH_TIMEOUT", 60.0),
        "max_connections_per_user": int(cap) if cap else 16,
    }


def allowed_origins() -> list[str]:
    """Origins allowed besides the same host: ``QAKEAPI_ALLOWED_ORIGINS``, comma-separated."""
    return [origin.strip() for origin in os.environ.get("QAKEAPI_ALLOWED_ORIGINS", "").split(",") if origin.strip()]


def allowed_hosts() -> list[str]:
    """Host names the same-host origin rule trusts over plain http besides IP addresses and
    localhost: ``QAKEAPI_ALLOWED_HOSTS``, comma-separated (``*.example.com`` for subdomains)."""
    return [host.strip() for host in os.environ.get("QAKEAPI_ALLOWED_HOSTS", "").split(",") if host.strip()]


def handler_options() -> dict[str, Any]:
    """The WebSocket handler's limits from the environment (each with QAKEAPI's safe default).

    ``QAKEAPI_RATE_LIMIT`` (``<messages a second>/<burst>``, or ``none``; default 200/1000),
    ``QAKEAPI_MAX_CONNECTIONS_PER_IP`` (a number or ``none``; default 1024),
    ``QAKEAPI_MAX_MESSAGE_SIZE`` (bytes; default 1 MiB).
    """
    options: dict[str, Any] = {}
    rate = os.environ.get("QAKEAPI_RATE_LIMIT", "")
    if rate.lower() == "none":
        options["rate_limit"] = None
    elif rate:
        per_second, _, burst = rate.partition("/")
        options["rate_limit"] = RateLimit(float(per_second), int(burst or per_second))
    cap = os.environ.get("QAKEAPI_MAX_CONNECTIONS_PER_IP", "")
    if cap:
        options["max_connections_per_ip"] = None if cap.lower() == "none" else int(cap)
    size = os.environ.get("QAKEAPI_MAX_MESSAGE_SIZE", "")
    if size:
        options["max_message_size"] = int(size)
    return options


def auth_config() -> AuthConfig:
    """The JWT settings: ``QAKEAPI_SECRET_KEY`` (a random per-process key when unset) and
    ``QAKEAPI_TOKEN_EXPIRY`` (seconds, default one hour)."""
    secret = os.environ.get("QAKEAPI_SECRET_KEY") or _process_secret()
    expiry = _seconds("QAKEAPI_TOKEN_EXPIRY", 3600.0) or 3600.0
    return AuthConfig(secret_key=secret, token_expiry=timedelta(seconds=expiry))


@functools.cache
def _process_secret() -> str:
    """One random key for the whole process (every example app shares it), announced once."""
    logger.warning(
        "QAKEAPI_SECRET_KEY is not set: signing tokens with a random key of this process; "
        "tokens will not verify on other processes or after a restart"
    )
    return secrets.token_urlsafe(32)


def redis_url(default: str = "redis://localhost:6379") -> str:
    """The broadcast backend URL: ``QAKEAPI_REDIS_URL``, else ``default`` (an app that runs alone
    without it passes a ``memory://`` URL)."""
    return os.environ.get("QAKEAPI_REDIS_URL", default)


def node_id(default: str = "node-1") -> str:
    """This node's name: ``QAKEAPI_NODE_ID``, else ``default``."""
    return os.environ.get("QAKEAPI_NODE_ID", default)
