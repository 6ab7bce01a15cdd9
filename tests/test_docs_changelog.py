"""The changelog page: Keep a Changelog markdown rendered by docs/_ext/changelog.py."""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

# docutils ships no type stubs, and docs/_ext is not a package: both are loaded untyped.
docutils_core: Any = importlib.import_module("docutils.core")
nodes: Any = importlib.import_module("docutils.nodes")
_spec = importlib.util.spec_from_file_location("docs_changelog_ext", ROOT / "docs" / "_ext" / "changelog.py")
assert _spec is not None
assert _spec.loader is not None
changelog: Any = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(changelog)

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


def parse(markdown: str) -> Any:
    rst = f"Changelog\n=========\n\n{changelog.to_rst(markdown)}"
    return docutils_core.publish_doctree(rst, settings_overrides={"report_level": 2, "halt_level": 2})


def test_releases_and_change_types_become_sections() -> None:
    doctree = parse(SAMPLE)
    titles = [node.astext() for node in doctree.findall(nodes.title)]
    assert titles == ["Changelog", "Unreleased", "Added", "Fixed", "0.1.0 - 2026-11-30", "Added"]
    change_types = [node for node in doctree.findall(nodes.section) if node.parent is not doctree]
    assert [node[0].astext() for node in change_types] == ["Added", "Fixed", "Added"]


def test_code_stays_literal_and_links_resolve() -> None:
    doctree = parse(SAMPLE)
    literals = [node.astext() for node in doctree.findall(nodes.literal)]
    assert literals == ["Application(middleware=[...])"]
    targets = {node.astext(): node["refuri"] for node in doctree.findall(nodes.reference)}
    assert targets == {
        "the docs": "https://example.org/docs",
        "Unreleased": "https://example.org/compare/v0.1.0...HEAD",
        "0.1.0": "https://example.org/releases/tag/v0.1.0",
    }


def test_the_repository_changelog_converts_cleanly_when_present() -> None:
    changelog = ROOT / "CHANGELOG.md"
    if not changelog.exists():  # written on another branch; this test covers it once merged
        assert "changelog:: ../CHANGELOG.md" in (ROOT / "docs" / "changelog.rst").read_text()
        return
    doctree = parse(changelog.read_text(encoding="utf-8"))
    assert any(node.astext() for node in doctree.findall(nodes.title))
