"""``.. changelog:: ../CHANGELOG.md`` renders a Keep a Changelog markdown file as part of a page.

The docs have no markdown parser (MyST is not a dependency); ``keepachangelog.to_rst``
converts the little markdown a Keep a Changelog file uses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from docutils import nodes
from docutils.statemachine import StringList
from keepachangelog import to_rst
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles

__all__ = ["ChangelogDirective"]


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
