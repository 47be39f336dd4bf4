"""Worst-slice discovery (audits/slices.py): the enumeration against brute force, the tests
against scipy, a planted slice found first, noise not reported, bad input refused."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from impactflow.audits.inputs import AuditInputs
from impactflow.audits.results import Status
from impactflow.audits.slices import enumerate_slices, find_slices, predicates, slice_audit, slice_pvalues


def _frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "age": rng.integers(17, 80, n),
            "hours_per_week": rng.integers(10, 80, n),
            "workclass": rng.choice(["Private", "Self-emp", "Gov"], n, p=[0.6, 0.25, 0.15]),
            "sex": rng.choice(["F", "M"], n),
            "score_x": rng.normal(size=n),
        }
    )


def test_the_level_wise_enumeration_equals_brute_force():
    frame = _frame(400, 1)
    frame.loc[::7, "workclass"] = None  # a "missing" predicate too
    preds = predicates(frame, n_bins=3, min_size=15)
    fast = {frozenset(preds[i].text for i in idx): int(m.sum()) for idx, m in enumerate_slices(preds, 3, 15)}
    brute = {}
    for k in (1, 2, 3):
        for combo in itertools.combinations(preds, k):
            if len({p.feature for p in combo}) < k:
                continue
            mask = np.logical_and.reduce([p.mask for p in combo])
            if mask.sum() >= 15:
                brute[frozenset(p.text for p in combo)] = int(mask.sum())
    assert fast == brute and len(fast) > 100
    assert any("workclass is missing" in s for s in fast)


def test_p_values_equal_scipys_fisher_and_welch_tests():
    rng = np.random.default_rng(2)
    masks = rng.random((6, 200)) < 0.3
    errors = (rng.random(200) < 0.25).astype(float)
    logp, size, _, _ = slice_pvalues(masks, errors, binary=True)
    p = np.exp(logp)
    for m, pk in zip(masks, p):
        e_in, e_out = errors[m].sum(), errors[~m].sum()
        table = [[e_in, m.sum() - e_in], [e_out, (~m).sum() - e_out]]
        assert pk == pytest.approx(stats.fisher_exact(table, alternative="greater").pvalue, rel=1e-9)
    assert size.tolist() == masks.sum(axis=1).tolist()
    sq = rng.exponential(1.0, 200)
    p = np.exp(slice_pvalues(masks, sq, binary=False)[0])
    for m, pk in zip(masks, p):
        ref = stats.ttest_ind(sq[m], sq[~m], equal_var=False, alternative="greater").pvalue
        assert pk == pytest.approx(ref, rel=1e-6)


def test_a_planted_slice_comes_first():
    """Predictions wrong for age < 25 AND hours_per_week > 50, right elsewhere. A quarter of the
    people are under 25 and a quarter work over 50 hours, so both thresholds are quartile cuts
    (the default 4 bins): the planted slice is expressible, and must come first, exactly."""
    frame = _frame(6000, 3)
    rng = np.random.default_rng(4)
    young, long_hours = np.zeros(len(frame), bool), np.zeros(len(frame), bool)
    young[rng.permutation(len(frame))[: len(frame) // 4]] = True
    long_hours[rng.permutation(len(frame))[: len(frame) // 4]] = True
    frame["age"] = np.where(young, rng.integers(17, 25, len(frame)), rng.integers(25, 80, len(frame)))
    frame["hours_per_week"] = np.where(long_hours, rng.integers(51, 81, len(frame)), rng.integers(10, 50, len(frame)))
    planted = ((frame["age"] < 25) & (frame["hours_per_week"] > 50)).to_numpy()
    y = rng.integers(0, 2, len(frame))
    pred = np.where(planted, 1 - y, y)
    inputs = AuditInputs(y, pred.astype(float), pd.DataFrame(index=frame.index), extra={"slice_frame": frame})
    res = slice_audit(inputs, {})
    top = res.details["findings"][0]
    rows = np.ones(len(frame), bool)
    for text in top["predicates"]:
        rows &= next(p.mask for p in predicates(frame, 4, 30) if p.text == text)
    assert (rows == planted).all(), top
    assert top["metric"] > 0.8 and top["rest"] < 0.05 and top["q_value"] <= 0.05
    assert top["metric_ci_low"] <= top["metric"] <= top["metric_ci_high"]
    assert res.metrics["slices/significant_slices"] == 1 and not res.gates  # its neighbours are explained by it
    assert res.status is Status.NOT_MEASURED  # a discovery gates nothing unless asked
    gated = slice_audit(inputs, {"n_bins": 10, "max_significant_slices": 0})
    assert gated.status is Status.FAIL and gated.gates[0].name == "slices/significant_slices"


def test_noise_is_not_reported_at_fdr_5_percent():
    """20 seeds of null data (errors independent of every feature): at most 1 false finding (a
    finding: a group of significant slices that share their rows, module doc)."""
    false_findings = 0
    for seed in range(20):
        frame = _frame(2000, 100 + seed)
        errors = (np.random.default_rng(200 + seed).random(len(frame)) < 0.2).astype(float)
        false_findings += len(find_slices(frame, errors, binary=True, fdr=0.05)["findings"])
    assert false_findings <= 1


def test_a_rating_models_worst_slice_by_squared_error():
    frame = _frame(3000, 5)
    rng = np.random.default_rng(6)
    y = rng.integers(1, 6, len(frame)).astype(float)
    bad = (frame["workclass"] == "Gov").to_numpy() & (frame["sex"] == "F").to_numpy()
    score = y + rng.normal(0, 0.3, len(frame)) + np.where(bad, 1.5, 0.0)
    inputs = AuditInputs(y, score, pd.DataFrame(index=frame.index), task="rating", extra={"slice_frame": frame})
    res = slice_audit(inputs, {})
    top = res.details["findings"][0]
    assert set(top["predicates"]) == {"workclass = Gov", "sex = F"}
    assert res.details["metric"] == "RMSE" and top["metric"] > 1.4 > 0.4 > top["rest"]
    assert top["metric_ci_low"] <= top["metric"] <= top["metric_ci_high"]


def test_bad_input_is_refused_with_a_clear_message():
    frame = _frame(100, 7)
    errors = np.zeros(100)
    with pytest.raises(ValueError, match="no features to slice on"):
        find_slices(frame[[]], errors, binary=True)
    for fdr in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match=r"fdr must be in \(0, 1\)"):
            find_slices(frame, errors, binary=True, fdr=fdr)
    with pytest.raises(ValueError, match="at least 1"):
        find_slices(frame, errors, binary=True, min_slice_size=0)
    inputs = AuditInputs(np.zeros(100, int), np.zeros(100), pd.DataFrame(index=range(100)))
    res = slice_audit(inputs, {})
    assert res.status is Status.NOT_MEASURED and res.notes == ["no features to slice on"]
    small = slice_audit(AuditInputs(np.zeros(100, int), np.zeros(100), None, extra={"slice_frame": frame}), {})
    assert small.details["findings"] == []  # no slice is shown below min_slice_size (disclosure)
