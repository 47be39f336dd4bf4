"""The human report says what the JSON says (issue 20, defect 5 and the report side of defect 1).

Unit tests on the conftest inputs, whose fairness and privacy audits are the real audits run on
literal counts (Male: TP 140, FP 40, TN 420, FN 70; the MLP's Female: 67 / 20 / 210 / 33;
logreg's Female: 10 / 10 / 280 / 30)."""

from __future__ import annotations

import copy
import re
from html import unescape

import jinja2
import pytest

from impactflow.audits.render import budget_text, render_html, render_markdown
from impactflow.audits.report import build_report, validate_report
from tests.report.conftest import make_inputs


def _inputs(failing: bool = True) -> dict:
    return copy.deepcopy(make_inputs(failing=failing))


def _areas(report: dict) -> dict:
    return {a["area"]: a for a in report["executive_summary"]["areas"]}


def _frameworks(report: dict) -> dict:
    return {r["item"]: r for r in report["frameworks"]}


def _md_row(md: str, section_start: str, first_cell: str) -> str:
    part = md[md.index(section_start) :]
    return next(line for line in part.splitlines() if line.startswith(f"| {first_cell} |"))


# --------------------------------------------------------------------------- group tables


def test_group_table_shows_the_audits_tpr_fpr_fnr_with_intervals():
    report = build_report(**_inputs())
    md = render_markdown(report)
    row = _md_row(md, "### mlp: Fairness", "Male")
    cells = [c.strip() for c in row.strip("|").split("|")]
    # Group | n | Share | Selection rate | TPR | FPR | FNR | Accuracy | counts | ratio | flag
    assert cells[:3] == ["Male", "670", "0.6700"]
    assert cells[3].startswith("0.2687 [")  # 180 / 670
    assert cells[4].startswith("0.6667 [")  # TPR 140 / 210
    assert cells[5].startswith("0.0870 [")  # FPR 40 / 460
    assert cells[6].startswith("0.3333 [")  # FNR 70 / 210
    assert cells[7].startswith("0.8358 [")  # (140 + 420) / 670
    assert "—" not in " ".join(cells[3:8])
    html = render_html(report)
    # the HTML puts each interval on its own line under the rate (issue 26: the table fits 1,280 px)
    assert all(f'>{rate} <span class="ci">[' in html for rate in ("0.6667", "0.0870", "0.3333"))


def test_a_missing_rate_key_is_an_error_not_a_dash():
    inputs = _inputs()
    for row in inputs["models"][0]["audits"]["fairness"]["by_group"]:
        del row["true_positive_rate"]
    report = build_report(**inputs)
    with pytest.raises(jinja2.exceptions.UndefinedError, match="true_positive_rate"):
        render_markdown(report)
    with pytest.raises(jinja2.exceptions.UndefinedError, match="true_positive_rate"):
        render_html(report)


# --------------------------------------------------------------------------- privacy budget


def _ledger_view(*, non_private: bool) -> dict:
    """The ``privacy_budget`` block exactly as the pipeline builds it (tasks.ledger_store)."""
    from impactflow.tasks.ledger_store import report_view, summarize

    rows = [
        {
            "private": True,
            "epsilon": 1.0,
            "delta": 1e-5,
            "budget_epsilon": None,
            "run_id": "r1",
            "contract": "adult",
            "status": "spent",
        },
        {
            "private": True,
            "epsilon": 0.75,
            "delta": 1e-5,
            "budget_epsilon": None,
            "run_id": "r1",
            "contract": "adult",
            "status": "spent",
        },
    ]
    if non_private:
        rows.append(
            {
                "private": False,
                "epsilon": None,
                "delta": None,
                "budget_epsilon": None,
                "run_id": "r1",
                "contract": "adult",
                "status": "spent",
            }
        )
    return report_view(summarize("a" * 64, rows))


def test_budget_sentence_reads_the_ledger_and_keeps_the_infinity_warning():
    text = budget_text(_ledger_view(non_private=True), ["logreg"])
    assert "2 DP model(s) spent ε = 1.7500, δ = 2.000e-05" in text
    assert "total ε = ∞: a non-private model (logreg; 1 in the ledger) was trained on the same rows" in text
    assert "— over" not in text and "0 DP model" not in text
    finite = budget_text(_ledger_view(non_private=False), [])
    assert "total ε = 1.7500" in finite and "∞" not in finite


def test_budget_sentence_is_rendered_from_the_report_json():
    inputs = _inputs()
    inputs["data"]["privacy_budget"] = _ledger_view(non_private=True)
    md = render_markdown(build_report(**inputs))
    privacy = md[md.index("## 6. Privacy") : md.index("## 7. Bias")]
    # logreg is this run's non-private model (dp.enabled false)
    assert "total ε = ∞: a non-private model (logreg; 1 in the ledger) was trained on the same rows" in privacy
    del inputs["data"]["privacy_budget"]["private_models"]
    with pytest.raises(KeyError, match="private_models"):
        render_markdown(build_report(**inputs))


# --------------------------------------------------------------------------- candidate vs baseline


def test_area_and_framework_statuses_follow_the_candidate_with_the_baseline_apart():
    inputs = _inputs()
    inputs["models"][1]["role"] = "baseline"  # logreg fails its three fairness gates
    report = build_report(**inputs)
    validate_report(report)
    assert report["summary"]["status"] == "pass"  # the MLP passes every gate
    bias = _areas(report)["Algorithmic bias"]
    assert bias["status"] == "pass" and bias["baseline_status"] == "fail"
    assert _areas(report)["Predictive performance"]["status"] == "pass"
    fw = _frameworks(report)
    assert fw["MEASURE 2.11"]["status"] != "fail" and fw["MEASURE 2.11"]["baseline_status"] == "fail"
    assert fw["four-fifths rule"]["status"] == "evidence" and fw["four-fifths rule"]["baseline_status"] == "fail"
    md = render_markdown(report)
    assert "| Algorithmic bias | 7 | **PASS** |" in md
    assert "baseline: fail" in _md_row(md, "## 2. Executive summary", "Algorithmic bias")
    assert "baseline: fail" in _md_row(md, "## 13. Mapping", "29 CFR 1607.4(D)")


# --------------------------------------------------------------------------- privacy without DP, vacuous gates


def test_privacy_area_without_dp_reads_no_guarantee_never_pass():
    inputs = _inputs()
    for m in inputs["models"]:
        m["training"]["dp"] = {"enabled": False}
        m["audits"]["privacy"]["gates"] = [g for g in m["audits"]["privacy"]["gates"] if g["name"] == "privacy/mia_auc"]
    report = build_report(**inputs)
    area = _areas(report)["Data security and privacy"]
    assert area["status"] == "no-guarantee"
    assert "diagnostic" in area["evidence"] and "not evidence of privacy" in area["evidence"]
    assert _frameworks(report)["MEASURE 2.10"]["status"] == "partial"
    assert "no guarantee" in _frameworks(report)["MEASURE 2.10"]["evidence"]
    assert "| Data security and privacy | 6 | **NO-GUARANTEE** |" in render_markdown(report)
    # an attack that succeeds is evidence of leakage: fail stays fail
    for m in inputs["models"]:
        m["audits"]["privacy"]["gates"][0].update(status="fail", value=0.7)
    assert _areas(build_report(**inputs))["Data security and privacy"]["status"] == "fail"


def test_a_vacuous_gate_is_labelled_and_never_makes_an_area_pass():
    inputs = _inputs(failing=False)
    mlp = inputs["models"][0]
    # keep only the (ε = 3) advantage-bound gate: the DP bound 0.905 admits any ordinary model
    mlp["audits"]["privacy"]["gates"] = [
        g for g in mlp["audits"]["privacy"]["gates"] if g["name"] == "privacy/mia_advantage"
    ]
    inputs["models"] = [mlp]
    report = build_report(**inputs)
    gate = next(g for g in report["summary"]["gates"] if g["name"] == "privacy/mia_advantage")
    assert gate["status"] == "pass" and gate["vacuous"] is True  # marked by audits.results (helper A)
    assert _areas(report)["Data security and privacy"]["status"] == "measured"
    md = render_markdown(report)
    row = _md_row(md, "### Gate matrix", "mlp")
    assert "vacuous (cannot fail: " in md
    matrix = md[md.index("### Gate matrix") : md.index("## 3.")]
    assert "| privacy/mia_advantage |" in matrix and "**vacuous (cannot fail: the bound" in matrix
    assert row  # the gate matrix lists the MLP
    assert "vacuous (cannot fail: the bound" in render_html(report)


# --------------------------------------------------------------------------- incomplete and skipped


def _unmeasurable_fairness(inputs: dict) -> None:
    """The real fairness audit with min_group_size 3000: every group too small, every gate not measured."""
    import numpy as np

    from impactflow.audits.fairness import fairness_audit
    from impactflow.audits.inputs import AuditInputs
    from tests.report.conftest import _arrays

    for m, fail in zip(inputs["models"], (False, True)):
        y, score, sex = _arrays(fail)
        m["audits"]["fairness"] = fairness_audit(
            AuditInputs(y_true=y, y_score=score, sensitive=sex, member_loss=np.ones(3), nonmember_loss=np.ones(3)),
            {"min_group_size": 3000, "n_boot": 0},
        ).to_dict()


def test_unmeasured_gates_make_the_report_say_incomplete_and_not_measured():
    inputs = _inputs()
    _unmeasurable_fairness(inputs)
    report = build_report(**inputs)
    validate_report(report)
    assert report["summary"]["status"] == "incomplete"  # helper A's run_status
    assert _areas(report)["Algorithmic bias"]["status"] == "not-measured"
    fw = _frameworks(report)
    assert fw["four-fifths rule"]["status"] == "not-measured"
    assert fw["Art. 10(2)(f–g), 10(5)"]["status"] == "not-measured"
    assert fw["MEASURE 2.11"]["status"] == "not-measured"
    reason = "only 0 group(s) of sex have n >= 3000: nothing to compare"
    listed = report["executive_summary"]["incomplete"]
    assert {(r["model"], r["gate"]) for r in listed} >= {
        ("mlp", "fairness/sex/four_fifths_min_ratio"),
        ("logreg", "fairness/sex/demographic_parity_difference"),
    }
    assert all(r["reason"] == reason for r in listed)
    md = render_markdown(report)
    cover = md[md.index("## 1. Cover") : md.index("## 2. Executive")]
    assert "Overall status: **INCOMPLETE** — 6 gate(s) could not be measured" in cover
    assert f"mlp: fairness/sex/four_fifths_min_ratio — not measured: {reason}" in cover
    summary = md[md.index("## 2. Executive") : md.index("### Gate matrix")]
    assert "| Algorithmic bias | 7 | **NOT-MEASURED** |" in summary and reason in summary
    frameworks = md[md.index("## 13. Mapping") : md.index("## 14.")]
    assert "Overall: **INCOMPLETE**" in frameworks
    assert "EVIDENCE" not in _md_row(md, "## 13. Mapping", "29 CFR 1607.4(D)")
    assert "MEASURED**" not in _md_row(md, "## 2. Executive", "Algorithmic bias").replace("NOT-MEASURED", "")
    html = unescape(render_html(report))
    assert reason in html and "INCOMPLETE" in html


def test_skipped_gates_show_the_owners_reason():
    inputs = _inputs(failing=False)
    why = "the owner's reason: demographic parity is not the criterion for this use"
    gate = inputs["models"][0]["audits"]["fairness"]["gates"][0]
    gate.update(status="skipped", value=None, note=why)
    report = build_report(**inputs)
    assert report["executive_summary"]["skipped"] == [
        {"model": "mlp", "gate": "fairness/sex/demographic_parity_difference", "reason": why}
    ]
    md = render_markdown(report)
    cover = md[md.index("## 1. Cover") : md.index("## 2. Executive")]
    assert f"mlp: fairness/sex/demographic_parity_difference — skipped: {why}" in cover
    assert f"skipped: mlp fairness/sex/demographic_parity_difference ({why})" in md
    assert why in unescape(render_html(report))


# --------------------------------------------------------------------------- ci_method, LiRA/canary, DP covers


def test_ci_method_names_exactly_the_intervals_the_json_has():
    inputs = _inputs()
    report = build_report(**inputs)
    method = report["performance"]["ci_method"]
    assert "performance/roc_auc (mlp, logreg)" in method
    for m in inputs["models"]:
        met = m["audits"]["performance"]["metrics"]
        del met["performance/roc_auc_ci_low"], met["performance/roc_auc_ci_high"]
    method = build_report(**inputs)["performance"]["ci_method"]
    assert "AUC" not in method and "auc" not in method and "bootstrap" not in method
    assert method.startswith("no performance metric in this report has a confidence interval")


def test_lira_and_canary_audits_are_not_called_planned():
    report = build_report(**_inputs())
    md = render_markdown(report)
    assert "planned" not in md
    note = report["models"][0]["audits"]["privacy"]["notes"][0]
    assert "privacy_audit.reference_models" in note and "privacy_audit.canaries" in note
    assert any("LiRA" in s and "not run in this run" in s for s in report["not_measured"])


def test_what_the_dp_guarantee_covers_is_printed_for_every_dp_model():
    inputs = _inputs()
    covers = "model weights, the one-hot domains declared in the contract and the decision threshold"
    inputs["models"][0]["training"]["dp"]["covers"] = covers
    md = render_markdown(build_report(**inputs))
    privacy = md[md.index("## 6. Privacy") : md.index("## 7. Bias")]
    assert f"What the (ε, δ) of mlp covers: {covers}" in privacy
    assert "of logreg covers" not in privacy  # not private
    del inputs["models"][0]["training"]["dp"]["covers"]
    md = render_markdown(build_report(**inputs))
    assert "What the (ε, δ) of mlp covers: not stated by the training record" in md


def test_anonymity_share_is_printed_as_the_json_has_it():
    from impactflow.audits.render import anonymity_text

    text = anonymity_text(
        {
            "status": "measured",
            "k": 3,
            "quasi_identifiers": ["age"],
            "n_classes": 12,
            "units_below_min_k": 7,
            "share_below_min_k": 0.0123,
            "min_k": 5,
            "unit": "rows",
        }
    )
    assert "(a share of 0.0123)" in text
    assert not re.search(r"\b1\.23", text)
