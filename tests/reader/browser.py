"""HTML pages of the docs in headless Chromium, against the servers their pages document.

:data:`SCENARIOS` names the scenario for each HTML file a page tells the reader to save; the
docs harness and the reader tests both look it up there.

The guide's HTML chat client runs in two pages against the guide's own chat server, which
serves it at ``/``: the pages load http://localhost:8000/, as the guide tells the reader to, and
connect to ``ws://localhost:8000/ws``. :func:`tests.e2e.browser.launch` maps ``localhost:8000``
to the port the server really listens on, so the page runs unchanged and its origin
(``http://localhost:8000``) is the server's own, which QakeAPI's default origin policy allows.
A page opened from a ``file://`` URL sends ``Origin: null`` and is refused
(:func:`open_from_file`).

The chat server of the guide broadcasts ``user_joined`` to every member of the room, the
joiner included, so each page sees its own join and those after it.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
from pathlib import Path

from playwright.async_api import Page, expect

from tests.e2e.browser import (
    CHAT_URL,
    TIMEOUT_MS,
    ChatScenarioError,
    PageLog,
    console_errors,
    launch,
    messages_text,
    open_served_page,
)
from tests.e2e.servers import Server, wait_for_port

__all__ = [
    "DOCUMENTED_URL",
    "SCENARIOS",
    "open_from_file",
    "open_with_client",
    "run_browser_client",
    "run_guide_chat",
    "run_login_page",
]

JOINED = re.compile(r"^System: User (\d+) joined$")
DOCUMENTED_URL = CHAT_URL
"""Where the docs tell the reader to open their pages (mapped to the server under test)."""


async def run_guide_chat(page_file: Path, server: Server, out_dir: Path) -> dict[str, Path]:
    """Open the chat page twice from the server, chat both ways, close one and watch the other see it leave.

    Args:
        page_file: The page as the reader saved it; the server must serve this same file at ``/``.
        server: The guide's chat server.
        out_dir: Where the screenshots go.

    Returns:
        The screenshots taken.

    Raises:
        ChatScenarioError: A step failed; the message has the pages' text, console output and
            errors, the screenshots and the server's output.
    """
    saved = await asyncio.to_thread(page_file.read_text, encoding="utf-8")
    browser, playwright = await launch(server)
    logs = [PageLog("page one"), PageLog("page two")]
    pages: list[Page] = []
    shots: dict[str, Path] = {}
    try:
        for log in logs:
            page = await browser.new_page()
            log.attach(page)
            pages.append(page)
        one, two = pages
        await open_served_page(one, DOCUMENTED_URL, saved)
        await expect(one.locator("#messages")).to_contain_text("System: Welcome to the chat!", timeout=TIMEOUT_MS)
        await expect(one.locator("#messages div", has_text=JOINED)).to_have_count(1, timeout=TIMEOUT_MS)
        await open_served_page(two, DOCUMENTED_URL, saved)
        await expect(two.locator("#messages")).to_contain_text("System: Welcome to the chat!", timeout=TIMEOUT_MS)
        own_join = two.locator("#messages div", has_text=JOINED)
        await expect(own_join).to_have_count(1, timeout=TIMEOUT_MS)
        match = JOINED.match(await own_join.inner_text())
        assert match is not None
        two_id = match[1]
        await expect(one.locator("#messages div", has_text=f"System: User {two_id} joined")).to_have_count(
            1, timeout=TIMEOUT_MS
        )

        await one.fill("#message", "Hello from page one")
        await one.press("#message", "Enter")
        for page in pages:
            said = page.locator("#messages div", has_text=re.compile(r"^\d+: Hello from page one$"))
            await expect(said).to_have_count(1, timeout=TIMEOUT_MS)
        assert await one.input_value("#message") == "", "the input was not cleared after sending"

        await two.fill("#message", "Hi from page two")
        await two.click("button")
        for page in pages:
            said = page.locator("#messages div", has_text=f"{two_id}: Hi from page two")
            await expect(said).to_have_count(1, timeout=TIMEOUT_MS)

        shots["one"] = out_dir / "guide-chat-page-one.png"
        shots["two"] = out_dir / "guide-chat-page-two.png"
        await one.screenshot(path=str(shots["one"]))
        await two.screenshot(path=str(shots["two"]))

        await two.close()
        left = one.locator("#messages div", has_text=f"System: User {two_id} left")
        await expect(left).to_have_count(1, timeout=TIMEOUT_MS)
        errors = console_errors(logs, server)
        assert not errors, f"console errors: {errors}"
        assert not logs[0].errors, "page errors on page one"
        assert not logs[1].errors, "page errors on page two"
        return shots
    except AssertionError as exc:
        details = [str(exc)]
        for name, page in zip(("one", "two"), pages, strict=False):
            if not page.is_closed():
                path = out_dir / f"failure-page-{name}.png"
                await page.screenshot(path=str(path))
                shots[f"failure-{name}"] = path
                details.append(f"[page {name}] {page.url}:\n{await messages_text(page)}")
        details += [log.report() for log in logs]
        details.append("screenshots: " + ", ".join(str(path) for path in shots.values()))
        details.append("server log:\n" + server.output()[-3000:])
        raise ChatScenarioError("\n".join(details)) from exc
    finally:
        await browser.close()
        await playwright.stop()


async def open_from_file(page_file: Path, server: Server) -> list[str]:
    """Open ``page_file`` from a ``file://`` URL, as a reader who double-clicks it would.

    The page's handshake carries ``Origin: null``, which the server's default origin policy
    refuses with HTTP 403: the page shows ``System: Disconnected from server``.

    Returns:
        What the page printed to its console.
    """
    browser, playwright = await launch(server)
    log = PageLog("file page")
    try:
        page = await browser.new_page()
        log.attach(page)
        await page.goto(page_file.as_uri())
        await expect(page.locator("#messages")).to_have_text("System: Disconnected from server", timeout=TIMEOUT_MS)
        return log.console
    finally:
        await browser.close()
        await playwright.stop()


async def open_with_client(page: Page, saved: str) -> str:
    """Load the page at :data:`DOCUMENTED_URL`: the app must serve ``saved`` with the client's URL in it.

    A page on ``qakeapi.js`` names the client ``QAKEAPI_JS`` in its import map, and its app
    replaces that with the URL :meth:`~qakeapi.Application.serve_client` returned.

    Returns:
        The client's URL, as the app served it.
    """
    response = await page.goto(DOCUMENTED_URL)
    assert response is not None, f"no response for {DOCUMENTED_URL}"
    assert response.status == 200, f"GET {DOCUMENTED_URL}: HTTP {response.status}"
    served = await response.text()
    client_url = re.search(r'"qakeapi": "(/qakeapi/qakeapi-[^"]+\.js)"', served)
    assert client_url is not None, served
    assert served == saved.replace("QAKEAPI_JS", client_url.group(1)), "the app does not serve the saved page"
    return client_url.group(1)


async def run_login_page(page_file: Path, server: Server, out_dir: Path) -> dict[str, Path]:
    """The authentication how-to's login page on ``qakeapi.js``: a wrong password, then two users chat.

    The app serves the saved page at ``/`` with the client's URL in its import map (checked);
    the pages load http://localhost:8000, as the how-to says (mapped to ``server``). Each page
    fails to log in with a wrong password, logs in, is welcomed by name, and the two chat.
    """
    saved = await asyncio.to_thread(page_file.read_text, encoding="utf-8")
    browser, playwright = await launch(server)
    logs: list[PageLog] = []
    pages: list[Page] = []
    shots: dict[str, Path] = {}
    try:
        for name, password in (("ann", "correct horse"), ("bob", "battery staple")):
            log = PageLog(name)
            logs.append(log)
            page = await browser.new_page()
            log.attach(page)
            pages.append(page)
            await open_with_client(page, saved)
            await expect(page.locator("#status")).to_have_text("not logged in", timeout=TIMEOUT_MS)
            await page.fill("#name", name)
            await page.fill("#password", "wrong")
            await page.click("#login button")
            await expect(page.locator("#status")).to_have_text(
                "Login failed: wrong name or password", timeout=TIMEOUT_MS
            )
            await page.fill("#password", password)
            await page.click("#login button")
            await expect(page.locator("#status")).to_have_text(f"Welcome, {name}!", timeout=TIMEOUT_MS)
            await expect(page.locator("#login")).to_be_hidden(timeout=TIMEOUT_MS)
        for page, name, text in ((pages[1], "bob", "hi from bob"), (pages[0], "ann", "<b>hello</b> from ann")):
            await page.fill("#text", text)
            await page.press("#text", "Enter")
            for other in pages:
                # Text, never HTML: the markup arrives as it was typed.
                await expect(other.locator("#messages li", has_text=f"{name}: {text}")).to_have_count(
                    1, timeout=TIMEOUT_MS
                )
            assert await page.input_value("#text") == "", "the input was not cleared after sending"
        for page in pages:
            assert await page.locator("#messages b").count() == 0, "a message was shown as HTML"
            errors = page.locator("#messages li", has_text=re.compile(r"^\("))  # "(kind: message)"
            assert await errors.count() == 0, await messages_text(page)
        for page, name in zip(pages, ("ann", "bob"), strict=True):
            shots[name] = out_dir / f"login-{name}.png"
            await page.screenshot(path=str(shots[name]))
        for log in logs:
            assert not log.errors, log.report()
        unexpected = console_errors(logs, server, expected=(_WRONG_PASSWORD,))
        assert not unexpected, f"console errors: {unexpected}"
        assert "eyJ" not in server.output(), "a token reached the server's log"
        return shots
    except AssertionError as exc:
        details = [str(exc), *(log.report() for log in logs), "server log:\n" + server.output()[-3000:]]
        raise ChatScenarioError("\n".join(details)) from exc
    finally:
        await browser.close()
        await playwright.stop()


_WRONG_PASSWORD = "error: Failed to load resource: the server responded with a status of 401 (Unauthorized)"


def start_again(server: Server) -> Server:
    """Start ``server``'s command again, on its port, in its directory (it was stopped)."""
    log = server.log.with_name(server.log.stem + "-again.log")
    with log.open("wb") as out:
        process = subprocess.Popen(
            server.process.args, cwd=server.log.parent, stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ)
        )
    again = Server(server.app, server.port, log, process)
    try:
        wait_for_port(server.port, process)
    except RuntimeError:
        again.stop()
        raise
    return again


async def run_browser_client(page_file: Path, server: Server, out_dir: Path) -> dict[str, Path]:
    """The browser how-to's page on ``qakeapi.js``: two tabs chat, then the server restarts under them.

    The app serves the saved page with the client's URL in its import map (``QAKEAPI_JS``
    replaced); each tab reconnects by itself after the restart, says that messages were missed
    (the history was in the process), and chats on.
    """
    saved = await asyncio.to_thread(page_file.read_text, encoding="utf-8")
    browser, playwright = await launch(server)
    logs = [PageLog("tab one"), PageLog("tab two")]
    shots: dict[str, Path] = {}
    restarted: Server | None = None
    try:
        tabs = []
        for log in logs:
            tab = await browser.new_page()
            log.attach(tab)
            await open_with_client(tab, saved)
            await expect(tab.locator("#status")).to_have_text("connected", timeout=TIMEOUT_MS)
            tabs.append(tab)
        one, two = tabs
        for tab, text in ((one, "hello from one"), (two, "hi from two")):
            await tab.fill("#text", text)
            await tab.press("#text", "Enter")
            for other in tabs:
                line = other.locator("#messages li", has_text=re.compile(rf"^\d+: {text}$"))
                await expect(line).to_have_count(1, timeout=TIMEOUT_MS)
        shots["one"] = out_dir / "browser-tab-one.png"
        await one.screenshot(path=str(shots["one"]))

        server.stop()
        restarted = await asyncio.to_thread(start_again, server)
        for tab in tabs:
            await expect(tab.locator("#status")).to_have_text("connected", timeout=30_000)
            await expect(tab.locator("#messages li", has_text="messages were missed")).to_have_count(
                1, timeout=TIMEOUT_MS
            )
        await one.fill("#text", "after the restart")
        await one.press("#text", "Enter")
        await expect(two.locator("#messages li", has_text="after the restart")).to_have_count(1, timeout=TIMEOUT_MS)
        for log in logs:
            assert not log.errors, log.report()
        assert restarted.stop() == 0, restarted.output()
        return shots
    except AssertionError as exc:
        details = [str(exc), *(log.report() for log in logs), "server log:\n" + server.output()[-3000:]]
        raise ChatScenarioError("\n".join(details)) from exc
    finally:
        if restarted is not None:
            restarted.stop()
        await browser.close()
        await playwright.stop()


SCENARIOS = {
    "chat/chat.html": run_guide_chat,
    "login/index.html": run_login_page,
    "browser/index.html": run_browser_client,
}
"""The browser scenario for each HTML file the docs have the reader save."""
