"""Drive the guide's JavaScript chat client in headless Chromium (Debian's, through Playwright).

The page is loaded from the chat server itself, at http://localhost:8000/, as a user must: a
page opened from a ``file://`` URL sends ``Origin: null``, which QakeAPI's default origin policy
refuses. It connects to ``ws://localhost:8000/ws``; Chromium's host resolver maps
``localhost:8000`` to the port the server under test listens on, so the page runs unchanged
whatever port the test picked, and its origin is the server's own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, ConsoleMessage, Page, Playwright, async_playwright, expect
from playwright.async_api import Error as PlaywrightError

from tests.e2e.servers import Server

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 10_000
CHAT_URL = "http://localhost:8000/"
"""Where the chat page is opened (``localhost:8000`` is mapped to the server under test)."""
PHONE: dict[str, Any] = {
    "viewport": {"width": 390, "height": 844},
    "device_scale_factor": 2,
    "is_mobile": True,
    "has_touch": True,
}
"""A phone-sized browser context (the options of ``browser.new_context``)."""


@dataclass
class PageLog:
    """What a page printed to its console, and the errors it raised."""

    name: str
    console: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def attach(self, page: Page) -> None:
        def on_console(message: ConsoleMessage) -> None:
            self.console.append(f"{message.type}: {message.text}")

        page.on("console", on_console)
        page.on("pageerror", lambda error: self.errors.append(str(error)))

    def report(self) -> str:
        lines = [f"[{self.name}] console:"] + [f"  {line}" for line in self.console or ["(nothing)"]]
        lines += [f"[{self.name}] page errors:"] + [f"  {line}" for line in self.errors or ["(none)"]]
        return "\n".join(lines)


async def messages_text(page: Page) -> str:
    """The text of the page's ``#messages``, for a failure report; why not, when it cannot be read."""
    try:
        return await page.inner_text("#messages", timeout=2_000)
    except PlaywrightError as exc:
        return f"(no #messages: {exc.message.splitlines()[0]})"


class ChatScenarioError(AssertionError):
    """The two-page chat scenario failed; the message carries logs and screenshot paths."""


async def launch(server: Server) -> tuple[Browser, Playwright]:
    """Start headless Chromium with ``localhost:8000`` mapped to ``server``."""
    playwright = await async_playwright().start()
    rules = f"--host-resolver-rules=MAP localhost:8000 127.0.0.1:{server.port}"
    browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, rules])
    return browser, playwright


async def open_served_page(page: Page, url: str, html: str) -> None:
    """Load ``url`` in ``page``; the server must answer 200 with ``html``, verbatim."""
    response = await page.goto(url)
    assert response is not None, f"no response for {url}"
    assert response.status == 200, f"GET {url}: HTTP {response.status}"
    assert await response.text() == html, f"{url} does not serve the expected page"


_NOT_FOUND = "error: Failed to load resource: the server responded with a status of 404 (Not Found)"


def console_errors(logs: list[PageLog], server: Server, *, expected: tuple[str, ...] = ()) -> list[str]:
    """The pages' console errors, but the expected ones.

    A page served over HTTP asks for ``/favicon.ico``, which these servers do not have; the
    console line does not name the URL, so its 404 is let through only when every 404 in the
    server's log is the favicon's (which this asserts). ``expected`` lines are let through too.
    """
    not_found = re.findall(r'"GET (\S+) HTTP/1\.1" 404', server.output())
    assert set(not_found) <= {"/favicon.ico"}, f"the server answered 404 for {not_found}"
    allowed = {*expected, _NOT_FOUND} if not_found else set(expected)
    return [line for log in logs for line in log.console if line.startswith("error") and line not in allowed]


async def run_two_page_chat(html: str, server: Server, out_dir: Path) -> dict[str, Path]:
    """Open the chat page twice from the server, chat both ways, close one page, check the other sees it leave.

    Args:
        html: The page, verbatim: the server must serve exactly this at ``/``.
        server: ``examples_app.chat_app`` under uvicorn.
        out_dir: Where the screenshots go.

    Returns:
        The screenshots taken (``"both"`` shows the two pages mid-chat).

    Raises:
        ChatScenarioError: A step failed; the message has both pages' console output, page
            errors, their text, the screenshot paths and the server log.
    """
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
        await open_served_page(one, CHAT_URL, html)
        await expect(one.locator("#messages")).to_contain_text("System: Welcome to the chat!", timeout=TIMEOUT_MS)
        await open_served_page(two, CHAT_URL, html)
        await expect(two.locator("#messages")).to_contain_text("System: Welcome to the chat!", timeout=TIMEOUT_MS)
        joined = one.locator("#messages div", has_text=re.compile(r"^System: User \d+ joined$"))
        await expect(joined).to_have_count(1, timeout=TIMEOUT_MS)
        two_id = re.findall(r"\d+", await joined.inner_text())[0]

        await one.fill("#message", "Hello from page one")
        await one.press("#message", "Enter")
        for page in pages:
            said = page.locator("#messages div", has_text=re.compile(r"^\d+: Hello from page one$"))
            await expect(said).to_have_count(1, timeout=TIMEOUT_MS)
        assert await one.input_value("#message") == "", "the input was not cleared after sending"

        await two.fill("#message", "Hi from page two")
        await two.press("#message", "Enter")
        for page in pages:
            said = page.locator("#messages div", has_text=f"{two_id}: Hi from page two")
            await expect(said).to_have_count(1, timeout=TIMEOUT_MS)

        shots["one"] = out_dir / "chat-page-one.png"
        shots["two"] = out_dir / "chat-page-two.png"
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
