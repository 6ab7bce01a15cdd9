"""Property-based fuzzing of the cluster envelope: whatever arrives on the cluster channel —
random bytes, or well-formed envelopes of any kind with fields of any shape — decoding either
gives an envelope or raises ``ValueError``, and a node's dispatcher keeps running: a valid
broadcast sent after the junk still reaches the node's client."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qakeapi import Application, WebSocket, WebSocketHandler
from qakeapi.core.broadcast.memory import MemoryBackend
from qakeapi.core.cluster.envelope import Envelope, Kind, decode_envelope, encode_envelope
from qakeapi.core.cluster.history import HistoryPolicy
from qakeapi.core.clustering import ClusteredManager
from qakeapi.testing import TestClient
from tests.test_fuzz_dispatch import json_values

FIELDS = ["room", "exclude", "user", "connection", "version", "joins", "leaves", "to", "members", "count",
          "everyone", "rooms", "users", "connections", "o", "e", "reason", "at"]  # fmt: skip
"""Every field some kind reads."""

envelopes = st.builds(
    Envelope,
    kind=st.sampled_from(list(Kind)),
    instance=st.sampled_from(["111111111111", "222222222222"]),
    node=st.text(max_size=8).filter(lambda text: "\n" not in text),
    seq=st.integers(min_value=0, max_value=6),
    data=st.dictionaries(st.sampled_from(FIELDS), json_values | st.just("r"), max_size=5),
    frame=st.none() | st.text(max_size=20) | st.binary(max_size=20),
)
payloads = st.binary(max_size=120) | envelopes.map(encode_envelope)


@settings(max_examples=400, deadline=None)
@given(payload=payloads)
def test_decoding_gives_an_envelope_or_a_value_error(payload: bytes) -> None:
    try:
        envelope = decode_envelope(payload)
    except ValueError:
        return
    assert isinstance(envelope, Envelope)
    assert decode_envelope(encode_envelope(envelope)) == envelope


@settings(max_examples=300, deadline=None)
@given(envelope=envelopes)
def test_every_envelope_survives_the_wire(envelope: Envelope) -> None:
    assert decode_envelope(encode_envelope(envelope)) == envelope


class Errors(logging.Handler):
    """Collects the records at ERROR and above (a malformed message is a warning, not an error)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def deliver_after(junk: list[bytes]) -> list[Any]:
    """Feed ``junk`` to a node (a member of the history room ``r``), then a valid broadcast."""
    hub = uuid.uuid4().hex
    handler = WebSocketHandler()
    manager = ClusteredManager(
        handler, MemoryBackend(hub), "fuzzed", heartbeat_interval=0.05, node_timeout=0.4, history=HistoryPolicy()
    )
    app = Application()

    @handler.on_connect
    async def join(websocket: WebSocket) -> None:
        manager.rooms.join("r", websocket)
        await websocket.send_text("ready")

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket) -> None:
        await manager.handle_connection(websocket)

    stranger = MemoryBackend(hub)
    await stranger.connect()
    received: list[Any] = []
    try:
        # Junk is logged (one warning each), which the TestClient would re-raise by default.
        client = TestClient(app, timeout=5.0, raise_server_exceptions=False)
        async with client.websocket_connect("/ws") as session:
            assert await session.receive_text() == "ready"
            for payload in junk:
                await stranger.publish(manager.channel, payload)
            probe = Envelope(Kind.ALL, "probe", "probe", 1, {}, "the probe")
            await stranger.publish(manager.channel, encode_envelope(probe))
            while "the probe" not in received:  # the junk may deliver frames of its own first
                message = await session.receive()
                received.append(message.get("text", message.get("bytes")))
    finally:
        await stranger.disconnect()
        await manager.close()
    return received


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(junk=st.lists(payloads, min_size=1, max_size=6))
def test_junk_on_the_channel_never_stops_a_node(junk: list[bytes]) -> None:
    errors = Errors()
    logging.getLogger("qakeapi").addHandler(errors)
    try:
        received = asyncio.run(deliver_after(junk))
    finally:
        logging.getLogger("qakeapi").removeHandler(errors)
    assert received[-1] == "the probe"
    assert [record.getMessage() for record in errors.records] == []  # each bad message: one warning
