"""Tests for qakeapi.core.counters: histogram storage, payload sizes, open connections, hook labels."""

from __future__ import annotations

import math

import pytest

from qakeapi.core.counters import Buckets, Counters, hook_name, payload_size


def test_buckets_count_each_observation_in_the_first_bound_at_or_above_it() -> None:
    buckets = Buckets((1.0, 5.0, 10.0))
    for value in (0.5, 1.0, 3.0, 10.0, 11.0, 500.0):
        buckets.observe(value)
    buckets.observe_many(4.0, 3)
    assert buckets.counts == [2, 4, 1, 2]
    assert buckets.count == 9
    assert buckets.sum == pytest.approx(0.5 + 1 + 3 + 10 + 11 + 500 + 12)
    cumulative = buckets.cumulative()
    assert cumulative[:3] == [(1.0, 2), (5.0, 6), (10.0, 7)]
    assert math.isinf(cumulative[-1][0])
    assert cumulative[-1][1] == 9


def test_buckets_refuse_bounds_that_do_not_increase() -> None:
    with pytest.raises(ValueError, match="increasing"):
        Buckets((1.0, 1.0, 2.0))
    with pytest.raises(ValueError, match="increasing"):
        Buckets((2.0, 1.0))


def test_payload_size_is_utf8_bytes_for_text_and_length_for_bytes() -> None:
    assert payload_size("hello") == 5
    assert payload_size("héllo ✓") == len("héllo ✓".encode())
    assert payload_size(b"\x00\xff") == 2
    assert payload_size("") == 0


def test_open_connections_are_opened_minus_closed_per_route() -> None:
    c = Counters()
    for route in ("/ws", "/ws", "/ws", "/chat/{room}"):
        c.connected(route)
    c.disconnected("/ws", 1000)
    c.disconnected("/ws", 1008)
    assert c.open_connections() == {"/ws": 1, "/chat/{room}": 1}
    assert c.closed == {("/ws", 1000): 1, ("/ws", 1008): 1}


def test_hook_timers_are_one_histogram_per_kind_and_hook() -> None:
    c = Counters()

    async def greet() -> None: ...

    first = c.hook_timer("on_connect", greet)
    assert c.hook_timer("on_connect", greet) is first
    assert c.hook_timer("on_message", greet) is not first
    assert hook_name(greet) == f"{__name__}.test_hook_timers_are_one_histogram_per_kind_and_hook.<locals>.greet"
