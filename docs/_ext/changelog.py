"""``.. changelog:: ../CHANGELOG.md`` renders a Keep a Changelog markdown file as part of a page.

The docs have no markdown parser (MyST is not a dependency), and a changelog in the Keep a
Changelog format (https://keepachangelog.com) needs only a little of markdown: ``##`` release
headings, ``###`` change-type headings, ``-`` bullet lists, inline code, emphasis and links
(inline or reference-style). :func:`to_rst` converts exactly that; anything else passes
through as text.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, ClassVar

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles

__all__ = ["ChangelogDirective", "to_rst"]

_LINK_DEFINITION = re.compile(r"^\[(?P<label>[^\]]+)\]:\s*(?P<url>\S+)\s*$")
_INLINE_LINK = re.compile(r"\[(?P<text>[^\]]+)\]\((?P<url>[^)\s]+)\)")
_HEADING = re.compile(r"^(?P<hashes>#{1,6})\s+(?P<text>.+?)\s*#*\s*$")
_UNDERLINES = {2: "-", 3: "~", 4: "^"}


def _inline(text: str, links: dict[str, str]) -> str:
    """Inline markdown to reST: code spans stay literal; links outside them are converted."""
    parts = re.split(r"(`[^`]+`)", text)
    return "".join(f"`{part}`" if index % 2 else _links(part, links) for index, part in enumerate(parts))


def _links(text: str, links: dict[str, str]) -> str:
    text = _INLINE_LINK.sub(lambda m: f"`{m['text']} <{m['url']}>`__", text)

    def reference(match: re.Match[str]) -> str:
        label = match["label"]
        url = links.get(label.lower())
        return f"`{label} <{url}>`__" if url else f"[{label}]"

    return re.sub(r"(?<![`<])\[(?P<label>[^\]]+)\](?!\()", reference, text)


def to_rst(markdown: str) -> str:
    """Convert a Keep a Changelog markdown text to reStructuredText (the ``#`` title is dropped)."""
    lines = markdown.splitlines()
    links = {
        match["label"].lower(): match["url"] for line in lines if (match := _LINK_DEFINITION.match(line)) is not None
    }
    out: list[str] = []
    for line in lines:
        if _LINK_DEFINITION.match(line):
            continue
        heading = _HEADING.match(line)
        if heading:
            level = len(heading["hashes"])
            if level == 1:
                continue
            text = _inline(heading["text"], links)
            out += ["", text, _UNDERLINES.get(level, "^") * max(len(text), 3), ""]
        else:
            out.append(_inline(line, links))
    return "\n".join(out).strip() + "\n"


class ChangelogDirective(SphinxDirective):
    """Render the markdown changelog named by the argument (relative to this document)."""

    required_arguments = 1
    has_content = False
    option_spec: ClassVar[dict[str, Any]] = {}

    def run(self) -> list[nodes.Node]:
        _relative, path = self.env.relfn2path(self.arguments[0], self.env.docname)
        path = str(Path(path).resolve())
        if not Path(path).exists():
            paragraph = nodes.paragraph(text=f"There is no changelog yet ({self.arguments[0]} does not exist).")
            return [paragraph]
        self.env.note_dependency(path)
        text = to_rst(Path(path).read_text(encoding="utf-8"))
        container = nodes.section()
        container.document = self.state.document
        nested_parse_with_titles(self.state, StringList(text.splitlines(), source=path), container)
        return list(container.children)


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("changelog", ChangelogDirective)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
