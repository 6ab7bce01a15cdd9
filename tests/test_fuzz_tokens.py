"""Property-based fuzzing of token parsing, verification, redaction and the origin policy:
whatever a client sends, they answer or refuse; they never crash."""

from __future__ import annotations

import string

import jwt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qakeapi.core.datastructures import Headers, QueryParams
from qakeapi.core.origins import Origin, OriginPolicy
from qakeapi.core.redaction import REDACTED, redact
from qakeapi.exceptions import AuthenticationError
from qakeapi.security import AuthConfig, JWTAuthenticator
from qakeapi.security.carriers import extract_token

AUTH = JWTAuthenticator(AuthConfig(secret_key="k" * 32))
B64URL = string.ascii_letters + string.digits + "-_"
latin1_bytes = st.binary(max_size=200)
texts = st.text(max_size=200)


@settings(max_examples=300, deadline=None)
@given(query=latin1_bytes, authorization=latin1_bytes, subprotocols=st.lists(texts, max_size=6))
def test_extract_token_never_raises(query: bytes, authorization: bytes, subprotocols: list[str]) -> None:
    headers = Headers([(b"authorization", authorization)])
    token, source = extract_token(QueryParams(query), headers, subprotocols)
    assert (token is None) == (source is None)
    assert source in (None, "query", "header", "subprotocol", "k8s_subprotocol")
    if token is not None:
        assert token


@settings(max_examples=300, deadline=None)
@given(token=st.one_of(texts, st.lists(st.text(B64URL, max_size=60), min_size=3, max_size=3).map(".".join)))
def test_verify_token_refuses_garbage_with_a_reason(token: str) -> None:
    with pytest.raises(AuthenticationError) as refused:
        AUTH.verify_token(token)
    assert refused.value.reason in {"malformed", "invalid_signature", "invalid", "invalid_algorithm", "missing_claim"}
    assert token not in str(refused.value) or len(token) < 8  # the message never repeats the credential


@settings(max_examples=200, deadline=None)
@given(claims=st.dictionaries(st.text(max_size=10), st.one_of(st.integers(), st.text(max_size=20)), max_size=5))
def test_tokens_with_odd_claims_are_verified_or_refused(claims: dict[str, object]) -> None:
    token = jwt.encode(claims, "k" * 32, algorithm="HS256")
    try:
        verified = AUTH.verify_token(token)
    except AuthenticationError as exc:
        reason = exc.reason
    else:
        reason = ""
        assert isinstance(verified["sub"], str)
        assert verified["sub"]
    assert reason in {
        "",
        "missing_claim",
        "invalid",
        "malformed",
        "invalid_audience",
        "invalid_issuer",
        "expired",
        "not_yet_valid",
    }


@settings(max_examples=300, deadline=None)
@given(
    prefix=texts,
    name=st.sampled_from(["token", "access_token", "jwt", "auth", "TOKEN", "api_key"]),
    secret=st.text(B64URL + ".~%", min_size=8, max_size=80),
    suffix=st.sampled_from(["", "&room=1", "#frag", " HTTP/1.1", '"']),
)
def test_redaction_removes_every_query_credential(prefix: str, name: str, secret: str, suffix: str) -> None:
    line = f"{prefix}/ws?x=1&{name}={secret}{suffix}"
    redacted = redact(line)
    assert f"{name}={REDACTED}" in redacted
    assert f"{name}={secret}" not in redacted


@settings(max_examples=300, deadline=None)
@given(text=texts)
def test_redaction_never_raises_and_is_idempotent(text: str) -> None:
    once = redact(text)
    assert redact(once) == once


@settings(max_examples=300, deadline=None)
@given(origins=st.lists(latin1_bytes, max_size=3), host=st.one_of(st.none(), latin1_bytes), secure=st.booleans())
def test_origin_policy_always_decides(origins: list[bytes], host: bytes | None, secure: bool) -> None:
    headers = [(b"origin", value) for value in origins]
    if host is not None:
        headers.append((b"host", host))
    scope = {"type": "websocket", "scheme": "wss" if secure else "ws", "headers": headers}
    decision = OriginPolicy(["https://app.example"]).check(scope)
    if len(origins) > 1:
        assert not decision.allowed
    if decision.allowed and origins:
        sent = origins[0].decode("latin-1")
        assert Origin.parse(sent) is not None  # only a well-formed origin is ever allowed
