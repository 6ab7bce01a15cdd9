"""Resolve references to where an object is defined to where the reference documents it.

The API reference documents classes at the paths users import them from (``qakeapi.WebSocket``);
autodoc records the defining path (``qakeapi.core.websockets.connection.WebSocket``) as the
class's canonical name, which resolves references to the class itself. References to its
members (``...connection.WebSocket.send_text``), written in docstrings and type hints, are
resolved here: the defining path is swapped for the public one and the lookup tried again.
"""

from __future__ import annotations

import importlib
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment

PUBLIC_MODULES = ("qakeapi", "qakeapi.testing", "qakeapi.security", "qakeapi.core.websockets")


def public_name(target: str) -> str | None:
    """The documented (public) name of ``target``, or ``None`` when it has none."""
    parts = target.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            module = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        obj: Any = getattr(module, parts[cut], None)
        if obj is None:
            return None
        for public in PUBLIC_MODULES:
            exported = importlib.import_module(public)
            for name in getattr(exported, "__all__", ()):
                if getattr(exported, name, None) is obj and f"{public}.{name}" != ".".join(parts[: cut + 1]):
                    return ".".join([public, name, *parts[cut + 1 :]])
        return None
    return None


def resolve(
    app: Sphinx, env: BuildEnvironment, node: nodes.Element, contnode: nodes.TextElement
) -> nodes.Element | None:
    if node.get("refdomain") != "py" or not node.get("reftarget", "").startswith("qakeapi."):
        return None
    name = public_name(node["reftarget"])
    if name is None:
        return None
    domain = env.get_domain("py")
    retry = node.deepcopy()
    retry["reftarget"] = name
    found: nodes.Element | None = domain.resolve_xref(
        env, node["refdoc"], app.builder, node["reftype"], name, retry, contnode
    )
    return found


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("missing-reference", resolve)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
