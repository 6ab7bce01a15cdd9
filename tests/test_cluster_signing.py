"""qakeapi.core.cluster.signing: authenticated envelopes (pure), and nodes that drop forged or replayed ones."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from contextlib import AsyncExitStack

import pytest

from qakeapi.core.broadcast.memory import MemoryBackend
from qakeapi.core.cluster.envelope import Envelope, Kind, decode_envelope, encode_envelope, encode_header
from qakeapi.core.cluster.signing import Signer
from qakeapi.core.clustering import ClusteredManager
from tests.redis_server import wait_until
from tests.test_clustering import Node, make_node, quiet

SECRET = "a-cluster-secret-of-32-characters"
NOW = 1_800_000_000.0


def envelope(kind: Kind = Kind.ALL, **data: object) -> bytes:
    return encode_envelope(Envelope(kind, "123456789012", "node-1", 1, data, "hello"), now=NOW)


def test_a_signed_envelope_verifies_and_comes_back_unchanged() -> None:
    signer = Signer(SECRET)
    payload = envelope(room="lobby")
    signed = signer.sign(payload)
    assert signed.startswith(b"#")
    assert payload in signed
    assert signer.verify(signed, NOW + 1) == payload
    assert decode_envelope(signer.verify(signed, NOW)).frame == "hello"


@pytest.mark.parametrize(
    "tamper",
    [
        lambda signed: signed.replace(b"hello", b"HELLO"),  # the frame
        lambda signed: signed.replace(b'"node-1"', b'"node-2"'),  # the header
        lambda signed: signed.split(b"\n", 1)[1],  # the MAC line taken off
        lambda signed: b"#" + b"0" * 64 + b"\n" + signed.split(b"\n", 1)[1],  # a made-up MAC
        lambda signed: Signer("another-secret-of-enough-bytes").sign(signed.split(b"\n", 1)[1]),
    ],
)
def test_anything_altered_or_signed_with_another_secret_is_refused(tamper: object) -> None:
    signed = Signer(SECRET).sign(envelope())
    with pytest.raises(ValueError, match=r"^forged"):
        Signer(SECRET).verify(tamper(signed), NOW)  # type: ignore[operator]


def test_an_old_envelope_is_refused_as_a_replay() -> None:
    signer = Signer(SECRET, replay_window=300)
    signed = signer.sign(envelope())
    assert signer.verify(signed, NOW + 299)
    with pytest.raises(ValueError, match=r"^replayed: made 301s ago"):
        signer.verify(signed, NOW + 301)


def test_the_backend_may_close_a_history_header_with_its_offset_and_epoch() -> None:
    """A room with history: the script appends ,"o":N,"e":"..."} to the signed open header."""
    signer = Signer(SECRET)
    header = encode_header(Envelope(Kind.HISTORY, "123456789012", "node-1", 0, {"room": "lobby"}, '{"n":1}'), NOW)
    opened = signer.sign_open(header[:-1], '{"n":1}')
    stored = f'{opened},"o":7,"e":"e1"}}\n{{"n":1}}'.encode()  # what the Lua script publishes
    publication = decode_envelope(signer.verify(stored, NOW))
    assert (publication.kind, publication.data["o"], publication.frame) == (Kind.HISTORY, 7, '{"n":1}')
    with pytest.raises(ValueError, match=r"^forged"):
        signer.verify(stored.replace(b'"lobby"', b'"admin"'), NOW)


def test_short_secrets_are_refused_and_never_shown() -> None:
    with pytest.raises(ValueError, match="is 3 bytes; it needs at least 16"):
        Signer("abc")
    assert SECRET not in repr(Signer(SECRET))


# -- nodes ---------------------------------------------------------------------------------------


def signed_pair(hub: str) -> tuple[Node, Node]:
    return make_node(hub, "node-1", secret=SECRET), make_node(hub, "node-2", secret=SECRET)


@pytest.mark.asyncio
async def test_nodes_with_the_same_secret_talk_and_drop_what_is_forged_replayed_or_junk(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hub = uuid.uuid4().hex
    a, b = signed_pair(hub)
    attacker = MemoryBackend(hub)  # anyone who can write to the backend
    caplog.set_level(logging.WARNING, "qakeapi")
    try:
        async with AsyncExitStack() as stack:
            a1, _ = await a.join(stack)
            b1, _ = await b.join(stack)
            await wait_until(lambda: a.manager.instance_id in b.manager.nodes, "node-2 heard node-1", timeout=5)
            assert await a.manager.broadcast("signed and sound") == 1
            assert await b1.receive_text() == "signed and sound"
            assert await a1.receive_text() == "signed and sound"

            await attacker.connect()
            forged = encode_envelope(Envelope(Kind.ALL, "999999999999", "evil", 1, {}, "forged"))
            old = Signer(SECRET).sign(
                encode_envelope(Envelope(Kind.ALL, "888888888888", "node-x", 1, {}, "replayed"), now=time.time() - 3600)
            )
            for _ in range(100):
                await attacker.publish(a.manager.channel, forged)
            await attacker.publish(a.manager.channel, old)
            await attacker.publish(a.manager.channel, b"junk")
            assert await a.manager.broadcast("still fine") == 1
            assert await b1.receive_text() == "still fine"
            assert await a1.receive_text() == "still fine"
            await quiet(a1, b1)
            await wait_until(lambda: b.manager._dispatcher.rejected.get("forged", 0) >= 101, "all counted", timeout=5)
            assert b.manager._dispatcher.rejected == {"forged": 101, "replayed": 1}
        lines = [r.getMessage() for r in caplog.records if "unauthenticated" in r.getMessage()]
        assert len(lines) == 2  # one per node for 102 rejections each, not one per message
        assert SECRET not in caplog.text
    finally:
        await attacker.disconnect()
        for node in (a, b):
            await node.manager.close()


@pytest.mark.asyncio
async def test_a_revocation_dated_in_the_future_counts_as_of_now() -> None:
    hub = uuid.uuid4().hex
    a, b = signed_pair(hub)
    applied: list[tuple[str, float]] = []
    b.manager.subscribe_revocations(lambda user, reason, at: applied.append((user, at)))
    try:
        await a.manager.start()
        await b.manager.start()
        await wait_until(lambda: a.manager.instance_id in b.manager.nodes, "node-2 heard node-1", timeout=5)
        before = time.time()
        await a.manager.publish_revocation("alice", "signed out", time.time() + 10 * 365 * 86400)
        await wait_until(lambda: bool(applied), "node-2 applied it", timeout=5)
        [(user, at)] = applied
        assert user == "alice"
        assert before <= at <= time.time()  # not ten years ahead: tokens issued from now on still work
    finally:
        for node in (a, b):
            await node.manager.close()


@pytest.mark.asyncio
async def test_a_node_without_a_secret_on_a_real_backend_warns_once_at_start(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from qakeapi import WebSocketHandler
    from qakeapi.core.broadcast.redis_stream import RedisStreamBackend

    monkeypatch.delenv("QAKEAPI_CLUSTER_SECRET", raising=False)
    caplog.set_level(logging.WARNING, "qakeapi")
    unsigned = ClusteredManager(WebSocketHandler(), RedisStreamBackend("redis://:pw@127.0.0.1:1"), "n")
    monkeypatch.setenv("QAKEAPI_CLUSTER_SECRET", SECRET)
    signed = ClusteredManager(WebSocketHandler(), RedisStreamBackend("redis://127.0.0.1:1"), "m")
    try:
        await unsigned.start()
        await signed.start()
        await asyncio.sleep(0)
    finally:
        await unsigned.close(flush_timeout=0)
        await signed.close(flush_timeout=0)
    warnings = [r.getMessage() for r in caplog.records if "not authenticated" in r.getMessage()]
    assert len(warnings) == 1
    assert "QAKEAPI_CLUSTER_SECRET" in warnings[0]
    assert "pw" not in warnings[0]
