"""One vocabulary: the names the docs, the examples and the README retired stay retired.

One import path per name (the top-level one: ``qakeapi``, or ``qakeapi.security`` and
``qakeapi.testing`` for their optional parts), one secret-key variable (``QAKEAPI_SECRET_KEY``),
one pair of cluster variables (``QAKEAPI_NODE_ID``/``QAKEAPI_REDIS_URL``), one token endpoint
(``POST /token``) and one chat protocol (``join``/``say``).

The guide's code blocks are fixed: they are the seed's (``tests/seed/websockets.rst``, the guide
as it was given), byte for byte, and speak the older names. So the exceptions are read from the
seed, not listed here: the text of the seed's blocks wherever it appears; and the retired
names the seed's blocks themselves use (its protocol and token endpoint) on the guide's page,
which documents and tests the seed's code, and in the ``examples_app`` modules the seed's blocks
import (with the ``examples_app`` modules those import), which serve the guide's own tests.
The demo (``demo_app.py`` and its page) is another change's and is left out.
"""

from __future__ import annotations

import ast
import re
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

import qakeapi
import qakeapi.security
import qakeapi.testing

ROOT = Path(__file__).resolve().parents[1]
SEED = ROOT / "tests" / "seed" / "websockets.rst"
GUIDE = ROOT / "docs" / "guide" / "websockets.rst"
DEMO = frozenset({"examples_app/demo_app.py", "examples_app/static/demo.html", "examples_app/static/demo.js"})

RETIRED = {
    "CHAT_SECRET_KEY": "QAKEAPI_SECRET_KEY",
    "BOARD_KEY": "QAKEAPI_SECRET_KEY",
    "SECRET_KEY": "QAKEAPI_SECRET_KEY",
    "NODE_ID": "QAKEAPI_NODE_ID",
    "REDIS_URL": "QAKEAPI_REDIS_URL",
    "/api/generate-token": "POST /token",
    "/login": "POST /token",
    "join_room": "join",
    "chat_message": "say",
}
"""Each retired name, and what replaced it."""

_PATTERNS = {name: re.compile(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_-])") for name in RETIRED}
_IMPORT = re.compile(r"from\s+(qakeapi(?:\.\w+)+)\s+import\s+(\([^)]*\)|[^\n]+(?:\\\n[^\n]+)*)")
_TOP = {"qakeapi": set(qakeapi.__all__), "qakeapi.security": set(qakeapi.security.__all__)}
_TOP["qakeapi.testing"] = set(qakeapi.testing.__all__)


def code_blocks(path: Path) -> list[tuple[str, str, int, int]]:
    """The ``.. code-block::`` blocks of an RST file: language, body, first and last line (0-based).

    The body is read as ``shared/hooks/codeblocks.py`` reads it (lines right-stripped, blank
    lines at either end dropped), so a block is the seed's when the two bodies are equal.
    """
    lines = path.read_text(encoding="utf-8").splitlines()
    found, i = [], 0
    while i < len(lines):
        match = re.match(r"^(\s*)\.\. code-block::\s*(\S+)\s*$", lines[i])
        if not match:
            i += 1
            continue
        language, base, start = match.group(2), len(match.group(1)), i
        i += 1
        body = []
        while i < len(lines) and (not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > base):
            body.append(lines[i])
            i += 1
        while body and not body[-1].strip():
            body.pop()
        while body and not body[0].strip():
            body.pop(0)
        found.append((language, "\n".join(line.rstrip() for line in body), start, i))
    return found


SEED_BLOCKS = [(language, body) for language, body, _, _ in code_blocks(SEED)]


def seed_names() -> set[str]:
    """The retired names the seed's blocks use."""
    text = "\n".join(body for _, body in SEED_BLOCKS)
    return {name for name, pattern in _PATTERNS.items() if pattern.search(text)}


def serving_the_seed() -> set[str]:
    """The ``examples_app`` files the seed's blocks import, with the ``examples_app`` modules they import."""
    todo = [m for _, body in SEED_BLOCKS for m in re.findall(r"from (examples_app\.\w+) import", body)]
    seen: set[str] = set()
    while todo:
        module = todo.pop()
        path = f"{module.replace('.', '/')}.py"
        if path in seen:
            continue
        seen.add(path)
        for node in ast.walk(ast.parse((ROOT / path).read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("examples_app."):
                todo.append(node.module)
    return seen


def scanned() -> Iterator[Path]:
    """The pages, the examples (the demo aside) and the README."""
    yield ROOT / "README.md"
    yield from sorted((ROOT / "docs").rglob("*.rst"))
    for path in sorted((ROOT / "examples_app").rglob("*")):
        if path.suffix in (".py", ".html", ".js", ".md") and str(path.relative_to(ROOT)) not in DEMO:
            yield path


def without_seed_blocks(path: Path) -> str:
    """The file's text with the seed's blocks blanked out (lines kept, so line numbers hold)."""
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    if path.suffix == ".rst":
        for language, body, start, end in code_blocks(path):
            if (language, body) in SEED_BLOCKS:
                lines[start:end] = [""] * (end - start)
        return "\n".join(lines)
    for _, body in SEED_BLOCKS:  # a seed block saved as a file of its own (the guide's chat page)
        if textwrap.dedent(body).strip() == text.strip():
            return ""
    return text


def retired_uses(path: Path) -> Iterator[str]:
    """``path:line: what it says -> what to write`` for each retired name or deep import."""
    relative = str(path.relative_to(ROOT))
    allowed = seed_names() if path == GUIDE or relative in serving_the_seed() else set()
    text = without_seed_blocks(path)
    for number, line in enumerate(text.splitlines(), 1):
        for name, pattern in _PATTERNS.items():
            if name not in allowed and pattern.search(line):
                yield f"{relative}:{number}: {name} -> {RETIRED[name]}: {line.strip()}"
    for match in _IMPORT.finditer(text):
        module = match.group(1)
        names = [n.strip().split(" as ")[0] for n in re.split(r"[,\s\\()]+\s*", match.group(2)) if n.strip()]
        number = text.count("\n", 0, match.start()) + 1
        for top, exported in sorted(_TOP.items(), key=lambda item: -len(item[0])):  # the most specific first
            if module.startswith(f"{top}.") and module not in _TOP:
                for name in names:
                    if name in exported:
                        yield f"{relative}:{number}: from {module} import {name} -> from {top} import {name}"
                break


def test_the_guide_keeps_the_seeds_blocks_unchanged_and_in_order() -> None:
    page = [(language, body) for language, body, _, _ in code_blocks(GUIDE)]
    position = 0
    for number, block in enumerate(SEED_BLOCKS, 1):
        while position < len(page) and page[position] != block:
            position += 1
        assert position < len(page), f"seed block {number} ({block[0]}) is missing, changed or out of order"
        position += 1


def test_the_exceptions_come_from_the_seed() -> None:
    # What the seed uses, and who serves it: if either changes, this test says so.
    assert seed_names() == {"/api/generate-token", "join_room", "chat_message"}
    assert "examples_app/websocket_app.py" in serving_the_seed()


@pytest.mark.parametrize("path", list(scanned()), ids=lambda path: str(path.relative_to(ROOT)))
def test_no_retired_name_outside_the_guides_fixed_blocks(path: Path) -> None:
    found = list(retired_uses(path))
    assert not found, "retired names (write what follows the arrow):\n" + "\n".join(found)


def test_the_check_finds_what_it_looks_for(tmp_path: Path) -> None:
    page = tmp_path / "page.rst"
    page.write_text(
        ".. code-block:: python\n\n   from qakeapi.core.rooms import Rooms, Room\n"
        "   from qakeapi.core.origins import OriginReason\n"
        "   from qakeapi.security.websocket_auth import (\n       JWTAuthenticator,\n   )\n\n"
        "Set ``CHAT_SECRET_KEY`` and ``NODE_ID``, not ``QAKEAPI_NODE_ID``; POST /api/generate-token.\n",
        encoding="utf-8",
    )
    page = page.rename(ROOT / "docs" / f".vocabulary-probe-{tmp_path.name}.rst")
    try:
        found = [line.split(": ", 1)[1] for line in retired_uses(page)]
    finally:
        page.unlink()
    assert sorted(found) == sorted(
        [
            "CHAT_SECRET_KEY -> QAKEAPI_SECRET_KEY: Set ``CHAT_SECRET_KEY`` and ``NODE_ID``, not "
            "``QAKEAPI_NODE_ID``; POST /api/generate-token.",
            "NODE_ID -> QAKEAPI_NODE_ID: Set ``CHAT_SECRET_KEY`` and ``NODE_ID``, not ``QAKEAPI_NODE_ID``; "
            "POST /api/generate-token.",
            "/api/generate-token -> POST /token: Set ``CHAT_SECRET_KEY`` and ``NODE_ID``, not "
            "``QAKEAPI_NODE_ID``; POST /api/generate-token.",
            "from qakeapi.core.rooms import Rooms -> from qakeapi import Rooms",
            "from qakeapi.core.rooms import Room -> from qakeapi import Room",
            "from qakeapi.security.websocket_auth import JWTAuthenticator"
            " -> from qakeapi.security import JWTAuthenticator",
        ]
    )
