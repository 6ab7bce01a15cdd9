"""Sphinx configuration for the QakeAPI documentation."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent / "_ext"))

project = "QakeAPI"
author = "The QakeAPI developers"
copyright = "2026, The QakeAPI developers"
release = "0.1.0"

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.intersphinx",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "sphinx_copybutton",
    "public_paths",
    "viewcode_links",  # viewcode's "[docs]" links and module list, mended (see the module)
    "changelog",
]

nitpicky = True
# Links go to docs.python.org; the inventory is read from Debian's python3.11-doc when it is
# installed (scripts/services.sh installs it), so the build needs no network.
_LOCAL_PYTHON_INVENTORY = Path("/usr/share/doc/python3.11/html/objects.inv")
intersphinx_mapping = {
    "python": (
        "https://docs.python.org/3",
        str(_LOCAL_PYTHON_INVENTORY) if _LOCAL_PYTHON_INVENTORY.exists() else None,
    ),
}
intersphinx_timeout = 10
nitpick_ignore = [
    # asyncio.Task as annotations render it (the C implementation's module name).
    ("py:class", "_asyncio.Task"),
    # Type variables of decorator signatures (they stand for "the decorated function").
    ("py:class", "qakeapi.core.application._E"),
    ("py:class", "qakeapi.core.application._H"),
    ("py:class", "qakeapi.core.routing._E"),
    ("py:class", "qakeapi.core.websockets.fanout._R"),  # "the recipients given" (WebSockets)
    ("py:class", "qakeapi.core.routing._H"),
    ("py:class", "qakeapi.core.datastructures._K"),  # discard_from's key and item types
    ("py:class", "qakeapi.core.datastructures._V"),
    ("py:class", "qakeapi.core.websockets.hooks._C"),
    ("py:class", "qakeapi.core.websockets.ending._Connection"),  # the self types of mixins' methods
    ("py:class", "qakeapi.core.websockets.refusals._Limited"),
    ("py:class", "qakeapi.core.logfields._Named"),
    ("py:class", "qakeapi.core.websockets.hooks._M"),
    ("py:class", "qakeapi.core.datastructures._MultiMap"),
    ("py:class", "qakeapi.core.broadcast.redis._T"),
    # The ASGI type aliases of qakeapi.types, as they appear in signatures.
    ("py:class", "Scope"),
    ("py:class", "Receive"),
    ("py:class", "Send"),
    ("py:class", "ASGIApp"),
    ("py:class", "re.Pattern"),
    # uvicorn publishes no inventory: the constructor of its protocol, which ours inherits.
    ("py:class", "Config"),
    ("py:class", "ServerState"),
]

exclude_patterns = ["_build", "_ext"]
html_theme = "furo"
html_title = "QakeAPI"
html_static_path = ["_static"]
html_css_files = ["narrow.css"]

# The copy button copies the commands of a console block without their "$ " prompt, and leaves
# out the lines without a prompt (the output shown after a command). Blocks without prompts
# (Python, HTML, INI) are copied whole.
copybutton_prompt_text = "$ "
copybutton_only_copy_prompt_lines = True
copybutton_remove_prompts = True
copybutton_exclude = ".linenos"

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
