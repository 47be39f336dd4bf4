"""Report schema 2.0 sections and the audits behind them, on tiny literal data with hand-computed
(or fairlearn-computed) expectations."""

from __future__ import annotations

import copy
import math

import numpy as np
import pandas as pd
import pytest

from impactflow.audits.frameworks import FRAMEWORK_ROWS, framework_rows
from impactflow.audits.inputs import AuditInputs
from impactflow.audits.mitigation import mitigation_audit, threshold_optimizer_predictions
from impactflow.audits.oversight import confidence_and_correct, deferral_by_group, deferral_curve, oversight_audit
from impactflow.audits.render import SECTIONS, render_html, render_markdown
from impactflow.audits.report import build_report, validate_report
from impactflow.audits.resources import (
    CO2_METHOD,
    energy_estimate_j,
    model_resources,
    rapl_joules,
    read_rapl_uj,
    resources_section,
    training_flops,
)
from impactflow.audits.sections import NOT_STATED, canonical_sha256
from tests.report.conftest import make_inputs

# --------------------------------------------------------------------------- oversight

# binary: p = P(y=1); confidence max(p, 1-p) = .95 .95 .6 .6 .85 .8
# decisions (p >= .5) 1 0 1 0 1 0 vs labels 1 0 0 0 1 1 -> correct T T F T T F
P = np.array([0.95, 0.05, 0.6, 0.4, 0.85, 0.2])
Y = np.array([1, 0, 0, 0, 1, 1])
GROUPS = pd.DataFrame({"sex": ["a", "a", "a", "b", "b", "b"]})


def test_binary_confidence_and_correctness():
    conf, correct = confidence_and_correct(Y, P, "binary")
    assert conf.tolist() == pytest.approx([0.95, 0.95, 0.6, 0.6, 0.85, 0.8])
    assert correct.tolist() == [True, True, False, True, True, False]


def test_deferral_curve_hand_computed():
    conf, correct = confidence_and_correct(Y, P, "binary")
    rows = {r["threshold"]: r for r in deferral_curve(conf, correct, (0.5, 0.8, 0.9, 0.99))}
    assert rows[0.5]["coverage"] == 1.0 and rows[0.5]["automated_accuracy"] == pytest.approx(4 / 6)
    assert rows[0.8]["coverage"] == pytest.approx(4 / 6) and rows[0.8]["automated_accuracy"] == 0.75
    assert rows[0.9]["coverage"] == pytest.approx(2 / 6) and rows[0.9]["automated_accuracy"] == 1.0
    assert rows[0.99]["automated"] == 0 and rows[0.99]["automated_accuracy"] is None
    assert rows[0.9]["deferral_rate"] == pytest.approx(4 / 6)


def test_multiclass_confidence_is_the_top_probability():
    probs = np.array([[0.7, 0.2, 0.1], [0.3, 0.3, 0.4], [0.1, 0.85, 0.05]])
    conf, correct = confidence_and_correct(np.array([0, 2, 0]), probs, "multiclass")
    assert conf.tolist() == [0.7, 0.4, 0.85] and correct.tolist() == [True, True, False]
    at = {r["threshold"]: r for r in deferral_curve(conf, correct, (0.5,))}[0.5]
    assert at["coverage"] == pytest.approx(2 / 3) and at["automated_accuracy"] == 0.5


def test_deferral_rate_by_group_with_wilson_intervals():
    conf, _ = confidence_and_correct(Y, P, "binary")
    rows = {r["group"]: r for r in deferral_by_group(conf, GROUPS, 0.9)}
    assert rows["a"]["deferred"] == 1 and rows["a"]["deferral_rate"] == pytest.approx(1 / 3)
    assert rows["b"]["deferred"] == 3 and rows["b"]["deferral_rate"] == 1.0
    # Wilson 95% for 1/3: centre (1/3 + z²/6)/(1 + z²/3), z = 1.959964
    z2 = 1.959964**2
    centre = (1 / 3 + z2 / 6) / (1 + z2 / 3)
    half = (1.959964 / (1 + z2 / 3)) * math.sqrt((1 / 3) * (2 / 3) / 3 + z2 / 36)
    assert rows["a"]["deferral_rate_ci_low"] == pytest.approx(centre - half, abs=1e-5)
    assert rows["a"]["deferral_rate_ci_high"] == pytest.approx(centre + half, abs=1e-5)
    assert rows["b"]["deferral_rate_ci_high"] == 1.0


def test_oversight_audit_gate_on_the_deferral_gap():
    inputs = AuditInputs(y_true=Y, y_score=P, sensitive=GROUPS)
    res = oversight_audit(inputs, {"confidence_level": 0.9, "max_deferral_rate_gap": 0.5})
    assert res.metrics["oversight/coverage"] == pytest.approx(2 / 6)
    assert res.metrics["oversight/sex/deferral_rate_gap"] == pytest.approx(2 / 3)
    assert [g.status.value for g in res.gates] == ["fail"]
    assert res.details["line_plots"][0]["series"][0]["x"]  # the curve the report draws
    no_gate = oversight_audit(inputs, {})
    assert no_gate.status.value == "not-measured" and not no_gate.gates  # measured, but no gate decided


def test_oversight_not_measured_for_ratings():
    inputs = AuditInputs(y_true=[4.0, 3.0], y_score=[3.5, 3.1], sensitive=None, task="rating")
    res = oversight_audit(inputs, {})
    assert res.status.value == "not-measured" and "rating" in res.notes[0] and not res.metrics


# --------------------------------------------------------------------------- mitigation


def _scored_split(seed=0):
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(seed)

    def make(n):
        g = rng.choice(["a", "b"], size=n, p=[0.6, 0.4])
        x = rng.normal(size=n) + (g == "a") * 0.8
        y = (x + rng.normal(scale=0.8, size=n) > 0.5).astype(int)
        return x.reshape(-1, 1), y, g

    (Xtr, ytr, _), (Xv, yv, gv), (Xt, yt, gt) = make(300), make(200), make(200)
    lr = LogisticRegression().fit(Xtr, ytr)
    return lr, (Xv, yv, gv), (Xt, yt, gt)


def test_threshold_optimizer_on_scores_matches_fairlearn_on_the_estimator():
    from fairlearn.metrics import demographic_parity_difference
    from fairlearn.postprocessing import ThresholdOptimizer

    lr, (Xv, yv, gv), (Xt, yt, gt) = _scored_split()
    ref = ThresholdOptimizer(
        estimator=lr, constraints="demographic_parity", prefit=True, predict_method="predict_proba"
    ).fit(Xv, yv, sensitive_features=gv)
    expected = ref.predict(Xt, sensitive_features=gt, random_state=0)
    ours = threshold_optimizer_predictions(lr.predict_proba(Xv)[:, 1], yv, gv, lr.predict_proba(Xt)[:, 1], gt)
    assert (ours == expected).all()

    inputs = AuditInputs(
        y_true=yt,
        y_score=lr.predict_proba(Xt)[:, 1],
        sensitive=pd.DataFrame({"g": gt}),
        extra={
            "validation": {"y_true": yv, "y_score": lr.predict_proba(Xv)[:, 1], "sensitive": pd.DataFrame({"g": gv})}
        },
    )
    res = mitigation_audit(inputs, {"max_accuracy_cost": 0.5})
    before = (lr.predict_proba(Xt)[:, 1] >= 0.5).astype(int)
    m = res.metrics
    assert m["mitigation/g/before/demographic_parity_difference"] == pytest.approx(
        demographic_parity_difference(yt, before, sensitive_features=gt)
    )
    assert m["mitigation/g/after/demographic_parity_difference"] == pytest.approx(
        demographic_parity_difference(yt, expected, sensitive_features=gt)
    )
    assert m["mitigation/g/after/accuracy"] == pytest.approx((expected == yt).mean())
    assert m["mitigation/accuracy_cost"] == pytest.approx((before == yt).mean() - (expected == yt).mean())
    assert (
        m["mitigation/g/after/demographic_parity_difference"] < m["mitigation/g/before/demographic_parity_difference"]
    )
    assert [g.status.value for g in res.gates] == ["pass"]


def test_mitigation_not_measured_without_validation_scores_or_for_multiclass():
    inputs = AuditInputs(y_true=Y, y_score=P, sensitive=GROUPS)
    assert "validation" in mitigation_audit(inputs, {}).notes[0]
    multi = AuditInputs(y_true=[0, 1], y_score=[[0.6, 0.4], [0.2, 0.8]], sensitive=None, task="multiclass")
    assert mitigation_audit(multi, {}).status.value == "not-measured"


# --------------------------------------------------------------------------- resources


def test_training_flops_and_energy_estimate_hand_computed():
    assert training_flops(1000, 200, 3) == 6 * 1000 * 200 * 3
    assert training_flops(1000, 200, None) is None
    assert energy_estimate_j(10.0, 2, 12.0, 1.5) == 360.0
    row = model_resources(
        {
            "n_parameters": 1000,
            "n_train": 200,
            "epochs_run": 3,
            "wall_time_s": 10.0,
            "cpu_cores": 2,
            "energy_j_measured": None,
        },
        {"watts_per_core": 12.0, "pue": 1.5, "grid_gco2_per_kwh": 500.0},
    )
    assert row["energy_kwh"] == pytest.approx(360 / 3.6e6)
    assert row["co2e_g"] == pytest.approx(360 / 3.6e6 * 500)
    assert row["energy_measured"] is False and "estimate" in row["energy_method"]
    measured = model_resources({"wall_time_s": 10.0, "cpu_cores": 2, "energy_j_measured": 7200.0})
    assert measured["energy_measured"] and measured["energy_kwh"] == pytest.approx(0.002)
    assert measured["co2e_g"] == pytest.approx(0.002 * 480)


def test_rapl_counters_read_and_wrap(tmp_path):
    for name, value in (("intel-rapl:0", 100), ("intel-rapl:1", 50), ("intel-rapl:0:0", 7)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "energy_uj").write_text(f"{value}\n")
    pattern = str(tmp_path / "intel-rapl:*" / "energy_uj")
    before = read_rapl_uj(pattern)
    assert sorted(before.values()) == [50, 100]  # sub-domain :0:0 is part of package :0
    after = {k: v + 2_000_000 for k, v in before.items()}
    assert rapl_joules(before, after) == pytest.approx(4.0)
    wrapped = {k: 10 for k in before}
    assert rapl_joules(before, wrapped) is None
    assert rapl_joules(before, wrapped, {k: 1_000 for k in before}) == pytest.approx((910 + 960) / 1e6)
    assert read_rapl_uj(str(tmp_path / "none*" / "energy_uj")) is None


def test_resources_section_totals_and_methods():
    models = [
        {
            "name": "m",
            "training": {"n_parameters": 10, "n_train": 5, "epochs_run": 2, "wall_time_s": 3.6, "cpu_cores": 1},
        },
        {"name": "b", "role": "baseline", "training": {"n_parameters": 3, "wall_time_s": 1.0, "cpu_cores": 1}},
    ]
    sec = resources_section(models)
    assert sec["totals"]["training_flops"] == 600.0  # baseline has no epochs: not estimated
    assert sec["totals"]["energy_kwh"] == pytest.approx(4.6 * 12 / 3.6e6)
    assert sec["methods"]["co2e"] == CO2_METHOD.format(
        grid_gco2_per_kwh=480.0, source="world average 2023, Ember Global Electricity Review 2024"
    )
    assert sec["n_models_trained"] == 2


# --------------------------------------------------------------------------- report sections


def _full_inputs():
    """conftest inputs plus the oversight and mitigation audits and resource inputs."""
    inputs = copy.deepcopy(make_inputs(failing=True))
    lr, (Xv, yv, gv), (Xt, yt, gt) = _scored_split()
    audit_in = AuditInputs(
        y_true=yt,
        y_score=lr.predict_proba(Xt)[:, 1],
        sensitive=pd.DataFrame({"sex": gt}),
        extra={
            "validation": {"y_true": yv, "y_score": lr.predict_proba(Xv)[:, 1], "sensitive": pd.DataFrame({"sex": gv})}
        },
    )
    for m in inputs["models"]:
        m["audits"]["oversight"] = oversight_audit(audit_in, {}).to_dict()
        m["audits"]["mitigation"] = mitigation_audit(audit_in, {}).to_dict()
        m["training"].update({"n_train": 30000, "cpu_cores": 2})
    inputs["config"]["use"] = {
        "purpose": "benchmark",
        "out_of_scope_uses": ["credit decisions"],
        "intended_users": [],
        "human_review": "",
    }
    return inputs


def test_every_section_validates_and_states_what_is_missing():
    report = build_report(**_full_inputs())
    validate_report(report)
    use = report["intended_use"]
    assert use["purpose"] == "benchmark" and use["intended_users"] is None
    assert set(use["not_stated"]) == {
        "intended_users",
        "affected_groups",
        "decision_type",
        "human_review",
        "affected_jobs",
        "training_needs",
    }
    assert report["integrity"] is None
    assert [r["model"] for r in report["oversight"]["models"]] == ["mlp", "logreg"]
    assert report["bias"]["mitigation"][0]["accuracy_cost"] == pytest.approx(
        report["models"][0]["audits"]["mitigation"]["metrics"]["mitigation/accuracy_cost"]
    )
    assert report["resources"]["models"][0]["training_flops"] == 6 * 7041 * 30000 * 8
    assert "out of scope: credit decisions" in report["risks"]["risks"]
    assert report["risks"]["not_measured"] == report["not_measured"]
    assert report["provenance"]["config_sha256"] == canonical_sha256(report["config"])
    assert report["provenance"]["mlflow_run_ids"]["models"] == {"mlp": "run-mlp", "logreg": "run-logreg"}
    areas = {a["area"]: a["status"] for a in report["executive_summary"]["areas"]}
    assert areas["Algorithmic bias"] == "fail" and areas["Employment and skills (human oversight)"] == "measured"
    assert areas["Concentration of technology and resources"] == "estimated"


def test_integrity_is_recorded_rendered_and_schema_checked():
    inputs = _full_inputs()
    integrity = {
        "signer_public_key": "a" * 64,
        "signer_key_id": "b" * 16,
        "evidence_manifest_sha256": "c" * 64,
        "previous_report_sha256": None,
    }
    report = build_report(**inputs, integrity=integrity)
    validate_report(report)
    md = render_markdown(report)
    assert "Evidence manifest SHA-256: " + "c" * 64 in md and "none (first report)" in md
    assert "unsigned" not in md.split("## 2.")[0]
    assert "**unsigned**" in render_markdown(build_report(**inputs)).split("## 2.")[0]
    rows = {r["item"]: r["status"] for r in report["frameworks"]}
    assert rows["Annex IV(2)(g)"] == "evidence"
    report["integrity"]["signer_key_id"] = 5
    with pytest.raises(ValueError, match=r"\$\.integrity\.signer_key_id"):
        validate_report(report)


def test_frameworks_point_at_their_sections_and_follow_the_evidence():
    report = build_report(**_full_inputs())
    rows = framework_rows(report)
    assert len(rows) == len(FRAMEWORK_ROWS)
    anchors = dict(SECTIONS)
    for r in rows:
        assert r["anchor"] in anchors and anchors[r["anchor"]].startswith(f"{r['section']}.")
    by_item = {r["item"]: r for r in rows}
    assert by_item["MEASURE 2.11"]["status"] == "fail"  # logreg's DP-difference gate failed
    assert by_item["four-fifths rule"]["status"] == "fail"  # logreg's Female group: 0.2256 × the Male rate
    assert by_item["MEASURE 2.12"]["status"] == "partial"  # energy estimated, not measured
    assert by_item["Art. 14 / Annex IV(2)(e)"]["status"] == "evidence"


def test_markdown_and_html_have_all_sections_in_order_with_plots():
    report = build_report(**_full_inputs())
    md = render_markdown(report)
    positions = [md.index(f"## {title}\n") for _, title in SECTIONS]
    assert positions == sorted(positions)
    assert "### mlp: Oversight — MEASURED" in md and "### mlp: Mitigation — MEASURED" in md
    assert f"Human review | {NOT_STATED}" in md
    html = render_html(report)
    positions = [html.index(f'<section id="{anchor}">\n<h2>{title}</h2>') for anchor, title in SECTIONS]
    assert positions == sorted(positions)
    for anchor, _ in SECTIONS:
        assert f'<a href="#{anchor}">' in html
    for caption in (
        "Automation/deferral curve (test)",
        "Selection rate by sex: before / after mitigation",
        "Training energy per model",
    ):
        assert caption in html
    # 10 figures of the v1 report + per model (deferral curve, mitigation bars) + the energy bars
    assert html.count('src="data:image/png;base64,') == 10 + 2 * 2 + 1


# --------------------------------------------------------------------------- config


def test_use_resources_and_oversight_config_are_checked():
    from impactflow.errors import ConfigError
    from impactflow.flows.config import check_references, load_config

    cfg = load_config(
        "tabular",
        [
            "use.human_review=every refusal is reviewed",
            "resources.grid_gco2_per_kwh=50",
            "gates.oversight.confidence_level=0.8",
        ],
    )
    assert cfg.use.human_review == "every refusal is reviewed" and cfg.resources.grid_gco2_per_kwh == 50
    assert "out of scope" not in cfg.use.purpose and cfg.use.out_of_scope_uses  # the preset states them
    check_references(cfg)
    with pytest.raises(ConfigError, match="use.bogus"):
        load_config("tabular", ["use.bogus=1"])
    with pytest.raises(ConfigError, match="resources.pue"):
        load_config("tabular", ["resources.pue=0.5"])
    with pytest.raises(ConfigError, match="gates.oversight.confidence_level"):
        check_references(load_config("tabular", ["gates.oversight.confidence_level=1.5"]))


def _discovery_audits(excluded: bool) -> dict:
    finding = {
        "slice": "age < 25 AND hours-per-week >= 50",
        "size": 40,
        "metric": 0.6,
        "metric_ci_low": 0.45,
        "metric_ci_high": 0.73,
        "rest": 0.1,
        "lift": 6.0,
        "p_value": 1e-12,
        "q_value": 1e-9,
    }
    audits = {
        "slices": {
            "name": "slices",
            "status": "not-measured",
            "metrics": {"slices/n_tested": 120.0, "slices/significant_slices": 1.0, "slices/significant_raw": 3.0},
            "thresholds": {"fdr": 0.05, "min_slice_size": 30},
            "details": {"metric": "error rate", "overall": 0.12, "findings": [finding]},
            "notes": [],
        },
        "proxies": {
            "name": "proxies",
            "status": "not-measured",
            "metrics": {"proxies/sex/proxy_auc": 0.93},
            "details": {
                "rows": 500,
                "of": 800,
                "sensitive_excluded": excluded,
                "statements": ["sex is left out of the model's features, but ..."] if excluded else [],
                "attributes": {"sex": {"proxy_auc": 0.93, "score_auc": 0.7, "proxies": []}},
            },
            "notes": [],
        },
        "attributions": {
            "name": "attributions",
            "status": "not-measured",
            "metrics": {},
            "details": {},
            "notes": ["the model reads one input"],
        },
    }
    for audit in audits.values():  # what every audit record holds (report_schema.json)
        audit.update({"by_group": [], "gates": [], **audit, "thresholds": audit.get("thresholds", {})})
    return audits


def test_discovery_section_summarises_the_three_audits_of_every_model():
    from impactflow.audits.sections import discovery

    models = [
        {"name": "mlp", "role": "candidate", "audits": _discovery_audits(True)},
        {"name": "logreg", "role": "baseline", "audits": _discovery_audits(True)},
    ]
    d = discovery(models)
    assert [(s["model"], s["baseline"], s["status"]) for s in d["slices"]] == [
        ("mlp", False, "measured"),
        ("logreg", True, "measured"),
    ]
    assert d["slices"][0]["n_tested"] == 120.0 and d["slices"][0]["n_findings"] == 1.0
    assert d["slices"][0]["findings"][0]["slice"] == "age < 25 AND hours-per-week >= 50"
    # the features' proxy strength is the same for every model: listed once; the score's per model
    assert [a["attribute"] for a in d["proxies"]["attributes"]] == ["sex"]
    assert d["proxies"]["sensitive_excluded"] is True and d["proxies"]["statements"]
    assert [(r["model"], r["score_auc"]) for r in d["proxies"]["score_auc"]] == [("mlp", 0.7), ("logreg", 0.7)]
    # no metric: not measured, with the audit's own reason
    assert d["attributions"][0]["status"] == "Not measured: the model reads one input"
    assert {(r["model"], r["audit"]) for r in d["audits"]} == {
        (m, a) for m in ("mlp", "logreg") for a in ("slices", "proxies", "attributions")
    }


def test_discovery_section_renders_every_finding_and_proxy_statement():
    from impactflow.audits.render import render_html, render_markdown
    from impactflow.audits.report import build_report, validate_report

    inputs = copy.deepcopy(make_inputs(failing=False))
    inputs["models"][0]["audits"].update(_discovery_audits(True))
    report = build_report(**inputs)
    validate_report(report)
    md = render_markdown(report)
    section = md[md.index("## 10. What the configured gates did not cover") : md.index("## 11.")]
    assert "| age < 25 AND hours-per-week >= 50 | 40 | 0.6000 ([0.4500, 0.7300]) | 0.1000 | 6.0000 |" in section
    assert "**sex is left out of the model's features, but ...**" in section
    assert "Not measured: the model reads one input" in section
    html = render_html(report)
    assert "age &lt; 25 AND hours-per-week &gt;= 50" in html
    assert html.count("data:image/png;base64,") >= 2  # the slice and proxy bar charts (and others)
