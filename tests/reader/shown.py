"""What a page shows a command printing, and checking that the command printed it.

A ``console`` block shows each command on a ``$ `` line and what it prints on the lines after
it, up to the next command. Lines starting with ``> `` are what the reader types into an
interactive command (the ``websockets`` client's prompt); they are not output. A line ``...``
stands for output left out, and a line starting with ``...`` for one whose start is (a path
that differs on each machine); blank lines are not compared.
"""

from __future__ import annotations

import re
import time
from typing import Protocol

from tests.reader.page import Block

__all__ = ["assert_printed", "assert_server_printed", "output_of", "printed_lines"]

_ESCAPE = re.compile(r"\x1b(?:\[[0-9;?]*[A-Za-z]|[78])")
_DOCUMENTED_HOST = re.compile(r"localhost:\d+")


def output_of(block: Block, command: str) -> list[str]:
    """The lines ``block`` shows after ``$ command``, without the typed (``> ``) lines."""
    lines = block.code.splitlines()
    at = lines.index(f"$ {command}")
    shown: list[str] = []
    for line in lines[at + 1 :]:
        if line.startswith("$ "):
            break
        if not line.startswith(">") and line.strip() not in ("", "..."):
            shown.append(line)
    return shown


def printed_lines(printed: str) -> list[str]:
    """What a command printed, as a terminal shows it: escape sequences and bare prompts removed."""
    lines = []
    for line in _ESCAPE.sub("", printed).replace("\r", "").splitlines():
        line = line.removeprefix("> ") if line.startswith("> <") else line
        if line.strip() not in ("", ">"):
            lines.append(line.rstrip())
    return lines


def _pattern(line: str, *, any_number: bool) -> re.Pattern[str]:
    parts = []
    if line.startswith("..."):  # a line whose start (a path on the reader's machine) is left out
        parts.append(".*")
        line = line[3:]
    for index, piece in enumerate(_DOCUMENTED_HOST.split(line)):
        if index:
            parts.append(r"(?:localhost|127\.0\.0\.1):\d+")
        escaped = re.escape(piece)
        parts.append(re.sub(r"\d+", r"\\d+", escaped) if any_number else escaped)
    return re.compile("".join(parts))


def assert_printed(shown: list[str], printed: str, *, any_number: bool = False) -> None:
    """Every line ``shown`` is a line of ``printed``, in the same order.

    Args:
        shown: The lines the page shows (:func:`output_of`).
        printed: What the command printed.
        any_number: Numbers that change from run to run (ids, process ids) match any number.
            ``localhost:<port>`` always matches the port the test really used, and the ``=``
            padding of pytest's summary lines (its width follows the terminal's) is left out.

    Raises:
        AssertionError: A shown line is missing; the message has both.
    """
    lines = [line.strip("= ") for line in printed_lines(printed)]
    position = 0
    for line in shown:
        pattern = _pattern(line.strip("= "), any_number=any_number)
        while position < len(lines) and not pattern.fullmatch(lines[position]):
            position += 1
        assert position < len(lines), f"the page shows {line!r}, which was not printed (in order):\n" + "\n".join(lines)
        position += 1


class _PrintsOutput(Protocol):
    def output(self) -> str: ...


def assert_server_printed(shown: list[str], server: _PrintsOutput, *, timeout: float = 15.0) -> None:
    """:func:`assert_printed` on what a running server prints (numbers aside), waiting for it.

    A server listens before it has written its last start-up line ("Uvicorn running on ..."
    comes after the socket is bound), so the check is retried until the lines are there; the
    bound only catches a server that never prints them.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            assert_printed(shown, server.output(), any_number=True)
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
