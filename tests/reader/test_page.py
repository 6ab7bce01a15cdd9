"""The page convention parser (tests/reader/page.py) and the command splitter, on small pages."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.reader.page import Page, Target
from tests.reader.shell import split_env

PAGE = """Title
=====

Intro. Save this as ``app/main.py``:

.. code-block:: python

   x = 1

.. invisible-code-block: python

   assert x == 1

Part
----

Then add this to the same file. Add this to ``app/main.py``:

.. code-block:: python
   :caption: not part of the code

   y = 2

A block with no file:

.. code-block:: python

   z = 3

.. code-block:: console

   $ cd app
   $ FOO=bar uvicorn main:app --port 8001

Sub
~~~

save this as ``app/page.html``:

.. code-block:: html

   <p>hi</p>

Other
-----

Add this to ``nowhere.py``:

.. code-block:: python

   w = 4
"""


@pytest.fixture
def page(tmp_path: Path) -> Page:
    path = tmp_path / "page.rst"
    path.write_text(PAGE, encoding="utf-8")
    return Page.read(path)


def test_blocks_know_their_file_section_and_visibility(page: Page) -> None:
    summary = [(b.language, b.visible, b.section, b.target) for b in page.blocks]
    assert summary == [
        ("python", True, "Title", Target("app/main.py", append=False)),
        ("python", False, "Title", None),
        ("python", True, "Part", Target("app/main.py", append=True)),
        ("python", True, "Part", None),
        ("console", True, "Part", None),
        ("html", True, "Sub", Target("app/page.html", append=False)),
        ("python", True, "Other", Target("nowhere.py", append=True)),
    ]
    assert page.block_at(page.blocks[2].line).code == "y = 2\n"  # options are not code


def test_files_are_assembled_in_page_order_through_a_section(page: Page, tmp_path: Path) -> None:
    assert page.files("Sub") == page.files("Part")  # Part ends where Sub, its last subsection, ends
    assert page.files("Part") == {"app/main.py": "x = 1\n\n\ny = 2\n", "app/page.html": "<p>hi</p>\n"}
    written = page.write(tmp_path / "out", through="Sub")
    assert written["app/main.py"].read_text() == "x = 1\n\n\ny = 2\n"


def test_adding_to_a_file_never_saved_is_an_error(page: Page) -> None:
    with pytest.raises(LookupError, match=r"adds to nowhere\.py"):
        page.files()


def test_commands_of_a_section_include_its_subsections(page: Page) -> None:
    assert page.commands("Part") == [["cd app", "FOO=bar uvicorn main:app --port 8001"]]
    assert page.commands("Other") == []
    with pytest.raises(LookupError, match="no section"):
        page.commands("Missing")


def test_split_env() -> None:
    assert split_env(["FOO=bar", "A_1=", "uvicorn", "X=1"]) == ({"FOO": "bar", "A_1": ""}, ["uvicorn", "X=1"])
    assert split_env(["pytest"]) == ({}, ["pytest"])
