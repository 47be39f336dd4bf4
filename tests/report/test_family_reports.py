"""Every family's run produces the full report (schema 2.0, all thirteen sections), and the HTML
renders offline in headless Chromium with its sections and figures.

One short pipeline run per family (1 epoch, Adult sampled, no registry; ``real_reports`` in
conftest.py) on the data the project ships; the Chromium check opens each run's HTML over
file:// and leaves screenshots in test-artifacts/ (report.png: the tabular run)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from impactflow.audits.render import SECTIONS, md_escape
from impactflow.audits.report import validate_report
from tests.report.conftest import REAL_RUNS

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]

FAMILY_RUNS = REAL_RUNS  # the runs of tests/report/conftest.py's session fixture ``real_reports``
CHROMIUM = next(
    (p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome") if Path(p).exists()), None
)
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


@pytest.fixture
def family_reports(real_reports):
    return real_reports


@pytest.mark.parametrize("family", list(FAMILY_RUNS))
def test_every_family_writes_the_full_report(family_reports, family):
    paths = family_reports[family]
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


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium (Debian package 'chromium') installed")
@pytest.mark.parametrize("family", list(FAMILY_RUNS))
def test_html_report_renders_offline_in_headless_chromium(family_reports, family, tmp_path):
    html_path = Path(family_reports[family]["html"]).resolve()
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
