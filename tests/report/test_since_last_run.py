"""Report section 11 ("Since the last run") from hand-made records: drift shown once, each
candidate's decision against the champion, every gate against the previous run; rendered with
StrictUndefined in Markdown and HTML (the JSON of real runs is rendered in test_real_reports)."""

from __future__ import annotations

import copy

from impactflow.audits.render import render_html, render_markdown
from impactflow.audits.report import build_report, validate_report
from impactflow.audits.sections import since_last_run
from tests.report.conftest import make_inputs

DRIFT = {
    "name": "drift",
    "status": "fail",
    "metrics": {"drift/max_psi": 0.31, "drift/drifted_columns": 1.0, "drift/psi/sex": 0.31},
    "gates": [{"name": "drift/max_psi", "status": "fail", "value": 0.31, "threshold": 0.25, "comparison": "<="}],
    "notes": ["sex drifted"],
    "by_group": [],
    "thresholds": {"max_psi": 0.25},
    "details": {
        "reference": "the training data of the current champion (x version 1, run r1)",
        "fdr": 0.05,
        "columns": [
            {
                "column": "sex",
                "kind": "categorical",
                "psi": 0.31,
                "test": "chi-square",
                "statistic": 40.0,
                "p": 1e-9,
                "q": 2e-9,
                "drifted": True,
            }
        ],
        "groups": [
            {
                "attribute": "sex",
                "group": "Female",
                "share_ref": 0.33,
                "share_cur": 0.18,
                "share_diff": -0.15,
                "share_ci": [-0.17, -0.13],
                "share_q": 1e-9,
                "rate_ref": 0.11,
                "rate_cur": 0.04,
                "rate_ci": [0.03, 0.05],
                "rate_diff": -0.07,
                "rate_q": 1e-6,
                "drifted": True,
            },
            {
                "attribute": "race",
                "group": "Other",
                "share_ref": 0.01,
                "share_cur": 0.01,
                "share_diff": 0.0,
                "share_ci": [-0.002, 0.002],
                "share_q": 1.0,
                "rate_ref": None,
                "rate_cur": None,
                "rate_ci": None,
                "rate_diff": None,
                "rate_q": None,
                "drifted": False,
            },
        ],
    },
}
PROMOTION = {
    "decision": "hold",
    "reasons": ["fairness/sex/demographic_parity_difference is significantly worse: regression 0.06"],
    "champion": {
        "name": "impactflow-tabular-mlp",
        "version": "1",
        "run_id": "r1",
        "override": {"reason": "board approval", "by": "ana", "at": "2026-12-01"},
    },
    "n_rows": 1800,
    "rows": [
        {
            "gate": "fairness/sex/demographic_parity_difference",
            "champion": 0.12,
            "challenger": 0.18,
            "regression": 0.06,
            "ci": [0.03, 0.09],
            "p": 0.001,
            "tolerance": 0.0,
            "method": "paired bootstrap",
            "significantly_worse": True,
        },
        {
            "gate": "privacy/mia_auc",
            "champion": None,
            "challenger": 0.51,
            "regression": None,
            "ci": None,
            "p": None,
            "tolerance": 0.0,
            "method": "not re-scorable",
            "significantly_worse": False,
        },
    ],
}


def _inputs(previous: dict | None) -> dict:
    inputs = copy.deepcopy(make_inputs(failing=False))
    for m in inputs["models"]:
        m["audits"]["drift"] = copy.deepcopy(DRIFT)
    candidate = next(m for m in inputs["models"] if m.get("role", "candidate") != "baseline")
    candidate["promotion"] = copy.deepcopy(PROMOTION)
    inputs["run"] = {**inputs["run"], "previous_run": previous}
    return inputs


def test_first_run_says_there_is_nothing_to_compare_with():
    report = build_report(**_inputs(None))
    validate_report(report)
    s = report["since_last_run"]
    assert s["previous_run"] is None
    assert all(r["previous"] is None and r["change"] is None for r in s["metrics"])
    md = render_markdown(report)
    section = md[md.index("## 11. Since the last run") : md.index("## 12.")]
    assert "Previous run: none" in section


def test_changes_against_the_previous_run_are_differences_of_the_gate_values():
    inputs = _inputs(None)
    candidate = next(m for m in inputs["models"] if m.get("role", "candidate") != "baseline")
    gate = next(
        g for a in candidate["audits"].values() for g in a.get("gates") or [] if isinstance(g.get("value"), float)
    )
    previous = {
        "run_id": "r0",
        "started": "2026-12-01T02:00:00+00:00",
        "models": {candidate["name"]: {gate["name"]: {"value": gate["value"] - 0.25, "status": "fail"}}},
    }
    s = since_last_run(_inputs(previous)["models"], {"previous_run": previous})
    row = next(r for r in s["metrics"] if r["gate"] == gate["name"] and r["model"] == candidate["name"])
    assert row["previous"] == gate["value"] - 0.25 and abs(row["change"] - 0.25) < 1e-12
    assert row["previous_status"] == "fail"
    # a gate the previous run did not have: no previous value, no change (never a zero)
    other = [r for r in s["metrics"] if r["gate"] != gate["name"]]
    assert other and all(r["previous"] is None and r["change"] is None for r in other)


def test_drift_and_the_decision_are_rendered_from_the_json():
    previous = {"run_id": "r0", "started": "2026-12-01T02:00:00+00:00", "models": {}}
    report = build_report(**_inputs(previous))
    validate_report(report)
    s = report["since_last_run"]
    assert s["drift"]["status"] == "fail" and s["drift"]["reference"].startswith(
        "the training data of the current champion"
    )
    assert s["champion"][0]["decision"] == "hold"
    md = render_markdown(report)
    section = md[md.index("## 11. Since the last run") : md.index("## 12.")]
    assert "Previous run: r0, started 2026-12-01T02:00:00+00:00." in section
    assert "| sex | categorical | 0.3100 | chi-square |" in section
    assert "| sex | Female | 0.3300 → 0.1800 | -0.1500 ([-0.1700, -0.1300])" in section
    assert "#### mlp: HOLD\n\nOutcome: held: stays with the current champion" in section
    assert 'promoted by override (`impactflow promote --force`) by ana at 2026-12-01: "board approval"' in section
    assert (
        "| fairness/sex/demographic_parity_difference | 0.1200 | 0.1800 | 0.0600 ([0.0300, 0.0900]) | paired bootstrap |"
        in section
    )
    assert "| privacy/mia_auc | — | 0.5100 | — | not re-scorable |" in section
    assert "Gate drift/max_psi: FAIL (0.3100 <= 0.2500)" in section
    html = render_html(report)
    assert "<h2>11. Since the last run</h2>" in html and "HOLD" in html


def test_a_report_without_the_section_says_so():
    report = build_report(**_inputs(None))
    del report["since_last_run"]
    md = render_markdown(report)
    assert "written before the comparison across runs existed" in md


def test_the_data_and_configuration_changes_against_the_previous_run():
    inputs = _inputs(None)
    previous_config = copy.deepcopy(inputs["config"])
    previous_config["train"]["epochs"] = 3  # this run: 8
    previous = {
        "run_id": "r0",
        "started": None,
        "models": {},
        "dataset_sha256": "0" * 64,
        "config": previous_config,
    }
    inputs["run"]["previous_run"] = previous
    report = build_report(**inputs)
    validate_report(report)
    s = report["since_last_run"]
    assert s["data_changed"] is (report["data"].get("dataset_sha256") != "0" * 64)
    assert s["config_changes"] == [{"key": "train.epochs", "previous": 3, "current": 8}]
    assert "previous_run" not in report["run"] and report["run"]["previous_run_id"] == "r0"
    md = render_markdown(report)
    section = md[md.index("## 11. Since the last run") : md.index("## 12.")]
    assert "Configuration changed since the previous run:" in section and "| train.epochs | 3 | 8 |" in section


def test_the_outcome_follows_the_registry_rule():
    from impactflow.audits.sections import _outcome

    assert _outcome("promote", "pass", "pass") == "becomes the champion"
    assert _outcome("first", "pass", "pass") == "becomes the champion"
    assert _outcome("promote", "fail", "fail").startswith("not the champion: its gates did not all pass (fail)")
    assert _outcome("promote", "pass", "incomplete") == "not the champion: the run is incomplete"
    assert _outcome("hold", "pass", "pass").startswith("held: stays with the current champion")
