"""The built documentation shows no error box, reads on a phone, and copies commands cleanly.

``sphinx-build -W`` fails on warnings, but some errors only show in the HTML: docutils renders
a problem it reported at a low level as a ``system-message`` box and the text it could not
parse as ``problematic``; Furo paints a ``.. contents::`` block as a red "ERROR" box with CSS.
This test builds the docs and looks for that markup. By hand::

    .venv/bin/sphinx-build -W -n -q -b html docs docs/_build/html
    .venv/bin/python -m tests.test_docs_html docs/_build/html

Then Chromium opens every built page (one browser, one tab, the pages in turn), at desktop and
at phone width, and checks what issue 20 asks of them (:func:`sweep_problems`): the page does
not scroll sideways, no prose element is wider than its box (code blocks may scroll inside their
own), and every internal link, viewcode's "[source]" and "[docs]" included, points at a file
that exists and, with a fragment, at an id on that page.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from html.parser import HTMLParser
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from playwright.async_api import ViewportSize

ROOT = Path(__file__).resolve().parents[1]
FURO_TOC_ESCAPE = "this-will-duplicate-information-and-it-is-still-useful-here"


class ErrorMarkup(HTMLParser):
    """Collects the elements that render as an error box, with their line numbers."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self.noscript = 0  # the search page's "please activate JavaScript" notice is an admonition error

    def handle_endtag(self, tag: str) -> None:
        if tag == "noscript":
            self.noscript -= 1

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "noscript":
            self.noscript += 1
        if self.noscript:
            return
        classes = set((dict(attrs).get("class") or "").split())
        line, _ = self.getpos()
        if classes & {"system-message", "problematic"}:
            self.found.append(f"line {line}: <{tag} class={' '.join(sorted(classes))}> (a docutils error)")
        elif "contents" in classes and FURO_TOC_ESCAPE not in classes:
            self.found.append(f"line {line}: <{tag} class=contents> (Furo shows .. contents:: as a red ERROR box)")
        elif {"admonition", "error"} <= classes:
            self.found.append(f"line {line}: <{tag} class=admonition error>")


def error_markup(html: str) -> list[str]:
    """The error boxes in a page of HTML, as readable lines."""
    parser = ErrorMarkup()
    parser.feed(html)
    parser.close()
    return parser.found


def scan(directory: Path) -> dict[str, list[str]]:
    """Error boxes of every HTML page under ``directory`` (``_modules`` source listings included)."""
    return {
        str(page.relative_to(directory)): found
        for page in sorted(directory.rglob("*.html"))
        if (found := error_markup(page.read_text(encoding="utf-8")))
    }


@pytest.mark.parametrize(
    "html",
    [
        '<aside class="system-message"><p class="system-message-title">System Message: ERROR/3</p></aside>',
        '<a href="#id1"><span class="problematic" id="id2">`broken</span></a>',
        '<nav class="contents local" id="table-of-contents"><p class="topic-title">Contents</p></nav>',
        '<div class="admonition error"><p class="admonition-title">Error</p></div>',
    ],
)
def test_error_markup_is_found(html: str) -> None:
    assert len(error_markup(f"<html><body><p>ok</p>{html}</body></html>")) == 1


def test_clean_markup_passes() -> None:
    html = (
        f'<nav class="contents {FURO_TOC_ESCAPE}"></nav><div class="admonition warning"></div><p class="error-x">'
        '<noscript><div class="admonition error">Please activate JavaScript</div></noscript>'
    )
    assert error_markup(html) == []


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The docs, built as CI builds them (``-W -n``), once for this module."""
    out = tmp_path_factory.mktemp("docs") / "html"
    build = [sys.executable, "-m", "sphinx", "-W", "-n", "-q", "-b", "html", str(ROOT / "docs"), str(out)]
    result = subprocess.run(build, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, f"sphinx-build -W -n failed:\n{result.stdout}\n{result.stderr}"
    assert (out / "guide" / "websockets.html").exists()
    return out


@pytest.mark.e2e  # runs sphinx-build (the docs tools are not in the sdist's test extra)
def test_built_docs_show_no_error_box(built: Path) -> None:
    assert scan(built) == {}


@contextmanager
def served(directory: Path) -> Iterator[str]:
    """``directory`` over HTTP on a free loopback port (the clipboard needs a real origin)."""

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


PHONE: ViewportSize = {"width": 390, "height": 844}
"""A phone's viewport in CSS pixels (an iPhone 12 to 15)."""

MEASURE_BLOCKS = """() => [...document.querySelectorAll('div.highlight pre')].map(pre => ({
  longest: Math.max(...pre.innerText.replace(/\\n$/, '').split('\\n').map(line => line.length)),
  scrolls: pre.scrollWidth > pre.clientWidth + 1,
  first: pre.innerText.split('\\n')[0],
}))"""


@pytest.mark.e2e  # headless Chromium
@pytest.mark.asyncio
@pytest.mark.parametrize("name", ["guide/websockets.html", "getting-started.html", "tutorial.html"])
async def test_code_under_80_columns_does_not_scroll_on_a_phone(built: Path, name: str) -> None:
    from playwright.async_api import async_playwright

    from tests.e2e.browser import CHROMIUM, CHROMIUM_ARGS

    with served(built) as url:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = await browser.new_page(viewport=PHONE)
                await page.goto(f"{url}/{name}")
                blocks = await page.evaluate(MEASURE_BLOCKS)
            finally:
                await browser.close()
    assert blocks
    scrolling = [block["first"] for block in blocks if block["scrolls"] and block["longest"] < 80]
    assert scrolling == [], f"{len(scrolling)} code blocks under 80 columns scroll sideways at 390 px"


@pytest.mark.e2e  # headless Chromium
@pytest.mark.asyncio
async def test_copy_button_copies_commands_without_prompts_or_output(built: Path) -> None:
    """sphinx-copybutton: a console block copies as the commands to paste, nothing else."""
    from playwright.async_api import async_playwright

    from tests.e2e.browser import CHROMIUM, CHROMIUM_ARGS

    copied = []
    with served(built) as url:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                context = await browser.new_context()
                await context.grant_permissions(["clipboard-read", "clipboard-write"], origin=url)
                page = await context.new_page()
                await page.goto(f"{url}/getting-started.html")
                blocks = page.locator("div.highlight-console")
                for index in range(await blocks.count()):
                    await blocks.nth(index).hover()
                    await blocks.nth(index).locator("button.copybtn").click()
                    copied.append(await page.evaluate("navigator.clipboard.readText()"))
            finally:
                await browser.close()
    assert copied == [
        "python -m venv .venv\nsource .venv/bin/activate",
        'pip install "qakeapi-realtime[jwt,redis,server]" websockets',
        "uvicorn quickstart:app",
        "curl -s http://localhost:8000/health",
        "python -m websockets ws://localhost:8000/ws",
    ]


DESKTOP: ViewportSize = {"width": 1280, "height": 800}
VIEWPORTS: dict[str, ViewportSize] = {"desktop": DESKTOP, "phone": PHONE}

SURVEY = """() => {
  const root = document.documentElement;
  const article = document.querySelector("article[role=main]") || document.body;
  const text = (el) => (el.innerText || el.textContent || "").replace(/\\s+/g, " ").trim().slice(0, 60);
  const name = (el) => el.tagName.toLowerCase() + (el.id ? "#" + el.id : "")
    + [...el.classList].map((c) => "." + c).join("");
  const clips = (el) => getComputedStyle(el).overflowX !== "visible";
  // (a) the page itself, and any box between it and the prose that would scroll sideways
  const scrolls = [];
  if (root.scrollWidth > root.clientWidth + 1) {
    scrolls.push(`the page is ${root.scrollWidth} px wide in ${root.clientWidth}`);
  }
  for (let el = article; el && el !== root; el = el.parentElement) {
    if (clips(el) && el.scrollWidth > el.clientWidth + 1) {
      scrolls.push(`<${name(el)}> scrolls: ${el.scrollWidth} px wide in ${el.clientWidth}`);
    }
  }
  // (b) prose wider than its box. The box is the nearest ancestor that scrolls or clips (a
  // table's wrapper), else the page's column, padding included: Furo's .content, into whose
  // padding its headings and signatures reach by design (negative margins, for their
  // highlight). An element whose own text overflows it counts too, when its content is inline
  // (a block inside, such as a signature, is measured as itself, not as its parent's text).
  const wide = [];
  const reported = [];
  const inline = (el) => [...el.children].every((child) => {
    const display = getComputedStyle(child).display;
    return display.startsWith("inline") || display === "none";
  });
  for (const el of article.querySelectorAll("p, li, dd, td, th, caption, table, h1, h2, h3, h4, h5, h6")) {
    if (el.closest("pre, div.highlight, table.highlighttable")) continue;  // code scrolls in its own box
    if (reported.some((outer) => outer.contains(el)) || !el.checkVisibility()) continue;
    let box = root;
    for (let up = el.parentElement; up && up !== root; up = up.parentElement) {
      if (clips(up) || up.classList.contains("content")) { box = up; break; }
    }
    const left = box === root ? 0 : box.getBoundingClientRect().left + box.clientLeft;
    const right = left + box.clientWidth;
    const rect = el.getBoundingClientRect();
    if (inline(el) && el.clientWidth > 0 && el.scrollWidth > el.clientWidth + 1) {
      wide.push(`<${name(el)}> "${text(el)}": its text is ${el.scrollWidth} px wide in ${el.clientWidth}`);
    } else if (rect.right > right + 1 || rect.left < left - 1) {
      const width = Math.round(rect.width);
      wide.push(`<${name(el)}> "${text(el)}": ${width} px wide in <${name(box)}> of ${box.clientWidth}`);
    } else {
      continue;
    }
    reported.push(el);
  }
  const ids = [...document.querySelectorAll("[id]")].map((el) => el.id);
  ids.push(...[...document.querySelectorAll("a[name]")].map((el) => el.getAttribute("name")));
  const links = [];
  for (const a of document.querySelectorAll("a[href]")) {
    const url = new URL(a.href);
    if (url.origin !== location.origin) continue;
    links.push({
      href: a.getAttribute("href"),
      path: decodeURIComponent(url.pathname),
      fragment: decodeURIComponent(url.hash.slice(1)),
      text: text(a).slice(0, 40),
    });
  }
  return {scrolls, wide, ids, links};
}"""
"""Measures the page shown (at the viewport's width) and collects its ids and same-origin links."""


@dataclass(frozen=True)
class Link:
    """A same-origin link: ``target`` is the path from the site's root, ``fragment`` decoded."""

    href: str
    target: str
    fragment: str
    text: str


@dataclass
class PageSurvey:
    """What Chromium saw of one page: its ids and links, and per viewport what does not fit."""

    ids: frozenset[str] = frozenset()
    links: list[Link] = field(default_factory=list)
    scrolls: dict[str, list[str]] = field(default_factory=dict)
    wide: dict[str, list[str]] = field(default_factory=dict)


def link_target(path: str) -> str:
    """The file a URL path names, from the site's root (a directory means its ``index.html``)."""
    target = path.lstrip("/")
    return f"{target}index.html" if target == "" or target.endswith("/") else target


def sweep_problems(pages: Mapping[str, PageSurvey], files: set[str]) -> list[str]:
    """What does not hold in ``pages`` (by path from the site's root), as lines naming page and element.

    Args:
        pages: Every HTML page of the site, as surveyed.
        files: Every file of the site (a link may point at a JSON file, an image, a source).

    Returns:
        A line per problem: the page scrolls sideways, a prose element is wider than its box
        (per viewport), a link points at no file, or its fragment is no id on the target page.
    """
    problems = []
    for name, page in pages.items():
        for viewport, found in page.scrolls.items():
            problems += [f"{name} [{viewport}]: {line}" for line in found]
        for viewport, found in page.wide.items():
            problems += [f"{name} [{viewport}]: {line}" for line in found]
        for link in page.links:
            shown = f"{name}: link {link.href!r} ({link.text!r})"
            target = pages.get(link.target)
            if target is None and link.target not in files:
                problems.append(f"{shown}: there is no {link.target}")
            elif link.fragment and target is None:
                problems.append(f"{shown}: {link.target} is not a page, it has no #{link.fragment}")
            elif link.fragment and target is not None and link.fragment not in target.ids:
                problems.append(f"{shown}: no element on {link.target} has the id {link.fragment!r}")
    return problems


def site_files(directory: Path) -> set[str]:
    """Every file under ``directory``, as a path from it."""
    return {path.relative_to(directory).as_posix() for path in directory.rglob("*") if path.is_file()}


def html_pages(directory: Path) -> list[str]:
    """The HTML pages under ``directory``, as sorted paths from it."""
    return sorted(path.relative_to(directory).as_posix() for path in directory.rglob("*.html"))


async def survey_site(directory: Path) -> dict[str, PageSurvey]:
    """Open every HTML page under ``directory`` in one Chromium, at each of :data:`VIEWPORTS`."""
    from playwright.async_api import async_playwright

    from tests.e2e.browser import CHROMIUM, CHROMIUM_ARGS

    pages: dict[str, PageSurvey] = {}
    names = await asyncio.to_thread(html_pages, directory)
    with served(directory) as url:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                tab = await browser.new_page()
                for name in names:
                    survey = pages[name] = PageSurvey()
                    for index, (viewport, size) in enumerate(VIEWPORTS.items()):
                        await tab.set_viewport_size(size)
                        if index == 0:
                            response = await tab.goto(f"{url}/{PurePosixPath(name)}")
                            assert response is not None
                            assert response.ok, f"{name}: HTTP {response.status}"
                        seen: dict[str, Any] = await tab.evaluate(SURVEY)
                        survey.scrolls[viewport] = list(seen["scrolls"])
                        survey.wide[viewport] = list(seen["wide"])
                        if index == 0:  # ids and links do not change with the width
                            survey.ids = frozenset(seen["ids"])
                            survey.links = [
                                Link(link["href"], link_target(link["path"]), link["fragment"], link["text"])
                                for link in seen["links"]
                            ]
            finally:
                await browser.close()
    return pages


def test_sweep_problems_names_page_element_and_link() -> None:
    pages = {
        "index.html": PageSurvey(
            ids=frozenset({"top"}),
            links=[
                Link("#top", "index.html", "top", "top"),
                Link("guide.html#setup", "guide.html", "setup", "set-up"),
                Link("guide.html#gone", "guide.html", "gone", "dangling"),
                Link("missing.html", "missing.html", "", "missing"),
                Link("_static/data.json", "_static/data.json", "", "data"),
                Link("_static/data.json#x", "_static/data.json", "x", "data, anchored"),
                Link("reference/", "reference/index.html", "", "a folder"),
            ],
            scrolls={"desktop": [], "phone": ["the page is 420 px wide in 390"]},
            wide={"desktop": [], "phone": ['<table> "Limit Default": 414 px wide in <div.table-wrapper> of 364']},
        ),
        "guide.html": PageSurvey(ids=frozenset({"setup"})),
        "reference/index.html": PageSurvey(),
    }
    assert sweep_problems(pages, {"_static/data.json", *pages}) == [
        "index.html [phone]: the page is 420 px wide in 390",
        'index.html [phone]: <table> "Limit Default": 414 px wide in <div.table-wrapper> of 364',
        "index.html: link 'guide.html#gone' ('dangling'): no element on guide.html has the id 'gone'",
        "index.html: link 'missing.html' ('missing'): there is no missing.html",
        "index.html: link '_static/data.json#x' ('data, anchored'): _static/data.json is not a page, it has no #x",
    ]
    clean = {name: page for name, page in pages.items() if name != "index.html"}
    assert sweep_problems(clean, set(clean)) == []


SYNTHETIC = {
    "index.html": f"""<!DOCTYPE html><html><head><meta name="viewport" content="width=device-width">
<style>body {{ margin: 0 }} .content {{ width: min(100%, 40em) }} .fixed {{ width: 600px }}</style></head>
<body><div class="content"><article role="main">
<h1 id="top">Fits</h1><p>Ordinary words wrap.</p>
<p>Averylongwordthatcannotwrapanywhereatallandsoitpushesthepagewiderthanthescreenofanyphoneordesktop</p>
<div class="fixed"><p>Six hundred pixels: wider than a phone's column, not a desktop's.</p></div>
<div class="highlight"><pre>a code line may be as long as it likes, it scrolls in its own box {"." * 80}</pre></div>
<a href="#top">top</a> <a href="other.html#here">there</a> <a href="other.html#nowhere">dangling</a>
<a href="gone.html">gone</a>
</article></div></body></html>""",
    "other.html": '<!DOCTYPE html><html><body><article role="main"><a name="here">here</a></article></body></html>',
}


@pytest.mark.e2e  # headless Chromium
@pytest.mark.asyncio
async def test_survey_finds_wide_prose_scroll_and_dangling_links(tmp_path: Path) -> None:
    """The Chromium half of the sweep, on pages made to fail it."""
    for name, html in SYNTHETIC.items():
        (tmp_path / name).write_text(html, encoding="utf-8")
    pages = await survey_site(tmp_path)
    problems = sweep_problems(pages, site_files(tmp_path))
    long_word = [line for line in problems if "Averylongword" in line]
    assert {line.split(":")[0] for line in long_word} == {"index.html [desktop]", "index.html [phone]"}
    fixed = [line for line in problems if "Six hundred pixels" in line]
    assert [line.split(":")[0] for line in fixed] == ["index.html [phone]"]
    assert any(line.startswith("index.html [phone]: the page is") for line in problems), problems
    assert not any("code line" in line for line in problems), problems
    links = [line for line in problems if ": link " in line]
    assert links == [
        "index.html: link 'other.html#nowhere' ('dangling'): no element on other.html has the id 'nowhere'",
        "index.html: link 'gone.html' ('gone'): there is no gone.html",
    ]


@pytest.mark.e2e  # headless Chromium
@pytest.mark.asyncio
async def test_every_page_fits_and_every_internal_link_resolves(built: Path) -> None:
    """Every built page, ``_modules`` source listings and the indexes included, at 1280 and 390 px."""
    pages = await survey_site(built)
    links = [link for page in pages.values() for link in page.links]
    assert any(link.target.startswith("_modules/") for link in links), "no viewcode [source] link was checked"
    docs_links = [link for name, page in pages.items() if name.startswith("_modules/") for link in page.links]
    assert any(link.fragment and not link.target.startswith("_modules/") for link in docs_links), "no [docs] link"
    problems = sweep_problems(pages, site_files(built))
    assert problems == [], f"{len(problems)} problems in {len(pages)} pages:\n" + "\n".join(problems)


if __name__ == "__main__":
    problems = scan(Path(sys.argv[1]))
    for page, found in problems.items():
        for line in found:
            print(f"{page}: {line}")
    sys.exit(1 if problems else 0)
