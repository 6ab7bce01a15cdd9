"""Settings the example apps read from the environment."""

from __future__ import annotations

import logging
import os
import secrets
from datetime import timedelta

from qakeapi.security.websocket_auth import AuthConfig

__all__ = ["auth_config", "node_id", "redis_url"]

logger = logging.getLogger("examples_app")


def auth_config() -> AuthConfig:
    """The JWT settings: ``QAKEAPI_SECRET_KEY`` (a random per-process key when unset)."""
    secret = os.environ.get("QAKEAPI_SECRET_KEY")
    if not secret:
        logger.warning(
            "QAKEAPI_SECRET_KEY is not set: signing tokens with a random key of this process; "
            "tokens will not verify on other processes or after a restart"
        )
        secret = secrets.token_urlsafe(32)
    return AuthConfig(secret_key=secret, token_expiry=timedelta(hours=1))


def redis_url() -> str:
    """The broadcast backend URL: ``QAKEAPI_REDIS_URL`` (default ``redis://localhost:6379``)."""
    return os.environ.get("QAKEAPI_REDIS_URL", "redis://localhost:6379")


def node_id() -> str:
    """This node's name: ``QAKEAPI_NODE_ID`` (default ``node-1``)."""
    return os.environ.get("QAKEAPI_NODE_ID", "node-1")
