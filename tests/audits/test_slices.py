"""Worst-slice discovery (audits/slices.py): the enumeration against brute force, the packed
(bit) path against the bool masks, the tests against scipy, a planted slice found first, noise
not reported, bad input refused."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from impactflow.audits.inputs import AuditInputs
from impactflow.audits.results import Status
from impactflow.audits import slices
from impactflow.audits.slices import (
    enumerate_slices,
    find_slices,
    pack,
    packed_slices,
    packed_sums,
    predicates,
    slice_audit,
    slice_pvalues,
    slice_sums,
    unpack,
)


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


@pytest.mark.parametrize("n", [1, 63, 397, 1000, 1024])  # 1, 63, 397: a partial byte; 1000: a partial word
def test_the_packed_path_equals_the_bool_masks(n):
    """``find_slices`` enumerates and sums on bit-packed masks, depth first: the same slices, in
    ``slice_stream``'s order once sorted, with the same sizes and sums as the bool masks."""
    frame = _frame(n, 8)
    frame.loc[::5, "sex"] = None
    rng = np.random.default_rng(9)
    masks = rng.random((3, n)) < 0.4
    assert (unpack(pack(masks), n) == masks).all() and pack(masks).dtype == np.uint64
    preds = predicates(frame, n_bins=3, min_size=min(5, n))
    reference = enumerate_slices(preds, 3, min(5, n))
    features = {f: r for r, f in enumerate(dict.fromkeys(p.feature for p in preds))}
    words = np.stack([pack(p.mask) for p in preds])
    for loss in ((rng.random(n) < 0.3).astype(float), rng.exponential(1.0, n)):
        zero_one = np.isin(loss, (0.0, 1.0)).all()
        errors = pack(loss > 0) if zero_one else None
        idxs, sums = [], []
        for group, packed, size in packed_slices(words, [features[p.feature] for p in preds], 3, min(5, n)):
            assert (size == unpack(packed, n).sum(axis=1)).all()
            idxs += group
            sums.append(packed_sums(packed, loss, errors, loss * loss, size))
        assert sorted(idxs, key=lambda i: (len(i), i)) == [idx for idx, _ in reference]
        got = dict(zip(idxs, zip(*(np.concatenate([s[j] for s in sums]) for j in range(3)))))
        want = slice_sums(np.stack([m for _, m in reference]), loss)
        for k, (idx, _) in enumerate(reference):
            assert got[idx][0] == want[0][k]
            if zero_one:
                assert got[idx][1:] == (want[1][k], want[2][k])
            else:
                assert got[idx][1:] == pytest.approx((want[1][k], want[2][k]), rel=1e-12)


def test_the_grouping_rebuilds_packed_masks_of_mixed_orders(monkeypatch):
    """The grouping rebuilds significant slices' masks from their predicates, a block at a time."""
    rng = np.random.default_rng(12)
    bools = rng.random((6, 999)) < 0.6
    idxs = [(0,), (1, 4), (2, 3, 5), (5,), (0, 1, 2), (3, 4)] * 3
    monkeypatch.setattr(slices, "BLOCK_CELLS", 4 * 8 * 16)  # 4 slices of 16 words a block
    got = np.concatenate(list(slices._mask_blocks(pack(bools), idxs)))
    assert (unpack(got, 999) == np.stack([np.logical_and.reduce(bools[list(i)]) for i in idxs])).all()


def test_findings_do_not_depend_on_the_block_size(monkeypatch):
    """Masks are rebuilt and summed a bounded block at a time: tiny blocks, the same findings."""
    frame = _frame(3001, 10)
    rng = np.random.default_rng(11)
    bad = (frame["workclass"] == "Gov").to_numpy() & (frame["age"] < 40).to_numpy()
    errors = (rng.random(len(frame)) < np.where(bad, 0.5, 0.2)).astype(float)
    sq = rng.exponential(1.0, len(frame)) * np.where(bad, 2.0, 1.0)
    default = [find_slices(frame, errors, binary=True), find_slices(frame, sq, binary=False)]
    assert default[0]["findings"] and default[1]["findings"]
    monkeypatch.setattr(slices, "BLOCK_CELLS", 3 * 3001)
    small = [find_slices(frame, errors, binary=True), find_slices(frame, sq, binary=False)]
    assert small[0] == default[0]
    assert _approx_equal(small[1], default[1])


def _approx_equal(a, b) -> bool:
    """Equal up to float rounding (BLAS sums may round differently with the block layout)."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_approx_equal(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_approx_equal(x, y) for x, y in zip(a, b))
    return a == pytest.approx(b, rel=1e-12) if isinstance(a, float) else a == b


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
    # every row's figure in the same unit as the findings: the RMSE, not the mean squared error
    assert res.details["overall"] == pytest.approx(float(np.sqrt(np.mean((score - y) ** 2))))


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
