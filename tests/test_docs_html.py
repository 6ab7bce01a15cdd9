"""The built documentation shows no error box.

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
from html.parser import HTMLParser
from pathlib import Path

import pytest

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


@pytest.mark.e2e  # runs sphinx-build (the docs tools are not in the sdist's test extra)
def test_built_docs_show_no_error_box(tmp_path: Path) -> None:
    out = tmp_path / "html"
    build = [sys.executable, "-m", "sphinx", "-W", "-n", "-q", "-b", "html", str(ROOT / "docs"), str(out)]
    result = subprocess.run(build, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, f"sphinx-build -W -n failed:\n{result.stdout}\n{result.stderr}"
    assert (out / "guide" / "websockets.html").exists()
    assert scan(out) == {}


if __name__ == "__main__":
    problems = scan(Path(sys.argv[1]))
    for page, found in problems.items():
        for line in found:
            print(f"{page}: {line}")
    sys.exit(1 if problems else 0)
