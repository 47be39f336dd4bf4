"""The streamed aggregates give the in-memory audits' numbers: counts and rates exactly (to
1e-12), AUC within its stated bound, whatever the batch boundaries, dictionary orders or merges."""

import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from impactflow.audits import AuditInputs
from impactflow.audits.aggregates import Aggregates, auc_from_hist, expit
from impactflow.audits.calibration import calibration_group_audit
from impactflow.audits.fairness import fairness_audit
from impactflow.audits.performance import performance_audit
from impactflow.errors import DataError


def decision_log(n=20_000, seed=0):
    rng = np.random.default_rng(seed)
    sex = rng.choice(["F", "M"], n, p=[0.4, 0.6]).astype(object)
    race = rng.choice(["a", "b", "c", "d"], n, p=[0.5, 0.3, 0.15, 0.05]).astype(object)
    age = rng.choice([1, 2, 3], n)
    race[rng.random(n) < 0.01] = None  # a missing group value is its own group
    y = (rng.random(n) < 0.3 + 0.1 * (sex == "M")).astype(int)
    score = np.clip(0.35 * y + 0.6 * rng.random(n), 0, 1)
    score[:50] = np.round(score[:50], 1)  # exact bin edges (0.3, 1.0) are binned like the in-memory ECE
    return pd.DataFrame({"y": y, "score": score, "sex": sex, "race": race, "age": age})


def streamed(df, sizes=(1_000, 7_777, 3), **kw):
    """Accumulate ``df`` in batches of the given sizes (cycled), each dictionary-encoded on its own."""
    kw.setdefault("score", "score")
    agg = Aggregates(label="y", sensitive=["sex", "race", "age"], positive="1", **kw)
    start, i = 0, 0
    while start < len(df):
        part = df.iloc[start : start + sizes[i % len(sizes)]]
        agg.add(pa.Table.from_pandas(part.iloc[::-1] if i % 2 else part, preserve_index=False))
        start += sizes[i % len(sizes)]
        i += 1
    return agg


def in_memory(df, score="score", threshold=0.5, hard=False):
    text = df[["sex", "race", "age"]].astype(object)
    text = text.where(text.isna(), text.astype(str))
    return AuditInputs(
        y_true=df["y"].to_numpy(),
        y_score=df[score].to_numpy(dtype=float),
        sensitive=text,
        decision_threshold=threshold,
        extra={"hard_predictions": hard},
    )


def from_aggregates(agg, threshold=0.5, hard=False):
    empty = pd.DataFrame({c: pd.Series([], dtype=object) for c in agg.sensitive})
    return AuditInputs(
        y_true=np.zeros(0),
        y_score=np.zeros(0),
        sensitive=empty,
        decision_threshold=threshold,
        extra={"hard_predictions": hard, "aggregates": agg},
    )


def same(a, b, tol=1e-12):
    if isinstance(a, float) or isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or abs(a - b) <= tol
    return a == b


def test_fairness_counts_rates_and_bootstrap_cis_equal_the_in_memory_audit():
    df = decision_log()
    mem = fairness_audit(in_memory(df), {"min_group_size": 100})
    got = fairness_audit(from_aggregates(streamed(df)), {"min_group_size": 100})
    assert set(got.metrics) == set(mem.metrics)
    assert all(same(got.metrics[k], v) for k, v in mem.metrics.items()), [
        (k, v, got.metrics[k]) for k, v in mem.metrics.items() if not same(got.metrics[k], v)
    ]
    assert len(got.by_group) == len(mem.by_group) == 2 + 5 + 3 + 2 * 5 * 3  # F/M, a-d + (missing), 1-3, every cell
    for r_mem, r_got in zip(mem.by_group, got.by_group):
        assert r_mem.keys() == r_got.keys()
        assert all(same(r_got[k], v) for k, v in r_mem.items()), (r_mem, r_got)
    assert [(g.name, g.status, g.value) for g in got.gates] == [(g.name, g.status, g.value) for g in mem.gates]
    assert got.details["attributes"] == mem.details["attributes"]


def test_performance_exact_except_auc_within_its_bound():
    df = decision_log()
    mem = performance_audit(in_memory(df), {})
    got = performance_audit(from_aggregates(streamed(df)), {})
    bound = got.metrics.pop("eval/roc_auc_error_bound")
    assert 0 < bound < 1e-3
    assert abs(got.metrics.pop("eval/roc_auc") - mem.metrics.pop("eval/roc_auc")) <= bound
    assert set(got.metrics) == set(mem.metrics)
    assert all(same(got.metrics[k], v) for k, v in mem.metrics.items()), [
        (k, v, got.metrics[k]) for k, v in mem.metrics.items() if not same(got.metrics[k], v)
    ]
    for b_mem, b_got in zip(mem.details["calibration"], got.details["calibration"]):
        assert all(same(b_got[k], v) for k, v in b_mem.items())
    assert got.details["confusion_matrix"] == mem.details["confusion_matrix"]
    assert got.details["roc"]["fpr"][0] == 0.0 and got.details["roc"]["tpr"][-1] == 1.0


def test_calibration_by_group_exact_except_auc_within_each_groups_bound():
    df = decision_log()
    mem = calibration_group_audit(in_memory(df), {"max_ece_gap": 0.05})
    got = calibration_group_audit(from_aggregates(streamed(df)), {"max_ece_gap": 0.05})
    assert len(mem.by_group) == len(got.by_group)
    for r_mem, r_got in zip(mem.by_group, got.by_group):
        bound = r_got.pop("roc_auc_error_bound")
        assert abs(r_got.pop("roc_auc") - r_mem.pop("roc_auc")) <= bound + 1e-15
        assert all(same(r_got[k], v) for k, v in r_mem.items()), (r_mem, r_got)
    for k, v in mem.metrics.items():
        assert same(got.metrics[k], v, 1e-12 if "roc_auc" not in k else 2e-3)
    assert [g.status for g in got.gates] == [g.status for g in mem.gates]


def test_merged_halves_equal_the_whole_and_survive_pickling():
    import pickle

    df = decision_log(5_000)
    whole = streamed(df)
    a, b = streamed(df.iloc[:2_000]), streamed(df.iloc[2_000:].iloc[::-1])
    merged = pickle.loads(pickle.dumps(a)).merge(pickle.loads(pickle.dumps(b)))
    assert merged.rows == whole.rows == 5_000
    for cols in (["sex"], ["race"], ["sex", "race", "age"]):
        la, ca = whole.confusion(cols)
        lb, cb = merged.confusion(cols)
        assert la == lb and (ca == cb).all()
    ov_a, ov_b = whole.overall(), merged.overall()
    assert (ov_a["hist"] == ov_b["hist"]).all()
    assert np.allclose(ov_a["ll"], ov_b["ll"], rtol=1e-13)


def test_hand_computed_auc_and_its_bound():
    # grid of 4 bins; negatives in bins 0, 1; positives in bins 1, 3:
    # pairs (pos, neg): (b1, b0)=1, (b1, b1)=tie 1/2, (b3, b0)=1, (b3, b1)=1 -> 3.5 / 4
    auc, bound = auc_from_hist(np.array([1, 1, 0, 0]), np.array([0, 1, 0, 1]))
    assert auc == 3.5 / 4 and bound == 0.5 * 1 / 4
    assert math.isnan(auc_from_hist(np.array([3, 0]), np.array([0, 0]))[0])


def test_hard_predictions_and_logits():
    df = decision_log(3_000)
    df["pred"] = (df["score"] >= 0.4).astype(int)
    agg = streamed(df, prediction="pred", score=None)
    mem = fairness_audit(in_memory(df, score="pred", hard=True), {})
    got = fairness_audit(from_aggregates(agg, hard=True), {})
    assert all(same(got.metrics[k], v) for k, v in mem.metrics.items())
    logits = df.assign(score=np.log(df["score"].clip(1e-9, 1 - 1e-9) / (1 - df["score"].clip(1e-9, 1 - 1e-9))))
    via_logit = streamed(logits, score_kind="logit")
    direct = streamed(df.assign(score=expit(logits["score"].to_numpy())))
    assert (via_logit.overall()["conf"] == direct.overall()["conf"]).all()


def test_nulls_and_label_values_are_counted_not_aggregated():
    df = decision_log(1_000)
    df["y"] = df["y"].astype(str).astype(object)  # text labels: '1' is the positive one
    df.loc[[0, 1], "y"] = None
    df.loc[2, "score"] = np.nan
    df.loc[3, "y"] = "maybe"
    agg = streamed(df)
    assert agg.rows == 1_000 and agg.nulls["y"] == 2 and agg.nulls["score"] == 1
    assert agg.label_values["maybe"] == 1 and sum(agg.label_values.values()) == 998
    assert agg.overall()["conf"].sum() == 997  # null label/score rows left out; 'maybe' counts as negative


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.assign(score=d["score"] * 3), "scores outside [0, 1] (e.g. 2."),
        (lambda d: d.assign(sex=[f"id{i}" for i in range(len(d))]), "column 'sex': more than 50 distinct values"),
    ],
)
def test_refusals_name_the_column(change, message):
    with pytest.raises(DataError, match=None) as err:
        streamed(change(decision_log(2_000)), max_levels=50)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_too_many_cells_is_refused():
    with pytest.raises(DataError, match="more than 8 combinations"):
        streamed(decision_log(2_000), max_cells=8)
