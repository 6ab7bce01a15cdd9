"""The core framework: application, routing, requests, responses, WebSockets, broadcast."""

from qakeapi.core.application import Application
from qakeapi.core.requests import Request
from qakeapi.core.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response

__all__ = ["Application", "HTMLResponse", "JSONResponse", "PlainTextResponse", "Request", "Response"]
