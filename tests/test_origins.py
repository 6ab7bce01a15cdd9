"""Tests for qakeapi.core.origins: the pure Origin policy, against every hijacking trick we know."""

from __future__ import annotations

from typing import Any

import pytest

from qakeapi.core.origins import Origin, OriginDecision, OriginPolicy, OriginReason


def scope(origin: str | list[str] | None, host: str | None = "good.example", scheme: str = "ws") -> dict[str, Any]:
    headers: list[tuple[bytes, bytes]] = []
    if host is not None:
        headers.append((b"host", host.encode()))
    for value in [origin] if isinstance(origin, str) else origin or []:
        headers.append((b"origin", value.encode()))
    return {"type": "websocket", "scheme": scheme, "headers": headers}


# -- Origin.parse ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("https://good.example", Origin("https", "good.example", 443)),
        ("http://good.example", Origin("http", "good.example", 80)),
        ("HTTPS://Good.Example:443", Origin("https", "good.example", 443)),
        ("https://good.example:8443", Origin("https", "good.example", 8443)),
        ("http://127.0.0.1:8000", Origin("http", "127.0.0.1", 8000)),
        ("http://[::1]:8000", Origin("http", "::1", 8000)),
        ("https://good.example.", Origin("https", "good.example", 443)),
        ("https://good.example/", Origin("https", "good.example", 443)),
    ],
)
def test_parse(text: str, expected: Origin) -> None:
    assert Origin.parse(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "good.example",
        "ftp://good.example",
        "ws://good.example",
        "https://",
        "https://good.example/path",
        "https://good.example?x=1",
        "https://good.example#f",
        "https://user@good.example",
        "https://good.example:99999",
        "https://good.example:port",
        "javascript:alert(1)",
        "",
    ],
)
def test_parse_refuses_what_is_not_an_origin(text: str) -> None:
    with pytest.raises(ValueError, match="is not an origin"):
        Origin.parse(text)


@pytest.mark.parametrize("text", ["https://good.example", "http://good.example:8000", "http://[::1]:8000"])
def test_str_round_trips(text: str) -> None:
    assert str(Origin.parse(text)) == text


# -- the default policy: same host ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("origin", "host", "scheme"),
    [
        ("https://good.example", "good.example", "wss"),
        ("https://good.example", "good.example", "ws"),  # TLS ends at a proxy
        ("https://good.example", "good.example:443", "ws"),
        ("http://localhost:8000", "localhost:8000", "ws"),
        ("http://LocalHost:8000", "localhost:8000", "ws"),
        ("http://app.localhost:8000", "app.localhost:8000", "ws"),
        ("http://127.0.0.1:8000", "127.0.0.1:8000", "ws"),
        ("http://192.168.1.10", "192.168.1.10", "ws"),
        ("http://[::1]:8000", "[::1]:8000", "ws"),
    ],
)
def test_same_host_is_allowed_by_default(origin: str, host: str, scheme: str) -> None:
    decision = OriginPolicy().check(scope(origin, host, scheme))
    assert decision == OriginDecision(True, OriginReason.SAME_HOST, origin)


@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.example",
        "https://good.example.evil.com",
        "https://evilgood.example",
        "https://sub.good.example",
        "http://good.example:8000",  # wrong port
        "https://good.example:8443",  # wrong port
    ],
)
def test_another_host_or_port_is_refused(origin: str) -> None:
    decision = OriginPolicy().check(scope(origin, "good.example:443", "ws"))
    assert decision == OriginDecision(False, OriginReason.NOT_ALLOWED, origin)


def test_wrong_scheme_on_a_secure_connection_is_refused() -> None:
    policy = OriginPolicy()
    assert not policy.check(scope("http://good.example", "good.example", "wss")).allowed
    # an http origin's default port is 80, so a Host without a port means port 80 to it
    assert policy.check(scope("http://10.0.0.1", "10.0.0.1", "ws")).allowed
    assert not policy.check(scope("http://10.0.0.1", "10.0.0.1:443", "ws")).allowed


# -- the Host header is trusted only where another site cannot have chosen it (DNS rebinding) -----


@pytest.mark.parametrize(
    ("origin", "host"),
    [
        ("http://evil.com", "evil.com"),
        ("http://evil.com:8000", "evil.com:8000"),
        ("http://EVIL.com:8000", "evil.COM:8000"),
        ("http://localhost.evil.com:8000", "localhost.evil.com:8000"),
        ("http://127.0.0.1.nip.io:8000", "127.0.0.1.nip.io:8000"),
    ],
)
def test_a_plain_http_name_the_policy_does_not_list_is_refused(origin: str, host: str) -> None:
    decision = OriginPolicy().check(scope(origin, host, "ws"))
    assert decision == OriginDecision(False, OriginReason.HOST_NOT_ALLOWED, origin)
    assert "allowed_hosts=" in decision.reason.advice


@pytest.mark.parametrize(
    ("hosts", "origin", "allowed"),
    [
        (["good.example"], "http://good.example:8000", True),
        (["Good.Example."], "http://good.example", True),
        (["good.example"], "http://evil.com:8000", False),
        (["*.good.example"], "http://chat.good.example", True),
        (["*.good.example"], "http://good.example", False),
        (["*.good.example"], "http://evilgood.example", False),
        (["*"], "http://evil.com:8000", True),
    ],
)
def test_allowed_hosts_extend_the_trusted_names(hosts: list[str], origin: str, allowed: bool) -> None:
    host = origin.split("://", 1)[1]
    decision = OriginPolicy(allowed_hosts=hosts).check(scope(origin, host, "ws"))
    assert decision.allowed is allowed
    assert decision.reason is (OriginReason.SAME_HOST if allowed else OriginReason.HOST_NOT_ALLOWED)


def test_a_listed_origin_needs_no_trusted_host() -> None:
    policy = OriginPolicy(["http://app.example:3000"])
    assert policy.check(scope("http://app.example:3000", "api.example:8000", "ws")).allowed


@pytest.mark.parametrize("host", [None, "", "good.example:bad", ":80"])
def test_no_usable_host_header_means_not_same_host(host: str | None) -> None:
    assert OriginPolicy().check(scope("https://good.example", host)).reason is OriginReason.NOT_ALLOWED


def test_two_host_headers_are_not_same_host() -> None:
    two = scope("https://good.example")
    two["headers"].append((b"host", b"good.example"))
    assert not OriginPolicy().check(two).allowed


def test_same_host_can_be_turned_off() -> None:
    assert not OriginPolicy(same_host=False).check(scope("https://good.example")).allowed


# -- null, missing, ambiguous, malformed ----------------------------------------------------------


def test_null_is_refused_by_default_and_can_be_allowed() -> None:
    assert OriginPolicy().check(scope("null")) == OriginDecision(False, OriginReason.NULL, "null")
    assert OriginPolicy(allow_null=True).check(scope("null")) == OriginDecision(True, OriginReason.NULL_ALLOWED, "null")


def test_null_is_not_a_listed_origin() -> None:
    with pytest.raises(ValueError, match="is not an origin"):
        OriginPolicy(["null"])


def test_missing_origin_is_allowed_by_default_and_can_be_required() -> None:
    assert OriginPolicy().check(scope(None)) == OriginDecision(True, OriginReason.MISSING_ALLOWED, None)
    assert OriginPolicy(allow_missing=False).check(scope(None)) == OriginDecision(False, OriginReason.MISSING, None)


def test_two_origin_headers_are_refused() -> None:
    decision = OriginPolicy(["https://evil.example"]).check(scope(["https://good.example", "https://evil.example"]))
    assert decision == OriginDecision(False, OriginReason.AMBIGUOUS, "https://good.example, https://evil.example")


@pytest.mark.parametrize(
    "origin", ["good.example", "https://good.example/path", "file://", "https://user@good.example", "*"]
)
def test_malformed_origin_is_refused(origin: str) -> None:
    assert OriginPolicy(allow_null=True).check(scope(origin)) == OriginDecision(False, OriginReason.MALFORMED, origin)


# -- the allow-list -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("https://app.example", True),
        ("https://APP.example:443", True),
        ("http://app.example", False),  # scheme
        ("https://app.example:8443", False),  # port
        ("https://app.example.evil.com", False),
        ("https://evilapp.example", False),
        ("http://localhost:3000", True),
        ("http://localhost:3001", False),
        ("https://a.corp.example", True),
        ("https://a.b.corp.example", True),
        ("https://corp.example", False),  # the wildcard is for subdomains only
        ("https://xcorp.example", False),
        ("https://a.corp.example.evil.com", False),
        ("http://a.corp.example", False),
    ],
)
def test_allow_list_matches_scheme_host_and_port_exactly(origin: str, allowed: bool) -> None:
    policy = OriginPolicy(["https://app.example", "http://localhost:3000", "https://*.corp.example"])
    decision = policy.check(scope(origin, host="api.example"))
    assert decision.allowed is allowed
    assert decision.reason is (OriginReason.LISTED if allowed else OriginReason.NOT_ALLOWED)


def test_allow_list_entries_are_validated() -> None:
    with pytest.raises(ValueError, match="is not an origin"):
        OriginPolicy(["https://app.example/path"])


def test_repr_lists_the_policy() -> None:
    policy = OriginPolicy(["https://*.corp.example", "http://localhost:3000"], allow_null=True)
    assert repr(policy) == (
        "OriginPolicy(['http://localhost:3000', 'https://*.corp.example'], same_host=True, "
        "allow_missing=True, allow_null=True)"
    )
    assert repr(OriginPolicy(allowed_hosts=["*.b.example", "a.example"])).endswith(
        "allowed_hosts=['a.example', '*.b.example'])"
    )
