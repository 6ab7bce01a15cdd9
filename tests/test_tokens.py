"""Tests for qakeapi.security.tokens: the algorithm allow-list, key checks, issuing and verifying."""

from __future__ import annotations

import base64
import json
import time
import warnings
from datetime import timedelta
from typing import Any

import jwt
import pytest

from qakeapi.exceptions import AuthenticationError, QakeAPIError, ValidationError
from qakeapi.security.tokens import (
    ALLOWED_ALGORITHMS,
    MIN_HMAC_KEY_BYTES,
    AuthConfig,
    InsecureKeyWarning,
    JWTAuthenticator,
)

KEY = "k" * 32
OTHER_KEY = "o" * 32


def authenticator(**settings: Any) -> JWTAuthenticator:
    settings.setdefault("secret_key", KEY)
    return JWTAuthenticator(AuthConfig(**settings))


def craft(claims: dict[str, Any], key: str = KEY, algorithm: str = "HS256") -> str:
    """Sign ``claims`` with PyJWT directly, bypassing :class:`JWTAuthenticator`."""
    return jwt.encode(claims, key, algorithm=algorithm)


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def rejection(auth: JWTAuthenticator, token: str) -> AuthenticationError:
    with pytest.raises(AuthenticationError) as info:
        auth.verify_token(token)
    return info.value


def now() -> int:
    return int(time.time())


# -- AuthConfig -----------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["none", "None", "NONE", "HS1", "hs256", "RS1024", ""])
def test_config_refuses_algorithms_outside_the_allow_list(algorithm: str) -> None:
    with pytest.raises(ValueError, match="is not allowed") as info:
        AuthConfig(secret_key=KEY, algorithm=algorithm)
    assert repr(algorithm) in str(info.value)


def test_allow_list_never_contains_none() -> None:
    assert not {"none", "None", "NONE"} & ALLOWED_ALGORITHMS
    assert {"HS256", "HS384", "HS512"} <= ALLOWED_ALGORITHMS


def test_config_refuses_an_empty_secret() -> None:
    with pytest.raises(ValueError, match="secret_key must not be empty"):
        AuthConfig(secret_key="")


@pytest.mark.parametrize("expiry", [timedelta(0), timedelta(seconds=-1)])
def test_config_refuses_a_non_positive_expiry(expiry: timedelta) -> None:
    with pytest.raises(ValueError, match="token_expiry must be positive"):
        AuthConfig(secret_key=KEY, token_expiry=expiry)


@pytest.mark.parametrize(
    ("algorithm", "key", "have", "need"),
    [
        ("HS256", "k" * 15, 15, 32),
        ("HS256", "k" * 31, 31, 32),
        ("HS384", "k" * 47, 47, 48),
        ("HS512", "k" * 63, 63, 64),
        ("HS256", "é" * 10, 20, 32),  # bytes of UTF-8 are counted, not characters
    ],
)
def test_short_hmac_key_warns_with_the_byte_counts(algorithm: str, key: str, have: int, need: int) -> None:
    with pytest.warns(InsecureKeyWarning, match=f"the secret key is {have} bytes; {algorithm} needs at least {need}"):
        config = AuthConfig(secret_key=key, algorithm=algorithm)
    assert config.short_key is True


def test_short_key_warning_points_at_the_caller() -> None:
    with pytest.warns(InsecureKeyWarning) as record:
        AuthConfig(secret_key="your-secret-key")
    assert len(record) == 1
    assert record[0].filename == __file__


@pytest.mark.parametrize(
    ("algorithm", "key"),
    [("HS256", "k" * 32), ("HS256", "é" * 16), ("HS384", "k" * 48), ("HS512", "k" * 64), ("HS256", "k" * 100)],
)
def test_long_enough_key_does_not_warn(algorithm: str, key: str) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        config = AuthConfig(secret_key=key, algorithm=algorithm)
    assert caught == []
    assert config.short_key is False


def test_config_repr_hides_the_secret() -> None:
    config = AuthConfig(secret_key="a-very-secret-value-that-is-long-enough")
    assert "a-very-secret-value" not in repr(config)


# -- issuing and verifying ------------------------------------------------------------------


def test_round_trip_carries_sub_times_and_extra_claims() -> None:
    auth = authenticator(token_expiry=timedelta(minutes=10))
    before = now()
    token = auth.create_token(42, role="admin", rooms=["a", "b"])
    after = now()

    claims = auth.verify_token(token)

    assert claims["sub"] == "42"
    assert claims["role"] == "admin"
    assert claims["rooms"] == ["a", "b"]
    assert before <= claims["iat"] <= after + 1
    assert claims["nbf"] == claims["iat"]
    assert claims["exp"] - claims["iat"] == 600
    assert "iss" not in claims
    assert "aud" not in claims


def test_string_user_id_round_trips_unchanged() -> None:
    auth = authenticator()
    assert auth.verify_token(auth.create_token("alice"))["sub"] == "alice"


def test_user_id_zero_is_a_valid_user() -> None:
    auth = authenticator()
    assert auth.verify_token(auth.create_token(0))["sub"] == "0"


def test_issuer_and_audience_are_issued_and_checked() -> None:
    auth = authenticator(issuer="qakeapi", audience="chat")
    claims = auth.verify_token(auth.create_token("u1"))
    assert claims["iss"] == "qakeapi"
    assert claims["aud"] == "chat"


def test_extra_claims_may_override_defaults() -> None:
    auth = authenticator()
    exp = now() + 30
    assert auth.verify_token(auth.create_token("u1", exp=exp))["exp"] == exp


@pytest.mark.parametrize("user_id", [None, "", True, False, 1.5, ["u"]])
def test_create_token_refuses_missing_or_invalid_user_ids(user_id: Any) -> None:
    auth = authenticator()
    with pytest.raises(ValidationError, match="user_id must be a non-empty string or an integer") as info:
        auth.create_token(user_id)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, QakeAPIError)
    assert info.value.status_code == 400


# -- rejections -----------------------------------------------------------------------------


def test_expired_token_is_rejected() -> None:
    auth = authenticator()
    error = rejection(auth, craft({"sub": "u", "exp": now() - 10}))
    assert error.reason == "expired"
    assert str(error).startswith("token rejected: expired")


def test_token_not_yet_valid_is_rejected() -> None:
    auth = authenticator()
    error = rejection(auth, craft({"sub": "u", "exp": now() + 600, "nbf": now() + 300}))
    assert error.reason == "not_yet_valid"


def test_token_signed_with_another_key_is_rejected() -> None:
    token = authenticator(secret_key=OTHER_KEY).create_token("u")
    error = rejection(authenticator(), token)
    assert error.reason == "invalid_signature"
    assert token not in str(error)


def test_tampered_payload_is_rejected() -> None:
    auth = authenticator()
    header, _payload, signature = auth.create_token("alice").split(".")
    forged = f"{header}.{b64({'sub': 'admin', 'exp': now() + 600})}.{signature}"
    assert rejection(auth, forged).reason == "invalid_signature"


@pytest.mark.parametrize("token", ["abc", "a.b.c", "", "...", "a.b", "a.b.c.d"])
def test_malformed_token_is_rejected(token: str) -> None:
    error = rejection(authenticator(), token)
    assert error.reason == "malformed"


def test_correctly_signed_token_with_a_non_json_payload_is_malformed() -> None:
    token = jwt.api_jws.encode(b"not json", KEY, algorithm="HS256")
    assert rejection(authenticator(), token).reason == "malformed"


def test_alg_none_token_from_pyjwt_is_rejected() -> None:
    token = jwt.encode({"sub": "admin", "exp": now() + 600}, "", algorithm="none")
    assert token.endswith(".")  # no signature at all
    assert rejection(authenticator(), token).reason == "invalid_algorithm"


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_hand_made_unsigned_token_is_rejected(alg: str) -> None:
    token = f"{b64({'alg': alg, 'typ': 'JWT'})}.{b64({'sub': 'admin', 'exp': now() + 600})}."
    assert rejection(authenticator(), token).reason == "invalid_algorithm"


@pytest.mark.parametrize("algorithm", ["HS384", "HS512"])
def test_algorithm_confusion_is_rejected(algorithm: str) -> None:
    # Signed with the right key, but not with the one configured algorithm.
    token = craft({"sub": "u", "exp": now() + 600}, key="k" * 64, algorithm=algorithm)
    auth = authenticator(secret_key="k" * 64)
    assert rejection(auth, token).reason == "invalid_algorithm"


def test_wrong_issuer_is_rejected() -> None:
    token = authenticator(issuer="someone-else").create_token("u")
    assert rejection(authenticator(issuer="qakeapi"), token).reason == "invalid_issuer"


def test_wrong_audience_is_rejected() -> None:
    token = authenticator(audience="billing").create_token("u")
    assert rejection(authenticator(audience="chat"), token).reason == "invalid_audience"


def test_token_without_a_configured_issuer_claim_is_rejected() -> None:
    token = authenticator().create_token("u")
    assert rejection(authenticator(issuer="qakeapi"), token).reason == "missing_claim"


def test_token_without_a_configured_audience_claim_is_rejected() -> None:
    token = authenticator().create_token("u")
    assert rejection(authenticator(audience="chat"), token).reason == "missing_claim"


@pytest.mark.parametrize(
    "claims",
    [
        pytest.param({"exp": 4102444800}, id="no-sub"),
        pytest.param({"sub": "u"}, id="no-exp"),
        pytest.param({"sub": "", "exp": 4102444800}, id="empty-sub"),
    ],
)
def test_missing_required_claims_are_rejected(claims: dict[str, Any]) -> None:
    assert rejection(authenticator(), craft(claims)).reason == "missing_claim"


def test_non_string_sub_is_rejected() -> None:
    with pytest.raises(AuthenticationError):
        authenticator().verify_token(craft({"sub": 42, "exp": now() + 600}))


def test_leeway_accepts_a_slightly_expired_token() -> None:
    auth = authenticator(leeway=timedelta(seconds=60))
    assert auth.verify_token(craft({"sub": "u", "exp": now() - 10}))["sub"] == "u"


def test_leeway_does_not_accept_a_long_expired_token() -> None:
    auth = authenticator(leeway=timedelta(seconds=60))
    assert rejection(auth, craft({"sub": "u", "exp": now() - 120})).reason == "expired"


def test_leeway_accepts_a_token_valid_slightly_in_the_future() -> None:
    auth = authenticator(leeway=timedelta(seconds=60))
    assert auth.verify_token(craft({"sub": "u", "exp": now() + 600, "nbf": now() + 10}))["sub"] == "u"


def test_tiny_expiry_produces_a_token_that_is_already_expired() -> None:
    auth = authenticator(token_expiry=timedelta(microseconds=1))
    token = auth.create_token("u")
    # exp is encoded in whole seconds, truncated, so it is not after the moment of verification.
    assert rejection(auth, token).reason == "expired"


# -- PyJWT's own short-key warning ------------------------------------------------------------


def test_pyjwt_would_warn_about_the_short_key() -> None:
    # Proves the next test is meaningful: PyJWT itself does warn for this key.
    with pytest.warns(jwt.InsecureKeyLengthWarning):
        jwt.encode({"sub": "u"}, "your-secret-key", algorithm="HS256")


def test_pyjwt_short_key_warning_does_not_leak_from_create_or_verify() -> None:
    with pytest.warns(InsecureKeyWarning):
        auth = JWTAuthenticator(AuthConfig(secret_key="your-secret-key"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", jwt.InsecureKeyLengthWarning)
        expired = craft({"sub": "u", "exp": now() - 10}, key="your-secret-key")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        token = auth.create_token("u")
        claims = auth.verify_token(token)
        with pytest.raises(AuthenticationError):
            auth.verify_token(expired)
    assert claims["sub"] == "u"
    assert [str(w.message) for w in caught] == []


# -- the key policy: too short to resist guessing is refused ------------------------------------


@pytest.mark.parametrize(
    ("algorithm", "key"), [("HS256", "k" * 3), ("HS256", "k" * 11), ("HS384", "k" * 8), ("HS512", "é" * 5)]
)
def test_an_hmac_key_shorter_than_the_minimum_is_refused(algorithm: str, key: str) -> None:
    length = len(key.encode())
    with pytest.raises(ValueError, match=f"the secret key is {length} bytes; .* shorter than 12 bytes .* refused"):
        AuthConfig(secret_key=key, algorithm=algorithm)


def test_the_minimum_key_runs_with_its_warning() -> None:
    assert MIN_HMAC_KEY_BYTES == 12
    with pytest.warns(InsecureKeyWarning, match="12 bytes; HS256 needs at least 32"):
        config = AuthConfig(secret_key="k" * 12)
    with pytest.warns(InsecureKeyWarning, match="15 bytes"):
        guide = AuthConfig(secret_key="your-secret-key")  # the guide's key
    auth = JWTAuthenticator(guide)
    assert auth.verify_token(auth.create_token("alice"))["sub"] == "alice"
    assert config.short_key


# -- time claims are numbers --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("claim", "value"),
    [("exp", "9999999999"), ("nbf", "1"), ("nbf", True), ("iat", "1"), ("iat", True), ("iat", False)],
    ids=repr,
)
def test_a_time_claim_that_is_not_a_number_is_refused(claim: str, value: object) -> None:
    # PyJWT alone accepts each of these (it reads them with int()); a string exp then never expires.
    claims: dict[str, Any] = {"sub": "u", "exp": now() + 600}
    claims[claim] = value
    with pytest.raises(AuthenticationError, match=f"'{claim}' must be a number") as info:
        authenticator().verify_token(craft(claims))
    assert info.value.reason == "invalid_claim"
