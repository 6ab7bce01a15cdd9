"""Tests for qakeapi.core.codec: strict JSON in, compact JSON out."""

from __future__ import annotations

import json

import pytest

from qakeapi.core.codec import NonStandardJSONError, decode_json, encode_json


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
