"""Where a WebSocket handshake carries its token, in this order of precedence.

1. the ``token`` query parameter (or another name: ``query_param``);
2. an ``Authorization: Bearer <token>`` header;
3. the subprotocol pair ``bearer, <token>`` (what a browser can send:
   ``new WebSocket(url, ["bearer", token])``);
4. a Kubernetes-style subprotocol ``base64url.bearer.authorization.k8s.io.<token>``, the
   token base64url-encoded without padding (next to the subprotocol the client really speaks).

Token carriers are never selected as the connection's subprotocol (:func:`is_token_carrier`).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

__all__ = ["BEARER_SUBPROTOCOL", "K8S_SUBPROTOCOL_PREFIX", "extract_token", "is_token_carrier", "offers_bearer_token"]

BEARER_SUBPROTOCOL = "bearer"
"""The subprotocol that announces a token as the next offered subprotocol."""
K8S_SUBPROTOCOL_PREFIX = "base64url.bearer.authorization.k8s.io."
"""The prefix of a Kubernetes-style token subprotocol; the base64url token follows it."""


def _k8s_token(subprotocol: str) -> str | None:
    encoded = subprotocol[len(K8S_SUBPROTOCOL_PREFIX) :]
    if not encoded:
        return None
    try:
        token = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode("ascii")
    except (binascii.Error, ValueError):
        return None
    return token or None


def extract_token(
    query: dict[str, str] | Any, headers: Any, subprotocols: list[str], query_param: str = "token"
) -> tuple[str | None, str | None]:
    """Find the token of a handshake.

    Args:
        query: The query parameters (a mapping).
        headers: The request headers (a case-insensitive mapping).
        subprotocols: The offered subprotocols.
        query_param: The query parameter that carries the token.

    Returns:
        ``(token, source)`` where ``source`` is ``"query"``, ``"header"``, ``"subprotocol"``
        (the ``bearer`` pair) or ``"k8s_subprotocol"``; ``(None, None)`` when there is no
        token. A Kubernetes-style subprotocol that does not decode is no token.
    """
    token = query.get(query_param)
    if token:
        return token, "query"
    authorization = headers.get("authorization", "")
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip(), "header"
    if offers_bearer_token(subprotocols):
        return subprotocols[subprotocols.index(BEARER_SUBPROTOCOL) + 1], "subprotocol"
    for subprotocol in subprotocols:
        if subprotocol.startswith(K8S_SUBPROTOCOL_PREFIX):
            k8s = _k8s_token(subprotocol)
            if k8s is not None:
                return k8s, "k8s_subprotocol"
    return None, None


def is_token_carrier(subprotocols: list[str], index: int) -> bool:
    """Whether the offered subprotocol at ``index`` carries a token (never to be selected).

    Args:
        subprotocols: The offered subprotocols.
        index: The position to test.

    Returns:
        ``True`` for ``bearer``'s following token and for a Kubernetes-style token subprotocol.
    """
    if subprotocols[index].startswith(K8S_SUBPROTOCOL_PREFIX):
        return True
    if BEARER_SUBPROTOCOL not in subprotocols:
        return False
    return subprotocols.index(BEARER_SUBPROTOCOL) == index - 1


def offers_bearer_token(subprotocols: list[str]) -> bool:
    """Whether the client offered the ``bearer`` subprotocol followed by a token."""
    if BEARER_SUBPROTOCOL not in subprotocols:
        return False
    index = subprotocols.index(BEARER_SUBPROTOCOL)
    return index + 1 < len(subprotocols) and bool(subprotocols[index + 1])
