"""Tests for qakeapi.core.cluster.envelope and identity: the wire format and the ids (pure)."""

from __future__ import annotations

import json

import pytest

from qakeapi.core.cluster.envelope import Envelope, Kind, decode_envelope, encode_envelope
from qakeapi.core.cluster.identity import connection_id, instance_of, local_of, new_instance_id, worker_hint


@pytest.mark.parametrize(
    "frame",
    ["hello", "", "héllo ✓ 🚀", "line one\nline two", '{"a":[1,2]}', b"\x00\x01\xff", b"", b"a\nb\n", None],
    ids=["plain", "empty", "unicode", "newlines", "json", "binary", "empty-bytes", "binary-newlines", "none"],
)
def test_round_trip(frame: str | bytes | None) -> None:
    envelope = Envelope(Kind.ROOM, "123456789012", "node-1", 7, {"room": "lobby", "exclude": "1234567890125"}, frame)
    assert decode_envelope(encode_envelope(envelope)) == envelope


def test_the_wire_format_is_a_json_header_line_then_the_frame() -> None:
    payload = encode_envelope(Envelope(Kind.ALL, "123456789012", "node-1", 3, {}, "hi ✓"), now=1_700_000_000.25)
    head, _, body = payload.partition(b"\n")
    assert json.loads(head) == {
        "q": 1,
        "k": "all",
        "i": "123456789012",
        "n": "node-1",
        "s": 3,
        "t": 1_700_000_000_250,
        "f": "t",
    }
    assert body == "hi ✓".encode()
    binary = encode_envelope(Envelope(Kind.USER, "123456789012", "n", 4, {"user": "alice"}, b"\x00"))
    assert json.loads(binary.partition(b"\n")[0])["f"] == "b"
    control = encode_envelope(Envelope(Kind.HEARTBEAT, "123456789012", "n", 0, {"version": 2}))
    assert control.endswith(b"\n")
    assert "f" not in json.loads(control.partition(b"\n")[0])


def test_text_and_binary_frames_of_the_same_bytes_stay_apart() -> None:
    text = decode_envelope(encode_envelope(Envelope(Kind.ALL, "1", "n", 1, {}, "abc")))
    binary = decode_envelope(encode_envelope(Envelope(Kind.ALL, "1", "n", 1, {}, b"abc")))
    assert (text.frame, binary.frame) == ("abc", b"abc")


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        (b"no newline", "no header line"),
        (b"not json\nbody", "bad header"),
        (b"[1]\n", "of protocol 1"),
        (b'{"q":2,"k":"all","i":"1","n":"n","s":1}\n', "of protocol 1"),
        (b'{"q":1,"k":"nope","i":"1","n":"n","s":1}\n', "malformed"),
        (b'{"q":1,"k":"all","n":"n","s":1}\n', "malformed"),
        (b'{"q":1,"k":"all","i":"1","n":"n","s":-1}\n', "bad instance, node or sequence"),
        (b'{"q":1,"k":"all","i":1,"n":"n","s":1}\n', "bad instance, node or sequence"),
        (b'{"q":1,"k":"all","i":"1","n":"n","s":1,"f":"x"}\n', "unknown frame format"),
        (b'{"q":1,"k":"all","i":"1","n":"n","s":1,"f":"t"}\n\xff', "not UTF-8"),
        (b"tnode-1\nhello", "bad header"),  # the old format
    ],
)
def test_malformed_payloads_raise_value_error(payload: bytes, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        decode_envelope(payload)


def test_instance_ids_are_12_digits_and_unique() -> None:
    ids = {new_instance_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(len(i) == 12 and i.isdigit() and i[0] != "0" for i in ids)


def test_connection_ids_carry_their_instance() -> None:
    cid = connection_id("483192057166", 7)
    assert cid == "4831920571667"
    assert instance_of(cid) == "483192057166"
    assert local_of(cid) == "7"
    assert instance_of("483192057166") is None  # no connection part
    assert instance_of("48319205716a7") is None
    assert instance_of("7") is None


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"WEB_CONCURRENCY": "4"}, "WEB_CONCURRENCY=4"),
        ({"WEB_CONCURRENCY": "1"}, None),
        ({}, None),
        ({"WEB_CONCURRENCY": "x"}, None),
    ],
)
def test_worker_hint_reads_web_concurrency(environ: dict[str, str], expected: str | None) -> None:
    assert worker_hint(environ) == expected  # pytest itself is not a multiprocessing child
