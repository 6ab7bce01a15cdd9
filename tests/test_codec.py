"""Tests for qakeapi.core.codec: strict JSON in, compact JSON out; text in is text out."""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qakeapi.core.codec import MAX_DEPTH, check_sendable, decode_json, encode_json
from qakeapi.exceptions import (
    LoneSurrogateError,
    NestingTooDeepError,
    NonStandardJSONError,
    NumberOutOfRangeError,
    UnencodableJSONError,
)


@pytest.mark.parametrize("text", ["NaN", "Infinity", "-Infinity", '{"a": [1, NaN]}', b'{"a": Infinity}'], ids=repr)
def test_nan_and_infinity_are_not_json(text: str | bytes) -> None:
    with pytest.raises(NonStandardJSONError, match="is not valid JSON") as caught:
        decode_json(text)
    assert isinstance(caught.value, ValueError)
    assert caught.value.constant in ("NaN", "Infinity", "-Infinity")


@pytest.mark.parametrize("value", [None, 1, 1.5, -0.0, 1e308, "é", [1, {"a": [True, False]}]], ids=repr)
def test_whatever_decodes_encodes_back(value: object) -> None:
    text = encode_json(value)
    assert decode_json(text) == value
    assert decode_json(text.encode()) == value


def test_strings_that_say_nan_are_fine() -> None:
    assert decode_json('{"NaN": "Infinity"}') == {"NaN": "Infinity"}


def test_bad_utf8_and_bad_json_are_value_errors() -> None:
    with pytest.raises(ValueError, match="not valid UTF-8"):
        decode_json(b'"\xff"')
    with pytest.raises(json.JSONDecodeError):
        decode_json("{")
    with pytest.raises(ValueError, match="nests too deeply"):
        decode_json("[" * 100_000 + "]" * 100_000)


def test_encoding_refuses_nan() -> None:
    with pytest.raises(ValueError, match="Out of range float values"):
        encode_json(float("nan"))


# -- text in is text out: what decodes encodes back, and the result is sendable UTF-8 -----------


@pytest.mark.parametrize(
    ("text", "code_point"),
    [('"\\ud800"', 0xD800), ('"\\udfff"', 0xDFFF), ('["a", "x\\uDC00y"]', 0xDC00), ('{"\\ud83d": 1}', 0xD83D)],
    ids=repr,
)
def test_lone_surrogates_are_refused(text: str, code_point: int) -> None:
    for data in (text, text.encode()):
        with pytest.raises(LoneSurrogateError, match="lone surrogate") as caught:
            decode_json(data)
        assert isinstance(caught.value, UnencodableJSONError)
        assert isinstance(caught.value, ValueError)
        assert caught.value.code_point == code_point
        assert caught.value.kind == "lone surrogate"


def test_a_raw_lone_surrogate_is_refused_and_pairs_and_escaped_backslashes_are_fine() -> None:
    with pytest.raises(LoneSurrogateError):
        decode_json('"\ud800"')
    fine = {'"\\ud83d\\ude00"': "\U0001f600", '"\\\\ud800"': "\\ud800", '"\\u00e9\\ud7ff\\ue000"': "\xe9\ud7ff\ue000"}
    for text, value in fine.items():
        assert decode_json(text) == value
        assert encode_json(decode_json(text)).encode("utf-8")


@pytest.mark.parametrize("text", ["1e400", "-1e400", "[1E309]", '{"a": 1' + "0" * 400 + ".5}", "9" * 5000], ids=repr)
def test_numbers_out_of_range_are_refused_and_numbers_in_range_are_fine(text: str) -> None:
    with pytest.raises(NumberOutOfRangeError, match="out of range") as caught:
        decode_json(text)
    assert caught.value.kind == "number out of range"
    assert len(str(caught.value)) < 200  # a huge number is shortened, not copied into a log line
    fine: dict[str, float] = {"-0": 0, "-0.0": -0.0, "1e-400": 0.0, "9" * 4300: int("9" * 4300), "1.5e308": 1.5e308}
    for number, value in fine.items():
        assert decode_json(number) == value
        assert decode_json(encode_json(decode_json(number))) == value


def test_nesting_deeper_than_max_depth_is_refused_and_max_depth_encodes_from_deep_in_a_program() -> None:
    deepest = "[" * MAX_DEPTH + "]" * MAX_DEPTH
    value = decode_json(deepest)

    def encode_from(depth: int) -> str:
        return encode_json(value) if depth == 0 else encode_from(depth - 1)

    assert encode_from(300) == deepest  # a hook well down a call stack can send it back
    with pytest.raises(NestingTooDeepError, match="nests too deeply"):
        decode_json("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1))
    with pytest.raises(NestingTooDeepError):
        decode_json('{"a": ' * (MAX_DEPTH + 1) + "1" + "}" * (MAX_DEPTH + 1))
    assert decode_json('"' + "[" * 1000 + '"') == "[" * 1000  # brackets in a string are not nesting


@pytest.mark.parametrize("value", ["\ud800", ["ok", {"k": "x\udfffy"}], {"\udc00": 1}], ids=repr)
def test_encoding_refuses_lone_surrogates(value: object) -> None:
    with pytest.raises(LoneSurrogateError, match="cannot be sent as UTF-8") as caught:
        encode_json(value)
    assert isinstance(caught.value, ValueError)  # as for NaN: callers catch ValueError


def test_check_sendable() -> None:
    assert check_sendable("plain") == "plain"
    assert check_sendable("é \U0001f600") == "é \U0001f600"
    with pytest.raises(LoneSurrogateError, match="\\\\ud800"):
        check_sendable("a\ud800")


# Strings of any code point, surrogates included (hypothesis leaves them out by default).
any_text = st.text(st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=()), max_size=12)
numbers = st.from_regex(r"\A-?(0|[1-9][0-9]{0,400})(\.[0-9]{1,20})?([eE][+-]?[0-9]{1,4})?\Z")
values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | any_text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(any_text, children, max_size=4),
    max_leaves=20,
)


def as_json(value: object, ensure_ascii: bool) -> str:
    return json.dumps(value, ensure_ascii=ensure_ascii)  # NaN and Infinity as Python writes them


json_texts = st.one_of(
    st.builds(as_json, values, st.booleans()),
    numbers,
    numbers.map(lambda number: f'{{"n": [{number}]}}'),
    st.integers(1, 2 * MAX_DEPTH).map(lambda depth: "[" * depth + "]" * depth),
    st.text(max_size=40),
    any_text,
)


@settings(max_examples=600, deadline=None)
@given(text=json_texts)
def test_every_text_the_decoder_accepts_encodes_back_to_utf8(text: str) -> None:
    try:
        value = decode_json(text)
    except ValueError:
        return
    encoded = encode_json(value)
    assert decode_json(encoded.encode("utf-8")) == value


@settings(max_examples=300, deadline=None)
@given(value=values)
def test_whatever_encode_json_returns_is_sendable_utf8(value: object) -> None:
    try:
        text = encode_json(value)
    except ValueError:
        return
    text.encode("utf-8")
    assert json.loads(text) == value


# encode_json calls json's C encoder directly (without JSONEncoder.encode's Python around it):
# it must answer exactly as the JSONEncoder it stands for, value for value and error for error.
_reference = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _outcome(encode: object, value: object) -> tuple[str, str]:
    try:
        return "ok", encode(value)  # type: ignore[operator]
    except (TypeError, ValueError, RecursionError) as exc:
        return type(exc).__name__, str(exc)


tuples_and_objects = st.recursive(
    values | st.tuples(st.integers()) | st.builds(object) | st.sets(st.integers(), max_size=2),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=3), children, max_size=3),
    max_leaves=10,
)


@settings(max_examples=500, deadline=None)
@given(value=tuples_and_objects)
def test_encode_json_answers_as_the_json_encoder_it_stands_for(value: object) -> None:
    from qakeapi.core import codec

    kind, text = _outcome(codec._encode, value)
    assert (kind, text) == _outcome(_reference.encode, value)
    if kind == "ok" and text.isascii():  # check_sendable adds a refusal for lone surrogates only
        assert encode_json(value) == text


def test_encode_json_refuses_circular_references_and_can_encode_the_same_objects_after() -> None:
    loop: list[object] = [1]
    loop.append(loop)
    with pytest.raises(ValueError, match="Circular reference"):
        encode_json({"a": loop})
    shared = [1, 2]
    assert encode_json({"x": shared, "y": shared}) == '{"x":[1,2],"y":[1,2]}'  # shared is not circular
    with pytest.raises(TypeError, match="not JSON serializable"):
        encode_json([shared, object()])
    assert encode_json([shared, shared]) == "[[1,2],[1,2]]"  # nothing left behind by the failure


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(lambda loop: loop.append(loop), id="list-in-itself"),
        pytest.param(lambda loop: loop.append({"k": [0, (1, loop)]}), id="through-dict-and-tuple"),
        pytest.param(lambda loop: loop.append([[[[{"deep": [loop]}]]]]), id="five-levels-down"),
    ],
)
def test_encode_json_reports_a_circular_reference_as_json_does(build: Any) -> None:
    # encode_json's C encoder keeps no markers (no state between calls): a cycle ends in the
    # recursion limit, which must still surface as JSONEncoder's ValueError, not a RecursionError.
    loop: list[object] = ["start"]
    build(loop)
    assert _outcome(encode_json, {"x": loop}) == _outcome(_reference.encode, {"x": loop})
    with pytest.raises(ValueError, match="Circular reference detected"):
        encode_json({"x": loop})
    assert encode_json({"x": [1]}) == '{"x":[1]}'


def test_encode_json_nesting_past_the_recursion_limit_raises_recursion_error_as_json_does() -> None:
    deep: list[object] = []
    for _ in range(sys.getrecursionlimit() * 20):
        deep = [deep, [1]]  # shared nowhere, circular nowhere: only too deep
    with pytest.raises(RecursionError):
        _reference.encode(deep)
    with pytest.raises(RecursionError):
        encode_json(deep)
    assert encode_json([[1], [1]]) == "[[1],[1]]"
