"""The course as a static website (``make book``): the committed notebooks rendered as HTML.

:func:`build_book` renders every course notebook (``notebooks/[0-9][0-9]*_*.ipynb``) as it is
committed, outputs included and nothing re-executed, with nbconvert's ``HTMLExporter`` and its
``lab`` template: the same markup and CSS as JupyterLab, so text, equations, figures and
outputs look as they do there. The site holds

- ``index.html``: the course map, the table of notebooks that ``README.md`` shows (read from
  the README at build time, so the map is written once), with links to each page and download;
- ``NN_name.html``: one page per notebook, with links to the previous and next notebook, the
  index, the notation and the API pages, its student copy and its instructor notebook, and a
  note that the interactive widgets need a running kernel (``make lab``);
- ``notation.html``: the notation section of notebook 00, extracted at build time;
- ``api.html``: the reference of ``s3lib`` from its docstrings (module docstrings, public
  functions and classes with their signatures and first paragraph), read from the source with
  :mod:`ast` (nothing is imported);
- ``student/NN_name.ipynb`` (:func:`s3lib.student.write_student_copies`) and
  ``notebooks/NN_name.ipynb`` (the instructor notebooks, copied);
- ``mathjax/``: the part of MathJax 2.7 (from the ``jupyter-server-mathjax`` package) the pages
  load: the combined TeX/AMS configuration, the HTML-CSS output with its STIX-Web fonts.

Nothing in a page loads from the network: no CDN (the ``lab`` template's require.js, widget
manager and mermaid scripts are left out; widgets need a kernel, and each widget's place in a
page says so). Links from notebook Markdown to ``NN_name.ipynb`` (or ``notebooks/NN_name.ipynb``)
point to the pages. :func:`broken_links` and :func:`network_references` check a built site.
Explained in the README ("The course as a website"); tested by ``tests/test_book.py``.
"""

from __future__ import annotations

import argparse
import ast
import copy
import html
import inspect
import re
import shutil
import tempfile
import time
import urllib.parse
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Iterable

NOTEBOOK_GLOB = "[0-9][0-9]*_*.ipynb"
"""The course notebooks, as ``make notebooks`` and ``make student`` take them."""
MARKER = ".s3book"
"""The file that marks a folder as a site built here (only such a folder is ever replaced)."""
MATHJAX_CONFIG = "TeX-AMS-MML_HTMLorMML-full"
MATHJAX_FILES = ("LICENSE", "MathJax.js", f"config/{MATHJAX_CONFIG}.js", "extensions",
                 "jax/element", "jax/input/TeX", "jax/output/HTML-CSS",
                 "fonts/HTML-CSS/STIX-Web/woff")
"""What the pages load of ``jupyter_server_mathjax/static`` (the package ships the HTML-CSS
output with STIX-Web fonts; its SVG output has no jax). Left out: the accessibility explorer
(``extensions/a11y``, 3.7 MB), the localisations and the SVG fonts."""
MATHJAX_SKIP = ("extensions/a11y",)
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"

# MathJax 2.7 from the site itself: the TeX input (AMS math and symbols, environments such as
# aligned), the HTML-CSS output with the STIX-Web web fonts (the only fonts the package ships),
# TeX errors shown as errors (noErrors/noUndefined off) and recorded in window.bookMathErrors.
MATHJAX_HEAD = """\
<script type="text/x-mathjax-config">
window.bookMathErrors = [];
MathJax.Hub.Config({
  TeX: {equationNumbers: {autoNumber: "AMS", useLabelIds: true},
        noErrors: {disabled: true}, noUndefined: {disabled: true}},
  tex2jax: {inlineMath: [["$", "$"], ["\\\\(", "\\\\)"]],
            displayMath: [["$$", "$$"], ["\\\\[", "\\\\]"]],
            processEscapes: true, processEnvironments: true},
  displayAlign: "center",
  messageStyle: "none",
  "HTML-CSS": {availableFonts: [], preferredFont: null, webFont: "STIX-Web", imageFont: null},
  MathMenu: {showRenderer: false, showFontMenu: false, showLocale: false}
});
MathJax.Hub.Register.MessageHook("TeX Jax - parse error", function (m) {
  window.bookMathErrors.push(String(m[1]));
});
MathJax.Hub.Register.MessageHook("Math Processing Error", function (m) {
  window.bookMathErrors.push(String(m[2] && m[2].message || m[2]));
});
</script>
<script src="{url}"></script>
"""

BOOK_CSS = """\
.book-nav { display: flex; flex-wrap: wrap; gap: 0.4em 1.2em; align-items: baseline;
  padding: 0.6em 1em; margin: 0 0 0.8em 0; border-bottom: 1px solid var(--jp-border-color2);
  font-family: var(--jp-ui-font-family); font-size: var(--jp-ui-font-size1); }
.book-nav.book-bottom { border-bottom: none; border-top: 1px solid var(--jp-border-color2);
  margin: 1.5em 0 0 0; }
.book-nav a, .book-note a { color: var(--jp-content-link-color); text-decoration: none; }
.book-nav a:hover, .book-note a:hover { text-decoration: underline; }
.book-nav .book-prevnext { margin-left: auto; display: flex; gap: 1.2em; }
.book-note { margin: 0 1em 1em 1em; padding: 0.5em 0.8em; border-left: 4px solid #e0a800;
  background: #fff8e1; font-family: var(--jp-ui-font-family);
  font-size: var(--jp-ui-font-size1); }
/* MathJax's hidden MathML copy for screen readers (AssistiveMML) would pull MathJax's TeX web
   fonts, which jupyter-server-mathjax does not ship: it keeps the page's font (it is not seen) */
.MJX_Assistive_MathML, .MJX_Assistive_MathML * { font-family: inherit !important; }
.book-widget { padding: 0.5em 0.8em; border: 1px dashed #e0a800; background: #fffdf5;
  font-family: var(--jp-ui-font-family); font-size: var(--jp-ui-font-size1); }
"""

# The lab template, less what would load from the network: require.js, the widget manager
# (unpkg) and mermaid (cdnjs); MathJax from the site; a navigation bar above and below. The
# code of code cells is the lab template's markup without its HTML sanitiser: Pygments has
# escaped it already, and sanitising it again took 40% of the build.
TEMPLATE = """\
{%- extends 'index.html.j2' -%}
{% block input %}
<div class="jp-CodeMirrorEditor jp-Editor jp-InputArea-editor" data-type="inline">
     <div class="cm-editor cm-s-jupyter">
{{ cell.source | highlight_code(metadata=cell.metadata) }}
     </div>
</div>
{%- endblock input %}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block html_head_js_mathjax -%}{{ resources.book.mathjax }}{%- endblock -%}
{%- block extra_css -%}<style type="text/css">{{ resources.book.css }}</style>{%- endblock -%}
{%- block body_header -%}{{ super() }}{{ resources.book.header }}{%- endblock body_header -%}
{%- block body_footer -%}{{ resources.book.footer }}{{ super() }}{%- endblock body_footer -%}
"""


@dataclass(frozen=True)
class BookReport:
    """What :func:`build_book` made: the site folder ``out``, its HTML ``pages``, the notebooks
    offered for download (``downloads``: student copies and instructor notebooks), the site's
    size in ``bytes`` and the build time in ``seconds``."""

    out: Path
    pages: tuple[Path, ...]
    downloads: tuple[Path, ...]
    bytes: int
    seconds: float

    @property
    def page_count(self) -> int:
        """The number of HTML pages."""
        return len(self.pages)

    def summary(self) -> str:
        """One line: pages, megabytes, seconds and where the index is."""
        return (f"book: {self.page_count} pages, {len(self.downloads)} notebooks to download, "
                f"{self.bytes / 1e6:.1f} MB, {self.seconds:.1f} s -> {self.out / 'index.html'}")


@dataclass(frozen=True)
class _Notebook:
    path: Path
    stem: str
    title: str


# --------------------------------------------------------------------------- Markdown helpers

_FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.S | re.M)


def _outside_fences(text: str, fn) -> str:
    """``fn`` applied to the parts of Markdown ``text`` outside fenced code blocks."""
    out, last = [], 0
    for m in _FENCE.finditer(text):
        out += [fn(text[last:m.start()]), m.group(0)]
        last = m.end()
    return "".join(out + [fn(text[last:])])


def rewrite_notebook_links(markdown: str, stems: Iterable[str]) -> str:
    """Markdown with links to course notebooks pointed at their pages: ``[t](04_cube_toy.ipynb)``,
    ``[t](notebooks/04_cube_toy.ipynb#x)`` and ``href="../notebooks/04_cube_toy.ipynb"`` become
    ``04_cube_toy.html`` (fragment kept), and a bare mention in code, ```04_cube_toy.ipynb```, a
    link to the page. Names that are not course notebooks (``stems``) are left alone."""
    stems = set(stems)

    def link(m: re.Match) -> str:
        if m.group("stem") not in stems:
            return m.group(0)
        return f"{m.group('pre')}{m.group('stem')}.html{m.group('frag') or ''}"

    def code(m: re.Match) -> str:
        if m.group("stem") not in stems:
            return m.group(0)
        return f"[{m.group(0)}]({m.group('stem')}.html)"

    target = (r"(?:\./|\.\./)*(?:notebooks/)?(?P<stem>[0-9][0-9][A-Za-z]?_[\w-]+)\.ipynb"
              r"(?P<frag>#[^)\"'\s>]*)?")
    links = re.compile(r"(?P<pre>\]\(\s*<?|href\s*=\s*[\"'])" + target)
    mentions = re.compile(r"(?<![\[\w])`(?:notebooks/)?(?P<stem>[0-9][0-9][A-Za-z]?_[\w-]+)"
                          r"\.ipynb`(?!\]\()")
    return _outside_fences(markdown, lambda part: mentions.sub(code, links.sub(link, part)))


def _plain(markdown: str) -> str:
    """A heading's text without Markdown markup (for titles)."""
    return re.sub(r"[`*_]", "", markdown).strip()


def _sections(markdown: str, level: int = 2) -> list[tuple[str, str]]:
    """``(heading, body)`` of each ``level`` section of ``markdown`` (fences respected)."""
    mark = "#" * level + " "
    parts, heading, body, fenced = [], "", [], False
    for line in markdown.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
        if not fenced and line.startswith(mark):
            parts.append((heading, "\n".join(body)))
            heading, body = line[len(mark):].strip(), []
        else:
            body.append(line)
    parts.append((heading, "\n".join(body)))
    return parts


def _blocks(markdown: str) -> list[str]:
    return [b for b in re.split(r"\n[ \t]*\n", markdown.strip()) if b.strip()]


def course_map(readme: str, notebooks: list[_Notebook]) -> str:
    """The course map of the index, in Markdown: the README's table of notebooks (the first
    table that names course notebooks, with the paragraph after it), links pointed at the pages
    and a column of downloads added; a notebook the table lacks gets a row of its own (its
    title). Without such a table, a list of the notebooks' titles."""
    stems = [nb.stem for nb in notebooks]
    name = re.compile(r"(?:notebooks/)?([0-9][0-9][A-Za-z]?_[\w-]+)(?:\.ipynb)?")
    for _, body in _sections(readme):
        blocks = _blocks(body)
        for i, block in enumerate(blocks):
            rows = block.splitlines()
            if not (len(rows) > 2 and all(r.lstrip().startswith("|") for r in rows)
                    and re.match(r"^\s*\|[\s|:-]+\|\s*$", rows[1])):
                continue
            found = {m.group(1) for r in rows[2:] for m in name.finditer(r)} & set(stems)
            if not found:
                continue
            rows = rewrite_notebook_links("\n".join(rows), stems).splitlines()
            table = [rows[0].rstrip() + " downloads |", rows[1].rstrip() + "---|"]
            for row in rows[2:]:
                here = [m.group(1) for m in name.finditer(row) if m.group(1) in stems]
                table.append(row.rstrip() + f" {_downloads(here[0]) if here else ''} |")
            columns = rows[0].count("|") - 1
            for nb in notebooks:
                if nb.stem not in found:  # a notebook the README's map does not list yet
                    cells = [nb.stem.split("_")[0], f"[`{nb.stem}`]({nb.stem}.html)", nb.title]
                    cells = (cells + [""] * columns)[:columns] + [_downloads(nb.stem)]
                    table.append("| " + " | ".join(cells) + " |")
            after = [b for b in blocks[i + 1:i + 2] if not b.lstrip().startswith(("|", "#", "```"))]
            return "\n".join(table) + "".join(
                "\n\n" + rewrite_notebook_links(b, stems) for b in after)
    return "\n".join(f"- [{nb.title}]({nb.stem}.html) ({_downloads(nb.stem)})" for nb in notebooks)


def _downloads(stem: str) -> str:
    return f"[student](student/{stem}.ipynb) · [instructor](notebooks/{stem}.ipynb)"


def _headings(markdown: str) -> list[re.Match]:
    """The ATX headings of ``markdown`` (``# ...`` lines outside fenced code blocks); each match
    has the ``#`` marks as group 1 and the text as group 2, positions in ``markdown``."""
    masked = _FENCE.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), markdown)
    return list(re.finditer(r"^(#{1,6})[ \t]+(.*?)[ \t#]*$", masked, re.M))


def notation_section(nb: Any, where: str = "notebook 00") -> str:
    """The Markdown of the notation section of ``nb`` (an ``nbformat`` notebook): from the first
    Markdown heading that names the notation up to the next heading of the same or a higher
    level (code cells in between are left out). ``ValueError`` naming ``where`` when there is
    none."""
    out: list[str] = []
    level = None
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        text, heads = cell.source, _headings(cell.source)
        if level is None:
            start = next((h for h in heads if "notation" in h.group(2).lower()), None)
            if start is None:
                continue
            level = len(start.group(1))
            heads = [h for h in heads if h.start() > start.start()]
            text = text[start.start():]
            offset = start.start()
        else:
            offset = 0
        cut = next((h for h in heads if len(h.group(1)) <= level), None)
        out.append(text[:cut.start() - offset] if cut else text)
        if cut:
            break
    if level is None:
        raise ValueError(f"{where}: no notation section (a Markdown heading that names the "
                         f"notation) to put on the notation page")
    return "\n\n".join(s.strip() for s in out if s.strip())


# --------------------------------------------------------------------------- API reference

def _rest_to_markdown(text: str, modules: set[str]) -> str:
    """Docstring reST, lightly: ``x`` and :role:`x` become code (a module known here a link);
    outside code, ``$`` and ``<`` are escaped; ``::`` ends a line as ``:``."""
    text = re.sub(r"``([^`]+)``", r"`\1`", text)

    def role(m: re.Match) -> str:
        kind, name = m.group(1), m.group(2).lstrip("~!")
        if kind == "mod" and name in modules:
            return f"[`{name}`](#{name})"
        return f"`{name}`"

    text = re.sub(r":(?:py:)?(\w+):`([^`]+)`", role, text)
    text = re.sub(r"(\S)::$", r"\1:", text, flags=re.M)
    parts = re.split(r"(`[^`]*`)", text)
    for i in range(0, len(parts), 2):
        parts[i] = parts[i].replace("$", r"\$").replace("<", "&lt;")
    return "".join(parts)


def _first_paragraph(doc: str | None) -> str:
    return inspect.cleandoc(doc).split("\n\n")[0] if doc else ""


def _signature(node: ast.FunctionDef | ast.AsyncFunctionDef, drop_first: bool = False) -> str:
    args = copy.deepcopy(node.args)
    if drop_first:
        if args.posonlyargs:
            args.posonlyargs = args.posonlyargs[1:]
        elif args.args:
            args.args = args.args[1:]
    ret = f" -> {ast.unparse(node.returns)}" if node.returns else ""
    return f"({ast.unparse(args)}){ret}"


def _is_dataclass_like(node: ast.ClassDef) -> bool:
    names = {ast.unparse(d.func if isinstance(d, ast.Call) else d).split(".")[-1]
             for d in node.decorator_list}
    bases = {ast.unparse(b).split(".")[-1] for b in node.bases}
    return "dataclass" in names or "NamedTuple" in bases


def _class_signature(node: ast.ClassDef) -> str:
    if _is_dataclass_like(node):
        fields = [f"{ast.unparse(s.target)}: {ast.unparse(s.annotation)}"
                  + (f" = {ast.unparse(s.value)}" if s.value is not None else "")
                  for s in node.body if isinstance(s, ast.AnnAssign)
                  and "ClassVar" not in ast.unparse(s.annotation)]
        return "(" + ", ".join(fields) + ")"
    init = next((s for s in node.body if isinstance(s, ast.FunctionDef) and s.name == "__init__"),
                None)
    return _signature(init, drop_first=True).split(" -> ")[0] if init else ""


def _public(name: str, names: list[str] | None) -> bool:
    return not name.startswith("_") and (names is None or name in names)


def _exported(tree: ast.Module) -> list[str] | None:
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__"
                                                for t in node.targets):
            try:
                return list(ast.literal_eval(node.value))
            except ValueError:
                return None
    return None


def _modules(package: Path) -> list[tuple[str, Path]]:
    found = []
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if any(p.startswith("_") for p in parts[1:]):
            continue
        found.append((".".join(parts), path))
    return found


_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef)


def _methods(node: ast.ClassDef, known: set[str]) -> list[str]:
    """One Markdown list item per public method or property of a class: signature, first
    paragraph."""
    lines = []
    for m in node.body:
        if not isinstance(m, _DEFS) or m.name.startswith("_"):
            continue
        decos = {ast.unparse(d).split(".")[-1] for d in m.decorator_list}
        sig = "" if "property" in decos else _signature(m, "staticmethod" not in decos)
        first = _first_paragraph(ast.get_docstring(m)).replace("\n", " ")
        lines.append(f"- `{m.name}{sig}`" + (f": {_rest_to_markdown(first, known)}"
                                             if first else ""))
    return lines


def api_reference(package: Path, stems: Iterable[str] = ()) -> list[str]:
    """Markdown cells of the reference of the package in folder ``package`` (read with
    :mod:`ast`, not imported): a contents list, then per module its docstring and each public
    function and class (signature, first paragraph of its docstring; a class's public methods
    in one list). A docstring's mention of a course notebook (``stems``) links to its page."""
    modules = _modules(package)
    known = {name for name, _ in modules}
    cells = ["# API reference of `s3lib`\n\nFrom the docstrings of the library's source (the "
             "notebooks say where each function is explained). Modules:\n\n"
             + "\n".join(f"- [`{name}`](#{name})" for name, _ in modules)]
    for name, path in modules:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        names = _exported(tree)
        doc = inspect.cleandoc(ast.get_docstring(tree) or "(no docstring)")
        parts = [f'<a id="{name}"></a>\n\n## `{name}`\n\n{_rest_to_markdown(doc, known)}']
        for node in tree.body:
            if not (isinstance(node, _DEFS + (ast.ClassDef,)) and _public(node.name, names)):
                continue
            if isinstance(node, ast.ClassDef):
                sig = f"class {node.name}{_class_signature(node)}"
            else:
                sig = f"{node.name}{_signature(node)}"
            text = _rest_to_markdown(_first_paragraph(ast.get_docstring(node)), known)
            parts.append(f"#### `{name}.{node.name}`\n\n```python\n{sig}\n```\n\n{text}")
            if isinstance(node, ast.ClassDef) and (methods := _methods(node, known)):
                parts.append("Methods and properties:\n\n" + "\n".join(methods))
        cells.append(rewrite_notebook_links("\n\n".join(parts), stems))
    return cells


# --------------------------------------------------------------------------- pages

def _title(nb: Any, stem: str) -> str:
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for h in _headings(cell.source):
                if len(h.group(1)) == 1:
                    return _plain(h.group(2))
    return stem


def _nav(items: list[tuple[str, str]], prev: _Notebook | None, nxt: _Notebook | None,
         bottom: bool = False) -> str:
    links = " ".join(f'<a href="{href}">{html.escape(text)}</a>' for text, href in items)
    pn = ""
    if prev is not None:
        pn += f'<a rel="prev" href="{prev.stem}.html">&larr; {html.escape(prev.title)}</a>'
    if nxt is not None:
        pn += f'<a rel="next" href="{nxt.stem}.html">{html.escape(nxt.title)} &rarr;</a>'
    cls = "book-nav book-bottom" if bottom else "book-nav"
    return (f'<nav class="{cls}">{links}'
            + (f'<span class="book-prevnext">{pn}</span>' if pn else "") + "</nav>")


_SITE_LINKS = [("Course index", "index.html"), ("Notation", "notation.html"),
               ("API reference", "api.html")]


def _kernel_note(stem: str) -> str:
    return (f"interactive widgets need a running kernel: run <code>make lab</code> in the "
            f"repository root and open <code>notebooks/{stem}.ipynb</code>")


def _notebook_note(nb: _Notebook) -> str:
    return (f'<div class="book-note">This page shows <code>notebooks/{nb.stem}.ipynb</code> as '
            f"committed, outputs included (not re-run). Its {_kernel_note(nb.stem)}. "
            f'Download: <a download href="student/{nb.stem}.ipynb">the student copy</a> '
            f"(exercise solutions blanked) or "
            f'<a download href="notebooks/{nb.stem}.ipynb">the instructor notebook</a>.</div>')


def _static_widgets(nb: Any, stem: str) -> Any:
    """``nb`` with each widget output replaced by a note (widgets need a kernel) and the saved
    widget state dropped (it would need the widget manager from a CDN)."""
    nb = copy.deepcopy(nb)
    nb.metadata.pop("widgets", None)
    note = (f'<div class="book-widget">An interactive widget is here: its '
            f"{_kernel_note(stem).replace('interactive widgets need', 'controls need')}.</div>")
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if WIDGET_VIEW in out.get("data", {}):
                out["data"] = {"text/html": note}
    return nb


def _markdown_notebook(cells: list[str], title: str) -> Any:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(c, id=f"book-{i}") for i, c in enumerate(cells)]
    nb.metadata["title"] = title
    return nb


def _exporter():
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter

    return HTMLExporter(template_name="lab", template_file="book.html.j2",
                        extra_loaders=[DictLoader({"book.html.j2": TEMPLATE})],
                        mathjax_url=f"mathjax/MathJax.js?config={MATHJAX_CONFIG}")


def _render(exporter, nb: Any, name: str, header: str, footer: str) -> str:
    resources = {"metadata": {"name": name},
                 "book": {"mathjax": MATHJAX_HEAD.replace("{url}", exporter.mathjax_url),
                          "css": BOOK_CSS, "header": header, "footer": footer}}
    body, _ = exporter.from_notebook_node(nb, resources=resources)
    # every link to a notebook file is a download (it would otherwise open as JSON text)
    return re.sub(r'<a (?![^>]*\bdownload\b)([^>]*href="[^"#]*\.ipynb")', r"<a download \1", body)


def _copy_mathjax(dest: Path) -> None:
    import jupyter_server_mathjax

    static = Path(jupyter_server_mathjax.__file__).parent / "static"
    skip = {static / s for s in MATHJAX_SKIP}
    for rel in MATHJAX_FILES:
        src = static / rel
        if src.is_dir():
            shutil.copytree(src, dest / rel, ignore=lambda d, names: [
                n for n in names if Path(d) / n in skip])
        else:
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def _write(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")


def _replace_dir(tmp: Path, out: Path) -> None:
    """Move the finished ``tmp`` onto ``out`` (an earlier site there is removed)."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{time.monotonic_ns()}")
        out.rename(old)
    tmp.rename(out)
    if old is not None:
        shutil.rmtree(old)


def build_book(src: str | Path = "notebooks", out: str | Path = "build/book",
               readme: str | Path | None = None) -> BookReport:
    """Build the course website from the committed notebooks of ``src`` into ``out``.

    ``readme`` (default: the ``README.md`` beside ``src``) gives the course map of the index.
    The site is built in a temporary folder beside ``out`` and then moved onto it, so ``out``
    is never half-written; an existing ``out`` is replaced only if it is a site built here
    (it holds :data:`MARKER`) or empty. ``ValueError`` naming the folder when ``src`` holds no
    course notebook or ``out`` is another folder; ``ValueError`` naming notebook 00 when it has
    no notation section.
    """
    import nbformat

    from .student import write_student_copies

    start = time.perf_counter()
    src, out = Path(src), Path(out)
    paths = sorted(src.glob(NOTEBOOK_GLOB))
    if not paths:
        raise ValueError(f"{src}: no course notebooks ({NOTEBOOK_GLOB}) to build a book from")
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / MARKER).exists())):
        raise ValueError(f"{out}: exists and is not a book built by s3lib.book (no {MARKER}); "
                         f"refusing to replace it")
    readme = Path(readme) if readme is not None else src.resolve().parent / "README.md"
    readme_text = readme.read_text(encoding="utf-8") if readme.is_file() else ""

    books = [(p, nbformat.read(p, as_version=4)) for p in paths]
    notebooks = [_Notebook(p, p.stem, _title(nb, p.stem)) for p, nb in books]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        exporter = _exporter()
        pages: list[Path] = []
        top = _nav(_SITE_LINKS, None, None)
        bottom = _nav(_SITE_LINKS, None, None, bottom=True)

        stems = [nb.stem for nb in notebooks]
        for i, ((path, nb), info) in enumerate(zip(books, notebooks)):
            prev = notebooks[i - 1] if i > 0 else None
            nxt = notebooks[i + 1] if i + 1 < len(notebooks) else None
            page = _static_widgets(nb, info.stem)
            page.metadata["title"] = info.title
            for cell in page.cells:
                if cell.cell_type == "markdown":
                    cell.source = rewrite_notebook_links(cell.source, stems)
            header = _nav(_SITE_LINKS, prev, nxt) + _notebook_note(info)
            target = tmp / f"{info.stem}.html"
            _write(target, _render(exporter, page, info.stem, header,
                                   _nav(_SITE_LINKS, prev, nxt, bottom=True)))
            pages.append(target)

        first = books[0][1]
        notation = notation_section(first, str(paths[0]))
        intro = (f"# Notation\n\nThe symbols every notebook uses, from "
                 f"[{notebooks[0].title}]({notebooks[0].stem}.html) "
                 f"(`notebooks/{notebooks[0].stem}.ipynb`).")
        nb = _markdown_notebook([intro, rewrite_notebook_links(notation, stems)], "Notation")
        _write(tmp / "notation.html", _render(exporter, nb, "notation", top, bottom))
        pages.append(tmp / "notation.html")

        api = api_reference(Path(__file__).resolve().parent, stems)
        nb = _markdown_notebook(api, "API reference")
        _write(tmp / "api.html", _render(exporter, nb, "api", top, bottom))
        pages.append(tmp / "api.html")

        title, body = next(((h, b) for h, b in _sections(readme_text, 1) if h),
                           ("The course", ""))
        lead = _blocks(_sections(body, 2)[0][1])[:1]  # the README's first paragraph
        index = [f"# {title}\n\n" + "\n\n".join(lead),
                 "## The notebooks\n\n" + course_map(readme_text, notebooks),
                 "## Reading this site\n\n"
                 "Each page is a notebook as it is committed, with its text, equations, figures "
                 "and outputs (nothing is re-run to build the site). The interactive widgets "
                 "need a running kernel: run `make lab` in the repository root and open the "
                 "notebook from `notebooks/`. *student* downloads a student copy (each exercise's "
                 "solution replaced by `raise NotImplementedError()`, as `make student` writes "
                 "it); *instructor* the notebook with its solutions and outputs. The "
                 "[notation](notation.html) page lists the course's symbols, the "
                 "[API reference](api.html) the library `s3lib` that the notebooks call."]
        nb = _markdown_notebook(index, _plain(title))
        _write(tmp / "index.html", _render(exporter, nb, "index", top, bottom))
        pages.append(tmp / "index.html")

        downloads = write_student_copies(src, tmp / "student")
        (tmp / "notebooks").mkdir()
        for path in paths:
            shutil.copy2(path, tmp / "notebooks" / path.name)
            downloads.append(tmp / "notebooks" / path.name)
        _copy_mathjax(tmp / "mathjax")
        (tmp / MARKER).write_text("built by s3lib.book (make book); replaced by the next build\n")
        size = sum(p.stat().st_size for p in tmp.rglob("*") if p.is_file())
        _replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    moved = lambda p: out / p.relative_to(tmp)  # noqa: E731
    return BookReport(out, tuple(moved(p) for p in pages), tuple(moved(p) for p in downloads),
                      size, time.perf_counter() - start)


# --------------------------------------------------------------------------- checks

class _Links(HTMLParser):
    """The references (``href``/``src``: tag, attribute, value, rel) and the ids of a page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.refs: list[tuple[str, str, str, str]] = []
        self.ids: set[str] = set()
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        for key in ("id", "name"):
            if key in a and (key == "id" or tag == "a"):
                self.ids.add(a[key])
        for key in ("href", "src"):
            if key in a:
                self.refs.append((tag, key, a[key], a.get("rel", "")))
        self._in_script = tag == "script" and "src" not in a

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts.append(data)


def _parse(page: Path) -> _Links:
    parser = _Links()
    parser.feed(page.read_text(encoding="utf-8"))
    parser.close()
    return parser


def _external(url: str) -> bool:
    return bool(re.match(r"^([a-zA-Z][\w+.-]*:|//)", url))


def broken_links(site: str | Path, pages: Iterable[Path] | None = None) -> list[str]:
    """Every internal ``href``/``src`` of the HTML ``pages`` (default: all of ``site``) that does
    not resolve to a file inside ``site``, or whose ``#fragment`` names no element of the page
    it points to; as ``"page: tag attr=value (why)"`` lines (empty: none broken)."""
    site = Path(site).resolve()
    pages = [Path(p) for p in pages] if pages is not None else sorted(site.rglob("*.html"))
    parsed = {page.resolve(): _parse(page) for page in pages}
    ids: dict[Path, set[str]] = {page: links.ids for page, links in parsed.items()}
    problems = []
    for page, links in parsed.items():
        name = page.relative_to(site) if page.is_relative_to(site) else page
        for tag, attr, url, _ in links.refs:
            if not url or _external(url):
                continue
            parts = urllib.parse.urlsplit(url)
            where = f"{name}: {tag} {attr}={url!r}"
            target = page
            if parts.path:
                target = (page.parent / urllib.parse.unquote(parts.path)).resolve()
            if not target.is_relative_to(site):
                problems.append(f"{where} (outside the site)")
                continue
            if not target.is_file():
                problems.append(f"{where} (no such file)")
                continue
            if parts.fragment and target.suffix == ".html":
                if target not in ids:
                    ids[target] = _parse(target).ids
                frag = parts.fragment
                if frag not in ids[target] and urllib.parse.unquote(frag) not in ids[target]:
                    problems.append(f"{where} (no element #{frag})")
    return problems


def network_references(page: str | Path) -> list[str]:
    """What would make ``page`` load from the network: a ``src`` or stylesheet ``href`` that is
    an ``http(s)://`` or ``//`` URL, and a URL inside an inline script. Links one clicks
    (``<a href>``) are not loads and are not listed."""
    links = _parse(Path(page))
    found = [f"{tag} {attr}={url!r}" for tag, attr, url, rel in links.refs
             if re.match(r"^(https?:)?//", url, re.I)
             and (attr == "src" or (tag == "link" and "stylesheet" in rel.lower()))]
    for script in links.scripts:
        found += [f"script: {m}" for m in re.findall(r"(?:https?:)?//[\w.-]+\.[a-z]{2,}[^\s'\"]*",
                                                      script)]
    return found


def main(argv: list[str] | None = None) -> int:
    """``python -m s3lib.book [--src notebooks] [--out build/book]`` (``make book``)."""
    parser = argparse.ArgumentParser(description="build the course website (static HTML) from "
                                                 "the committed notebooks")
    parser.add_argument("--src", default="notebooks", help="folder of the course notebooks")
    parser.add_argument("--out", default="build/book", help="folder of the site (replaced)")
    parser.add_argument("--readme", default=None, help="README with the course map "
                                                       "(default: the one beside --src)")
    args = parser.parse_args(argv)
    try:
        report = build_book(args.src, args.out, args.readme)
    except ValueError as err:
        parser.error(str(err))
    print(report.summary())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
