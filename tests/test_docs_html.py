"""The built documentation shows no error box, reads on a phone, and copies commands cleanly.

``sphinx-build -W`` fails on warnings, but some errors only show in the HTML: docutils renders
a problem it reported at a low level as a ``system-message`` box and the text it could not
parse as ``problematic``; Furo paints a ``.. contents::`` block as a red "ERROR" box with CSS.
This test builds the docs and looks for that markup. By hand::

    .venv/bin/sphinx-build -W -n -q -b html docs docs/_build/html
    .venv/bin/python -m tests.test_docs_html docs/_build/html
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from html.parser import HTMLParser
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.async_api import ViewportSize

ROOT = Path(__file__).resolve().parents[1]
FURO_TOC_ESCAPE = "this-will-duplicate-information-and-it-is-still-useful-here"


class ErrorMarkup(HTMLParser):
    """Collects the elements that render as an error box, with their line numbers."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self.noscript = 0  # the search page's "please activate JavaScript" notice is an admonition error

    def handle_endtag(self, tag: str) -> None:
        if tag == "noscript":
            self.noscript -= 1

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "noscript":
            self.noscript += 1
        if self.noscript:
            return
        classes = set((dict(attrs).get("class") or "").split())
        line, _ = self.getpos()
        if classes & {"system-message", "problematic"}:
            self.found.append(f"line {line}: <{tag} class={' '.join(sorted(classes))}> (a docutils error)")
        elif "contents" in classes and FURO_TOC_ESCAPE not in classes:
            self.found.append(f"line {line}: <{tag} class=contents> (Furo shows .. contents:: as a red ERROR box)")
        elif {"admonition", "error"} <= classes:
            self.found.append(f"line {line}: <{tag} class=admonition error>")


def error_markup(html: str) -> list[str]:
    """The error boxes in a page of HTML, as readable lines."""
    parser = ErrorMarkup()
    parser.feed(html)
    parser.close()
    return parser.found


def scan(directory: Path) -> dict[str, list[str]]:
    """Error boxes of every HTML page under ``directory`` (``_modules`` source listings included)."""
    return {
        str(page.relative_to(directory)): found
        for page in sorted(directory.rglob("*.html"))
        if (found := error_markup(page.read_text(encoding="utf-8")))
    }


@pytest.mark.parametrize(
    "html",
    [
        '<aside class="system-message"><p class="system-message-title">System Message: ERROR/3</p></aside>',
        '<a href="#id1"><span class="problematic" id="id2">`broken</span></a>',
        '<nav class="contents local" id="table-of-contents"><p class="topic-title">Contents</p></nav>',
        '<div class="admonition error"><p class="admonition-title">Error</p></div>',
    ],
)
def test_error_markup_is_found(html: str) -> None:
    assert len(error_markup(f"<html><body><p>ok</p>{html}</body></html>")) == 1


def test_clean_markup_passes() -> None:
    html = (
        f'<nav class="contents {FURO_TOC_ESCAPE}"></nav><div class="admonition warning"></div><p class="error-x">'
        '<noscript><div class="admonition error">Please activate JavaScript</div></noscript>'
    )
    assert error_markup(html) == []


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The docs, built as CI builds them (``-W -n``), once for this module."""
    out = tmp_path_factory.mktemp("docs") / "html"
    build = [sys.executable, "-m", "sphinx", "-W", "-n", "-q", "-b", "html", str(ROOT / "docs"), str(out)]
    result = subprocess.run(build, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, f"sphinx-build -W -n failed:\n{result.stdout}\n{result.stderr}"
    assert (out / "guide" / "websockets.html").exists()
    return out


@pytest.mark.e2e  # runs sphinx-build (the docs tools are not in the sdist's test extra)
def test_built_docs_show_no_error_box(built: Path) -> None:
    assert scan(built) == {}


@contextmanager
def served(directory: Path) -> Iterator[str]:
    """``directory`` over HTTP on a free loopback port (the clipboard needs a real origin)."""

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


PHONE: ViewportSize = {"width": 390, "height": 844}
"""A phone's viewport in CSS pixels (an iPhone 12 to 15)."""

MEASURE_BLOCKS = """() => [...document.querySelectorAll('div.highlight pre')].map(pre => ({
  longest: Math.max(...pre.innerText.replace(/\\n$/, '').split('\\n').map(line => line.length)),
  scrolls: pre.scrollWidth > pre.clientWidth + 1,
  first: pre.innerText.split('\\n')[0],
}))"""


@pytest.mark.e2e  # headless Chromium
@pytest.mark.asyncio
@pytest.mark.parametrize("name", ["guide/websockets.html", "getting-started.html", "tutorial.html"])
async def test_code_under_80_columns_does_not_scroll_on_a_phone(built: Path, name: str) -> None:
    from playwright.async_api import async_playwright

    from tests.e2e.browser import CHROMIUM, CHROMIUM_ARGS

    with served(built) as url:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = await browser.new_page(viewport=PHONE)
                await page.goto(f"{url}/{name}")
                blocks = await page.evaluate(MEASURE_BLOCKS)
            finally:
                await browser.close()
    assert blocks
    scrolling = [block["first"] for block in blocks if block["scrolls"] and block["longest"] < 80]
    assert scrolling == [], f"{len(scrolling)} code blocks under 80 columns scroll sideways at 390 px"


@pytest.mark.e2e  # headless Chromium
@pytest.mark.asyncio
async def test_copy_button_copies_commands_without_prompts_or_output(built: Path) -> None:
    """sphinx-copybutton: a console block copies as the commands to paste, nothing else."""
    from playwright.async_api import async_playwright

    from tests.e2e.browser import CHROMIUM, CHROMIUM_ARGS

    copied = []
    with served(built) as url:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                context = await browser.new_context()
                await context.grant_permissions(["clipboard-read", "clipboard-write"], origin=url)
                page = await context.new_page()
                await page.goto(f"{url}/getting-started.html")
                blocks = page.locator("div.highlight-console")
                for index in range(await blocks.count()):
                    await blocks.nth(index).hover()
                    await blocks.nth(index).locator("button.copybtn").click()
                    copied.append(await page.evaluate("navigator.clipboard.readText()"))
            finally:
                await browser.close()
    assert copied == [
        "python -m venv .venv\nsource .venv/bin/activate",
        'pip install "qakeapi-realtime[jwt,redis,server]" websockets',
        "uvicorn quickstart:app",
        "curl -s http://localhost:8000/health",
        "python -m websockets ws://localhost:8000/ws",
    ]


if __name__ == "__main__":
    problems = scan(Path(sys.argv[1]))
    for page, found in problems.items():
        for line in found:
            print(f"{page}: {line}")
    sys.exit(1 if problems else 0)
