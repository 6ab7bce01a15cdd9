"""Runs the documentation as tests, with sybil.

Every ``python`` code block (and ``invisible-code-block``) in ``docs/`` runs, in order, in one
event loop per document, so blocks may use top-level ``await``. Assertions are rewritten by
pytest (diffs on failure) and tracebacks point at ``.rst`` lines.

Blocks run where the page tells the reader to put them (see :mod:`tests.reader.page`): a block
after "Save this as ``chat/main.py``:" starts a fresh namespace for that file, one after "Add
this to ``chat/main.py``:" runs in it, and a hidden check (``invisible-code-block``) or a block
with no file runs in the namespace of the file block before it (the document's own namespace
when there is none). While a file's block runs, the other Python files the page saved next to
it (or below it) are importable by module name, as they are for a reader running the code in
that directory (``from app import app``; ``examples_app.websocket_app`` in the guide is the
module the guide shows, not the repository's). Nothing is seeded: every name a block uses comes
from text the reader sees.

Each ``test_*`` function a block defines becomes a test item of its own, run right after the
block that defines it (``async def`` tests run in the document's loop).

``html`` blocks (the guide's chat client, the login page of the authentication how-to) are
saved with the files the page has told the reader to write so far, the server their section
documents is started with its documented command (under uvicorn, on a free port), and the page
goes through its scenario in headless Chromium (``tests.reader.browser.SCENARIOS``). The browser
loads the page from that server at http://localhost:8000/ (mapped to the server's real port), as
the docs tell the reader to, and checks that the server serves the saved file: a page opened
from a ``file://`` URL would send ``Origin: null``, which QakeAPI's default origin policy refuses.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path, PurePosixPath
from types import ModuleType
from typing import Any

import pytest
from _pytest._code.code import Traceback
from _pytest.assertion.rewrite import rewrite_asserts
from sybil import Example, Sybil
from sybil.evaluators.python import pad
from sybil.integration.pytest import SybilFile
from sybil.parsers.rest import CodeBlockParser

from tests.reader.page import Page

LOOP = "__docs_event_loop__"
FILES = "__docs_files__"  # file path -> the namespace of that file's blocks
CURRENT = "__docs_current__"  # the namespace of the last file block run
BY_LINE = "__docs_namespace_by_line__"  # block line -> the namespace it ran in

# The guide's own secret ("your-secret-key") is too short for HS256; QakeAPI warns about it,
# and only that exact warning is let through in the docs.
SHORT_KEY_WARNING = pytest.mark.filterwarnings(
    r"ignore:the secret key is 15 bytes; HS256 needs at least 32:qakeapi.security.tokens.InsecureKeyWarning"
)

WELCOME_FIRST = (
    "guide contradiction: this test sends before reading the 'welcome' message that the guide's own "
    "server sends on connect (and that test_websocket_connection expects), so its first receive_json() "
    "returns the welcome"
)
# Guide tests that fail because of the contradiction above: strict xfail, and only when the
# failing assertion is about the welcome message (any other failure fails the test).
EXPECTED_FAILURES = {
    "test_websocket_chat_room": WELCOME_FIRST,
    "test_websocket_error_handling": WELCOME_FIRST,
}


def _loop(namespace: dict[str, Any]) -> asyncio.AbstractEventLoop:
    loop: asyncio.AbstractEventLoop = namespace[LOOP]
    return loop


@cache
def _page(path: str) -> Page:
    return Page.read(path)


def block_namespace(example: Example) -> dict[str, Any]:
    """The namespace a block runs in: its file's (see the module docstring), else the current one."""
    document = example.namespace
    block = _page(example.path).block_at(example.line)
    if block.target is None:
        namespace: dict[str, Any] = document.get(CURRENT, document)
    elif block.target.append:
        if block.target.path not in document[FILES]:
            raise LookupError(f"line {example.line} adds to {block.target.path}, which no earlier block saved")
        namespace = document[FILES][block.target.path]
    else:
        module = Path(block.target.path).stem
        namespace = document[FILES][block.target.path] = {"__name__": module}
    if block.target is not None:
        document[CURRENT] = namespace
    document[BY_LINE][example.line] = namespace
    return namespace


@contextmanager
def sibling_modules(example: Example, namespace: dict[str, Any]) -> Iterator[None]:
    """Make the page's other files importable from this one, as they are for the reader.

    A reader who saved ``board/app.py`` and ``board/test_app.py`` runs the tests in ``board/``,
    where ``from app import app`` finds the first file. While a block of a file runs, every
    other Python file the page has saved in that file's directory (or below it) is importable
    under its module name, as a module holding that file's namespace.
    """
    files: dict[str, dict[str, Any]] = example.namespace[FILES]
    current = next((path for path, ns in files.items() if ns is namespace), None)
    if current is None:
        yield
        return
    here = PurePosixPath(current).parent
    modules: dict[str, ModuleType] = {}
    for path, file_namespace in files.items():
        relative = PurePosixPath(path)
        if path == current or relative.suffix != ".py" or here not in relative.parents:
            continue
        parts = relative.relative_to(here).with_suffix("").parts
        for depth in range(1, len(parts)):  # the folders on the way are namespace packages
            package = ".".join(parts[:depth])
            if package not in modules:
                modules[package] = ModuleType(package)
                modules[package].__path__ = []
        module = modules[".".join(parts)] = ModuleType(".".join(parts))
        module.__dict__.update(file_namespace)
    saved = {name: sys.modules[name] for name in modules if name in sys.modules}
    sys.modules.update(modules)
    try:
        yield
    finally:
        for name in modules:
            del sys.modules[name]
        sys.modules.update(saved)


def evaluate_python(example: Example) -> None:
    """Run a block: rewrite its asserts, allow top-level ``await``, keep ``.rst`` line numbers."""
    __tracebackhide__ = True
    namespace = block_namespace(example)
    source = pad(example.parsed, example.line + example.parsed.line_offset)
    tree = ast.parse(source, example.path)
    rewrite_asserts(tree, source.encode(), example.path)
    code = compile(tree, example.path, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True)
    with sibling_modules(example, namespace):
        result = eval(code, namespace)
        if inspect.iscoroutine(result):
            _loop(example.namespace).run_until_complete(result)
    namespace.pop("__builtins__", None)


def evaluate_html(example: Example) -> None:
    """Run an HTML page in Chromium against the server its section documents (see ``SCENARIOS``)."""
    __tracebackhide__ = True
    from tests.reader.browser import SCENARIOS
    from tests.reader.shell import shell

    page = _page(example.path)
    block = page.block_at(example.line)
    if block.target is None:
        raise LookupError(f"line {example.line}: the page does not say where to save this HTML")
    tmp_path: Path = example.namespace["tmp_path"]
    page.write(tmp_path, through=block.section)
    with shell(tmp_path) as session:
        servers = [result for commands in page.commands(block.section) for result in session.run_block(commands)]
        assert len(servers) == 1, f"expected the section to start one server, got {servers}"
        scenario = SCENARIOS[block.target.path]
        page_file = tmp_path / block.target.path
        shots = _loop(example.namespace).run_until_complete(scenario(page_file, session.servers[0], tmp_path))
    print("screenshots:", *shots.values())  # noqa: T201 - shown with -rP / on failure


def setup_namespace(namespace: dict[str, Any]) -> None:
    namespace[LOOP] = asyncio.new_event_loop()
    namespace[FILES] = {}
    namespace[BY_LINE] = {}


def teardown_namespace(namespace: dict[str, Any]) -> None:
    loop = namespace.pop(LOOP)
    pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.close()


docs = Sybil(
    parsers=[
        CodeBlockParser(language="python", evaluator=evaluate_python),
        CodeBlockParser(language="html", evaluator=evaluate_html),
    ],
    fixtures=["tmp_path"],
    path="docs",
    patterns=["*.rst"],
    excludes=["_build/*"],
    setup=setup_namespace,
    teardown=teardown_namespace,
)


def defined_tests(source: str) -> list[tuple[str, int]]:
    """The top-level ``test_*`` functions a block defines, with their line offsets."""
    found = []
    for node in ast.parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test_"):
            found.append((node.name, node.lineno - 1))
    return found


class GuideTestFunction(pytest.Item):
    """A ``test_*`` function defined by a documentation block, run after that block."""

    def __init__(self, *, example: Example, test_name: str, line: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.example = example
        self.test_name = test_name
        self.line = line

    def runtest(self) -> None:
        __tracebackhide__ = True
        namespace = self.example.namespace[BY_LINE].get(self.example.line, {})
        if self.test_name not in namespace:
            raise LookupError(
                f"{self.test_name} is not defined: its block at line {self.example.line} failed or was not selected"
            )
        result = namespace[self.test_name]()
        if inspect.iscoroutine(result):
            try:
                _loop(self.example.namespace).run_until_complete(result)
            except AssertionError as exc:
                if self.test_name in EXPECTED_FAILURES and "welcome" not in str(exc):
                    raise RuntimeError(f"failed for a reason other than the welcome message: {exc}") from exc
                raise

    def _traceback_filter(self, excinfo: pytest.ExceptionInfo[BaseException]) -> Traceback:
        # Show the documentation's frames (and what they called), not the harness's.
        traceback = excinfo.traceback
        for index, entry in enumerate(traceback):
            if str(entry.path) == self.example.path:
                return Traceback(list(traceback)[index:]).filter(excinfo)
        return traceback.filter(excinfo)

    def reportinfo(self) -> tuple[Path, int, str]:
        return Path(self.example.path), self.line - 1, f"{self.test_name} (defined at line {self.line})"


class DocsFile(SybilFile):
    """A documentation file: sybil's items, each followed by the test functions its block defines."""

    def collect(self) -> Iterator[pytest.Item]:
        for item in super().collect():  # type: ignore[no-untyped-call]
            item.add_marker(SHORT_KEY_WARNING)
            yield item
            example = item.example
            if example.region.evaluator is not evaluate_python:
                continue
            for name, offset in defined_tests(example.parsed):
                test = GuideTestFunction.from_parent(
                    self, name=name, example=example, test_name=name, line=example.line + offset + 1
                )
                test.add_marker(SHORT_KEY_WARNING)
                if name in EXPECTED_FAILURES:
                    test.add_marker(
                        pytest.mark.xfail(strict=True, raises=AssertionError, reason=EXPECTED_FAILURES[name])
                    )
                yield test


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> DocsFile | None:
    if docs.should_parse(file_path):
        return DocsFile.from_parent(parent, path=file_path, sybils=[docs])
    return None
