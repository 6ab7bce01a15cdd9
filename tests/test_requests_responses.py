"""Requests, responses, the header/query/state data structures and the JSON codec."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from qakeapi import HTMLResponse, HTTPException, JSONResponse, PlainTextResponse, Request, Response, ValidationError
from qakeapi.core.codec import decode_json, encode_json
from qakeapi.core.datastructures import Headers, QueryParams, State
from qakeapi.types import Message, Scope


def make_request(*chunks: bytes, max_body_size: int = 1 << 20, **scope: Any) -> tuple[Request, asyncio.Queue[Message]]:
    """A request whose body arrives in ``chunks``; the queue holds what was not read yet."""
    inbox: asyncio.Queue[Message] = asyncio.Queue()
    for index, chunk in enumerate(chunks):
        inbox.put_nowait({"type": "http.request", "body": chunk, "more_body": index < len(chunks) - 1})
    full_scope: Scope = {"type": "http", "method": "POST", "path": "/p", "headers": [], "query_string": b""}
    full_scope.update(scope)

    async def receive() -> Message:
        return inbox.get_nowait()

    return Request(full_scope, receive, max_body_size), inbox


async def sent_by(response: Response, method: str = "GET") -> list[Message]:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def receive() -> Message:
        raise AssertionError("a response does not read the request")

    await response({"type": "http", "method": method}, receive, send)
    return sent


# -- Request ---------------------------------------------------------------------------------


def test_request_method_path_and_client() -> None:
    request, _ = make_request(method="PUT", path="/items/1", client=("1.2.3.4", 80))
    assert request.method == "PUT"
    assert request.path == "/items/1"
    assert request.client == ("1.2.3.4", 80)


def test_request_client_is_none_when_unknown() -> None:
    request, _ = make_request()
    assert request.client is None


def test_request_headers_are_case_insensitive() -> None:
    request, _ = make_request(headers=[(b"Content-Type", b"application/json"), (b"X-Multi", b"1"), (b"x-multi", b"2")])
    assert request.headers["content-type"] == "application/json"
    assert request.headers["CONTENT-TYPE"] == "application/json"
    assert request.headers.getlist("X-MULTI") == ["1", "2"]


def test_request_query_params_keep_every_value() -> None:
    request, _ = make_request(query_string=b"tag=a&tag=b&page=2&empty=")
    assert request.query_params["tag"] == "a"
    assert request.query_params.getlist("tag") == ["a", "b"]
    assert request.query_params["page"] == "2"
    assert request.query_params["empty"] == ""


def test_request_path_params_default_to_empty() -> None:
    request, _ = make_request()
    assert request.path_params == {}


@pytest.mark.asyncio
async def test_body_joins_chunks() -> None:
    request, inbox = make_request(b"hel", b"lo")
    assert await request.body() == b"hello"
    assert inbox.empty()


@pytest.mark.asyncio
async def test_body_is_read_once() -> None:
    request, inbox = make_request(b"data")
    assert await request.body() == b"data"
    inbox.put_nowait({"type": "http.request", "body": b"NOT READ", "more_body": False})
    assert await request.body() == b"data"
    assert inbox.qsize() == 1


@pytest.mark.asyncio
async def test_body_stops_at_disconnect() -> None:
    request, inbox = make_request()
    inbox.put_nowait({"type": "http.request", "body": b"part", "more_body": True})
    inbox.put_nowait({"type": "http.disconnect"})
    assert await request.body() == b"part"


@pytest.mark.asyncio
async def test_body_over_the_limit_raises_413() -> None:
    request, _ = make_request(b"12345", b"6", max_body_size=5)
    with pytest.raises(HTTPException) as info:
        await request.body()
    assert info.value.status_code == 413
    assert info.value.detail == "request body exceeds 5 bytes"


@pytest.mark.asyncio
async def test_body_at_the_limit_is_accepted() -> None:
    request, _ = make_request(b"123", b"45", max_body_size=5)
    assert await request.body() == b"12345"


@pytest.mark.asyncio
async def test_text_decodes_utf8() -> None:
    request, _ = make_request("café".encode())
    assert await request.text() == "café"


@pytest.mark.asyncio
async def test_text_of_invalid_utf8_raises_validation_error() -> None:
    request, _ = make_request(b"\xff\xfe")
    with pytest.raises(ValidationError, match="request body is not valid UTF-8") as info:
        await request.text()
    assert info.value.status_code == 400


@pytest.mark.asyncio
async def test_json_decodes_the_body() -> None:
    request, _ = make_request(b'{"a": [1, 2]}')
    assert await request.json() == {"a": [1, 2]}


@pytest.mark.asyncio
async def test_json_of_empty_body_raises_validation_error() -> None:
    request, _ = make_request(b"")
    with pytest.raises(ValidationError, match="request body is empty; expected JSON"):
        await request.json()


@pytest.mark.asyncio
async def test_json_of_malformed_body_raises_validation_error() -> None:
    request, _ = make_request(b"[1,")
    with pytest.raises(ValidationError, match="malformed JSON body"):
        await request.json()


def test_validation_error_is_a_400_http_exception_and_a_value_error() -> None:
    error = ValidationError("bad")
    assert isinstance(error, HTTPException)
    assert isinstance(error, ValueError)
    assert (error.status_code, error.detail) == (400, "bad")


def test_request_state_is_per_request() -> None:
    first, _ = make_request()
    second, _ = make_request()
    first.state.user = "ann"
    assert first.state.user == "ann"
    with pytest.raises(AttributeError):
        _ = second.state.user


# -- Response --------------------------------------------------------------------------------


def test_plain_text_response_has_charset_and_length() -> None:
    response = PlainTextResponse("héllo")
    assert response.body == "héllo".encode()
    assert response.headers == {"content-type": "text/plain; charset=utf-8", "content-length": "6"}


def test_html_response_has_charset() -> None:
    assert HTMLResponse("<p>").headers["content-type"] == "text/html; charset=utf-8"


def test_json_response_is_compact_without_charset() -> None:
    response = JSONResponse({"a": 1, "b": "é"}, 201)
    assert response.status_code == 201
    assert response.body == '{"a":1,"b":"é"}'.encode()
    assert response.headers["content-type"] == "application/json"
    assert response.headers["content-length"] == str(len(response.body))


def test_response_without_media_type_has_no_content_type() -> None:
    response = Response(b"raw")
    assert response.headers == {"content-length": "3"}


def test_response_lower_cases_extra_headers() -> None:
    response = Response(b"", headers={"X-Request-ID": "abc"})
    assert response.headers["x-request-id"] == "abc"


def test_explicit_content_type_header_wins() -> None:
    response = PlainTextResponse("x", headers={"Content-Type": "text/csv"})
    assert response.headers["content-type"] == "text/csv"


@pytest.mark.asyncio
async def test_response_sends_start_and_body() -> None:
    sent = await sent_by(PlainTextResponse("hi", 202, {"X-A": "1"}))
    assert sent == [
        {
            "type": "http.response.start",
            "status": 202,
            "headers": [(b"x-a", b"1"), (b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"2")],
        },
        {"type": "http.response.body", "body": b"hi"},
    ]


@pytest.mark.asyncio
async def test_response_to_head_sends_no_body_but_the_full_length() -> None:
    sent = await sent_by(PlainTextResponse("hello"), method="HEAD")
    assert (b"content-length", b"5") in sent[0]["headers"]
    assert sent[1] == {"type": "http.response.body", "body": b""}


# -- Headers, QueryParams, State -------------------------------------------------------------


def test_headers_lookup_is_case_insensitive() -> None:
    headers = Headers([(b"X-Token", b"abc")])
    assert headers["x-token"] == headers["X-TOKEN"] == "abc"
    assert "X-Token" in headers
    assert headers.get("missing") is None


def test_headers_missing_key_raises_key_error() -> None:
    with pytest.raises(KeyError):
        Headers()["host"]


def test_headers_repeated_names() -> None:
    headers = Headers([(b"Set-Cookie", b"a=1"), (b"Host", b"h"), (b"set-cookie", b"b=2")])
    assert headers["set-cookie"] == "a=1"
    assert headers.getlist("set-cookie") == ["a=1", "b=2"]
    assert list(headers) == ["set-cookie", "host"]
    assert len(headers) == 2
    assert headers.multi_items() == [("set-cookie", "a=1"), ("host", "h"), ("set-cookie", "b=2")]


def test_headers_getlist_of_missing_name_is_empty() -> None:
    assert Headers().getlist("accept") == []


def test_headers_decode_latin1() -> None:
    assert Headers([(b"x-name", "café".encode("latin-1"))])["x-name"] == "café"


def test_query_params_from_bytes_and_str_agree() -> None:
    assert QueryParams(b"a=1&b=2").multi_items() == QueryParams("a=1&b=2").multi_items() == [("a", "1"), ("b", "2")]


def test_query_params_percent_and_plus_decoding() -> None:
    params = QueryParams("q=caf%C3%A9+au+lait&sym=%26")
    assert params["q"] == "café au lait"
    assert params["sym"] == "&"


def test_query_params_are_case_sensitive() -> None:
    params = QueryParams("Key=1")
    assert "Key" in params
    assert "key" not in params


def test_query_params_keep_blank_values_and_repeats() -> None:
    params = QueryParams("flag=&tag=a&tag=b")
    assert params["flag"] == ""
    assert params.getlist("tag") == ["a", "b"]
    assert dict(params) == {"flag": "", "tag": "a"}


def test_state_attributes() -> None:
    state = State()
    state.count = 3
    assert state.count == 3
    assert repr(state) == "State({'count': 3})"


def test_state_missing_attribute_raises_attribute_error() -> None:
    with pytest.raises(AttributeError, match="state has no attribute 'nothing'"):
        _ = State().nothing


# -- codec -----------------------------------------------------------------------------------


def test_encode_json_is_compact_and_keeps_unicode() -> None:
    assert encode_json({"a": [1, 2.5, None], "b": "é✓"}) == '{"a":[1,2.5,null],"b":"é✓"}'


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_encode_json_refuses_non_finite_numbers(value: float) -> None:
    with pytest.raises(ValueError, match="not JSON compliant"):
        encode_json({"x": value})


def test_encode_json_refuses_unserialisable_values() -> None:
    with pytest.raises(TypeError, match="not JSON serializable"):
        encode_json({"x": object()})


def test_decode_json_accepts_text_and_utf8_bytes() -> None:
    assert decode_json('{"a":"é"}') == {"a": "é"}
    assert decode_json('{"a":"é"}'.encode()) == {"a": "é"}


def test_decode_json_invalid_raises_json_decode_error() -> None:
    with pytest.raises(json.JSONDecodeError):
        decode_json("{")


def test_header_and_query_reprs_never_show_credentials() -> None:
    headers = Headers([(b"Authorization", b"Bearer s3cret"), (b"Sec-WebSocket-Protocol", b"bearer, s3cret")])
    query = QueryParams(b"token=s3cret&room=general")
    assert "s3cret" not in repr(headers)
    assert "s3cret" not in repr(query)
    assert "general" in repr(query)
    assert headers["authorization"] == "Bearer s3cret"  # only the repr hides it


def test_decode_json_turns_absurd_nesting_into_value_error() -> None:
    with pytest.raises(ValueError, match="nests too deeply"):
        decode_json("[" * 100_000)
