"""Mend two kinds of link ``sphinx.ext.viewcode`` gets wrong, so that every link in the docs resolves.

viewcode builds the "[docs]" link of a source listing (``_modules/...``) from one name per
module, the module name under which the first object it saw from that module was documented,
joined with the object's name inside its module. The reference documents most objects at the
path users import them from (``qakeapi.Application``) and a few at their defining module
(``qakeapi.core.application.to_response``); a module's link then names ``#qakeapi.to_response``,
which no element has (sphinx-doc/sphinx#6651). Each object's signature gets, as an extra
anchor, the id its "[docs]" link names; one that would land on another object is an error.

A documented member whose value is a builtin (an enum member, an int) sends viewcode looking
for the source of ``builtins``: it makes no page for it, but its module list
(``_modules/index.html``) links to one. Modules without a source page leave the list.
"""

from __future__ import annotations

from typing import Any

from docutils import nodes
from sphinx import addnodes
from sphinx.application import Sphinx
from sphinx.ext.viewcode import _get_full_modname
from sphinx.util import logging

logger = logging.getLogger(__name__)


def _source_module(app: Sphinx, module: str, fullname: str) -> str | None:
    """The module viewcode takes ``module.fullname``'s source from (as viewcode finds it)."""
    found: str | None = app.emit_firstresult("viewcode-follow-imported", module, fullname)
    return found or _get_full_modname(module, fullname)


def add_backlink_anchors(app: Sphinx, doctree: nodes.document, docname: str) -> None:
    """Give each signature the id that viewcode's "[docs]" link to it names."""
    modules: dict[str, Any] = getattr(app.env, "_viewcode_modules", {})
    taken = {id_ for node in doctree.findall(nodes.Element) for id_ in node.get("ids", [])}
    for signature in doctree.findall(addnodes.desc_signature):
        module, fullname = signature.get("module"), signature.get("fullname")
        if not module or not fullname:
            continue
        source = _source_module(app, module, fullname)
        entry = modules.get(source) if source else None
        if not entry:
            continue
        _code, _tags, used, refname = entry
        if used.get(fullname) != docname:
            continue
        anchor = f"{refname}.{fullname}"
        if anchor in signature["ids"]:
            continue
        if anchor in taken:
            logger.warning(
                "viewcode's [docs] link for %s.%s names #%s, which is another object's",
                module,
                fullname,
                anchor,
                location=signature,
            )
            continue
        signature["ids"].append(anchor)
        taken.add(anchor)


def drop_modules_without_source(app: Sphinx) -> list[tuple[str, dict[str, Any], str]]:
    """Remove the modules viewcode found no source for, so its module list does not link to them."""
    modules: dict[str, Any] = getattr(app.env, "_viewcode_modules", {})
    for name in [name for name, entry in modules.items() if not entry]:
        del modules[name]
    return []  # no pages of our own; viewcode's collector runs after this one


def setup(app: Sphinx) -> dict[str, Any]:
    app.setup_extension("sphinx.ext.viewcode")
    app.connect("doctree-resolved", add_backlink_anchors)
    app.connect("html-collect-pages", drop_modules_without_source, priority=400)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
