"""JSON encoding used for every frame QakeAPI sends, so a message is encoded the same way everywhere.

Decoding is strict JSON (RFC 8259): the ``NaN``, ``Infinity`` and ``-Infinity`` that Python's
:mod:`json` accepts by default are refused, so whatever QakeAPI decodes it can encode again.
"""

from __future__ import annotations

import json
from typing import Any, NoReturn

__all__ = ["NonStandardJSONError", "decode_json", "encode_json", "strict_decoder"]

_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


class NonStandardJSONError(ValueError):
    """The text used ``NaN``, ``Infinity`` or ``-Infinity``, which are not JSON (RFC 8259).

    Args:
        constant: The constant found.
    """

    def __init__(self, constant: str) -> None:
        self.constant = constant
        super().__init__(f"{constant} is not valid JSON (RFC 8259 has no NaN or infinities)")


def _reject_constant(constant: str) -> NoReturn:
    raise NonStandardJSONError(constant)


def strict_decoder() -> json.JSONDecoder:
    """A :class:`json.JSONDecoder` that refuses ``NaN`` and the infinities.

    Returns:
        The decoder; its ``decode`` raises :class:`NonStandardJSONError` on those constants.
    """
    return json.JSONDecoder(parse_constant=_reject_constant)


_decoder = strict_decoder()


def encode_json(data: Any) -> str:
    """Encode ``data`` as compact JSON text.

    Args:
        data: Any value :mod:`json` can encode (``NaN`` and infinities are refused).

    Returns:
        The JSON text.

    Raises:
        TypeError: ``data`` holds a value JSON cannot represent.
        ValueError: ``data`` holds ``NaN`` or an infinity.
    """
    return _encoder.encode(data)


def decode_json(data: str | bytes) -> Any:
    """Decode JSON text (or UTF-8 bytes).

    Args:
        data: The JSON document.

    Returns:
        The decoded value.

    Raises:
        ValueError: ``data`` is not valid JSON (a :class:`json.JSONDecodeError`, or
            :class:`NonStandardJSONError` for ``NaN`` and infinities), or nests too deeply.
    """
    try:
        if isinstance(data, (bytes, bytearray)):
            data = data.decode("utf-8")
        return _decoder.decode(data)
    except UnicodeDecodeError as exc:
        raise ValueError(f"JSON text is not valid UTF-8: {exc}") from None
    except RecursionError:
        raise ValueError("JSON nests too deeply") from None
