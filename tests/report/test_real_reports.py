"""The reports of REAL runs of every family (tabular DP, text, image, recommender, hf) and of the
audit-only flow (``real_reports`` in conftest.py: one short pipeline run per family, 1 epoch,
Adult sampled, no registry, on the data the project ships). Every test that reads them is in
this file: pytest-xdist keeps a file on one worker, so the runs are made once (tests/conftest.py
refuses a second file).

- Every family's run writes the full report (schema 2.0, all thirteen sections), and its HTML
  renders offline in headless Chromium with its sections and figures (screenshots in
  test-artifacts/; report.png: the tabular run); each fits a 1,280 px window and prints on A4
  (the measurement: tests/report/test_report_layout.py).
- The renderers on their JSON: both render with StrictUndefined, the HTML stays one offline
  file, and every number a reader sees is traceable to the JSON.

Traceability rule (``untraceable``): every numeric token of the Markdown, and of the HTML's text,
must equal a number of the JSON at the precision the renderer displays it (``impactflow.audits.render.fmt``,
or the number as JSON/Python writes it), or appear inside a string of the JSON (a note, a name, a
timestamp, a hash). Deliberate exceptions, and only these:

- numbers in the templates' own literal text and in the section titles (``1. Cover``, ``95% CI``,
  ``29 CFR 1607.4(D)``): fixed wording, not data;
- the same number in another spelling the renderer uses: a count held as a float shown as an
  integer (``5224.0`` -> ``5224``, ``fmt_count``), a hyperparameter as Python writes it
  (``fmt_param``), and a quantity with a unit formatted from the key that holds it
  (``energy_kwh`` -> ``29.58 mWh``, ``co2e_g`` -> ``14.20 mg``, ``training_flops`` -> ``574.0 MFLOP``);
- counts of items the JSON lists (``3 gate(s) could not be measured`` is the length of
  ``executive_summary.incomplete``; ``no missing values in 14 checked column(s)``; confusion-matrix
  row/column indices): added to the allowed set from the JSON's list lengths.
"""

from __future__ import annotations

import json
import re
import subprocess
from html import unescape
from pathlib import Path

import pytest
from markupsafe import escape

from impactflow.audits.render import (
    SECTIONS,
    TEMPLATES_DIR,
    fmt,
    fmt_count,
    fmt_energy_kwh,
    fmt_flops,
    fmt_mass_g,
    fmt_param,
    is_count_name,
    md_escape,
    render_html,
    render_markdown,
)
from impactflow.audits.report import validate_report
from tests.report.conftest import REAL_RUNS
from tests.report.test_report_layout import (
    A4_CONTENT_WIDTH,
    CHROMIUM,
    CHROMIUM_FLAGS,
    SCREEN_WIDTH,
    assert_a4,
    assert_fits,
    needs_chromium,
    print_pdf,
    screenshot,
)

pytestmark = pytest.mark.e2e
FAMILIES = [*REAL_RUNS, "audit-only", "audit-stream"]

# a number not glued to a word, path, date or version (those are tokens of JSON strings anyway)
NUMBER = re.compile(r"(?<![\w.\-/:+−])[-−]?\d+(?:\.\d+)?(?:e[+-]?\d+)?(?![\w])")


def tokens(text: str) -> set[str]:
    return {t.replace("−", "-") for t in NUMBER.findall(text)}


# quantities the renderer shows with a unit (and an SI prefix), by the key that holds them: the
# number shown is the renderer's formatting of THAT key's value, e.g. energy_kwh 2.958e-05 -> 29.58 mWh
UNIT_FORMATS = (("_kwh", fmt_energy_kwh), ("co2e_g", fmt_mass_g), ("_flops", fmt_flops))


def _walk(obj, numbers: list, strings: list, lengths: list, key: str = "") -> None:
    if isinstance(obj, bool) or obj is None:
        return
    if isinstance(obj, (int, float)):
        numbers.append(obj)
        for suffix, unit_fmt in UNIT_FORMATS:
            if key.endswith(suffix):
                strings.append(unit_fmt(obj))
    elif isinstance(obj, str):
        strings.append(obj)
    elif isinstance(obj, dict):
        lengths.append(len(obj))
        for k, v in obj.items():
            strings.append(str(k))
            _walk(v, numbers, strings, lengths, str(k))
    elif isinstance(obj, list):
        lengths.append(len(obj))
        for i, v in enumerate(obj):
            lengths.append(i)  # positional labels (confusion-matrix rows and columns)
            _walk(v, numbers, strings, lengths, key)


def _template_literals() -> set[str]:
    out: set[str] = set()
    for path in TEMPLATES_DIR.glob("*.j2"):
        text = re.sub(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", " ", path.read_text(encoding="utf-8"), flags=re.S)
        out |= tokens(text)
    for _, title in SECTIONS:
        out |= tokens(title)
    return out


def allowed_numbers(report: dict) -> set[str]:
    numbers: list = []
    strings: list = []
    lengths: list = []
    _walk(report, numbers, strings, lengths)
    allowed = {str(n) for n in lengths} | _template_literals()
    for x in numbers:
        allowed |= {fmt(x), fmt_count(x), fmt_param(x), str(x), repr(x), json.dumps(x)}
        if isinstance(x, float) and x.is_integer():
            allowed.add(str(int(x)))
    for s in strings:
        allowed |= tokens(s) | tokens(s[:12])  # hashes are shown whole or as a 12-character prefix
    return {a.replace("−", "-") for a in allowed}


def untraceable(text: str, report: dict) -> set[str]:
    return tokens(text) - allowed_numbers(report)


def html_text(html: str) -> str:
    """What a reader sees of the HTML: no style sheet, no embedded images, no markup."""
    html = re.sub(r"<style>.*?</style>", " ", html, flags=re.S)
    html = re.sub(r'src="data:image/png;base64,[^"]*"', " ", html)
    return unescape(re.sub(r"<[^>]+>", " ", html))


@pytest.fixture(scope="module")
def documents(real_reports):
    return {f: json.loads(Path(p["json"]).read_text(encoding="utf-8")) for f, p in real_reports.items()}


class _Rendered(dict):
    """``rendered[family]`` -> (markdown, html): the family's JSON rendered by both renderers
    (StrictUndefined: a missing key raises, in the test that asks) on first use, then shared by
    the tests that read what a reviewer sees. (The HTML embeds every figure: rendering it again
    in each test cost ~5 s per family and test.)"""

    def __init__(self, documents: dict) -> None:
        super().__init__()
        self.documents = documents

    def __missing__(self, family: str) -> tuple[str, str]:
        report = self.documents[family]
        self[family] = (render_markdown(report), render_html(report))
        return self[family]


@pytest.fixture(scope="module")
def rendered(documents):
    return _Rendered(documents)


@pytest.mark.parametrize("family", FAMILIES)
def test_real_report_renders_strictly_and_matches_the_written_files(real_reports, documents, rendered, family):
    report = documents[family]
    validate_report(report)
    md, html = rendered[family]  # StrictUndefined: a missing key raised while rendering
    assert md == Path(real_reports[family]["md"]).read_text(encoding="utf-8")
    # one offline file: no script, no external resource
    assert "<script" not in html.lower()
    assert not re.search(r'(src|href)="(https?:)?//', html)
    assert "planned" not in md


@pytest.mark.parametrize("family", FAMILIES)
def test_every_number_in_the_report_is_in_the_json(documents, rendered, family):
    report = documents[family]
    md, html = rendered[family]
    assert untraceable(md, report) == set()
    assert untraceable(html_text(html), report) == set()


@pytest.mark.parametrize("family", FAMILIES)
def test_counts_are_shown_as_integers(documents, rendered, family):
    """Issue 26: ``eval/tn | 5224.0000``. Every count-named metric the JSON holds as an integral
    float (``eval/n``, ``eval/tn``, ``n_groups_judged``...) is shown as an integer, never with decimals."""
    report = documents[family]
    md, html = rendered[family]
    counts = {
        (name, v)
        for m in report["models"]
        for a in (m.get("audits") or {}).values()
        if isinstance(a, dict)
        for name, v in (a.get("metrics") or {}).items()
        if is_count_name(name) and isinstance(v, float) and v.is_integer()
    }
    assert counts, "no count metric held as a float: the check would prove nothing"
    for name, v in counts:
        assert f"| {md_escape(name)} | {int(v)} |" in md
        assert f"| {md_escape(name)} | {v:.4f} |" not in md
        assert f'<code>{escape(name)}</code></td><td class="num">{int(v)}</td>' in html
    assert not re.search(r"\| eval/(n|tp|fp|tn|fn) \| \d+\.\d+ \|", md)


def test_the_traceability_check_catches_an_invented_number(documents):
    report = documents["tabular"]
    md = render_markdown(report)
    assert untraceable(md + "\nAccuracy 0.123456789 on 77777 rows\n", report) == {"0.123456789", "77777"}


@pytest.mark.parametrize("family", ["tabular", "audit-only", "audit-stream"])  # binary, sensitive columns
def test_group_tables_show_the_rates_the_audit_wrote(documents, family):
    report = documents[family]
    md = render_markdown(report)
    rows = report["models"][0]["audits"]["fairness"]["by_group"]
    shown = [r for r in rows if r.get("true_positive_rate") is not None]
    assert shown
    for r in shown[:5]:
        cells = (
            f"| {fmt(r['true_positive_rate'])} ",
            f"| {fmt(r['false_positive_rate'])} ",
            f"| {fmt(r['false_negative_rate'])} ",
        )
        line = next(
            line for line in md.splitlines() if line.startswith(f"| {r['group']} |") and all(c in line for c in cells)
        )
        assert line


def test_dp_run_budget_sentence_and_what_epsilon_covers(documents):
    report = documents["tabular"]
    budget = report["data"]["privacy_budget"]
    assert budget["epsilon_spent_is_infinite"] and budget["private_models"] >= 1
    md = render_markdown(report)
    privacy = md[md.index("## 6. Privacy") : md.index("## 7. Bias")]
    assert f"{budget['private_models']} DP model(s) spent ε = {fmt(budget['epsilon_spent_private_models'])}" in privacy
    assert "total ε = ∞: a non-private model (logreg;" in privacy
    # helper B adds training.dp.covers to every DP model: one sentence printed in section 6
    for m in report["models"]:
        dp = m["training"]["dp"]
        if dp.get("enabled"):
            assert dp.get("covers"), f"{m['name']}: training.dp.covers missing"
            assert f"What the (ε, δ) of {m['name']} covers: {dp['covers']}" in privacy


@pytest.mark.parametrize("family", FAMILIES)
def test_areas_follow_the_candidate_and_privacy_without_dp_is_no_guarantee(documents, family):
    report = documents[family]
    candidates = [m for m in report["models"] if m.get("role", "candidate") != "baseline"]
    judged = [g for g in report["summary"]["gates"] if not g["baseline"]] or report["summary"]["gates"]
    areas = {a["area"]: a for a in report["executive_summary"]["areas"]}
    for title, prefixes in (
        ("Predictive performance", ("performance", "recommendation")),
        ("Algorithmic bias", ("fairness", "group_robustness", "identity", "user_groups", "mitigation")),
    ):
        statuses = {g["status"] for g in judged if g["audit"].startswith(prefixes)}
        if "fail" in statuses:
            assert areas[title]["status"] == "fail"
        else:
            assert areas[title]["status"] != "fail", (title, "a baseline's failure decided the area")
    dp = any(m["training"]["dp"].get("enabled") for m in candidates)
    privacy = areas["Data security and privacy"]["status"]
    assert privacy != "pass" or dp
    if report["data"].get("audit_only"):
        # nothing of the training is known (no training data, no DP): the area is not audited
        from impactflow.audits.sections import AUDIT_ONLY_PRIVACY

        assert privacy == "not-measured"
        assert areas["Data security and privacy"]["evidence"] == AUDIT_ONLY_PRIVACY
    elif not dp:
        assert privacy in ("no-guarantee", "fail")
    if report["summary"]["status"] == "incomplete":
        md = render_markdown(report)
        assert "Overall status: **INCOMPLETE**" in md
        for r in report["executive_summary"]["incomplete"]:
            assert f"{r['model']}: {r['gate']} — not measured: " in md


# --------------------------------------------------------------------------- full report, Chromium

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("family", list(REAL_RUNS))
def test_every_family_writes_the_full_report(real_reports, family):
    paths = real_reports[family]
    report = json.loads(Path(paths["json"]).read_text(encoding="utf-8"))
    validate_report(report)
    assert report["schema_version"] == "2.0"
    assert report["intended_use"]["purpose"]  # each preset states its purpose
    assert {m["model"] for m in report["resources"]["models"]} == {m["name"] for m in report["models"]}
    for row in report["resources"]["models"]:
        assert row["wall_time_s"] > 0 and row["cpu_cores"] >= 1 and row["energy_kwh"] > 0
    candidate = report["models"][0]
    assert "oversight" in candidate["audits"]
    if family == "recommender":
        assert candidate["audits"]["oversight"]["status"] == "not-measured"
        assert report["resources"]["exposure"]  # exposure concentration linked in section 8
    else:
        assert 0 <= report["oversight"]["models"][0]["coverage"] <= 1
    if family in ("tabular", "text", "hf"):  # binary: mitigation comparison ran or says why not
        assert "mitigation" in candidate["audits"]
    if family == "hf":  # the memorisation table: one row per number of repeats and label, in the Markdown
        rows = report["privacy"]["memorisation"]
        assert [(r["repeats"], r["label"]) for r in rows] == [(n, lab) for n in (1, 4, 16) for lab in ("spam", "ham")]
        assert report["resources"]["pretraining"][0]["known"] is False
    md = Path(paths["md"]).read_text(encoding="utf-8")
    positions = [md.index(f"## {title}\n") for _, title in SECTIONS]
    assert positions == sorted(positions)
    # section 10 (what the gates did not cover): every family's candidate is sliced, each finding
    # is in the Markdown; proxies and attributions where the family has sensitive columns / columns
    found = md[md.index("## 10. What the configured gates did not cover") : md.index("## 11.")]
    sliced = next(s for s in report["discovery"]["slices"] if s["model"] == candidate["name"])
    assert sliced["status"] == "measured" and sliced["n_tested"] > 0
    assert candidate["audits"]["slices"]["metrics"]["slices/n_tested"] == sliced["n_tested"]
    for f in sliced["findings"]:
        assert md_escape(f["slice"]) in found and f["q_value"] <= sliced["fdr"]
    attributed = next(r for r in report["discovery"]["attributions"] if r["model"] == candidate["name"])
    if family == "tabular":
        assert {a["attribute"] for a in report["discovery"]["proxies"]["attributes"]} == {"sex", "race"}
        assert attributed["status"] == "measured" and attributed["sample_size"] > 0
        assert md_escape(attributed["differences"][0]["feature"]) in found
    if family in ("text", "image", "hf"):
        assert attributed["status"].startswith("Not measured: the model reads one input per row")


def _chromium(*args, timeout=120):
    return subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, *args], capture_output=True, text=True, timeout=timeout)


@needs_chromium
@pytest.mark.parametrize("family", list(REAL_RUNS))
def test_html_report_renders_offline_in_headless_chromium(real_reports, family, tmp_path):
    html_path = Path(real_reports[family]["html"]).resolve()
    url = html_path.as_uri()
    dom = _chromium(f"--user-data-dir={tmp_path / 'dom'}", "--virtual-time-budget=5000", "--dump-dom", url).stdout
    for anchor, title in SECTIONS:
        assert re.search(rf'<section id="{anchor}">\s*<h2>{re.escape(title)}</h2>', dom), title
    images = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', dom)
    assert "Training energy per model" in dom
    if family == "tabular":
        # ROC, calibration, confusion + selection-rate bars per attribute + MIA ROC + deferral curve +
        # mitigation bars, for the MLP and the baseline; plus the energy bars
        assert len(images) >= 2 * 7 + 1
        assert "Automation/deferral curve (test)" in dom
    else:
        assert len(images) >= 3  # every family draws its own figures (and the energy bars)
    shots = ROOT / "test-artifacts"
    shots.mkdir(exist_ok=True)
    shot = shots / ("report.png" if family == "tabular" else f"report-{family}.png")
    if shot.exists():
        shot.unlink()
    _chromium(f"--user-data-dir={tmp_path / 'shot'}", "--window-size=1280,4000", f"--screenshot={shot}", url)
    assert shot.is_file() and shot.stat().st_size > 50_000
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------- layout (tests/report/test_report_layout.py)


@needs_chromium
@pytest.mark.parametrize("family", FAMILIES)
def test_real_report_fits_1280_px_and_prints_on_a4(real_reports, family, tmp_path):
    page = Path(real_reports[family]["html"])
    page_html = page.read_text(encoding="utf-8")
    assert "<script" not in page_html.lower()  # measured on a copy; the report stays script-free
    assert_fits(page_html, SCREEN_WIDTH, tmp_path / "screen")
    assert_fits(page_html, A4_CONTENT_WIDTH, tmp_path / "print", print_rules=True)
    assert re.search(r"@page\s*\{[^}]*size:\s*A4", page_html)
    assert assert_a4(print_pdf(page, tmp_path)) >= 2
    screenshot(page, tmp_path, family)
