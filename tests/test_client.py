"""``qakeapi.core.client``: the browser client shipped in the package and the routes that serve it."""

from __future__ import annotations

import hashlib
import re
from importlib import resources

import pytest

from qakeapi import Application
from qakeapi.core.client import CACHE_CONTROL, CLIENT_VERSION, client_asset
from qakeapi.testing import TestClient

SOURCE = resources.files("qakeapi").joinpath("static").joinpath("qakeapi.js").read_bytes()


@pytest.mark.asyncio
async def test_serve_client_answers_the_module_under_a_versioned_immutable_url() -> None:
    app = Application()
    url = app.serve_client()
    digest = hashlib.sha256(SOURCE).hexdigest()[:12]
    assert url == f"/qakeapi/qakeapi-{CLIENT_VERSION}-{digest}.js"
    response = await TestClient(app).get(url)
    assert response.status_code == 200
    assert response.content == SOURCE
    assert response.headers["content-type"] == "text/javascript; charset=utf-8"
    assert response.headers["cache-control"] == CACHE_CONTROL
    assert response.headers["etag"] == f'"{digest}"'
    assert response.headers["x-content-type-options"] == "nosniff"


@pytest.mark.asyncio
async def test_the_types_are_served_next_to_it_and_other_names_are_not() -> None:
    app = Application()
    url = app.serve_client("/assets/js")
    assert url.startswith("/assets/js/qakeapi-")
    client = TestClient(app)
    types = await client.get(url.removesuffix(".js") + ".d.ts")
    assert types.status_code == 404  # the digest is the file's own, not the module's
    dts = client_asset("qakeapi.d.ts")
    answer = await client.get(f"/assets/js/{dts.versioned_name()}")
    assert answer.status_code == 200
    assert b"export declare class Client" in answer.content
    assert (await client.get("/assets/js/qakeapi.js")).status_code == 404


def test_the_module_says_the_version_the_url_names() -> None:
    match = re.search(rb'export const VERSION = "([^"]+)";', SOURCE)
    assert match is not None
    assert match.group(1).decode() == CLIENT_VERSION


@pytest.mark.parametrize("prefix", ["qakeapi", "/qakeapi/", ""])
def test_a_prefix_is_a_path_without_a_trailing_slash(prefix: str) -> None:
    with pytest.raises(ValueError, match="the prefix is a path"):
        Application().serve_client(prefix)


def test_only_the_clients_files_are_read() -> None:
    with pytest.raises(ValueError, match=r"qakeapi\.js and qakeapi\.d\.ts"):
        client_asset("../__init__.py")
