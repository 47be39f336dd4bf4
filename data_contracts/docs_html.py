"""Make the Great Expectations Data Docs safe to open and readable offline (issue 28, defect 2).

GX 1.24 renders column names, expectation descriptions and unexpected cell values into its
pages without escaping them (its string templates escape parameters; descriptions and table
cells are emitted raw), and every page loads jQuery, Bootstrap, bootstrap-table and Vega from
public CDNs. GX has no switch for either (its custom views directory cannot override a shipped
template, and an ephemeral context has none), so ``sanitise_docs`` rewrites the written HTML
after GX renders it, with an allow-list pass over ``html.parser`` (no new dependency):

- no ``<script>`` at all (the CDN libraries and GX's inline scripts: the pages are static;
  one inside a table cell, list item or span, where GX prints values, is shown as text);
  no ``<link>``, ``src`` or ``href`` to another host or scheme (only relative links and
  ``#`` anchors); no ``on*`` event attribute, ``javascript:`` or ``data:`` URL, ``srcdoc``,
  ``formaction``, ``http-equiv`` or CSS ``url()``/``expression``/``@import``;
- a tag outside the allow-list (``<iframe>``, ``<svg>``, ``<object>``, ...), an ``<img>`` that
  is not one of GX's own static images, a tag with an event handler where GX puts none, and a
  ``<style>``/``<meta>``/``<link>``/``<title>`` outside ``<head>`` are written out as visible text (``&lt;img src=x ...&gt;``): data that
  GX emitted as markup reads as the text it was;
- each page gets a Content-Security-Policy (no script, nothing remote) as a second line of
  defence, and ``index.html`` (whose GX table is filled by JavaScript) is replaced by a static
  list of the pages. The expectation and validation pages keep GX's server-rendered tables
  (Bootstrap's CSS is gone, GX's own inline styles remain; collapsed sections show open).

``unsafe_markup(text)`` lists what the pass forbids; tests scan every HTML file with it.
"""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser
from pathlib import Path

CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; font-src 'self'; "
    "base-uri 'none'; form-action 'none'"
)

ALLOWED_TAGS = frozenset(
    "html head body title meta style link div span p a ul ol li table thead tbody tfoot tr th td "
    "caption colgroup col h1 h2 h3 h4 h5 h6 strong em b i u s small sub sup code pre br hr nav "
    "footer header section article main label button input img blockquote dl dt dd abbr "
    "details summary figure figcaption".split()
)
HEAD_ONLY = frozenset({"title", "meta", "style", "link"})
VOID = frozenset({"meta", "link", "br", "hr", "input", "img", "col"})
ALLOWED_ATTRS = frozenset(
    "class id style href src title colspan rowspan role alt width height scope lang dir type "
    "name value checked hidden for charset content rel autocomplete tabindex".split()
)
_CELLS = frozenset({"td", "th", "li", "span"})
_GX_HANDLERS = frozenset({"img", "button", "label"})
_LOCAL_IMAGE = re.compile(r"^(\.\./)*static/images/[\w.-]+$")
_SCHEME = re.compile(r"^\s*[a-zA-Z][a-zA-Z0-9+.\-]*:|^\s*//|\\")
_URL_IGNORED = re.compile(r"[\x00-\x20\x7f]")
_CSS_URL = re.compile(r"url\s*\([^)]*\)", re.IGNORECASE)
_CSS_IMPORT = re.compile(r"@import[^;]*;?", re.IGNORECASE)
_BAD_CSS = re.compile(r"url\s*\(|expression\s*\(|@import|javascript:|behavior\s*:", re.IGNORECASE)

# what ``unsafe_markup`` reports (a page the pass wrote has none of these)
_UNSAFE = [
    ("script tag", re.compile(r"<\s*script", re.IGNORECASE)),
    ("remote src/href", re.compile(r"<[^>]*\s(?:src|href)\s*=\s*[\"']?\s*(?:https?:)?//", re.IGNORECASE)),
    ("iframe/object/embed", re.compile(r"<\s*(?:iframe|object|embed|svg|math|base)\b", re.IGNORECASE)),
]


_TAG = re.compile(r"<[A-Za-z][^>]*>")


def unsafe_markup(text: str) -> list[str]:
    """The kinds of executable or remote-loading markup found in ``text`` (empty when safe).
    ``javascript:`` is looked for inside tags as a browser reads them (entities decoded, tabs
    and newlines dropped: ``java&#9;script:`` counts); escaped text (``&lt;a ...``) is no tag."""
    found = [name for name, pattern in _UNSAFE if pattern.search(text)]
    if _has_event_handler(text):  # attribute names as a browser parses them: text that merely
        found.insert(1, "event handler attribute")  # reads "onerror=" inside a quoted value is none
    if any("javascript:" in _URL_IGNORED.sub("", html.unescape(tag)).lower() for tag in _TAG.findall(text)):
        found.insert(2, "javascript: URL")
    return found


class _HandlerFinder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found = False

    def handle_starttag(self, tag, attrs) -> None:
        self.found = self.found or any(name.lower().startswith("on") for name, _ in attrs)

    handle_startendtag = handle_starttag


def _has_event_handler(text: str) -> bool:
    finder = _HandlerFinder()
    finder.feed(text)
    finder.close()
    return finder.found


def _safe_url(value: str) -> bool:
    """A relative path or an in-page anchor: no scheme, no protocol-relative host. Browsers drop
    tabs, newlines and control characters inside a URL (``java\tscript:`` runs), so they are
    removed before the check."""
    value = _URL_IGNORED.sub("", value)
    return not _SCHEME.search(value) and not value.lower().startswith(("data:", "javascript"))


class _Sanitiser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.in_head = False
        self.skip = 0  # inside a dropped element (script)
        self.open_style = False
        self.literal_open: dict[str, int] = {}  # start tags written as text, awaiting their end tag
        self.cell_depth = 0  # open td/th/li/span: where GX prints values (a script there is data)
        self.script_text = False  # inside a <script> written as text

    def _literal(self) -> None:
        self.out.append(html.escape(self.get_starttag_text() or "", quote=False))

    def _allowed(self, tag: str, attrs) -> bool:
        if tag not in ALLOWED_TAGS or (tag in HEAD_ONLY and not self.in_head):
            return False
        if tag == "img":
            return _LOCAL_IMAGE.match(dict(attrs).get("src") or "") is not None
        # GX puts event handlers only on its logo images and filter buttons/labels (dropped:
        # no script runs); any other tag with one came from the data
        return tag in _GX_HANDLERS or not any(n.lower().startswith("on") for n, _ in attrs)

    def _attrs(self, tag: str, attrs) -> str:
        kept = []
        for name, value in attrs:
            name = name.lower()
            if not (name in ALLOWED_ATTRS or name.startswith(("aria-", "data-"))):
                continue
            value = "" if value is None else value
            if name in ("href", "src") and not _safe_url(value):
                continue
            if name == "style" and (_BAD_CSS.search(value) or "\\" in value):  # CSS escapes hide url(
                continue
            if name.startswith("data-") and _SCHEME.search(value):
                continue
            kept.append(f' {name}="{html.escape(value, quote=True)}"' if value else f" {name}")
        return "".join(kept)

    def handle_starttag(self, tag, attrs):
        self._start(tag, attrs, closed=False)

    def handle_startendtag(self, tag, attrs):
        self._start(tag, attrs, closed=True)

    def _start(self, tag, attrs, closed):
        if self.skip:
            return
        if tag == "script" and self.cell_depth and not closed:  # a value: shown as the text it is
            self._literal()
            self.script_text = True
            return
        if tag == "script":
            self.skip += 0 if closed else 1
            return
        if tag == "link" and not _safe_url(dict(attrs).get("href") or ""):
            return
        if tag == "meta" and self.in_head and "http-equiv" in dict(attrs):  # refresh, or our CSP again
            return
        if not self._allowed(tag, attrs):
            self._literal()
            if not closed:
                self.literal_open[tag] = self.literal_open.get(tag, 0) + 1  # its end tag is text too
            return
        if tag == "head":
            self.in_head = True
        if tag in _CELLS and not closed:
            self.cell_depth += 1
        self.out.append(f"<{tag}{self._attrs(tag, attrs)}{' /' if closed and tag in VOID else ''}>")
        if tag == "head":
            self.out.append(f'<meta http-equiv="Content-Security-Policy" content="{CSP}">')
        if tag == "style":
            self.open_style = True
        if closed and tag not in VOID:
            self.out.append(f"</{tag}>")

    def handle_endtag(self, tag):
        if tag == "script" and self.script_text:
            self.script_text = False
            self.out.append(html.escape("</script>", quote=False))
            return
        if tag == "script":
            self.skip = max(0, self.skip - 1)
            return
        if self.skip:
            return
        if tag == "head":
            self.in_head = False
        if tag == "style" and self.open_style:
            self.open_style = False
            self.out.append("</style>")
            return
        if tag in VOID:
            return
        if self.literal_open.get(tag):
            self.literal_open[tag] -= 1
            self.out.append(html.escape(f"</{tag}>", quote=False))
            return
        if tag not in ALLOWED_TAGS or tag in HEAD_ONLY and not self.in_head:
            self.out.append(html.escape(f"</{tag}>", quote=False))
            return
        if tag in _CELLS:
            self.cell_depth = max(0, self.cell_depth - 1)
        self.out.append(f"</{tag}>")

    def handle_data(self, data):
        if self.skip:
            return
        if self.script_text:
            self.out.append(html.escape(data, quote=False))
            return
        if self.open_style:  # CSS from GX's head; nothing that loads from elsewhere
            css = _CSS_IMPORT.sub("", _CSS_URL.sub("none", data))
            self.out.append(_BAD_CSS.sub("removed-", css).replace("</", "<\\/"))
            return
        self.out.append(html.escape(data, quote=False))

    def handle_decl(self, decl):
        if decl.lower().startswith("doctype"):
            self.out.append("<!DOCTYPE html>")

    def handle_comment(self, data):  # dropped
        pass

    def handle_pi(self, data):  # dropped
        pass

    def unknown_decl(self, data):  # CDATA and the like: dropped
        pass


def sanitise_page(text: str) -> str:
    """One HTML page through the allow-list pass (see the module docstring)."""
    parser = _Sanitiser()
    parser.feed(text)
    parser.close()
    return "".join(parser.out)


def _index_page(docs_dir: Path) -> str:
    """A static index of the site's pages (GX's index fills its table with JavaScript)."""
    rows = []
    for kind, folder in (("Expectation suite", "expectations"), ("Validation result", "validations")):
        for page in sorted((docs_dir / folder).rglob("*.html")):
            rel = page.relative_to(docs_dir).as_posix()
            name = page.stem if kind == "Expectation suite" else "/".join(page.relative_to(docs_dir / folder).parts)
            rows.append(
                f'<tr><td>{kind}</td><td><a href="{html.escape(rel, quote=True)}">'
                f"{html.escape(name, quote=False)}</a></td></tr>"
            )
    body = "\n".join(rows) or '<tr><td colspan="2">no pages</td></tr>'
    return (
        "<!DOCTYPE html>\n<html>\n<head>\n"
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
        '<meta charset="UTF-8">\n<title>Data Docs</title>\n'
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}</style>\n</head>\n<body>\n"
        "<h1>Data Docs (Great Expectations)</h1>\n<table>\n<thead><tr><th>kind</th><th>page</th></tr></thead>\n"
        f"<tbody>\n{body}\n</tbody>\n</table>\n</body>\n</html>\n"
    )


def sanitise_docs(docs_dir: Path) -> list[Path]:
    """Rewrite every HTML page under ``docs_dir`` in place (index.html replaced by a static
    index); returns the pages written. Idempotent."""
    docs_dir = Path(docs_dir)
    pages = sorted(p for p in docs_dir.rglob("*.html") if p.is_file() and not p.is_symlink())
    for page in pages:
        if page == docs_dir / "index.html":
            continue
        text = page.read_text(encoding="utf-8", errors="replace")
        page.write_text(sanitise_page(text), encoding="utf-8")
    if (docs_dir / "index.html").exists():
        (docs_dir / "index.html").write_text(_index_page(docs_dir), encoding="utf-8")
    return pages
