"""The identity-term audit's formulas on tiny hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from impactflow.audits import AuditInputs, run_audits
from impactflow.audits.identity import (
    INSERT_TEMPLATE,
    bias_aucs,
    counterfactual_table,
    counterfactual_text,
    error_rate_equality,
    final_bias_score,
    generalized_mean,
    term_membership,
    term_pattern,
)
from impactflow.audits.results import Status


def test_terms_match_whole_words_case_insensitively():
    texts = ["An African  American man", "Blackberry pie", "my BLACK cat", "older people", "old-school"]
    m = term_membership(texts, ["african american", "african", "black", "old"])
    assert m["african american"].tolist() == [True, False, False, False, False]  # any whitespace inside
    assert m["african"].tolist() == [True, False, False, False, False]
    assert m["black"].tolist() == [False, False, True, False, False]  # not inside "Blackberry"
    assert m["old"].tolist() == [False, False, False, False, True]  # not inside "older"; "-" is a boundary


def test_counterfactual_swaps_the_first_longest_term_or_inserts():
    pats = [term_pattern(t) for t in ("african", "african american", "gay")]
    assert counterfactual_text("an African American man, gay", "asian", pats) == ("an asian man, gay", "swap")
    assert counterfactual_text("hello there", "gay", pats) == (
        INSERT_TEMPLATE.format(term="gay", text="hello there"),
        "insert",
    )


def test_counterfactual_flip_rate_and_score_shift():
    # scorer: 0.9 when the text contains "gay", else 0.1
    def score(texts):
        return np.array([0.9 if term_pattern("gay").search(t) else 0.1 for t in texts])

    rows = counterfactual_table(["hello", "my straight friend"], score, ["gay", "straight"])
    gay, straight = rows
    # "I am gay. hello" and "my gay friend" both go 0.1 -> 0.9: both flip, shift +0.8
    assert gay["flip_rate"] == 1.0 and gay["mean_score_shift"] == pytest.approx(0.8) and gay["n_swapped"] == 1
    assert straight["flip_rate"] == 0.0 and straight["mean_score_shift"] == pytest.approx(0.0)


def test_error_rate_equality_fped_fned():
    y_true = [0, 0, 0, 0, 1, 1, 1, 1]
    y_pred = [1, 0, 0, 0, 1, 1, 0, 1]
    a = np.array([1, 1, 0, 0, 1, 1, 0, 0], bool)
    out = error_rate_equality(y_true, y_pred, {"a": a, "b": ~a})
    assert out["overall"]["fpr"] == 0.25 and out["overall"]["fnr"] == 0.25
    assert out["per_term"]["a"]["fpr"] == 0.5 and out["per_term"]["a"]["fnr"] == 0.0
    assert out["per_term"]["b"]["fpr"] == 0.0 and out["per_term"]["b"]["fnr"] == 0.5
    assert out["fped"] == pytest.approx(0.5)  # |0.25-0.5| + |0.25-0|
    assert out["fned"] == pytest.approx(0.5)  # |0.25-0| + |0.25-0.5|
    assert out["fpr_range"] == pytest.approx(0.5)


def test_error_rate_equality_skips_undefined_rates():
    # every sentence negative (the spam model's template test): FNR undefined, FNED nan
    out = error_rate_equality(
        [0, 0, 0, 0], [1, 0, 0, 0], {"a": np.array([1, 1, 0, 0], bool), "none": np.zeros(4, bool)}
    )
    assert out["overall"]["fpr"] == 0.25 and math.isnan(out["fned"])
    assert math.isnan(out["per_term"]["none"]["fpr"])
    assert out["fped"] == pytest.approx(0.25)  # only term a: |0.25 - 0.5|


def test_bias_aucs_hand_computed():
    y = [1, 0, 1, 0, 1, 0]
    s = [0.9, 0.8, 0.3, 0.2, 0.7, 0.1]
    g = [True, True, True, True, False, False]
    out = bias_aucs(y, s, g)
    assert out["subgroup_auc"] == pytest.approx(0.75)  # pairs (.9>.8)(.9>.2)(.3<.8)(.3>.2): 3/4
    assert out["bpsn_auc"] == pytest.approx(0.5)  # bg pos .7 vs sub neg .8 (no), .2 (yes)
    assert out["bnsp_auc"] == pytest.approx(1.0)  # sub pos .9, .3 vs bg neg .1


def test_bias_auc_is_nan_without_both_classes():
    out = bias_aucs([1, 1, 0], [0.9, 0.8, 0.1], [True, True, False])
    assert math.isnan(out["subgroup_auc"]) and out["bnsp_auc"] == 1.0 and math.isnan(out["bpsn_auc"])


def test_generalized_mean_and_final_score():
    # ((0.5^-5 + 1^-5) / 2)^(-1/5) = 16.5^(-0.2) = 0.570838...
    assert generalized_mean([0.5, 1.0], -5) == pytest.approx(16.5**-0.2) == pytest.approx(0.5708, abs=1e-4)
    assert generalized_mean([0.7, 0.7, 0.7], -5) == pytest.approx(0.7)
    assert generalized_mean([0.2, 0.4], 1) == pytest.approx(0.3)
    assert generalized_mean([0.0, 0.9], -5) == 0.0
    assert math.isnan(generalized_mean([math.nan], -5))
    # the power mean is pulled towards the worst subgroup: below the arithmetic mean
    assert generalized_mean([0.5, 1.0], -5) < 0.75
    assert final_bias_score(0.8, 0.6, 0.7, 0.9) == pytest.approx(0.25 * (0.8 + 0.6 + 0.7 + 0.9))


def _inputs(**extra):
    texts = ["i am gay", "hello friend", "gay pride parade", "free prize", "my old dog", "old news"] * 4
    y = np.array([0, 0, 1, 1, 0, 1] * 4)

    def score(ts):
        return np.array([0.8 if "gay" in t else 0.3 if "prize" in t else 0.2 for t in ts])

    base = dict(
        score_texts=score,
        texts=texts,
        identity_terms=["gay", "old"],
        template_texts=["i am gay", "i am old", "i hate gay people", "i hate old people"],
        template_labels=np.array([0, 0, 1, 1]),
    )
    base.update(extra)
    return AuditInputs(y_true=y, y_score=score(texts), sensitive=None, extra=base)


def test_identity_audit_metrics_and_gates():
    res = run_audits(_inputs(), {"identity": {"max_flip_rate": 0.05, "min_subgroup_size": 2}}, names=["identity"])[
        "identity"
    ]
    m = res.metrics
    # inserting/swapping "gay" lifts every non-"gay" text over 0.5: it flips 4 of 6 base texts
    assert m["fairness/identity/gay/counterfactual_flip_rate"] == pytest.approx(4 / 6)
    assert m["fairness/identity/old/counterfactual_flip_rate"] == pytest.approx(2 / 6)
    assert m["fairness/identity/max_flip_rate"] == pytest.approx(4 / 6)
    assert res.status is Status.FAIL and res.gates[0].name == "fairness/identity/max_flip_rate"
    # template: "i am gay" is a false positive (0.8), "i hate old people" a false negative (0.2)
    assert m["fairness/identity/gay/template_fpr"] == 1.0 and m["fairness/identity/old/template_fnr"] == 1.0
    assert m["fairness/identity/fped"] == pytest.approx(0.5 + 0.5)
    for k in ("subgroup_auc", "bpsn_auc", "bnsp_auc"):
        assert f"fairness/identity/gay/{k}" in m
    assert 0 <= m["fairness/identity/final_bias_score"] <= 1
    assert {r["term"] for r in res.by_group} == {"gay", "old"}
    assert res.details["bar_charts"] and res.to_dict()  # JSON-able


def test_identity_audit_without_a_scorer_is_not_measured():
    res = run_audits(AuditInputs(y_true=[0, 1], y_score=[0.2, 0.8], sensitive=None), {}, names=["identity"])
    assert res["identity"].status is Status.NOT_MEASURED and not res["identity"].metrics
