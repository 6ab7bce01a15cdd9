"""Keep a Changelog markdown to reStructuredText, with no dependency (the directive is in changelog.py).

A changelog in the Keep a Changelog format (https://keepachangelog.com) needs only a little of
markdown: ``##`` release headings, ``###`` change-type headings, ``-`` bullet lists, inline
code, emphasis and links (inline or reference-style). :func:`to_rst` converts exactly that;
anything else passes through as text.
"""

from __future__ import annotations

import re

__all__ = ["to_rst"]

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
