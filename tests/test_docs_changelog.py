"""The changelog page's converter: Keep a Changelog markdown to reST (docs/_ext/keepachangelog.py).

The converter has no dependency, so this runs anywhere the tests run; the page itself is built
(and checked for error boxes) by tests/test_docs_html.py.
"""

from __future__ import annotations

import importlib.util
import itertools
import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

# docs/_ext is not a package: load the module from its file.
_spec = importlib.util.spec_from_file_location("docs_keepachangelog", ROOT / "docs" / "_ext" / "keepachangelog.py")
assert _spec is not None
assert _spec.loader is not None
keepachangelog: Any = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(keepachangelog)

SAMPLE = """# Changelog

All notable changes to this project will be documented in this file.

## [Unreleased]

### Added
- `Application(middleware=[...])`, see [the docs](https://example.org/docs).

### Fixed
- A **bold** fix, spanning
  two lines.

## [0.1.0] - 2026-11-30

### Added
- First release.

[Unreleased]: https://example.org/compare/v0.1.0...HEAD
[0.1.0]: https://example.org/releases/tag/v0.1.0
"""


def titles(rst: str) -> list[tuple[str, str]]:
    """``(title, underline character)`` for every section title of ``rst``."""
    lines = rst.splitlines()
    found = []
    for title, underline in itertools.pairwise(lines):
        if title.strip() and re.fullmatch(r"([-~^=])\1+", underline) and len(underline) >= len(title):
            found.append((title, underline[0]))
    return found


def test_releases_and_change_types_become_sections() -> None:
    rst = keepachangelog.to_rst(SAMPLE)
    assert titles(rst) == [
        ("`Unreleased <https://example.org/compare/v0.1.0...HEAD>`__", "-"),
        ("Added", "~"),
        ("Fixed", "~"),
        ("`0.1.0 <https://example.org/releases/tag/v0.1.0>`__ - 2026-11-30", "-"),
        ("Added", "~"),
    ]
    assert "# Changelog" not in rst  # the page has its own title
    assert "[0.1.0]:" not in rst  # link definitions are used, not shown


def test_code_stays_literal_links_convert_and_lists_keep_their_shape() -> None:
    rst = keepachangelog.to_rst(SAMPLE)
    assert "- ``Application(middleware=[...])``, see `the docs <https://example.org/docs>`__." in rst
    assert "- A **bold** fix, spanning\n  two lines." in rst


def test_the_repository_changelog_converts_every_release() -> None:
    markdown = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    releases = re.findall(r"^## \[([^\]]+)\]", markdown, flags=re.MULTILINE)
    assert releases, "CHANGELOG.md has no release heading"
    converted = [title for title, char in titles(keepachangelog.to_rst(markdown)) if char == "-"]
    assert [re.match(r"`?([^ <`]+)", title)[1] for title in converted] == releases  # type: ignore[index]
    assert "changelog:: ../CHANGELOG.md" in (ROOT / "docs" / "changelog.rst").read_text(encoding="utf-8")
