"""JSON encoding used for every frame QakeAPI sends, so a message is encoded the same way everywhere.

Text in is text out: whatever QakeAPI decodes, it can encode back, and what it encodes can be
sent as UTF-8. Decoding is strict JSON (RFC 8259) and refuses, with an
:class:`~qakeapi.exceptions.UnencodableJSONError` (a :class:`ValueError`), the valid-looking text whose value could
not be encoded back:

- ``NaN``, ``Infinity`` and ``-Infinity``, which Python's :mod:`json` accepts by default
  (:class:`~qakeapi.exceptions.NonStandardJSONError`);
- a lone surrogate such as ``"\\ud800"``: the escape is well-formed, but the string it makes is
  not Unicode text and cannot be sent as UTF-8 (:class:`~qakeapi.exceptions.LoneSurrogateError`; a high and a low
  surrogate escaped as a pair are one character and fine);
- a number out of range: a float that would be infinity (``1e400``), or an integer longer than
  Python converts (:func:`sys.get_int_max_str_digits`) (:class:`~qakeapi.exceptions.NumberOutOfRangeError`);
- arrays and objects nested more than :data:`MAX_DEPTH` levels deep, which might exceed the
  recursion limit when encoded from deeper in a program (:class:`~qakeapi.exceptions.NestingTooDeepError`).

Encoding refuses the same values (``NaN``, infinities, lone surrogates) with a :class:`ValueError`,
so a frame that could not be sent never leaves :func:`encode_json`.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Callable, Iterator
from json.scanner import make_scanner
from typing import Any, NoReturn

from qakeapi.exceptions import (
    LoneSurrogateError,
    NestingTooDeepError,
    NonStandardJSONError,
    NumberOutOfRangeError,
    UnencodableJSONError,
)

# The errors live in qakeapi.exceptions (the one tree); importable from here as before.
__all__ = [
    "MAX_DEPTH",
    "check_sendable",
    "decode_json",
    "encode_json",
    "strict_decoder",
]

MAX_DEPTH = 256
"""The deepest nesting of arrays and objects :func:`decode_json` accepts."""

_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _c_encode() -> Callable[[Any], str] | None:
    """:meth:`_encoder.encode <json.JSONEncoder.encode>` without the Python around its C encoder.

    ``JSONEncoder.encode`` re-reads its settings, defines a closure and makes a C encoder
    (``json.encoder.c_make_encoder``) on every call, with a fresh ``markers`` dict to detect
    circular references: ~0.6 µs of a ~1.6 µs encode of a small message. This makes the C encoder
    once, with the same arguments but no ``markers``, so it keeps no state between calls (any
    thread, any task may use it). A circular reference then ends in the interpreter's recursion
    limit instead; :func:`_encode_failed` tells the two apart and raises what ``JSONEncoder``
    raises. ``None`` where the C encoder is missing or does not answer as ``_encoder``.
    """
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # pragma: no cover - CPython always has it
        return None
    try:
        encoder = make(None, _encoder.default, json.encoder.encode_basestring, None, ":", ",", False, False, False)
    except Exception:  # pragma: no cover - another signature in a future Python
        return None
    join = "".join

    def encode(data: Any) -> str:
        try:
            return join(encoder(data, 0))
        except RecursionError as exc:
            raise _encode_failed(data, exc) from None

    sample = {"a": [1, 2.5, -0.0, "\u00e9\n", None, True, {}, (3,)], "": 10**30}
    try:
        agrees = encode(sample) == _encoder.encode(sample)
    except Exception:  # pragma: no cover - another signature in a future Python
        agrees = False
    return encode if agrees else None


def _encode_failed(data: Any, exc: RecursionError) -> Exception:
    """What ``JSONEncoder`` raises where the encoder without ``markers`` hit the recursion limit:
    :class:`ValueError` for a circular reference, else the :class:`RecursionError` (nesting too deep)."""
    return ValueError("Circular reference detected") if _circular(data) else exc


def _circular(value: Any) -> bool:
    """Whether ``value`` contains itself through the lists, tuples and dicts JSON encodes (no recursion)."""
    path: set[int] = set()  # ids of the containers on the way down to where the walk is
    stack: list[tuple[int, Iterator[Any]]] = []
    if isinstance(value, (list, tuple, dict)):
        path.add(id(value))
        stack.append((id(value), iter(value.values() if isinstance(value, dict) else value)))
    while stack:
        node, children = stack[-1]
        for child in children:
            if isinstance(child, (list, tuple, dict)):
                if id(child) in path:
                    return True
                path.add(id(child))
                stack.append((id(child), iter(child.values() if isinstance(child, dict) else child)))
                break
        else:
            path.discard(node)
            stack.pop()
    return False


_encode = _c_encode() or _encoder.encode
_SURROGATE = re.compile("[\ud800-\udfff]")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_WHITESPACE = re.compile(r"[ \t\n\r]*")  # what json.decoder skips around a document
_SHOWN = 24  # the longest piece of a refused number shown in an error (and so in a log line)


def _reject_constant(constant: str) -> NoReturn:
    raise NonStandardJSONError(constant)


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise NumberOutOfRangeError(
            text if len(text) <= _SHOWN else f"{text[:_SHOWN]}... ({len(text)} characters)", _int_digits()
        )
    return value


class _StrictDecoder(json.JSONDecoder):
    """:class:`json.JSONDecoder` that refuses every value :func:`encode_json` could not send."""

    def __init__(self) -> None:
        super().__init__(parse_constant=_reject_constant, parse_float=_finite_float)
        self._scan = make_scanner(self)  # type: ignore[arg-type]  # typeshed wants the duck-typed context as make_scanner

    def decode(self, s: str, _w: Callable[..., Any] = _WHITESPACE.match) -> Any:
        # JSONDecoder.decode and raw_decode inlined: the handler decodes every message with this.
        try:
            value, end = self._scan(s, _w(s, 0).end())
        except StopIteration as err:
            raise json.JSONDecodeError("Expecting value", s, err.value) from None
        except (UnencodableJSONError, json.JSONDecodeError):
            raise
        except ValueError:  # the only other one: an integer longer than int() converts
            raise NumberOutOfRangeError(f"an integer of more than {_int_digits()} digits", _int_digits()) from None
        except RecursionError:
            raise NestingTooDeepError(MAX_DEPTH) from None
        if end != len(s) and _w(s, end).end() != len(s):
            raise json.JSONDecodeError("Extra data", s, _w(s, end).end())
        if len(s) > 2 * MAX_DEPTH and s.count("[") + s.count("{") > MAX_DEPTH and _deeper_than(value, MAX_DEPTH):
            raise NestingTooDeepError(MAX_DEPTH)
        if "\\u" in s and _SURROGATE_ESCAPE.search(s):  # escapes of surrogates: a lone one?
            check_sendable(_encode(value))
        elif not s.isascii():  # raw surrogates (text from a server never has them: it was UTF-8)
            check_sendable(s)
        return value


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether ``value`` nests arrays and objects more than ``limit`` levels deep (without recursing)."""
    level = [value] if isinstance(value, (list, dict)) else []
    depth = 0
    while level:
        depth += 1
        if depth > limit:
            return True
        level = [
            child
            for item in level
            for child in (item.values() if isinstance(item, dict) else item)
            if isinstance(child, (list, dict))
        ]
    return False


def _int_digits() -> int:
    limit: Callable[[], int] | None = getattr(sys, "get_int_max_str_digits", None)  # Python 3.10.7+
    return limit() if limit is not None else 4300


def strict_decoder() -> json.JSONDecoder:
    """A :class:`json.JSONDecoder` that refuses what :func:`encode_json` could not send back.

    Returns:
        The decoder; its ``decode`` raises :class:`~qakeapi.exceptions.NonStandardJSONError` on ``NaN`` and the
        infinities, :class:`~qakeapi.exceptions.LoneSurrogateError` on a lone surrogate and
        :class:`~qakeapi.exceptions.NumberOutOfRangeError` on a number out of range (all
        :class:`~qakeapi.exceptions.UnencodableJSONError`), and :class:`json.JSONDecodeError` on text that is not JSON.
    """
    return _StrictDecoder()


_decoder = strict_decoder()


def check_sendable(text: str) -> str:
    """Check that ``text`` can be sent as UTF-8 (it holds no surrogate code point).

    Args:
        text: A text frame.

    Returns:
        ``text``.

    Raises:
        LoneSurrogateError: ``text`` holds a surrogate.
    """
    if not text.isascii() and (found := _SURROGATE.search(text)) is not None:
        raise LoneSurrogateError(ord(found.group()))
    return text


def encode_json(data: Any) -> str:
    """Encode ``data`` as compact JSON text, which can always be sent as UTF-8.

    Args:
        data: Any value :mod:`json` can encode (``NaN``, infinities and strings holding a lone
            surrogate are refused).

    Returns:
        The JSON text.

    Raises:
        TypeError: ``data`` holds a value JSON cannot represent.
        ValueError: ``data`` holds ``NaN`` or an infinity, an integer longer than Python
            converts, or a string holding a lone surrogate (:class:`~qakeapi.exceptions.LoneSurrogateError`).
    """
    text = _encode(data)
    if not text.isascii() and (found := _SURROGATE.search(text)) is not None:  # check_sendable, inlined
        raise LoneSurrogateError(ord(found.group()))
    return text


def decode_json(data: str | bytes) -> Any:
    """Decode JSON text (or UTF-8 bytes), refusing what could not be encoded back.

    Args:
        data: The JSON document.

    Returns:
        The decoded value; :func:`encode_json` can encode it, and the result sent as UTF-8.

    Raises:
        ValueError: ``data`` is not valid UTF-8 or not JSON (a :class:`json.JSONDecodeError`),
            or is JSON whose value could not be encoded back (an :class:`~qakeapi.exceptions.UnencodableJSONError`:
            ``NaN`` and infinities, a lone surrogate, a number out of range, nesting deeper than
            :data:`MAX_DEPTH`).
    """
    try:
        if isinstance(data, (bytes, bytearray)):
            data = data.decode("utf-8")
        return _decoder.decode(data)
    except UnicodeDecodeError as exc:
        raise ValueError(f"JSON text is not valid UTF-8: {exc}") from None
