"""The social-impact report: document, schema, rendering, atomic writing."""

from __future__ import annotations

import json
import math
import re

import pytest

from impactflow.audits import render
from impactflow.audits.report import build_report, validate_report
from impactflow.audits.render import fmt, md_escape, render_html, render_markdown, write_report
from tests.report.conftest import make_inputs

MALICIOUS = "<script>alert(1)</script>"


@pytest.fixture
def report(inputs):
    return build_report(**inputs)


@pytest.fixture(scope="module")
def html_and_report():
    """Rendered once (figures take a moment); the malicious group name is in by_group rows,
    the representation table and a gate note."""
    inputs = make_inputs(failing=True)
    inputs["data"]["representation"][1]["group"] = MALICIOUS
    for model in inputs["models"]:
        model["audits"]["fairness"]["by_group"][1]["group"] = MALICIOUS
        model["audits"]["fairness"]["gates"][0]["note"] = MALICIOUS
    report = build_report(**inputs)
    return render_html(report), report


# --------------------------------------------------------------------------- document


def test_report_validates_and_has_top_level_keys(report):
    validate_report(report)  # raises on error
    assert list(report) == [
        "schema_version",
        "generated_at",
        "run",
        "cover",
        "integrity",
        "executive_summary",
        "intended_use",
        "datasheets",
        "performance",
        "privacy",
        "bias",
        "resources",
        "oversight",
        "discovery",
        "since_last_run",
        "risks",
        "frameworks",
        "provenance",
        "summary",
        "data",
        "models",
        "config",
        "not_measured",
    ]
    assert report["schema_version"] == "2.0"
    json.dumps(report, allow_nan=False)  # plain JSON, no NaN


def test_missing_schema_version_fails_naming_the_key(report):
    del report["schema_version"]
    with pytest.raises(ValueError, match="schema_version"):
        validate_report(report)


def test_bad_gate_status_fails_with_its_path(report):
    report["models"][0]["audits"]["fairness"]["gates"][0]["status"] = "maybe"
    with pytest.raises(ValueError, match=r"\$\.models\[0\]\.audits\.fairness\.gates\[0\]\.status"):
        validate_report(report)


def test_status_fail_when_one_gate_fails(report):
    summary = report["summary"]
    assert summary["status"] == "fail"
    # logreg fails the fairness audit's three sex gates (DP difference 0.2081, EO difference 0.4167,
    # four-fifths ratio 20/330 ÷ 180/670 = 0.2256); the other 8 gates pass
    assert summary["counts"] == {"pass": 8, "fail": 3, "not-measured": 0, "skipped": 0}
    assert [m["status"] for m in report["models"]] == ["pass", "fail"]


def test_status_pass_when_no_gate_fails():
    report = build_report(**make_inputs(failing=False))
    assert report["summary"]["status"] == "pass"
    assert report["summary"]["counts"]["fail"] == 0
    validate_report(report)


def test_status_not_measured_without_any_decided_gate(inputs):
    for model in inputs["models"]:
        for audit in model["audits"].values():
            audit["gates"] = []
    report = build_report(**inputs)
    assert report["summary"]["status"] == "incomplete"  # never PASS on nothing (audits.results.run_status)


def test_gate_summary_lists_failed_gates_first(report):
    gates = report["summary"]["gates"]
    assert len(gates) == 11
    assert [g["status"] for g in gates[:3]] == ["fail"] * 3
    assert {g["model"] for g in gates[:3]} == {"logreg"} and gates[0]["audit"] == "fairness"
    assert gates[0]["name"] == "fairness/sex/demographic_parity_difference"
    assert all(g["status"] == "pass" for g in gates[3:])
    assert set(gates[0]) >= {"model", "audit", "name", "status", "value", "threshold", "comparison"}


def test_non_finite_numbers_become_null_and_inputs_are_untouched(inputs):
    inputs["models"][0]["audits"]["performance"]["metrics"]["performance/brier"] = float("nan")
    report = build_report(**inputs)
    assert report["models"][0]["audits"]["performance"]["metrics"]["performance/brier"] is None
    assert math.isnan(inputs["models"][0]["audits"]["performance"]["metrics"]["performance/brier"])
    assert "status" not in inputs["models"][0]


def test_credentials_are_redacted(inputs):
    inputs["run"]["mlflow"]["tracking_uri"] = "https://alice:s3cret@mlflow.example.org/"
    inputs["config"]["mlflow"] = {"password": "hunter2", "uri": "postgresql://u:pw@db/x"}
    text = json.dumps(build_report(**inputs))
    assert "s3cret" not in text and "hunter2" not in text and ":pw@" not in text
    assert "mlflow.example.org" in text


def test_not_measured_lists_known_gaps_and_missing_audits(inputs):
    del inputs["models"][1]["audits"]["privacy"]
    statements = build_report(**inputs)["not_measured"]
    joined = "\n".join(statements)
    assert "LiRA" in joined and "energy" in joined.lower() and "employment" in joined.lower()
    assert any(s.startswith("logreg:") and "membership-inference" in s for s in statements)
    assert not any(s.startswith("mlp:") for s in statements)


# --------------------------------------------------------------------------- rendering


def test_fmt():
    assert fmt(None) == "—"
    assert fmt(float("nan")) == "—"
    assert fmt(0.123456) == "0.1235"
    assert fmt(1e-5) == "1.000e-05"
    assert fmt(42) == "42"
    assert fmt(True) == "yes"


def test_markdown_contains_every_gate_name_and_sections(report):
    md = render_markdown(report)
    for gate in report["summary"]["gates"]:
        assert gate["name"] in md
    headings = [
        "## 1. Cover and integrity",
        "## 2. Executive summary",
        "### Gate matrix",
        "## 3. System and intended use",
        "#### mlp — PASS",
        "#### logreg — FAIL",
        "## 4. Data sheets",
        "## 5. Performance",
        "## 6. Privacy",
        "## 7. Bias",
        "## 8. Concentration and resources",
        "## 9. Employment and human oversight",
        "## 10. What the configured gates did not cover",
        "## 11. Since the last run",
        "## 12. Risks, limitations and what was not measured",
        "### What this report does not measure",
        "## 13. Mapping to frameworks",
        "## 14. Provenance",
        "## Appendix A: other audits",
        "## Appendix B: configuration",
    ]
    positions = [md.index(h) for h in headings]
    assert positions == sorted(positions)
    assert "**Overall: FAIL**" in md


def test_small_groups_are_flagged(inputs):
    rows = inputs["models"][0]["audits"]["fairness"]["by_group"]
    md_before = render_markdown(build_report(**inputs))
    rows[1]["too_small"] = True
    md_after = render_markdown(build_report(**inputs))
    flag = "| too small to judge |"
    assert md_before.count(flag) == 0
    assert md_after.count(flag) == 1
    # logreg's Female group is selected at 0.22 × the Male rate
    assert md_before.count("| below four-fifths of the highest selection rate |") == 1


def test_markdown_gate_table_lists_failed_first(report):
    md = render_markdown(report)
    summary = md[md.index("### Gate matrix") : md.index("## 3. System")]
    rows = [line for line in summary.splitlines() if line.startswith("| logreg") or line.startswith("| mlp")]
    assert all("**FAIL**" in r for r in rows[:3])
    # the MLP's (ε = 3) advantage-bound gate passes but cannot fail: labelled, not shown as PASS
    assert all("**PASS**" in r or "**vacuous (cannot fail: " in r for r in rows[3:])
    assert sum("vacuous (cannot fail: " in r for r in rows) == 1


def test_markdown_escapes_table_breaking_text(inputs):
    inputs["models"][0]["audits"]["fairness"]["by_group"][0]["group"] = "a|b <img src=x>"
    md = render_markdown(build_report(**inputs))
    assert "a\\|b &lt;img src=x>" in md
    assert "<img" not in md
    assert md_escape("income >50K, x <= 1") == "income >50K, x <= 1"


def test_html_is_self_contained(html_and_report):
    html, _ = html_and_report
    assert "data:image/png;base64," in html
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", html, re.I)
    assert not re.search(r"<(?:script|link|iframe)\b", html, re.I)
    assert "<style>" in html
    # 2 models × (ROC, calibration, confusion, selection-rate bars, MIA ROC)
    assert html.count("data:image/png;base64,") == 10
    assert len(html.encode()) < 2_000_000


def test_html_escapes_malicious_group_name(html_and_report):
    html, _ = html_and_report
    assert MALICIOUS not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_html_shows_status_gates_and_not_measured(html_and_report):
    html, report = html_and_report
    assert 'class="badge fail">FAIL' in html
    for gate in report["summary"]["gates"]:
        assert gate["name"] in html
    nm = html[html.index('<h3 id="not-measured">') : html.index('<section id="frameworks">')]
    assert nm.count("<li>") == len(report["not_measured"]) >= 3
    assert "LiRA" in nm
    assert "four-fifths band" in html


def test_unknown_audit_renders_generically(inputs):
    inputs["models"][0]["audits"]["concentration"] = {
        "name": "concentration",
        "status": "pass",
        "metrics": {"concentration/hhi": 0.1234567},
        "by_group": [{"sector": "retail", "share_of_errors": 0.25}],
        "thresholds": {},
        "gates": [
            {
                "name": "concentration/hhi",
                "status": "pass",
                "value": 0.1234567,
                "threshold": 0.25,
                "comparison": "<=",
                "note": "",
            }
        ],
        "notes": ["a note"],
        "details": {"method": "HHI"},
    }
    report = build_report(**inputs)
    validate_report(report)
    md = render_markdown(report)
    assert "### mlp: Concentration — PASS" in md
    assert md.index("## Appendix A: other audits") < md.index("### mlp: Concentration")
    assert "| sector | share_of_errors |" in md and "| retail | 0.2500 |" in md
    assert "concentration/hhi | 0.1235" in md
    assert "| method | HHI |" in md


# --------------------------------------------------------------------------- writing


def test_write_report_writes_three_files_atomically(report, tmp_path):
    paths = write_report(report, tmp_path)
    assert set(paths) == {"json", "md", "html"}
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "impact_report.html",
        "impact_report.json",
        "impact_report.md",
    ]
    assert json.loads(paths["json"].read_text(encoding="utf-8")) == report
    assert paths["html"].read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert "## 2. Executive summary" in paths["md"].read_text(encoding="utf-8")


def test_write_report_leaves_nothing_when_rendering_fails(report, tmp_path, monkeypatch):
    def boom(_report):
        raise RuntimeError("render failed")

    monkeypatch.setattr(render, "render_html", boom)
    with pytest.raises(RuntimeError, match="render failed"):
        write_report(report, tmp_path)
    assert list(tmp_path.glob("impact_report.*")) == []
    assert list(tmp_path.iterdir()) == []  # no temp files either


def test_write_report_cleans_temps_when_moving_fails(report, tmp_path, monkeypatch):
    real_replace = render.os.replace
    calls = []

    def flaky_replace(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError("disk full")
        return real_replace(src, dst)

    monkeypatch.setattr(render.os, "replace", flaky_replace)
    with pytest.raises(OSError):
        write_report(report, tmp_path)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_write_report_refuses_invalid_report(report, tmp_path):
    del report["summary"]
    with pytest.raises(ValueError, match="summary"):
        write_report(report, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_report_says_which_clipping_computed_the_dp_gradients(inputs):
    dp = inputs["models"][0]["training"]["dp"]
    dp.update({"grad_sample_mode": "ghost", "clipping": "bookkeeping", "noise_calibration": "cached (verified)"})
    md = render_markdown(build_report(**inputs))
    assert "book-keeping ghost clipping (one backward pass, tested equal to Opacus's)" in md
    dp.update(
        {
            "clipping": "opacus",
            "clipping_note": "book-keeping clipping not used: parameter conv.weight belongs to a Conv2d",
        }
    )
    md = render_markdown(build_report(**inputs))
    assert "clipped gradients by Opacus (ghost): book-keeping clipping not used: parameter conv.weight" in md
    dp["clipping"] = "made-up"
    with pytest.raises(Exception, match="clipping"):
        validate_report(build_report(**inputs))  # the schema knows the two implementations
