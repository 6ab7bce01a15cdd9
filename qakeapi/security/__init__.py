"""Authentication on top of the core: JWT tokens and the WebSocket middleware."""

from qakeapi.security.sessions import AuthCloseCode, AuthSessions, RevocationTransport
from qakeapi.security.tokens import AuthConfig, InsecureKeyWarning, JWTAuthenticator
from qakeapi.security.websocket_auth import WebSocketAuthMiddleware

__all__ = [
    "AuthCloseCode",
    "AuthConfig",
    "AuthSessions",
    "InsecureKeyWarning",
    "JWTAuthenticator",
    "RevocationTransport",
    "WebSocketAuthMiddleware",
]
