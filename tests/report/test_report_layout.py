"""Issue 26: every section of the HTML report fits a 1,280 px window and prints on A4, checked in
headless Chromium on a report with pathological names, and (with this file's measurement) on the
reports of REAL runs of every family in tests/report/test_real_reports.py, where every test of
those runs lives.

Before the fix the per-group fairness tables were ~2,056 px wide (recommender 2,079 px; the
Flag column was cut off even at 1,920 px); the document's scrollWidth at a 1,280 px window was
1,672 px (tabular-dp) to 1,936 px (tabular).

How it is measured (``measure``): a copy of the report gets a script (the report itself has
none) that, after the page and its images loaded, writes ``document.documentElement.scrollWidth``
and the elements whose right edge passes the window into the DOM; Chromium prints the DOM
(``--dump-dom``) and the test reads the numbers back. Scrollbars are hidden so the window width
is the layout width. Print: (1) the page is laid out with its ``@media print`` rules applied on
screen at the A4 content width (210 mm - 2 x 12 mm margins = 186 mm = 703 CSS px) and must not
overflow it; (2) ``--print-to-pdf`` must succeed with every page's MediaBox A4 (595 x 842 pt).
A screenshot at 1,280 px is kept for people (``IMPACTFLOW_LAYOUT_DIR`` keeps them all).
Needs Chromium (``chromium``/``chromium-browser``/``google-chrome`` on PATH, or
``IMPACTFLOW_CHROMIUM``); skipped with that reason when it is missing.
"""

from __future__ import annotations

import copy
import html as html_lib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from impactflow.audits.render import render_html
from impactflow.audits.report import build_report
from tests.report.conftest import make_inputs

pytestmark = pytest.mark.e2e

CHROMIUM = os.environ.get("IMPACTFLOW_CHROMIUM") or next(
    (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")) if p), None
)
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="headless Chromium is not installed (apt-get install chromium, or set IMPACTFLOW_CHROMIUM)"
)
#: headless, offline, no sandbox: every test that starts Chromium (the report tests, the MLflow UI
#: test of tests/topology) starts it with these
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--allow-file-access-from-files",
]

SCREEN_WIDTH = 1280
A4_CONTENT_WIDTH = round((210 - 2 * 12) / 25.4 * 96)  # 703 CSS px between the @page margins
A4_POINTS = (595.28, 841.89)

MEASURE_JS = """<script>
window.addEventListener("load", function () {
  var width = document.documentElement.clientWidth, over = [];
  document.querySelectorAll("body *").forEach(function (e) {
    var r = e.getBoundingClientRect();
    if (r.width > 0 && r.right > width + 0.5 && over.length < 10)
      over.push(e.tagName + " right=" + Math.round(r.right) + ": " + (e.textContent || "").replace(/\\s+/g, " ").slice(0, 80));
  });
  var out = document.createElement("pre");
  out.id = "layout-measure";
  out.textContent = JSON.stringify({scroll_width: document.documentElement.scrollWidth, client_width: width,
                                    overflowing: over});
  document.body.appendChild(out);
});
</script>"""


def _chromium(args: list[str], profile: Path, timeout: int = 180) -> subprocess.CompletedProcess:
    cmd = [CHROMIUM, *CHROMIUM_FLAGS, "--hide-scrollbars", f"--user-data-dir={profile}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def measure(page_html: str, width: int, tmp: Path, *, print_rules: bool = False) -> dict:
    """Lay ``page_html`` out in a ``width`` px window; ``{scroll_width, client_width, overflowing}``.
    ``print_rules``: apply the ``@media print`` block on screen (the print layout at that width)."""
    assert "</body>" in page_html
    if print_rules:
        assert "@media print {" in page_html, "the report has no print stylesheet"
        page_html = page_html.replace("@media print {", "@media all {")
    tmp.mkdir(parents=True, exist_ok=True)
    page = tmp / f"measure_{width}{'_print' if print_rules else ''}.html"
    page.write_text(page_html.replace("</body>", MEASURE_JS + "</body>"), encoding="utf-8")
    done = _chromium(
        [f"--window-size={width},1000", "--virtual-time-budget=10000", "--dump-dom", page.as_uri()], tmp / "profile"
    )
    found = re.search(r'<pre id="layout-measure">([^<]*)</pre>', done.stdout)
    assert found, f"Chromium printed no measurement (exit {done.returncode}): {done.stderr[-2000:]}"
    return json.loads(html_lib.unescape(found.group(1)))


def assert_fits(page_html: str, width: int, tmp: Path, *, print_rules: bool = False) -> dict:
    m = measure(page_html, width, tmp, print_rules=print_rules)
    assert m["client_width"] == width, m  # scrollbars hidden: the window is the layout width
    assert m["scroll_width"] <= width and m["overflowing"] == [], (
        f"wider than {width} px{' (print layout)' if print_rules else ''}: {m}"
    )
    return m


def print_pdf(page: Path, tmp: Path) -> bytes:
    out = tmp / (page.stem + ".pdf")
    done = _chromium(["--no-pdf-header-footer", f"--print-to-pdf={out}", page.as_uri()], tmp / "profile_pdf")
    assert done.returncode == 0 and out.is_file(), (
        f"print-to-PDF failed (exit {done.returncode}): {done.stderr[-2000:]}"
    )
    return out.read_bytes()


def assert_a4(pdf: bytes) -> int:
    assert pdf.startswith(b"%PDF-")
    boxes = re.findall(rb"/MediaBox\s*\[\s*([-\d.]+)\s+([-\d.]+)\s+([-\d.]+)\s+([-\d.]+)\s*\]", pdf)
    pages = len(re.findall(rb"/Type\s*/Page\b", pdf))
    assert pages >= 1 and boxes, "no page in the PDF"
    for box in boxes:
        x0, y0, x1, y1 = map(float, box)
        assert abs((x1 - x0) - A4_POINTS[0]) < 2 and abs((y1 - y0) - A4_POINTS[1]) < 2, f"not A4: {box}"
    return pages


def screenshot(page: Path, tmp: Path, name: str) -> Path:
    keep = os.environ.get("IMPACTFLOW_LAYOUT_DIR")
    out = (Path(keep) if keep else tmp) / f"{name}_{SCREEN_WIDTH}.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    done = _chromium(
        [f"--window-size={SCREEN_WIDTH},2000", "--virtual-time-budget=10000", f"--screenshot={out}", page.as_uri()],
        tmp / "profile_shot",
    )
    assert done.returncode == 0 and out.is_file(), f"screenshot failed: {done.stderr[-2000:]}"
    from PIL import Image

    with Image.open(out) as img:
        assert img.size == (SCREEN_WIDTH, 2000)
        assert img.convert("L").getextrema()[0] < 128  # something dark was drawn: not a blank page
    return out


# --------------------------------------------------------------------------- the measurement itself


@needs_chromium
def test_the_measurement_catches_a_page_wider_than_the_window(tmp_path):
    wide = (
        "<!DOCTYPE html><html><head><style>td{white-space:nowrap}</style></head><body><table><tr>"
        + "<td>group name that does not wrap</td>" * 12
        + "</tr></table></body></html>"
    )
    m = measure(wide, SCREEN_WIDTH, tmp_path)
    assert m["scroll_width"] > SCREEN_WIDTH and m["overflowing"]
    narrow = "<!DOCTYPE html><html><body><p>short</p></body></html>"
    assert measure(narrow, SCREEN_WIDTH, tmp_path)["scroll_width"] <= SCREEN_WIDTH
    page = tmp_path / "letter.html"
    page.write_text(narrow, encoding="utf-8")  # no @page rule: Chromium's default paper is Letter
    with pytest.raises(AssertionError, match="not A4"):
        assert_a4(print_pdf(page, tmp_path))


# --------------------------------------------------------------------------- long names


def _long_names_report() -> dict:
    """The unit report with a 90-character group name without spaces, a long attribute name and
    a long gate name: they must break inside the table instead of widening it."""
    inputs = copy.deepcopy(make_inputs(failing=True))
    long_group = "Female_" + "x" * 40 + "-" + "Amer-Indian-Eskimo-and-Other-Pacific-Islander"
    for m in inputs["models"]:
        audit = m["audits"]["fairness"]
        for row in audit["by_group"]:
            if row.get("group") == "Female":
                row["group"] = long_group
        for g in audit["gates"]:
            g["name"] = g["name"] + "_" + "with_a_very_long_suffix_" * 3
    return build_report(**inputs)


@needs_chromium
def test_long_group_and_gate_names_break_instead_of_widening_the_page(tmp_path):
    page_html = render_html(_long_names_report())
    assert "x" * 40 in page_html
    assert_fits(page_html, SCREEN_WIDTH, tmp_path / "screen")
    assert_fits(page_html, A4_CONTENT_WIDTH, tmp_path / "print", print_rules=True)
