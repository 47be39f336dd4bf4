"""Gates fail closed (issue 20, defect 1): a run passes only if every configured gate was measured
and passed. Small literal inputs; the expected verdicts are worked out by hand in the comments."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from impactflow.audits import AUDIT_ONLY_THRESHOLDS, AUDIT_THRESHOLDS, AUDITS, AuditInputs, run_audits
from impactflow.audits.gating import gate_keys, key_of
from impactflow.audits.privacy import dp_advantage_bound
from impactflow.audits.report import build_report
from impactflow.audits.results import Gate, Status, checked_gate, overall_status, run_status

P, F, N, S = Status.PASS, Status.FAIL, Status.NOT_MEASURED, Status.SKIPPED


def _inputs(n=200, seed=0, **kw):
    """Binary scores that track the label (accuracy well above 0.5), one sensitive column of two
    groups of ~100 rows each, and member/non-member losses for the privacy audit."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    score = np.clip(0.6 * y + 0.4 * rng.random(n), 0, 1)
    return AuditInputs(
        y,
        score,
        pd.DataFrame({"sex": rng.choice(["F", "M"], n)}),
        member_loss=rng.random(n),
        nonmember_loss=rng.random(n),
        **kw,
    )


@pytest.mark.parametrize(
    "statuses, expected",
    [
        ([P, P], "pass"),
        ([P, N], "incomplete"),  # the old rule said pass: one passed and none failed
        ([N, N], "incomplete"),
        ([], "incomplete"),  # no gate at all: never PASS on nothing
        ([S], "incomplete"),  # only skipped: nothing measured
        ([P, S], "pass"),  # a gate skipped with a reason does not count
        ([P, N, F], "fail"),
        (["pass", "maybe"], "incomplete"),  # an unknown status is no pass
    ],
)
def test_run_status_is_pass_only_when_every_gate_passed(statuses, expected):
    assert run_status(statuses) == expected


def test_audit_status_is_not_pass_with_a_gate_not_measured():
    gates = [Gate("a", P, 0.1, 0.2, "<="), Gate("b", N, None, 0.2, "<=")]
    assert overall_status(gates) is Status.NOT_MEASURED  # was PASS
    assert overall_status([Gate("a", P, 0.1, 0.2, "<=")]) is Status.PASS
    assert overall_status([Gate("a", S, None, 0.2, "<=", "why")]) is Status.SKIPPED
    assert overall_status([]) is Status.NOT_MEASURED


@pytest.mark.parametrize("value", [None, float("nan"), float("inf")])
def test_a_pass_without_a_finite_value_is_not_measured(value):
    g = checked_gate(Gate("eval/accuracy", P, value, 0.8, ">="))
    assert g.status is Status.NOT_MEASURED and g.value is None and "not measured" in g.note
    assert overall_status([Gate("eval/accuracy", P, value, 0.8, ">=")]) is Status.NOT_MEASURED


def test_vacuous_gates_are_labelled_by_the_rule():
    # DP advantage bound (e^eps - 1 + 2 delta) / (e^eps + 1): 0.9051 at eps = 3, 0.4621 at eps = 1
    assert dp_advantage_bound(3.0, 1e-5) == pytest.approx((math.e**3 - 1 + 2e-5) / (math.e**3 + 1))
    at3 = checked_gate(Gate("privacy/mia_advantage", P, 0.03, dp_advantage_bound(3.0, 1e-5), "<="))
    at1 = checked_gate(Gate("privacy/mia_advantage", P, 0.03, dp_advantage_bound(1.0, 1e-5), "<="))
    assert at3.vacuous and "vacuous" in at3.note and at3.status is Status.PASS  # still measured
    assert not at1.vacuous
    # thresholds that admit a [0, 1] metric's whole range
    assert checked_gate(Gate("fairness/sex/four_fifths_min_ratio", P, 0.3, 0.0, ">=")).vacuous
    assert checked_gate(Gate("fairness/sex/demographic_parity_difference", P, 0.3, 1.0, "<=")).vacuous
    assert not checked_gate(Gate("fairness/sex/demographic_parity_difference", P, 0.3, 0.99, "<=")).vacuous
    assert not checked_gate(Gate("eval/rmse", P, 0.9, 1.0, "<=")).vacuous  # RMSE is unbounded


def test_every_gate_threshold_declares_its_comparison_and_every_setting_none():
    """The audits declare their keys (audits/thresholds.py): a gate key carries the comparison
    its gates use and the pattern of their names; a setting (size, level, k, ...) carries
    neither. Spot checks of the declarations a reader would expect."""
    for table in (AUDIT_THRESHOLDS, AUDIT_ONLY_THRESHOLDS):
        for audit, spec in table.items():
            for key, t in spec.items():
                assert (t.gate is None) == (t.comparison is None), (audit, key)
                assert t.comparison in (None, "<=", ">="), (audit, key)
    assert gate_keys(AUDIT_THRESHOLDS["fairness"]) == [
        "max_demographic_parity_difference",
        "max_equalized_odds_difference",
        "four_fifths_ratio",
    ]
    assert AUDIT_THRESHOLDS["fairness"]["four_fifths_ratio"].comparison == ">="
    assert gate_keys(AUDIT_THRESHOLDS["group_robustness"]) == [
        "max_worst_group_gap",
        "min_worst_group_accuracy",
        "max_accuracy_difference",
    ]
    assert key_of(AUDIT_THRESHOLDS["fairness"], "fairness/sex_x_race/four_fifths_min_ratio") == "four_fifths_ratio"
    assert key_of(AUDIT_THRESHOLDS["exposure"], "exposure/gini_at_10") == "max_gini"
    assert key_of(AUDIT_THRESHOLDS["privacy"], "privacy/mia_advantage") is None  # the DP bound: no key sets it


def test_min_group_size_above_every_group_leaves_the_run_incomplete():
    """The issue's reproduction in miniature: groups of ~100 rows, min_group_size 3000."""
    cfg = {"performance": {"min_accuracy": 0.5}, "fairness": {"min_group_size": 3000}}
    res = run_audits(_inputs(), cfg, names=["performance", "fairness"])
    assert res["performance"].status is Status.PASS
    fair = res["fairness"]
    assert [g.status for g in fair.gates] == [N, N, N] and fair.status is Status.NOT_MEASURED
    report = build_report(
        run={"run_id": "r"},
        data={},
        provenance={},
        config={},
        models=[{"name": "m", "role": "candidate", "audits": res}],
    )
    summary = report["summary"]
    assert summary["status"] == "incomplete"  # was "pass"
    assert [i["gate"] for i in summary["incomplete"]] == [
        "fairness/sex/demographic_parity_difference",
        "fairness/sex/equalized_odds_difference",
        "fairness/sex/four_fifths_min_ratio",
    ]
    assert all("n >= 3000" in i["reason"] and i["model"] == "m" for i in summary["incomplete"])
    assert summary["counts"]["not-measured"] == 3 and summary["counts"]["pass"] == 1
    assert report["models"][0]["status"] == "incomplete"


def test_an_audit_that_raises_leaves_its_gates_not_measured(monkeypatch):
    def broken(inputs, thresholds):
        raise ZeroDivisionError("division by zero in the audit")

    monkeypatch.setitem(AUDITS, "fairness", broken)
    res = run_audits(_inputs(), {"performance": {"min_accuracy": 0.5}}, names=["performance", "fairness"])
    assert res["performance"].status is Status.PASS  # the other audits still ran
    fair = res["fairness"]
    assert fair.status is Status.NOT_MEASURED
    # its three default gates (FAIRNESS_DEFAULTS), each with the exception as reason
    assert [(g.name, g.status) for g in fair.gates] == [
        ("fairness/max_demographic_parity_difference", N),
        ("fairness/max_equalized_odds_difference", N),
        ("fairness/four_fifths_ratio", N),
    ]
    assert all(
        g.note == "the fairness audit raised ZeroDivisionError: division by zero in the audit" for g in fair.gates
    )
    assert fair.details["error"]["type"] == "ZeroDivisionError"
    # an audit without any configured gate that raises still leaves a gate not measured
    monkeypatch.setitem(AUDITS, "oversight", broken)
    over = run_audits(_inputs(), {}, names=["oversight"])["oversight"]
    assert [(g.name, g.status) for g in over.gates] == [("oversight/audit", N)]


def test_a_gate_section_of_an_audit_the_family_does_not_run():
    cfg = {"performance": {"min_accuracy": 0.5}, "group_robustness": {"max_worst_group_gap": 0.1}}
    ignored = run_audits(_inputs(), cfg, names=["performance"])
    assert set(ignored) == {"performance"}  # without not_run_reason: the old behaviour
    res = run_audits(_inputs(), cfg, names=["performance"], not_run_reason=lambda a: f"no {a} audit here")
    g = res["group_robustness"].gates
    assert [(x.name, x.status, x.threshold, x.note) for x in g] == [
        ("group_robustness/max_worst_group_gap", N, 0.1, "no group_robustness audit here")
    ]


def test_a_default_gate_of_an_audit_that_does_not_apply_is_not_required():
    """A contract without sensitive columns: the fairness audit reports itself skipped, and its
    default thresholds make no gate; a threshold set in the config does (not measured)."""
    no_groups = AuditInputs(np.array([0, 1, 1, 0]), np.array([0.2, 0.8, 0.7, 0.1]), pd.DataFrame(index=range(4)))
    res = run_audits(no_groups, {}, names=["fairness"])["fairness"]
    assert res.status is Status.SKIPPED and res.gates == []
    res = run_audits(no_groups, {"fairness": {"four_fifths_ratio": 0.8}}, names=["fairness"])["fairness"]
    assert [(g.name, g.status) for g in res.gates] == [("fairness/four_fifths_ratio", N)]
    assert "no sensitive columns" in res.gates[0].note


def test_an_empty_gate_section_gates_nothing_and_says_so():
    res = run_audits(_inputs(), {"performance": {}}, names=["performance"])["performance"]
    assert [(g.name, g.status) for g in res.gates] == [("performance/section", N)]
    assert "gates.performance is configured but gates nothing" in res.gates[0].note
    assert run_audits(_inputs(), {}, names=["performance"])["performance"].gates == []  # no section: no gate


def test_a_skipped_gate_is_reported_with_its_reason_and_does_not_block_the_run():
    cfg = {
        "performance": {"min_accuracy": 0.5},
        "fairness": {
            "max_demographic_parity_difference": 1.0,
            "max_equalized_odds_difference": 1.0,
            "skip": {"four_fifths_ratio": "selection rates are not comparable here"},
        },
    }
    res = run_audits(_inputs(), cfg, names=["performance", "fairness"])
    gates = res["fairness"].gates
    assert [(g.name, g.status) for g in gates] == [
        ("fairness/sex/demographic_parity_difference", P),
        ("fairness/sex/equalized_odds_difference", P),
        ("fairness/four_fifths_ratio", S),
    ]
    assert gates[2].note == "selection rates are not comparable here" and gates[2].threshold == 0.8
    assert gates[0].vacuous and gates[1].vacuous  # <= 1 on a difference in [0, 1]
    report = build_report(run={"run_id": "r"}, data={}, provenance={}, config={}, models=[{"name": "m", "audits": res}])
    assert report["summary"]["status"] == "pass" and report["summary"]["incomplete"] == []
    skipped = [g for g in report["summary"]["gates"] if g["status"] == "skipped"]
    assert [(g["name"], g["note"]) for g in skipped] == [
        ("fairness/four_fifths_ratio", "selection rates are not comparable here")
    ]
    vacuous = {g["name"]: g["vacuous"] for g in report["summary"]["gates"]}
    assert vacuous["fairness/sex/demographic_parity_difference"] is True and vacuous["eval/accuracy"] is False


def test_the_dp_advantage_gate_at_epsilon_3_is_vacuous_in_the_report():
    res = run_audits(_inputs(epsilon=3.0, delta=1e-5), {}, names=["privacy"])["privacy"]
    adv = next(g for g in res.gates if g.name == "privacy/mia_advantage")
    assert adv.threshold == pytest.approx(0.9051, abs=1e-4) and adv.vacuous
    report = build_report(
        run={"run_id": "r"}, data={}, provenance={}, config={}, models=[{"name": "m", "audits": {"privacy": res}}]
    )
    audit_gate = next(g for g in report["models"][0]["audits"]["privacy"]["gates"] if g["name"] == adv.name)
    assert audit_gate["vacuous"] is True and "vacuous" in audit_gate["note"]


def test_report_reads_a_pass_on_a_missing_value_as_not_measured():
    audits = {
        "performance": {
            "name": "performance",
            "status": "pass",
            "metrics": {},
            "by_group": [],
            "thresholds": {},
            "notes": [],
            "details": {},
            "gates": [
                {"name": "eval/accuracy", "status": "pass", "value": float("nan"), "threshold": 0.8, "comparison": ">="}
            ],
        }
    }
    report = build_report(
        run={"run_id": "r"}, data={}, provenance={}, config={}, models=[{"name": "m", "audits": audits}]
    )
    assert report["summary"]["status"] == "incomplete"  # was "pass"
    assert report["models"][0]["audits"]["performance"]["gates"][0]["status"] == "not-measured"


def test_the_canary_gate_is_vacuous_when_epsilon_exceeds_what_every_guess_right_could_show():
    """120 guesses all right give eps_LB of about 3.7 at delta = 1e-5 (binomial tail q^120 < 0.05
    needs q < 0.9754, eps < ln(0.9754 / 0.0246) = 3.68); a claim of eps = 8 cannot be contradicted,
    a claim of eps = 0.5 can."""
    from impactflow.audits.lira import canary_audit
    from impactflow.audits.privacy_bounds import one_run_epsilon_lower_bound

    rng = np.random.default_rng(3)
    canary = {
        "scores": rng.normal(size=300),
        "included": rng.random(300) < 0.5,
        "k_pos": 60,
        "k_neg": 60,
        "delta": 1e-5,
    }
    ceiling = one_run_epsilon_lower_bound(300, 120, 120, delta=1e-5)
    assert 3.5 < ceiling < 3.75
    for eps, vacuous in ((8.0, True), (0.5, False)):
        inputs = AuditInputs(
            y_true=[0, 1],
            y_score=[0.2, 0.7],
            sensitive=None,
            epsilon=eps,
            delta=1e-5,
            extra={"canary": {**canary, "epsilon": eps}},
        )
        res = canary_audit(inputs, {})
        assert res.metrics["privacy/canary_epsilon_lower_bound_max"] == pytest.approx(ceiling)
        assert [g.vacuous for g in res.gates] == [vacuous, vacuous]
        assert all(g.status is Status.PASS for g in res.gates)
