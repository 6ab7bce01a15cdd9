"""JWT issuing and verification (PyJWT) with an explicit algorithm allow-list."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from qakeapi.exceptions import AuthenticationError, MissingDependencyError, ValidationError

try:
    import jwt
except ImportError:  # pragma: no cover - depends on the environment
    raise MissingDependencyError("PyJWT", "jwt") from None

__all__ = ["ALLOWED_ALGORITHMS", "AuthConfig", "InsecureKeyWarning", "JWTAuthenticator"]

logger = logging.getLogger("qakeapi.security")

_HMAC_MIN_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}
ALLOWED_ALGORITHMS = frozenset(
    {*_HMAC_MIN_BYTES, "RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512", "EdDSA"}
)
"""The signing algorithms :class:`AuthConfig` accepts. ``none`` is never among them."""


class InsecureKeyWarning(UserWarning):
    """The HMAC secret is shorter than its algorithm's hash output (RFC 7518 section 3.2)."""


@dataclass(frozen=True)
class AuthConfig:
    """Settings for issuing and verifying tokens.

    Args:
        secret_key: The HMAC secret, or for asymmetric algorithms the private key (PEM).
        algorithm: The one algorithm tokens are signed and verified with.
        token_expiry: How long an issued token is valid.
        issuer: When set, tokens carry and must carry this ``iss``.
        audience: When set, tokens carry and must carry this ``aud``.
        leeway: Clock skew tolerated when checking ``exp`` and ``nbf``.
        public_key: For asymmetric algorithms, the key that verifies (PEM); defaults to
            ``secret_key``.

    Raises:
        ValueError: The algorithm is not allowed or the secret is empty.

    Warns:
        InsecureKeyWarning: An HMAC secret shorter than the algorithm needs.
    """

    secret_key: str = field(repr=False)
    algorithm: str = "HS256"
    token_expiry: timedelta = timedelta(hours=1)
    issuer: str | None = None
    audience: str | None = None
    leeway: timedelta = timedelta(0)
    public_key: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.algorithm not in ALLOWED_ALGORITHMS:
            raise ValueError(f"algorithm {self.algorithm!r} is not allowed; use one of {sorted(ALLOWED_ALGORITHMS)}")
        if not self.secret_key:
            raise ValueError("secret_key must not be empty")
        if self.token_expiry <= timedelta(0):
            raise ValueError("token_expiry must be positive")
        needed = _HMAC_MIN_BYTES.get(self.algorithm)
        if needed is not None and len(self.secret_key.encode()) < needed:
            warnings.warn(
                f"the secret key is {len(self.secret_key.encode())} bytes; {self.algorithm} needs at least "
                f"{needed} random bytes to be secure (generate one with: python -c "
                f"'import secrets; print(secrets.token_urlsafe({needed}))')",
                InsecureKeyWarning,
                stacklevel=3,
            )

    @property
    def short_key(self) -> bool:
        """Whether the HMAC secret is shorter than the algorithm needs (a warning was issued)."""
        needed = _HMAC_MIN_BYTES.get(self.algorithm)
        return needed is not None and len(self.secret_key.encode()) < needed


_REASONS: list[tuple[type[Exception], str]] = [
    (jwt.ExpiredSignatureError, "expired"),
    (jwt.ImmatureSignatureError, "not_yet_valid"),
    (jwt.InvalidSignatureError, "invalid_signature"),
    (jwt.InvalidAlgorithmError, "invalid_algorithm"),
    (jwt.InvalidAudienceError, "invalid_audience"),
    (jwt.InvalidIssuerError, "invalid_issuer"),
    (jwt.MissingRequiredClaimError, "missing_claim"),
    (jwt.DecodeError, "malformed"),
    (jwt.InvalidTokenError, "invalid"),
]


class JWTAuthenticator:
    """Issues and verifies JSON Web Tokens.

    Args:
        config: The settings.
    """

    def __init__(self, config: AuthConfig) -> None:
        self.config = config
        self._verify_key = config.public_key or config.secret_key

    def create_token(self, user_id: str | int | None, **claims: Any) -> str:
        """Issue a token for ``user_id``.

        The token carries ``sub`` (the user id as a string), ``iat``, ``nbf``, ``exp``, and
        ``iss``/``aud`` when configured; ``claims`` are added (and may override the defaults).

        Args:
            user_id: The user the token is for.
            **claims: Extra claims.

        Returns:
            The encoded token.

        Raises:
            ValidationError: ``user_id`` is missing or empty (a ``ValueError``; 400 over HTTP).
        """
        if user_id is None or isinstance(user_id, bool) or not isinstance(user_id, (str, int)) or user_id == "":
            raise ValidationError("user_id must be a non-empty string or an integer")
        now = datetime.now(timezone.utc)
        payload: dict[str, Any] = {"sub": str(user_id), "iat": now, "nbf": now, "exp": now + self.config.token_expiry}
        if self.config.issuer is not None:
            payload["iss"] = self.config.issuer
        if self.config.audience is not None:
            payload["aud"] = self.config.audience
        payload.update(claims)
        if self.config.short_key:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", jwt.InsecureKeyLengthWarning)
                return jwt.encode(payload, self.config.secret_key, algorithm=self.config.algorithm)
        return jwt.encode(payload, self.config.secret_key, algorithm=self.config.algorithm)

    def verify_token(self, token: str) -> dict[str, Any]:
        """Verify ``token`` and return its claims.

        Only the configured algorithm is accepted; ``exp`` and ``sub`` are required; ``nbf``,
        ``iss`` and ``aud`` are checked when present or configured.

        Args:
            token: The encoded token.

        Returns:
            The verified claims.

        Raises:
            AuthenticationError: The token is malformed, forged, expired, not yet valid, or
                for another issuer or audience; ``reason`` says which.
        """
        options = {"require": ["exp", "sub"]}
        try:
            if self.config.short_key:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", jwt.InsecureKeyLengthWarning)
                    claims = self._decode(token, options)
            else:
                claims = self._decode(token, options)
        except jwt.InvalidTokenError as exc:
            reason = next(r for kind, r in _REASONS if isinstance(exc, kind))
            raise AuthenticationError(reason, f"token rejected: {reason.replace('_', ' ')} ({exc})") from None
        if not isinstance(claims.get("sub"), str) or not claims["sub"]:
            raise AuthenticationError("missing_claim", "token rejected: 'sub' must be a non-empty string")
        return claims

    def _decode(self, token: str, options: Any) -> dict[str, Any]:
        result: dict[str, Any] = jwt.decode(
            token,
            self._verify_key,
            algorithms=[self.config.algorithm],
            issuer=self.config.issuer,
            audience=self.config.audience,
            leeway=self.config.leeway,
            options=options,
        )
        return result
