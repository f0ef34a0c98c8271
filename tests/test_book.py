"""The course website (``make book``, ``s3lib.book``): built once for this module from the
committed notebooks, then checked as files (pages, links, downloads, no network, MathJax files)
and in headless Debian chromium, served from 127.0.0.1 with every other host blocked: the
index lists the notebooks, every page shows its figures and its equations typeset by MathJax
(no raw ``$...$`` left), every internal link answers 200. A screenshot of notebook 02's page is
saved in ``tests/_artifacts/`` (and one of any page that fails).
"""

from __future__ import annotations

import html
import json
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import nbformat
import pytest

from browser import stop_process_group
from conftest import REPO
from s3lib import book as B
from s3lib.student import BEGIN, END, exercises

ARTIFACTS = REPO / "tests" / "_artifacts"
NOTEBOOKS = sorted(p.stem for p in (REPO / "notebooks").glob(B.NOTEBOOK_GLOB))
PAGES = ["index", "notation", "api", *NOTEBOOKS]
SCREENSHOT = "02_affine_motion_loss"  # the page whose screenshot is always saved


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> B.BookReport:
    return B.build_book(REPO / "notebooks", tmp_path_factory.mktemp("book") / "book")


def read(report: B.BookReport, name: str) -> str:
    return (report.out / name).read_text(encoding="utf-8")


# --------------------------------------------------------------------------- files

def test_every_notebook_has_a_page_and_the_report_counts_them(site):
    assert NOTEBOOKS, "no course notebooks found"
    assert sorted(p.name for p in site.pages) == sorted(f"{p}.html" for p in PAGES)
    assert site.page_count == len(NOTEBOOKS) + 3
    assert site.bytes == sum(p.stat().st_size for p in site.out.rglob("*") if p.is_file())
    assert site.seconds > 0
    assert re.fullmatch(rf"book: {site.page_count} pages, \d+ notebooks to download, "
                        r"[\d.]+ MB, [\d.]+ s -> .*index\.html", site.summary())
    for stem in NOTEBOOKS:
        nb = nbformat.read(REPO / "notebooks" / f"{stem}.ipynb", as_version=4)
        page = read(site, f"{stem}.html")
        title = re.search(r"<title>(.*?)</title>", page).group(1)
        assert html.unescape(title) == B._title(nb, stem)
        images = sum("image/png" in o.get("data", {}) for c in nb.cells
                     for o in c.get("outputs", []))
        assert page.count("<img") >= images > 0, f"{stem}: figures missing from the page"


def test_every_internal_link_resolves_in_the_site(site):
    assert B.broken_links(site.out) == []


def test_pages_link_each_other_in_course_order(site):
    for i, stem in enumerate(NOTEBOOKS):
        page = read(site, f"{stem}.html")
        for target in ("index.html", "notation.html", "api.html"):
            assert f'href="{target}"' in page, f"{stem}: no link to {target}"
        if i > 0:
            assert f'href="{NOTEBOOKS[i - 1]}.html" rel="prev"' in page
        if i + 1 < len(NOTEBOOKS):
            assert f'href="{NOTEBOOKS[i + 1]}.html" rel="next"' in page
        assert "make lab" in page and f"notebooks/{stem}.ipynb" in page, \
            f"{stem}: no note that the widgets need a kernel"
        assert B.WIDGET_VIEW not in page, f"{stem}: a widget view the page cannot show"


def test_nothing_in_a_page_loads_from_the_network(site):
    for page in site.pages:
        assert B.network_references(page) == [], page.name
        text = page.read_text(encoding="utf-8")
        for cdn in ("unpkg.com", "cdnjs.cloudflare.com", "cdn.jsdelivr.net", "require.min.js"):
            assert cdn not in text, f"{page.name} mentions {cdn}"


def test_the_mathjax_files_the_pages_load_are_in_the_site(site):
    for page in site.pages:
        srcs = re.findall(r'<script[^>]*\bsrc="([^"]+)"', page.read_text(encoding="utf-8"))
        assert len(srcs) == 1 and srcs[0].startswith("mathjax/MathJax.js?config="), (page, srcs)
        config = urllib.parse.parse_qs(urllib.parse.urlsplit(srcs[0]).query)["config"][0]
        assert (site.out / "mathjax" / "MathJax.js").is_file()
        for name in config.split(","):
            assert (site.out / "mathjax" / "config" / f"{name}.js").is_file(), name
    mj = site.out / "mathjax"
    for rel in ("jax/input/TeX/config.js", "jax/element/mml/jax.js",
                "jax/output/HTML-CSS/fonts/STIX-Web/fontdata.js", "extensions/TeX/AMSmath.js",
                "extensions/TeX/AMSsymbols.js", "extensions/tex2jax.js", "LICENSE"):
        assert (mj / rel).is_file(), rel
    assert len(list((mj / "fonts/HTML-CSS/STIX-Web/woff").glob("*.woff"))) > 20
    assert not (mj / "extensions" / "a11y").exists()


def test_student_copies_and_instructor_notebooks_are_linked_as_downloads(site):
    for stem in NOTEBOOKS:
        page = read(site, f"{stem}.html")
        for folder in ("student", "notebooks"):
            assert re.search(rf'<a download(="")? href="{folder}/{stem}.ipynb">', page), \
                (stem, folder)
        student = (site.out / "student" / f"{stem}.ipynb").read_text(encoding="utf-8")
        assert BEGIN not in student and END not in student, f"{stem}: a solution survives"
        ours = nbformat.reads(student, as_version=4)
        original = REPO / "notebooks" / f"{stem}.ipynb"
        for ex in exercises(nbformat.read(original, as_version=4)):
            kept = ours.cells[ex.solution].source.splitlines()
            assert not set(ex.solution_lines) & set(kept) - {""}, f"{stem}: exercise {ex.number}"
        assert (site.out / "notebooks" / f"{stem}.ipynb").read_bytes() == original.read_bytes()
    index = read(site, "index.html")
    for stem in NOTEBOOKS:
        assert f'href="{stem}.html"' in index and f'href="student/{stem}.ipynb"' in index


def test_the_index_is_the_readme_course_map(site):
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    index = html.unescape(re.sub(r"<[^>]+>", "", read(site, "index.html")))
    rows = [r for r in readme.splitlines() if re.match(r"^\| \d\d[a-z]? \| \[`", r)]
    listed = {re.search(r"\[`([^`]+)`\]", r).group(1) for r in rows}
    assert listed == set(NOTEBOOKS), "the README's notebook table does not list every notebook"
    for row in rows:
        learn = row.split(" | ")[2]
        plain = re.sub(r"[`*]", "", learn)
        assert plain in index, f"index lacks the README's line: {plain[:60]}"


def test_the_notation_page_is_notebook_00s_notation_section(site):
    nb = nbformat.read(REPO / "notebooks" / f"{NOTEBOOKS[0]}.ipynb", as_version=4)
    section = B.notation_section(nb)
    assert "|" in section and "notation" in section.splitlines()[0].lower()
    page = read(site, "notation.html")
    assert "<table>" in page
    symbols = re.findall(r"^\| (\$[^|]+\$) \|", section, re.M)
    assert len(symbols) > 5
    for symbol in symbols:
        assert html.escape(symbol, quote=False) in page, symbol
    assert B.notation_section(nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("## Notation\n\n| a | b |\n\n## Next\nnot this"),
    ])) == "## Notation\n\n| a | b |"
    with pytest.raises(ValueError, match="nb-x: no notation section"):
        B.notation_section(nbformat.v4.new_notebook(), "nb-x")


def test_the_api_page_documents_the_library_from_its_docstrings(site):
    page = html.unescape(re.sub(r"</?span[^>]*>", "", read(site, "api.html")))
    for name in ("s3lib.losses", "s3lib.metrics", "s3lib.flow", "s3lib.student", "s3lib.book"):
        assert f'id="{name}"' in page, name
    assert "s3lib.losses.fit_affine" in page and "fit_affine(flow" in page
    assert "build_book" in page and "s3lib._io" not in page
    assert ('<a href="02_affine_motion_loss.html"><code>notebooks/02_affine_motion_loss.ipynb'
            in page), "a docstring's mention of a notebook should link to its page"


def test_markdown_links_to_notebooks_point_to_pages():
    stems = ["04_cube_toy", "05_sintel"]
    md = ("see [the cube](04_cube_toy.ipynb), [Sintel](notebooks/05_sintel.ipynb#sec-2), "
          "<a href=\"../notebooks/04_cube_toy.ipynb\">x</a>, `05_sintel.ipynb`, "
          "[other](99_other.ipynb)\n```\n`04_cube_toy.ipynb` in a fence\n```\n")
    assert B.rewrite_notebook_links(md, stems) == (
        "see [the cube](04_cube_toy.html), [Sintel](05_sintel.html#sec-2), "
        "<a href=\"04_cube_toy.html\">x</a>, [`05_sintel.ipynb`](05_sintel.html), "
        "[other](99_other.ipynb)\n```\n`04_cube_toy.ipynb` in a fence\n```\n")


def test_the_link_checker_and_the_network_check_can_fail(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "there.html").write_text('<p id="here">x</p>')
    page = tmp_path / "page.html"
    page.write_text(
        '<a href="there.html#here">ok</a> <a href="#top" id="top">ok</a> '
        '<a href="https://example.org/">a link, not a load</a>'
        '<a href="missing.html">1</a> <img src="sub/none.png"> <a href="there.html#nowhere">2</a>'
        '<a href="../outside.html">3</a> <script src="https://cdn.example.org/x.js"></script>'
        '<link rel="stylesheet" href="//cdn.example.org/x.css">'
        '<script>load("https://unpkg.com/x")</script>')
    problems = B.broken_links(tmp_path, [page])
    assert len(problems) == 4, problems
    for bad, why in (("missing.html", "no such file"), ("sub/none.png", "no such file"),
                     ("there.html#nowhere", "no element #nowhere"),
                     ("../outside.html", "outside the site")):
        assert any(bad in p and why in p for p in problems), (bad, problems)
    network = B.network_references(page)
    assert len(network) == 3 and not any("example.org/'" in n for n in network), network


def test_a_failed_or_refused_build_leaves_the_site_as_it_was(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match=re.escape(str(tmp_path / "empty"))):
        B.build_book(tmp_path / "empty", tmp_path / "out")
    src = tmp_path / "nbs"
    src.mkdir()
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# 00 · Tiny\n\n$x$")])
    nbformat.write(nb, src / "00_tiny.ipynb")
    with pytest.raises(ValueError, match="00_tiny.ipynb: no notation section"):
        B.build_book(src, tmp_path / "out")
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="not a book built by s3lib.book"):
        B.build_book(REPO / "notebooks", other)
    assert (other / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nbs", "other"], "a temporary folder left"


# --------------------------------------------------------------------------- browser

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(site, tmp_path_factory):
    """``python -m http.server`` on 127.0.0.1 serving the site; stopped by its PID."""
    port = _free_port()
    log = open(tmp_path_factory.mktemp("http") / "server.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind",
                             "127.0.0.1", "--directory", str(site.out)],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{base}/index.html", timeout=5).close()
                break
            except (urllib.error.URLError, ConnectionError, OSError):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the static file server did not start")
                time.sleep(0.2)
        yield base
    finally:
        stop_process_group(proc, 10)
        log.close()


class Browser:
    """Headless Debian chromium whose requests to any host but 127.0.0.1 are aborted (and
    recorded); :meth:`new_page` records the failed loads of a page too."""

    def __init__(self, context):
        self.context = context
        self.blocked: list[str] = []
        self.failed: list[str] = []
        self.status: dict[str, int] = {}
        context.route("**/*", self._route)

    def new_page(self):
        page = self.context.new_page()
        page.on("response", lambda r: r.status >= 400 and self.failed.append(
            f"{r.status} {r.url}"))
        page.on("requestfailed", lambda r: r.url.startswith("http") and self.failed.append(
            f"failed {r.url}: {r.failure}"))
        return page

    def _route(self, route) -> None:
        if urllib.parse.urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            self.blocked.append(route.request.url)
            route.abort()

    def answers(self, url: str) -> int:
        """The HTTP status of ``url`` (HEAD, cached)."""
        if url not in self.status:
            try:
                with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"),
                                            timeout=10) as r:
                    self.status[url] = r.status
            except urllib.error.HTTPError as err:
                self.status[url] = err.code
        return self.status[url]


@pytest.fixture(scope="module")
def browser(server):
    from playwright.sync_api import sync_playwright

    from browser import CHROMIUM_ARGS, chromium_executable

    pw = sync_playwright().start()
    try:
        chromium = pw.chromium.launch(executable_path=chromium_executable(), headless=True,
                                      args=CHROMIUM_ARGS)
        context = chromium.new_context(viewport={"width": 1300, "height": 900})
        context.set_default_timeout(90_000)
        yield Browser(context)
        chromium.close()
    finally:
        pw.stop()


# What a page shows once MathJax is done: its figures, its math (found, typeset, errors) and
# the text of its Markdown cells outside code and typeset math, where no TeX may be left.
PAGE_STATE = r"""() => {
  const raw = [];
  for (const el of document.querySelectorAll('.jp-MarkdownOutput')) {
    const c = el.cloneNode(true);
    c.querySelectorAll('pre, code, script, style, .MathJax, .MathJax_Display, .MathJax_Preview,'
                       + ' .MJX_Assistive_MathML').forEach(e => e.remove());
    const t = c.textContent, i = t.search(/\$|\\begin\{|\\\(|\\\[/);
    if (i >= 0) raw.push(t.slice(Math.max(0, i - 50), i + 50).replace(/\s+/g, ' '));
  }
  const imgs = [...document.images];
  return {
    images: imgs.length,
    broken_images: imgs.filter(i => !(i.complete && i.naturalWidth > 0))
                       .map(i => (i.getAttribute('src') || '').slice(0, 60)),
    math: document.querySelectorAll('script[type^="math/tex"]').length,
    typeset: document.querySelectorAll('span.MathJax').length,
    jax: MathJax.Hub.getAllJax().length,
    errors: [...document.querySelectorAll('.MathJax_Error, .merror, .noError')]
              .map(e => e.textContent.slice(0, 80)).concat(window.bookMathErrors || []),
    raw: raw,
    links: [...document.querySelectorAll('a[href]')].map(a => a.href),
    missing_anchors: [...document.querySelectorAll('a[href^="#"]')]
      .map(a => a.getAttribute('href').slice(1))
      .filter(f => !document.getElementById(f) && !document.getElementById(decodeURIComponent(f))),
    notes: document.querySelectorAll('.book-note').length,
  };
}"""


def check_page(b: Browser, page, url: str, name: str, math_expected: bool,
               figures_expected: bool) -> dict:
    """Load ``url`` and check it; ``AssertionError`` listing every problem (a screenshot of the
    page is saved in ``tests/_artifacts/book-NAME.png``)."""
    b.blocked.clear()
    b.failed.clear()
    state: dict = {}
    try:
        page.goto(url, wait_until="load")
        page.wait_for_function("() => window.MathJax && MathJax.isReady && MathJax.Hub",
                               timeout=90_000)
        page.evaluate("() => new Promise(done => MathJax.Hub.Queue(() => done(true)))")
        page.wait_for_function("() => [...document.images].every(i => i.complete)")
        state = page.evaluate(PAGE_STATE)
        problems = [f"blocked (network): {u}" for u in b.blocked]
        problems += [f"failed load: {f}" for f in b.failed]
        problems += [f"image did not load: {s}" for s in state["broken_images"]]
        if figures_expected and not state["images"]:
            problems.append("no figures on the page")
        if math_expected and not state["math"]:
            problems.append("no equations found by MathJax")
        if not state["math"] == state["typeset"] == state["jax"]:
            problems.append(f"{state['math']} equations, {state['typeset']} typeset, "
                            f"{state['jax']} MathJax elements")
        problems += [f"MathJax error: {e}" for e in state["errors"]]
        problems += [f"raw TeX left in Markdown text: ...{t}..." for t in state["raw"]]
        problems += [f"no element for #{f}" for f in state["missing_anchors"]]
        origin = url.split("/", 3)[:3]
        for link in sorted({u.split("#")[0] for u in state["links"]}):
            if link.split("/", 3)[:3] == origin and (code := b.answers(link)) != 200:
                problems.append(f"link answered {code}: {link}")
        assert not problems, f"{name}:\n" + "\n".join(problems)
    except BaseException:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shot = ARTIFACTS / f"book-{name}.png"
        try:
            page.screenshot(path=str(shot))
            print(f"screenshot of the failure: {shot}; state: {json.dumps(state)[:2000]}",
                  file=sys.stderr)
        except Exception as err:  # keep the original error
            print(f"no screenshot ({err})", file=sys.stderr)
        raise
    return state


@pytest.mark.browser
def test_the_index_lists_every_notebook_in_the_browser(browser, server):
    page = browser.new_page()
    try:
        state = check_page(browser, page, f"{server}/index.html", "index", False, False)
        for stem in NOTEBOOKS:
            assert f"{server}/{stem}.html" in state["links"], stem
            assert page.locator(f'table a[href="{stem}.html"]').count() == 1, stem
    finally:
        page.close()


@pytest.mark.browser
@pytest.mark.parametrize("name", PAGES[1:])
def test_a_page_shows_its_figures_and_typeset_equations(browser, server, name):
    page = browser.new_page()
    try:
        notebook = name in NOTEBOOKS
        state = check_page(browser, page, f"{server}/{name}.html", name,
                           math_expected=notebook or name == "notation",
                           figures_expected=notebook)
        if notebook:
            assert state["notes"] == 1, "no note about the kernel the widgets need"
        if name == SCREENSHOT:
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            # the first figure at the bottom, the code and the text with equations above it
            page.evaluate("() => document.querySelector('.jp-OutputArea-output img')"
                          ".scrollIntoView({block: 'end'})")
            page.screenshot(path=str(ARTIFACTS / f"book-{name}.png"))
    finally:
        page.close()


@pytest.mark.browser
def test_the_browser_check_fails_on_raw_tex_math_errors_and_missing_figures(browser, server):
    """The page check above can fail: a page with a lone ``$``, an undefined TeX macro and a
    missing image (served on 127.0.0.1 by the test itself) fails it on each count, while an
    ``aligned`` environment and ``\\(...\\)`` on the same page pass."""
    body = urllib.request.urlopen(f"{server}/notation.html", timeout=10).read().decode()
    bad = ('<div class="jp-RenderedHTMLCommon jp-MarkdownOutput"><p>a lone dollar $ here</p></div>'
           '<div class="jp-RenderedHTMLCommon jp-MarkdownOutput"><p>$\\nosuchmacro{y}$</p></div>'
           '<div class="jp-RenderedHTMLCommon jp-MarkdownOutput"><p>and, typeset as it should be: '
           '$$\\begin{aligned} a &= b \\\\ c &= \\mathbb{R} \\end{aligned}$$ and \\(x\\)</p></div>'
           '<img src="no-such-figure.png">')
    body = body.replace("</main>", bad + "</main>")
    page = browser.new_page()
    page.route(f"{server}/broken.html", lambda route: route.fulfill(
        status=200, content_type="text/html", body=body))
    try:
        with pytest.raises(AssertionError) as err:
            check_page(browser, page, f"{server}/broken.html", "broken-on-purpose", True, True)
    finally:
        page.close()
    message = str(err.value)
    for expected in ("raw TeX left in Markdown text: ...a lone dollar $ here",
                     "MathJax error", "nosuchmacro", "image did not load",
                     "404 " + f"{server}/no-such-figure.png"):
        assert expected in message, (expected, message)
    assert "aligned" not in message and "\\(" not in message, message
