"""Guide section "WebSocket with Authentication": JWT-authenticated WebSocket connections.

Run: ``QAKEAPI_SECRET_KEY=... uvicorn examples_app.auth_app:app``; ``POST /token`` with
``{"name": ...}`` answers ``{"token": ...}``, as in the tutorial.

Beyond the guide: the middleware's and the handler's options come from the environment
(:func:`examples_app.settings.auth_options`, :func:`examples_app.settings.handler_options`);
the app speaks the ``chat`` subprotocol when the client offers it (next to a ``bearer`` token,
say); handshakes from another site are refused with 403 by the application's origin policy
(:class:`~qakeapi.core.origins.OriginPolicy`: the same host, plus ``QAKEAPI_ALLOWED_ORIGINS``;
a plain-http host name other than localhost must be listed in ``QAKEAPI_ALLOWED_HOSTS``);
and ``POST /api/revoke`` with ``Authorization: Bearer <token>`` signs that user out everywhere
(closes their connections with 4003 and refuses their older tokens).

Several nodes: with ``QAKEAPI_REDIS_URL`` set (and the same ``QAKEAPI_SECRET_KEY`` everywhere),
each process joins the cluster on that Redis and a revocation on any node closes the user's
connections on every node. Without it the app is one node (``memory://``).
"""

from __future__ import annotations

import logging
from typing import Any

from examples_app.settings import (
    allowed_hosts,
    allowed_origins,
    auth_config,
    auth_options,
    handler_options,
    node_id,
    redis_url,
)
from qakeapi import (
    Application,
    AuthenticationError,
    ClusterUnavailableError,
    HTTPException,
    OriginPolicy,
    Request,
    ValidationError,
    WebSocket,
    WebSocketHandler,
    create_clustered_manager,
)
from qakeapi.security import JWTAuthenticator, WebSocketAuthMiddleware

__all__ = ["app", "auth_middleware", "authenticator", "cluster", "issue_token", "origin_policy", "ws_handler"]

logger = logging.getLogger("examples_app")

origin_policy = OriginPolicy(allowed_origins(), allowed_hosts=allowed_hosts())
app = Application(origins=origin_policy)
app.expose_metrics()  # Prometheus metrics at GET /metrics (the metrics extra)
ws_handler = WebSocketHandler(**handler_options())
cluster = create_clustered_manager(ws_handler, redis_url=redis_url("memory://auth_app"), node_id=node_id())
app.on_startup(cluster.start)
app.on_shutdown(cluster.close)
authenticator = JWTAuthenticator(auth_config())
auth_middleware = WebSocketAuthMiddleware(
    authenticator, subprotocols=("chat",), transport=cluster, handler=cluster, **auth_options()
)


@ws_handler.on_connect
async def handle_connect(websocket: WebSocket) -> None:
    if websocket.authenticated:
        await websocket.send_json({"type": "welcome", "message": f"Welcome, {websocket.user_id}!"})
    else:
        await websocket.send_json(
            {"type": "auth_required", "message": "Please authenticate", "reason": websocket.auth_error}
        )


@ws_handler.on_message
async def handle_message(websocket: WebSocket, message: Any) -> None:
    if not websocket.authenticated:
        await websocket.send_json({"type": "error", "message": "Authentication required"})
        return
    if isinstance(message, bytes):  # JSON cannot carry bytes: say so, rather than fail in send_json
        await websocket.send_json({"type": "error", "message": "Binary messages are not supported; send JSON text"})
        return
    await websocket.send_json({"type": "message", "data": message, "user": websocket.user_id})


@app.websocket("/ws")
async def websocket_endpoint(websocket: WebSocket) -> None:
    await auth_middleware(websocket, cluster.handle_connection)


async def issue_token(request: Request, authenticator: JWTAuthenticator, field: str = "name") -> dict[str, str]:
    """Answer ``{"name": ...}`` with ``{"token": ...}``; anything else is a 400.

    A demo, as in the tutorial: it issues a token for any name without asking for a password
    (the authentication how-to checks one). ``field`` names the key the name comes in: the
    guide's own endpoint, which :mod:`examples_app.websocket_app` serves for the guide's tests,
    reads ``user_id``.
    """
    data = await request.json()
    if not isinstance(data, dict):
        raise ValidationError(f"expected a JSON object with {field!r}")
    return {"token": authenticator.create_token(data.get(field))}


@app.post("/token")
async def token(request: Request) -> dict[str, str]:
    return await issue_token(request, authenticator)


@app.post("/api/revoke")
async def revoke(request: Request) -> dict[str, object]:
    """Sign the bearer of a valid token out everywhere: ``{"user_id": ..., "closed": n}``."""
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    token = credentials.strip()
    challenge = {"WWW-Authenticate": 'Bearer realm="qakeapi"'}
    if scheme.lower() != "bearer" or not token:
        raise HTTPException(401, "expected Authorization: Bearer <token>", challenge)
    try:
        claims = authenticator.verify_token(token)
    except AuthenticationError as exc:
        raise HTTPException(401, f"token rejected: {exc.reason}", challenge) from None
    if auth_middleware.sessions.is_revoked(claims["sub"], claims):
        raise HTTPException(401, "token rejected: revoked", challenge)
    user = claims["sub"]
    try:
        closed = await auth_middleware.revoke(user, "signed out")
    except ClusterUnavailableError as exc:  # this node's connections are closed; the others' are not
        raise HTTPException(503, f"revoked on this node only: {exc}") from None
    return {"user_id": user, "closed": closed}
