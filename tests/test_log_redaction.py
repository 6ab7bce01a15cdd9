"""Tests for qakeapi.core.redaction: credentials never reach a log line."""

from __future__ import annotations

import importlib
import io
import logging
from collections.abc import Iterator

import jwt
import pytest

from qakeapi import WebSocketHandler
from qakeapi.core.redaction import (
    DEFAULT_REDACTED_LOGGERS,
    REDACTED,
    TokenRedactingFilter,
    install_log_redaction,
    redact,
)
from qakeapi.security import AuthConfig, JWTAuthenticator, WebSocketAuthMiddleware

TOKEN = jwt.encode({"sub": "alice", "exp": 4102444800}, "k" * 32, algorithm="HS256")
SIGNATURE = TOKEN.rsplit(".", 1)[1]


@pytest.fixture
def clean_loggers() -> Iterator[None]:
    """Remove the redaction filters tests install, so each test starts from none."""

    def strip() -> None:
        for name in (*DEFAULT_REDACTED_LOGGERS, "custom.logger"):
            logger = logging.getLogger(name)
            for f in [f for f in logger.filters if isinstance(f, TokenRedactingFilter)]:
                logger.removeFilter(f)

    strip()
    yield
    strip()
    install_log_redaction()  # leave the process as QakeAPI would: filtered


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"/ws?token={TOKEN}", f"/ws?token={REDACTED}"),
        (f"/ws?room=1&token={TOKEN}&x=2", f"/ws?room=1&token={REDACTED}&x=2"),
        ("/ws?access_token=opaque123", f"/ws?access_token={REDACTED}"),
        ("/ws?ACCESS_TOKEN=opaque123#frag", f"/ws?ACCESS_TOKEN={REDACTED}#frag"),
        ("/ws?jwt=a.b.c", f"/ws?jwt={REDACTED}"),
        ("/ws?auth=xyz&api_key=k1&password=p", f"/ws?auth={REDACTED}&api_key={REDACTED}&password={REDACTED}"),
        ("/ws?token=", f"/ws?token={REDACTED}"),
        (f"Bearer {TOKEN}", f"Bearer {REDACTED}"),
        ("Authorization: bearer opaque-token-1", f"Authorization: bearer {REDACTED}"),
        ("Sec-WebSocket-Protocol: bearer, opaque, chat", f"Sec-WebSocket-Protocol: bearer, {REDACTED}, chat"),
        (
            "chat, base64url.bearer.authorization.k8s.io.ZXlKaGJHY2lPaUpJVXpJMU5pSjk",
            f"chat, base64url.bearer.authorization.k8s.io.{REDACTED}",
        ),
        (f"a JWT somewhere: {TOKEN}.", f"a JWT somewhere: {REDACTED}."),
        ("token=abc&room=1", f"token={REDACTED}&room=1"),
        ("logfmt token=abc user=1", f"logfmt token={REDACTED} user=1"),
        ("{'query_string': b'token=abc'}", f"{{'query_string': b'token={REDACTED}'}}"),
    ],
    ids=repr,
)
def test_redact(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text",
    ["/ws?room=lobby", "/api/generate-token", "GET /ws HTTP/1.1", "tokens=1 mytoken=2", "x?tokenizer=1"],
)
def test_redact_leaves_other_text_alone(text: str) -> None:
    # "tokens", "mytoken" and "tokenizer" are other names
    assert redact(text) == text


def test_filter_redacts_uvicorn_style_records_and_keeps_the_args_shape(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("custom.logger")
    f = TokenRedactingFilter()
    logger.addFilter(f)
    try:
        with caplog.at_level(logging.DEBUG, logger="custom.logger"):
            logger.info('%s - "WebSocket %s" [accepted]', "127.0.0.1:5000", f"/ws?token={TOKEN}")
            logger.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "GET", f"/x?jwt={TOKEN}", "1.1", 200)
            logger.debug("< %s: %s", "Authorization", f"Bearer {TOKEN}")
            logger.debug("< %(name)s: %(value)s", {"name": "Sec-WebSocket-Protocol", "value": f"bearer, {TOKEN}"})
            logger.debug(f"inline /ws?token={TOKEN}")
            logger.debug("bytes %r", f"/ws?token={TOKEN}".encode())
            logger.debug("scope=%s id=%d", {"query_string": b"token=opaque-1"}, 7)
    finally:
        logger.removeFilter(f)
    assert len(caplog.records) == 7
    assert isinstance(caplog.records[1].args, tuple)
    assert len(caplog.records[1].args) == 5  # uvicorn's AccessFormatter unpacks five
    assert caplog.records[1].args[4] == 200
    assert TOKEN not in caplog.text
    assert SIGNATURE not in caplog.text
    assert "opaque-1" not in caplog.text
    assert "id=7" in caplog.text
    assert caplog.text.count(REDACTED) == 7
    assert f'"WebSocket /ws?token={REDACTED}" [accepted]' in caplog.text


def test_extra_query_params_are_redacted() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "%s", ("/ws?sesame=open&token=t",), None)
    TokenRedactingFilter(["Sesame"]).filter(record)
    assert record.getMessage() == f"/ws?sesame={REDACTED}&token={REDACTED}"


def test_install_is_idempotent_and_covers_the_server_loggers(clean_loggers: None) -> None:
    first = install_log_redaction()
    assert install_log_redaction() is first
    for name in DEFAULT_REDACTED_LOGGERS:
        filters = [f for f in logging.getLogger(name).filters if isinstance(f, TokenRedactingFilter)]
        assert filters == [first]


def test_install_with_more_params_adds_a_wider_filter(clean_loggers: None) -> None:
    first = install_log_redaction(["custom.logger"])
    wider = install_log_redaction(["custom.logger"], query_params=["sesame"])
    assert wider is not first
    assert "sesame" in wider.query_params
    assert install_log_redaction(["custom.logger"], query_params=["SESAME"]) is wider


def test_handler_and_auth_middleware_install_it(clean_loggers: None) -> None:
    uvicorn_error = logging.getLogger("uvicorn.error")
    assert not [f for f in uvicorn_error.filters if isinstance(f, TokenRedactingFilter)]
    WebSocketHandler()
    assert [f for f in uvicorn_error.filters if isinstance(f, TokenRedactingFilter)]
    WebSocketAuthMiddleware(JWTAuthenticator(AuthConfig(secret_key="k" * 32)), query_param="sesame")
    record = logging.LogRecord("uvicorn.error", logging.INFO, __file__, 1, "%s", ("/ws?sesame=open",), None)
    for f in uvicorn_error.filters:
        assert isinstance(f, TokenRedactingFilter)
        f.filter(record)
    assert record.getMessage() == f"/ws?sesame={REDACTED}"


# -- cookies, and daphne's access log ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("cookie: sid=abc; theme=dark", f"cookie: {REDACTED}"),
        ("Set-Cookie: sid=abc; HttpOnly", f"Set-Cookie: {REDACTED}"),
        ("'headers': [(b'cookie', b'sid=abc')]", f"'headers': [(b'cookie', b'{REDACTED}')]"),
    ],
    ids=repr,
)
def test_redact_cookie_values(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_filter_redacts_the_value_after_a_secret_header_name(caplog: pytest.LogCaptureFixture) -> None:
    # What the websockets library logs for every request header at DEBUG (uvicorn --log-level debug).
    logger = logging.getLogger("custom.headers")
    f = TokenRedactingFilter()
    logger.addFilter(f)
    try:
        with caplog.at_level(logging.DEBUG, logger="custom.headers"):
            logger.debug("< %s: %s", "cookie", "sid=cookie-secret-1; theme=dark")
            logger.debug("> %s: %s", "Set-Cookie", "sid=cookie-secret-2")
            logger.debug("< %s: %s", "Authorization", "Basic dXNlcjpwYXNzd29yZA==")
            logger.debug("< %s: %s", "host", "127.0.0.1:8000")
    finally:
        logger.removeFilter(f)
    assert "cookie-secret" not in caplog.text
    assert "dXNlcjpwYXNzd29yZA" not in caplog.text
    assert "< host: 127.0.0.1:8000" in caplog.text
    assert caplog.text.count(REDACTED) == 3


@pytest.mark.e2e  # daphne is a dev-only server: the sdist's test extra has no daphne
def test_daphnes_access_log_is_redacted_when_daphne_runs_the_app(
    clean_loggers: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    access = importlib.import_module("daphne.access")  # untyped: reached as a module object
    monkeypatch.setattr(access.AccessLogGenerator, "write_entry", access.AccessLogGenerator.write_entry)
    stream = io.StringIO()
    install_log_redaction(query_params=["sesame"])
    install_log_redaction()  # again: one wrapper
    log = access.AccessLogGenerator(stream)
    log(
        "http",
        "complete",
        {"client": "1.2.3.4:5", "method": "GET", "path": "/x?token=abc&sesame=def", "status": 200, "size": 2},
    )
    log("websocket", "connecting", {"client": "1.2.3.4:5", "path": "/ws?token=ghi"})
    written = stream.getvalue()
    for secret in ("abc", "def", "ghi"):
        assert secret not in written, written
    assert f'"GET /x?token={REDACTED}&sesame={REDACTED}" 200 2' in written
    assert written.count(REDACTED) == 3
