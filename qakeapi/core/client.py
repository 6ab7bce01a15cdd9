"""The browser client, ``qakeapi.js``: the file shipped in the package, and the routes that serve it.

``qakeapi.js`` is one dependency-free ES module (with ``qakeapi.d.ts`` for editors) that speaks
the protocol of the reference page *Browser client protocol*: token connect and in-band refresh,
reconnection with backoff, rooms recovered from their last position, presence.
:meth:`Application.serve_client <qakeapi.core.application.Application.serve_client>` serves it
under a URL that names its version and a digest of its content, so browsers may keep it for a
year (``Cache-Control: public, max-age=31536000, immutable``): a new release is a new URL.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING

from qakeapi.core.requests import Request
from qakeapi.core.responses import Response

if TYPE_CHECKING:
    from qakeapi.core.routing import Routes

__all__ = ["CACHE_CONTROL", "CLIENT_VERSION", "ClientAsset", "client_asset", "serve_client"]

CLIENT_VERSION = "0.1.0"
"""The version of ``qakeapi.js`` (its ``VERSION`` export says the same)."""
CACHE_CONTROL = "public, max-age=31536000, immutable"
"""The ``Cache-Control`` of the served files: their URL changes whenever their content does."""

_MEDIA_TYPES = {".js": "text/javascript", ".ts": "application/typescript"}


@dataclass(frozen=True, slots=True)
class ClientAsset:
    """One file of the client, as served.

    Attributes:
        name: The file's name in the package (``qakeapi.js``).
        content: Its bytes.
        media_type: Its ``Content-Type`` (without the charset).
    """

    name: str
    content: bytes
    media_type: str

    @property
    def digest(self) -> str:
        """The first 12 hex digits of the SHA-256 of the content."""
        return hashlib.sha256(self.content).hexdigest()[:12]

    def versioned_name(self) -> str:
        """``qakeapi-<version>-<digest>.js`` (or ``.d.ts``): the name in the URL."""
        stem, _, suffix = self.name.partition(".")
        return f"{stem}-{CLIENT_VERSION}-{self.digest}.{suffix}"

    async def response(self, request: Request) -> Response:
        """The file as a long-lived, immutable response.

        Args:
            request: The request (unused: every request gets the same answer).

        Returns:
            The response, with ``Cache-Control`` :data:`CACHE_CONTROL` and an ``ETag``.
        """
        headers = {"cache-control": CACHE_CONTROL, "etag": f'"{self.digest}"', "x-content-type-options": "nosniff"}
        return Response(self.content, headers=headers, media_type=self.media_type)


def client_asset(name: str = "qakeapi.js") -> ClientAsset:
    """Read a file of the client from the package.

    Args:
        name: ``qakeapi.js`` or ``qakeapi.d.ts``.

    Returns:
        The file.

    Raises:
        ValueError: ``name`` is not a file of the client.
    """
    suffix = "." + name.rsplit(".", 1)[-1]
    if name not in ("qakeapi.js", "qakeapi.d.ts"):
        raise ValueError(f"the client has qakeapi.js and qakeapi.d.ts, not {name!r}")
    content = resources.files("qakeapi").joinpath("static").joinpath(name).read_bytes()
    return ClientAsset(name, content, _MEDIA_TYPES[suffix])


def serve_client(application: Routes, prefix: str = "/qakeapi") -> str:
    """Add ``GET`` routes for ``qakeapi.js`` and ``qakeapi.d.ts`` under ``prefix``.

    Args:
        application: The application (or anything that takes routes and lifespan hooks).
        prefix: Where the files go (no trailing slash).

    Returns:
        The URL path of ``qakeapi.js``, such as ``/qakeapi/qakeapi-0.1.0-3f9c2a1b7d4e.js``.

    Raises:
        ValueError: ``prefix`` does not start with ``/`` or ends with one.
    """
    if not prefix.startswith("/") or prefix.endswith("/"):
        raise ValueError(f"the prefix is a path like '/qakeapi' (a leading '/', no trailing one), not {prefix!r}")
    paths = []
    for name in ("qakeapi.js", "qakeapi.d.ts"):
        asset = client_asset(name)
        path = f"{prefix}/{asset.versioned_name()}"
        application.get(path)(asset.response)
        paths.append(path)
    return paths[0]
