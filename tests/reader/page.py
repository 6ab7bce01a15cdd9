"""What a documentation page tells its reader to do: which files to write, which commands to run.

The convention, which the pages state in words a reader sees:

- A paragraph ending in ``Save this as ``path``:`` puts the code block that follows into a new
  file at ``path`` (relative to the reader's working directory).
- A paragraph ending in ``Add this to ``path``:`` appends the code block that follows to it.
- ``console`` blocks hold commands, one a line, each starting with ``$ ``; ``cd`` applies to
  the lines after it in the same block only (each block starts in the working directory).

Both the docs harness (``conftest.py``, which runs each file's blocks in a namespace of their
own) and the reader tests (which write the files and run the commands) read pages with this
module, so the two cannot drift apart.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Block", "Page", "Section", "Target"]

_DIRECTIVE = re.compile(
    r"^(?P<indent>\s*)\.\. (?:(?P<kind>code-block|code)::|(?P<invisible>invisible-code-block):)\s*(?P<lang>\S*)\s*$"
)
_MARKER = re.compile(r"(?P<verb>[Ss]ave this as|[Aa]dd this to) ``(?P<path>[^`]+)``:$")
_UNDERLINE = re.compile(r"^([=\-~^\"'`#*+<>_:.])\1+\s*$")


@dataclass(frozen=True)
class Target:
    """Where a block goes: a file path, and whether it starts the file or is appended to it."""

    path: str
    append: bool


@dataclass(frozen=True)
class Block:
    """One code block of a page.

    Attributes:
        line: The 1-based line of its directive.
        language: ``python``, ``console``, ``html``, ...
        code: Its text, dedented.
        visible: ``False`` for ``invisible-code-block`` (a hidden check, not for the reader).
        section: The title of the innermost section it is in.
        target: The file it goes to, when the paragraph before it says so.
    """

    line: int
    language: str
    code: str
    visible: bool
    section: str
    target: Target | None

    @property
    def commands(self) -> list[str]:
        """The ``$ `` lines of a ``console`` block, without the prompt."""
        return [line[2:].strip() for line in self.code.splitlines() if line.startswith("$ ")]


@dataclass(frozen=True)
class Section:
    """A section: its title and the line range it spans (subsections included)."""

    title: str
    start: int
    end: int


@dataclass(frozen=True)
class Page:
    """A parsed ``.rst`` page."""

    path: Path
    blocks: tuple[Block, ...]
    sections: tuple[Section, ...]

    @classmethod
    def read(cls, path: Path | str) -> Page:
        """Parse the page at ``path``."""
        path = Path(path)
        lines = path.read_text(encoding="utf-8").splitlines()
        sections = _sections(lines)
        blocks: list[Block] = []
        index = 0
        while index < len(lines):
            match = _DIRECTIVE.match(lines[index])
            if not match:
                index += 1
                continue
            start, indent = index, len(match["indent"])
            index += 1
            body: list[str] = []
            while index < len(lines) and (not lines[index].strip() or _indent(lines[index]) > indent):
                body.append(lines[index])
                index += 1
            while body and body[0].strip().startswith(":") and body[0].strip() != ":":  # directive options
                body.pop(0)
            code = textwrap.dedent("\n".join(body)).strip("\n") + "\n"
            visible = match["invisible"] is None
            title = _innermost(sections, start + 1)
            target = _target(lines, start) if visible else None
            blocks.append(Block(start + 1, match["lang"] or "python", code, visible, title, target))
        return cls(path, tuple(blocks), tuple(sections))

    def section(self, title: str) -> Section:
        """The section called ``title``.

        Raises:
            LookupError: The page has no such section.
        """
        for section in self.sections:
            if section.title == title:
                return section
        raise LookupError(f"{self.path} has no section {title!r}; it has {[s.title for s in self.sections]}")

    def block_at(self, line: int) -> Block:
        """The block whose directive is on ``line``."""
        for block in self.blocks:
            if block.line == line:
                return block
        raise LookupError(f"{self.path} has no code block at line {line}")

    def files(self, through: str | None = None) -> dict[str, str]:
        """The files a reader has written from the top of the page to the end of section ``through``.

        Args:
            through: A section title; the whole page when ``None``.
        """
        end = self.section(through).end if through is not None else len(self.path.read_text().splitlines()) + 1
        files: dict[str, str] = {}
        for block in self.blocks:
            if block.line >= end or block.target is None:
                continue
            if block.target.append:
                if block.target.path not in files:
                    raise LookupError(f"line {block.line}: adds to {block.target.path}, which no block saved before")
                files[block.target.path] += "\n\n" + block.code
            else:
                files[block.target.path] = block.code
        return files

    def commands(self, title: str) -> list[list[str]]:
        """The command blocks of section ``title`` (subsections included), each a list of commands."""
        section = self.section(title)
        return [
            block.commands
            for block in self.blocks
            if block.language == "console" and section.start <= block.line < section.end
        ]

    def write(self, directory: Path, through: str | None = None) -> dict[str, Path]:
        """Write :meth:`files` into ``directory``; return the paths written."""
        written = {}
        for name, text in self.files(through).items():
            path = directory / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            written[name] = path
        return written


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _target(lines: list[str], directive: int) -> Target | None:
    """The marker at the end of the paragraph right before the directive, if any."""
    index = directive - 1
    while index >= 0 and not lines[index].strip():
        index -= 1
    paragraph: list[str] = []
    while index >= 0 and lines[index].strip():
        paragraph.insert(0, lines[index].strip())
        index -= 1
    match = _MARKER.search(" ".join(paragraph))
    if match is None:
        return None
    return Target(match["path"], append=match["verb"].lower() == "add this to")


def _sections(lines: list[str]) -> list[Section]:
    titles: list[tuple[int, str, int]] = []  # (line, title, level)
    levels: list[str] = []
    for index in range(1, len(lines)):
        title, underline = lines[index - 1].strip(), lines[index]
        is_title = title and not lines[index - 1][0].isspace() and len(underline.strip()) >= len(title)
        if is_title and _UNDERLINE.match(underline):
            char = underline.strip()[0]
            if char not in levels:
                levels.append(char)
            titles.append((index, title, levels.index(char)))
    sections = []
    for position, (line, title, level) in enumerate(titles):
        end = len(lines) + 1
        for later_line, _title, later_level in titles[position + 1 :]:
            if later_level <= level:
                end = later_line - 1  # the title line above the underline
                break
        sections.append(Section(title, line, end))
    return sections


def _innermost(sections: list[Section], line: int) -> str:
    inside = [section for section in sections if section.start <= line < section.end]
    return inside[-1].title if inside else ""
