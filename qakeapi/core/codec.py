"""JSON encoding used for every frame QakeAPI sends, so a message is encoded the same way everywhere."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["decode_json", "encode_json"]

_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


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
        ValueError: ``data`` is not valid JSON (a :class:`json.JSONDecodeError`), or nests
            too deeply to decode.
    """
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError("JSON nests too deeply") from None
