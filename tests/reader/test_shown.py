"""What a page shows a command printing (tests/reader/shown.py), on small blocks."""

from __future__ import annotations

import pytest

from tests.reader.page import Block
from tests.reader.shown import assert_printed, output_of, printed_lines

BLOCK = Block(
    line=1,
    language="console",
    code=(
        "$ python -m websockets ws://localhost:8000/ws\n"
        "Connected to ws://localhost:8000/ws.\n"
        '< {"type":"welcome","id":1}\n'
        '> "hello"\n'
        "...\n"
        '< {"from":1,"message":"hello"}\n'
        "$ curl -s http://localhost:8000/health\n"
        '{"status":"ok"}\n'
    ),
    visible=True,
    section="Quickstart",
    target=None,
)

PRINTED = (
    'Connected to ws://127.0.0.1:40123/ws.\n> \x1b7\n\x1b[A\x1b[L< {"type":"welcome","id":3}\n'
    '\x1b8\x1b[B> \x1b7\n\x1b[A\x1b[L< {"from":3,"message":"hello"}\n'
)


def test_output_of_leaves_out_typed_lines_and_elisions() -> None:
    assert output_of(BLOCK, "python -m websockets ws://localhost:8000/ws") == [
        "Connected to ws://localhost:8000/ws.",
        '< {"type":"welcome","id":1}',
        '< {"from":1,"message":"hello"}',
    ]
    assert output_of(BLOCK, "curl -s http://localhost:8000/health") == ['{"status":"ok"}']


def test_printed_lines_drop_the_terminal_escapes_and_bare_prompts() -> None:
    assert printed_lines(PRINTED) == [
        "Connected to ws://127.0.0.1:40123/ws.",
        '< {"type":"welcome","id":3}',
        '< {"from":3,"message":"hello"}',
    ]


def test_numbers_match_only_when_asked() -> None:
    shown = output_of(BLOCK, "python -m websockets ws://localhost:8000/ws")
    assert_printed(shown, PRINTED, any_number=True)
    with pytest.raises(AssertionError, match="which was not printed"):
        assert_printed(shown, PRINTED)


def test_order_counts_and_a_leading_elision_matches_any_start() -> None:
    with pytest.raises(AssertionError):
        assert_printed(["b", "a"], "a\nb\n")
    assert_printed(
        [".../main.py:14: Warning", "== 2 passed in 0.1s =="], "/tmp/x/main.py:14: Warning\n= 2 passed in 0.1s =\n"
    )
