"""JWT issuing and verification (PyJWT) with an explicit algorithm allow-list.

**HMAC keys.** A token signed with an HMAC secret can be tested against guessed keys offline,
as fast as the attacker computes HMACs, from a single token it saw. So :class:`AuthConfig`
refuses (``ValueError``) an HMAC secret shorter than :data:`MIN_HMAC_KEY_BYTES` (12 bytes of
UTF-8), and warns (:class:`InsecureKeyWarning`) below the algorithm's hash output, as RFC 7518
section 3.2 requires: 32 bytes for HS256, 48 for HS384, 64 for HS512. Length does not measure
randomness: generate the key (``python -c "import secrets; print(secrets.token_urlsafe(32))"``).

**Time claims.** ``exp``, ``nbf`` and ``iat`` are NumericDates (RFC 7519 section 2): a JSON
number. A token where one of them is anything else (a numeric string such as ``"9999999999"``,
``true``) is refused with the reason ``"invalid_claim"``; PyJWT alone would read a numeric
string ``exp`` and the connection would then never expire.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from qakeapi.exceptions import AuthenticationError, MissingDependencyError, ValidationError

try:
    import jwt
except ImportError:  # pragma: no cover - depends on the environment
    raise MissingDependencyError("PyJWT", "jwt") from None

__all__ = ["ALLOWED_ALGORITHMS", "MIN_HMAC_KEY_BYTES", "AuthConfig", "InsecureKeyWarning", "JWTAuthenticator"]

logger = logging.getLogger("qakeapi.security")

_HMAC_MIN_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}
MIN_HMAC_KEY_BYTES = 12
"""The shortest HMAC secret :class:`AuthConfig` accepts, in bytes of UTF-8. An 8-byte
printable-ASCII key is one of 95**8 (about 6.6e15): at a billion guesses a second, under 80
days to try them all; a 12-byte one is one of 95**12 (about 5.4e23), some 17 million years at
that rate. Keys from 12 bytes up to the algorithm's hash output are accepted with an
:class:`InsecureKeyWarning` (the 15-byte key of the guide's example keeps running)."""
_TIME_CLAIMS = ("exp", "nbf", "iat")
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
        ValueError: The algorithm is not allowed, the secret is empty, or an HMAC secret is
            shorter than :data:`~qakeapi.security.tokens.MIN_HMAC_KEY_BYTES`.

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
        length = len(self.secret_key.encode())
        generate = f"python -c 'import secrets; print(secrets.token_urlsafe({needed}))'"
        if needed is not None and length < MIN_HMAC_KEY_BYTES:
            raise ValueError(
                f"the secret key is {length} bytes; an {self.algorithm} key shorter than {MIN_HMAC_KEY_BYTES} "
                f"bytes can be guessed from one token, so it is refused; {self.algorithm} needs {needed} random "
                f"bytes (generate one with: {generate})"
            )
        if needed is not None and length < needed:
            warnings.warn(
                f"the secret key is {length} bytes; {self.algorithm} needs at least "
                f"{needed} random bytes to be secure (generate one with: {generate})",
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
        ``iss`` and ``aud`` are checked when present or configured; ``exp``, ``nbf`` and ``iat``
        must be JSON numbers.

        Args:
            token: The encoded token.

        Returns:
            The verified claims.

        Raises:
            AuthenticationError: The token is malformed, forged, expired, not yet valid, has a
                time claim that is not a number (``"invalid_claim"``), or is for another issuer
                or audience; ``reason`` says which.
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
        for name in _TIME_CLAIMS:
            value = claims.get(name, 0)
            if type(value) not in (int, float) or not math.isfinite(value):  # not bool, not a string
                raise AuthenticationError(
                    "invalid_claim",
                    f"token rejected: {name!r} must be a number (a NumericDate), not {type(value).__name__}",
                )
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
