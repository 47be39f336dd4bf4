"""Champion vs challenger (audits/champion.py): McNemar and the paired bootstrap checked by hand,
the re-scored metrics checked against the audits, sklearn and fairlearn, and the decision rule."""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pandas as pd
import pytest

from impactflow.audits.champion import Outputs, compare_models, mcnemar, rescorable
from impactflow.audits.fairness import fairness_audit
from impactflow.audits.groups import group_robustness_audit, multiclass_performance_audit
from impactflow.audits.inputs import AuditInputs
from impactflow.audits.performance import performance_audit
from impactflow.audits.recommender import recommendation_audit, user_group_audit

Z95 = NormalDist().inv_cdf(0.95)  # alpha 0.05 -> a two-sided 90 % interval


def _gate(name: str, comparison: str = "<=", threshold: float = 0.5, value: float | None = None) -> dict:
    return {"name": name, "comparison": comparison, "threshold": threshold, "value": value}


def _row(result: dict, gate: str) -> dict:
    (row,) = [r for r in result["rows"] if r["gate"] == gate]
    return row


def _gates_of(*results) -> list[dict]:
    return [_gate(g.name, g.comparison, g.threshold, g.value) for r in results for g in r.gates]


# --------------------------------------------------------------------------- McNemar by hand


def _mcnemar_rows(worse: int, better: int, both: int, neither: int):
    """Binary rows: ``worse`` only the champion gets right, ``better`` only the challenger,
    ``both`` both, ``neither`` none (y = 1 everywhere; a wrong prediction is 0)."""
    n = worse + better + both + neither
    y = np.ones(n, dtype=int)
    champ = np.array([1] * worse + [0] * better + [1] * both + [0] * neither)
    chall = np.array([0] * worse + [1] * better + [1] * both + [0] * neither)
    return y, champ, chall


def test_mcnemar_exact_p_and_wald_ci_by_hand():
    # 10 rows only the champion gets right, 2 only the challenger, 20 both, 8 neither (n = 40)
    y, champ, chall = _mcnemar_rows(10, 2, 20, 8)
    out = compare_models(
        "binary", y, Outputs(label=champ), Outputs(label=chall), {}, [_gate("performance/accuracy", ">=", 0.5)]
    )
    row = _row(out, "performance/accuracy")
    assert row["method"] == "McNemar"
    assert row["champion"] == pytest.approx(30 / 40) and row["challenger"] == pytest.approx(22 / 40)
    assert row["difference"] == pytest.approx(-8 / 40)
    assert row["regression"] == pytest.approx((10 - 2) / 40)
    # H0: each of the 12 discordant rows goes either way with 1/2; p = P(X >= 10), X ~ Bin(12, 1/2)
    p = sum(math.comb(12, k) for k in range(10, 13)) / 2**12  # (66 + 12 + 1) / 4096
    assert p == pytest.approx(79 / 4096)
    assert row["p"] == pytest.approx(p, rel=1e-12)
    # Wald for paired proportions: var = (b + c - (b - c)^2 / n) / n^2 = (12 - 64/40) / 1600
    se = math.sqrt((12 - 64 / 40) / 40**2)
    assert row["ci"] == pytest.approx([0.2 - Z95 * se, 0.2 + Z95 * se], rel=1e-12)
    assert row["significantly_worse"] and row["blocks"]
    assert out["decision"] == "hold"
    (reason,) = out["reasons"]
    assert reason.startswith("performance/accuracy is significantly worse") and "tolerance 0" in reason
    assert "wrong on 10 rows" in reason and "right on 2" in reason


def test_mcnemar_the_other_way_round_is_no_regression():
    y, champ, chall = _mcnemar_rows(2, 10, 20, 8)  # the challenger is the better one
    out = compare_models(
        "binary", y, Outputs(label=champ), Outputs(label=chall), {}, [_gate("eval/accuracy", ">=", 0.5)]
    )
    row = _row(out, "eval/accuracy")
    assert row["p"] == pytest.approx(sum(math.comb(12, k) for k in range(2, 13)) / 2**12)
    assert row["regression"] == pytest.approx(-0.2)
    assert not row["significantly_worse"] and out["decision"] == "promote"


def test_mcnemar_with_a_tolerance_decides_by_the_interval():
    se = math.sqrt((12 - 64 / 40) / 40**2)
    lower = 0.2 - Z95 * se  # 0.0674
    strict = mcnemar(10, 2, 40, alpha=0.05, tolerance=0.05)
    assert strict["ci"][0] == pytest.approx(lower) and strict["significantly_worse"]  # 0.0674 > 0.05
    assert strict["p"] == pytest.approx(1 - NormalDist().cdf((0.2 - 0.05) / se))
    loose = mcnemar(10, 2, 40, alpha=0.05, tolerance=0.1)
    assert not loose["significantly_worse"]  # 0.0674 <= 0.1
    assert loose["p"] == pytest.approx(1 - NormalDist().cdf((0.2 - 0.1) / se))
    none = mcnemar(0, 0, 40)
    assert none["p"] == 1.0 and none["ci"] == [0.0, 0.0] and not none["significantly_worse"]


# --------------------------------------------------------------------------- metrics by hand


def test_demographic_parity_and_equalized_odds_by_hand():
    #          group a (4 rows)   group b (4 rows)
    y = np.array([1, 1, 0, 0, 1, 1, 0, 0])
    champ = np.array([1, 0, 1, 0, 1, 0, 0, 0])  # a: sel 2/4, TPR 1/2, FPR 1/2; b: sel 1/4, TPR 1/2, FPR 0
    chall = np.array([1, 1, 1, 0, 1, 0, 0, 0])  # a: sel 3/4, TPR 1, FPR 1/2;   b: sel 1/4, TPR 1/2, FPR 0
    groups = {"g": np.array(list("aaaabbbb"))}
    gates = [
        _gate("fairness/g/demographic_parity_difference", "<=", 0.1),
        _gate("fairness/g/equalized_odds_difference", "<=", 0.1),
        _gate("fairness/g/four_fifths_min_ratio", ">=", 0.8),
    ]
    out = compare_models(
        "binary", y, Outputs(label=champ), Outputs(label=chall), groups, gates, min_group_size=1, n_boot=50
    )
    dp = _row(out, "fairness/g/demographic_parity_difference")
    assert (dp["champion"], dp["challenger"]) == pytest.approx((0.25, 0.5))
    assert dp["regression"] == pytest.approx(0.25)  # '<=': challenger - champion
    eo = _row(out, "fairness/g/equalized_odds_difference")
    # champion: TPR gap 0, FPR gap 1/2 -> 1/2; challenger: TPR gap 1/2, FPR gap 1/2 -> 1/2
    assert (eo["champion"], eo["challenger"], eo["regression"]) == pytest.approx((0.5, 0.5, 0.0))
    ff = _row(out, "fairness/g/four_fifths_min_ratio")
    # champion (1/4)/(2/4) = 1/2, challenger (1/4)/(3/4) = 1/3; '>=': champion - challenger
    assert (ff["champion"], ff["challenger"], ff["regression"]) == pytest.approx((0.5, 1 / 3, 1 / 6))


def test_roc_auc_by_hand_with_ties():
    y = np.array([0, 0, 1, 1])
    champ = np.array([0.1, 0.4, 0.35, 0.8])  # pairs (pos > neg): .35>.1, .8>.1, .8>.4 -> 3/4
    chall = np.array([0.1, 0.5, 0.5, 0.9])  # .5>.1, .5=.5 (1/2), .9>.1, .9>.5 -> 3.5/4
    out = compare_models(
        "binary", y, Outputs(score=champ), Outputs(score=chall), {}, [_gate("eval/roc_auc", ">=")], n_boot=20
    )
    row = _row(out, "eval/roc_auc")
    assert (row["champion"], row["challenger"]) == pytest.approx((0.75, 0.875))
    assert row["regression"] == pytest.approx(-0.125)  # '>=': champion - challenger


def test_rmse_and_mae_by_hand():
    y = np.array([1.0, 2.0, 3.0, 4.0])
    champ = np.array([1.0, 2.0, 3.0, 5.0])  # errors 0 0 0 1: RMSE sqrt(1/4), MAE 1/4
    chall = np.array([1.0, 3.0, 4.0, 4.0])  # errors 0 1 1 0: RMSE sqrt(2/4), MAE 2/4
    gates = [_gate("eval/rmse", "<=", 1.0), _gate("recommendation/mae", "<=", 1.0)]
    out = compare_models("rating", y, Outputs(rating=champ), Outputs(rating=chall), {}, gates, n_boot=20)
    rmse = _row(out, "eval/rmse")
    assert (rmse["champion"], rmse["challenger"]) == pytest.approx((0.5, math.sqrt(0.5)))
    assert rmse["regression"] == pytest.approx(math.sqrt(0.5) - 0.5)
    assert _row(out, "recommendation/mae")["regression"] == pytest.approx(0.25)


def test_worst_group_gap_by_hand():
    # 3 classes; colour groups r (4 rows) and s (4 rows)
    y = np.array([0, 1, 2, 0, 1, 2, 0, 1])
    color = np.array(list("rrrrssss"))
    champ = np.array([0, 1, 2, 0, 1, 0, 0, 0])  # r 4/4, s 2/4; overall 6/8 -> gap 0.75 - 0.5 = 0.25
    chall = np.array([0, 1, 2, 1, 1, 2, 0, 0])  # r 3/4, s 3/4; overall 6/8 -> gap 0
    gates = [
        _gate("groups/color/worst_group_gap", "<=", 0.1),
        _gate("groups/color/worst_group_accuracy", ">=", 0.5),
        _gate("groups/color/accuracy_difference", "<=", 0.1),
    ]
    out = compare_models(
        "multiclass",
        y,
        Outputs(label=champ),
        Outputs(label=chall),
        {"color": color},
        gates,
        min_group_size=1,
        n_boot=20,
    )
    gap = _row(out, "groups/color/worst_group_gap")
    assert (gap["champion"], gap["challenger"], gap["regression"]) == pytest.approx((0.25, 0.0, -0.25))
    worst = _row(out, "groups/color/worst_group_accuracy")
    assert (worst["champion"], worst["challenger"], worst["regression"]) == pytest.approx((0.5, 0.75, -0.25))
    diff = _row(out, "groups/color/accuracy_difference")
    assert (diff["champion"], diff["challenger"]) == pytest.approx((0.5, 0.0))


# --------------------------------------------------------------------------- equal to the audits / sklearn / fairlearn


def _binary_sample(n: int = 2000, seed: int = 7):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    sex = rng.choice(["F", "M"], n, p=[0.35, 0.65]).astype(object)
    race = rng.choice(["w", "b", "a", "o"], n, p=[0.8, 0.12, 0.06, 0.02]).astype(object)
    sex[:5] = None  # a missing value becomes the group "(missing)" (too small: not judged)
    scores = [np.clip(0.45 * y + rng.normal(0.27, s, n), 0, 1) for s in (0.22, 0.3)]
    return y, pd.DataFrame({"sex": sex, "race": race}), scores


@pytest.mark.parametrize("favourable", [1, 0])
def test_binary_values_equal_the_audits_sklearn_and_fairlearn(favourable):
    from fairlearn.metrics import demographic_parity_difference, equalized_odds_difference
    from sklearn.metrics import accuracy_score, roc_auc_score

    y, sens, scores = _binary_sample()
    extra = {"favourable_prediction": favourable}
    audited = []
    for s in scores:
        inputs = AuditInputs(y, s, sens, extra=extra)
        perf = performance_audit(inputs, {"min_accuracy": 0.5, "min_roc_auc": 0.5, "max_ece": 0.5})
        fair = fairness_audit(inputs, {"n_boot": 0})
        audited.append(_gates_of(perf, fair))
    names = [g["name"] for g in audited[1]]
    assert "fairness/sex_x_race/four_fifths_min_ratio" in names and "eval/ece" in names
    out = compare_models(
        "binary",
        y,
        Outputs(label=(scores[0] >= 0.5).astype(int), score=scores[0]),
        Outputs(label=(scores[1] >= 0.5).astype(int), score=scores[1]),
        {c: sens[c].to_numpy() for c in sens},
        audited[1],
        favourable=favourable,
        n_boot=50,
    )
    for champ_gate, chall_gate, row in zip(audited[0], audited[1], out["rows"]):
        assert row["gate"] == champ_gate["name"] == chall_gate["name"]
        assert row["champion"] == pytest.approx(champ_gate["value"], abs=1e-12), row["gate"]
        assert row["challenger"] == pytest.approx(chall_gate["value"], abs=1e-12), row["gate"]
        assert "differs from the re-scored" not in row["note"]
    # sklearn on the overall metrics
    for m, s in enumerate(scores):
        who = "champion" if m == 0 else "challenger"
        assert _row(out, "eval/roc_auc")[who] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
        assert _row(out, "eval/accuracy")[who] == pytest.approx(accuracy_score(y, s >= 0.5), abs=1e-12)
    # fairlearn on race, whose groups are all judged (n >= 30): favourable only flips the rates
    for m, s in enumerate(scores):
        who = "champion" if m == 0 else "challenger"
        pred = (s >= 0.5).astype(int)
        race = sens["race"]
        dp = demographic_parity_difference(y, pred, sensitive_features=race)
        eo = equalized_odds_difference(y, pred, sensitive_features=race)
        assert _row(out, "fairness/race/demographic_parity_difference")[who] == pytest.approx(dp, abs=1e-12)
        assert _row(out, "fairness/race/equalized_odds_difference")[who] == pytest.approx(eo, abs=1e-12)


def test_multiclass_values_equal_the_audits_and_sklearn():
    from sklearn.metrics import balanced_accuracy_score, f1_score

    rng = np.random.default_rng(3)
    n, k = 2000, 4
    classes = ["cat", "dog", "eel", "fox"]
    y = rng.integers(0, k, n)
    y[:3] = 3  # keep every class present
    color = rng.choice(["red", "blue"], n, p=[0.7, 0.3])
    probs = []
    for noise in (1.0, 1.3):
        logits = rng.normal(0, noise, (n, k))
        logits[np.arange(n), y] += 1.4
        e = np.exp(logits)
        probs.append(e / e.sum(axis=1, keepdims=True))
    audited = []
    for p in probs:
        inputs = AuditInputs(y, p, pd.DataFrame({"color": color}), task="multiclass", labels=tuple(classes))
        perf = multiclass_performance_audit(
            inputs, {"min_accuracy": 0.1, "min_balanced_accuracy": 0.1, "min_macro_f1": 0.1, "max_ece": 0.9}
        )
        rob = group_robustness_audit(
            inputs,
            {
                "max_worst_group_gap": 0.5,
                "min_worst_group_accuracy": 0.1,
                "max_accuracy_difference": 0.9,
                "intersections": [["class", "color"]],
            },
        )
        audited.append(_gates_of(perf, rob))
    names = np.asarray(classes)
    out = compare_models(
        "multiclass",
        names[y],
        Outputs(label=names[probs[0].argmax(axis=1)], probs=probs[0]),
        Outputs(label=names[probs[1].argmax(axis=1)], probs=probs[1]),
        {"color": color},
        audited[1],
        classes=classes,
        n_boot=50,
    )
    assert {r["gate"] for r in out["rows"]} >= {"eval/macro_f1", "groups/class_x_color/worst_group_gap"}
    for champ_gate, chall_gate, row in zip(audited[0], audited[1], out["rows"]):
        assert row["champion"] == pytest.approx(champ_gate["value"], abs=1e-12), row["gate"]
        assert row["challenger"] == pytest.approx(chall_gate["value"], abs=1e-12), row["gate"]
    pred = probs[1].argmax(axis=1)
    assert _row(out, "eval/balanced_accuracy")["challenger"] == pytest.approx(balanced_accuracy_score(y, pred))
    assert _row(out, "eval/macro_f1")["challenger"] == pytest.approx(f1_score(y, pred, average="macro"))


def test_rating_values_equal_the_audits_and_sklearn():
    from sklearn.metrics import mean_absolute_error, mean_squared_error

    rng = np.random.default_rng(5)
    n = 2000
    y = rng.integers(1, 6, n).astype(float)
    gender = rng.choice(["F", "M"], n)
    ratings = [y + rng.normal(0, 0.9, n), y + rng.normal(0.1, 1.0, n)]
    audited = []
    for r in ratings:
        inputs = AuditInputs(y, r, pd.DataFrame({"gender": gender}), task="rating", extra={"test_users": np.arange(n)})
        audited.append(
            _gates_of(
                recommendation_audit(inputs, {"max_rmse": 2, "max_mae": 2}),
                user_group_audit(inputs, {"max_rmse_gap": 1}),
            )
        )
    assert [g["name"] for g in audited[1]] == ["eval/rmse", "eval/mae", "fairness/gender/rmse_gap"]
    out = compare_models(
        "rating", y, Outputs(rating=ratings[0]), Outputs(rating=ratings[1]), {"gender": gender}, audited[1], n_boot=50
    )
    for champ_gate, row in zip(audited[0], out["rows"]):
        assert row["champion"] == pytest.approx(champ_gate["value"], abs=1e-12), row["gate"]
    assert _row(out, "eval/rmse")["challenger"] == pytest.approx(math.sqrt(mean_squared_error(y, ratings[1])))
    assert _row(out, "eval/mae")["challenger"] == pytest.approx(mean_absolute_error(y, ratings[1]))
    # groups are judged by rows here, by ranked users in the audit: said, and overridable
    assert "judges groups by ranked users" in _row(out, "fairness/gender/rmse_gap")["note"]
    given = compare_models(
        "rating", y, Outputs(rating=ratings[0]), Outputs(rating=ratings[1]), {"gender": gender}, audited[1][2:],
        judged_groups={"gender": ["F", "M"]}, n_boot=50,
    )  # fmt: skip
    row = _row(given, "fairness/gender/rmse_gap")
    assert row["champion"] == pytest.approx(audited[0][2]["value"]) and "ranked users" not in row["note"]


# --------------------------------------------------------------------------- the bootstrap and the decision


@pytest.fixture(scope="module")
def binary_case():
    y, sens, scores = _binary_sample(n=3000, seed=11)
    label = (scores[0] >= 0.5).astype(int)
    groups = {"sex": sens["sex"].to_numpy(), "race": sens["race"].to_numpy()}
    gates = [
        _gate("performance/accuracy", ">=", 0.7),
        _gate("performance/roc_auc", ">=", 0.7),
        _gate("performance/ece", "<=", 0.2),
        _gate("fairness/sex/demographic_parity_difference", "<=", 0.1),
        _gate("fairness/race/equalized_odds_difference", "<=", 0.2),
        _gate("fairness/sex_x_race/four_fifths_min_ratio", ">=", 0.8),
    ]
    return y, label, scores[0], groups, gates


def test_an_identical_challenger_has_zero_regression_and_is_promoted(binary_case):
    y, label, score, groups, gates = binary_case
    model = Outputs(label=label, score=score)
    out = compare_models("binary", y, model, Outputs(label=label.copy(), score=score.copy()), groups, gates, n_boot=200)
    assert out["decision"] == "promote"
    assert out["reasons"][0].startswith("no gated metric of the challenger is significantly worse")
    for row in out["rows"]:
        assert row["regression"] == 0.0 and row["ci"] == [0.0, 0.0], row["gate"]
        assert row["p"] == 1.0 and not row["significantly_worse"] and not row["blocks"]
    assert {r["method"] for r in out["rows"]} == {"McNemar", "paired bootstrap"}


def _flip_correct(y: np.ndarray, label: np.ndarray, share: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    correct = np.flatnonzero(label == y)
    flip = rng.choice(correct, int(share * correct.size), replace=False)
    out = label.copy()
    out[flip] = 1 - out[flip]
    return out


def test_flipping_a_tenth_of_the_correct_predictions_holds(binary_case):
    y, label, score, groups, gates = binary_case
    worse = _flip_correct(y, label, 0.10)
    true_regression = ((label == y).sum() - (worse == y).sum()) / y.size
    out = compare_models("binary", y, Outputs(label=label), Outputs(label=worse), groups, gates[:1])
    row = _row(out, "performance/accuracy")
    assert row["regression"] == pytest.approx(true_regression) and row["ci"][0] > 0
    assert row["significantly_worse"] and out["decision"] == "hold"
    # the same regression within a tolerance larger than it: promoted
    out = compare_models("binary", y, Outputs(label=label), Outputs(label=worse), groups, gates[:1], max_regression=0.2)
    assert out["decision"] == "promote" and not _row(out, "performance/accuracy")["significantly_worse"]


def test_the_bootstrap_flags_a_worse_auc_and_a_tolerance_admits_it(binary_case):
    y, label, score, groups, gates = binary_case
    rng = np.random.default_rng(1)
    noisy = np.clip(score + rng.normal(0, 0.25, score.size), 0, 1)  # loses ranking quality
    auc = [_gate("performance/roc_auc", ">=", 0.7)]
    out = compare_models("binary", y, Outputs(score=score), Outputs(score=noisy), groups, auc)
    row = _row(out, "performance/roc_auc")
    assert row["method"] == "paired bootstrap" and row["n_valid"] == 1000
    lo, hi = row["ci"]
    assert 0 < lo < row["regression"] < hi and row["significantly_worse"]
    assert row["p"] < 0.05 and out["decision"] == "hold"
    assert "performance/roc_auc is significantly worse" in out["reasons"][0]
    out = compare_models("binary", y, Outputs(score=score), Outputs(score=noisy), groups, auc, max_regression=hi + 0.01)
    # p = share of resampled regressions <= tolerance: evidence of "worse beyond it" would be a small p
    assert out["decision"] == "promote" and _row(out, "performance/roc_auc")["p"] > 0.95


def test_the_seed_makes_it_deterministic(binary_case):
    y, label, score, groups, gates = binary_case
    noise = np.random.default_rng(2).normal(0, 0.05, score.size)
    other = Outputs(label=_flip_correct(y, label, 0.02), score=np.clip(score + noise, 0, 1))
    args = ("binary", y, Outputs(label=label, score=score), other, groups, gates)
    a = compare_models(*args, n_boot=200, seed=3)
    b = compare_models(*args, n_boot=200, seed=3)
    c = compare_models(*args, n_boot=200, seed=4)
    assert a["rows"] == b["rows"] and a["decision"] == b["decision"]
    assert _row(a, "performance/roc_auc")["ci"] != _row(c, "performance/roc_auc")["ci"]


def test_a_gate_that_is_not_rescorable_never_blocks(binary_case):
    y, label, score, groups, _ = binary_case
    names = ["privacy/mia_auc", "privacy/epsilon", "fairness/identity/gay/bpsn_auc", "lira/tpr_at_fpr", "whatever"]
    gates = [_gate(n, "<=", 0.6, value=0.9) for n in names]  # audited values that would fail their gates
    model = Outputs(label=label, score=score)
    out = compare_models("binary", y, model, model, groups, gates)
    assert out["decision"] == "promote"
    for row in out["rows"]:
        assert row["method"] == "not re-scorable" and not row["blocks"] and row["challenger"] == 0.9
        assert "property of training" in row["note"]
    assert [rescorable(n) for n in names] == [False] * len(names)
    assert all(
        rescorable(n)
        for n in [
            "performance/accuracy",
            "eval/roc_auc",
            "groups/macro_f1",
            "fairness/sex_x_race/equalized_odds_difference",
            "groups/class/worst_group_gap",
            "fairness/gender/rmse_gap",
            "user_groups/gender/rmse_gap",
            "recommendation/rmse",
        ]
    )
    assert not rescorable("fairness/race/n_groups_judged") and not rescorable("recommendation/ndcg_at_10")


def test_a_gate_that_cannot_be_measured_holds():
    # 2 positives in 20 rows: a resample has none with probability (18/20)^20 = 12 %, so fewer
    # than 90 % of the resamples can compute an AUC
    y = np.zeros(20, dtype=int)
    y[[3, 11]] = 1
    score = np.linspace(0.05, 0.95, 20)
    out = compare_models(
        "binary", y, Outputs(score=score), Outputs(score=score[::-1].copy()), {}, [_gate("eval/roc_auc", ">=")]
    )
    row = _row(out, "eval/roc_auc")
    assert not row["measured"] and row["blocks"] and 800 < row["n_valid"] < 900
    assert out["decision"] == "hold"
    assert (
        out["reasons"][0].startswith("eval/roc_auc: not measured: only") and "holds the promotion" in out["reasons"][0]
    )


def test_a_metric_undefined_on_these_rows_or_for_this_task_holds():
    y = np.array([0, 1] * 20)
    label = y.copy()
    only_one_judged = {"sex": np.array(["F"] * 35 + ["M"] * 5)}  # M is below min_group_size 30
    gates = [_gate("fairness/sex/demographic_parity_difference", "<=", 0.1)]
    out = compare_models("binary", y, Outputs(label=label), Outputs(label=label), only_one_judged, gates)
    row = _row(out, "fairness/sex/demographic_parity_difference")
    assert not row["measured"] and row["blocks"] and "cannot be computed" in row["note"]
    assert out["decision"] == "hold"
    out = compare_models(
        "rating", y.astype(float), Outputs(rating=y * 1.0), Outputs(rating=y * 1.0), {}, [_gate("eval/roc_auc", ">=")]
    )
    assert out["decision"] == "hold" and "not defined for a rating model" in out["rows"][0]["note"]


def test_tolerance_by_gate_name_last_segment_and_default(binary_case):
    y, label, score, groups, gates = binary_case
    tolerances = {
        "performance/accuracy": 0.03,
        "roc_auc": 0.02,
        "default": 0.01,
        "never_used": 1.0,
    }
    out = compare_models(
        "binary", y, Outputs(label=label, score=score), Outputs(label=label, score=score), groups, gates,
        max_regression=tolerances, n_boot=20,
    )  # fmt: skip
    tol = {r["gate"]: r["tolerance"] for r in out["rows"]}
    assert tol["performance/accuracy"] == 0.03 and tol["performance/roc_auc"] == 0.02
    assert tol["performance/ece"] == 0.01 and tol["fairness/sex_x_race/four_fifths_min_ratio"] == 0.01
    assert out["method"]["unused_tolerance_keys"] == ["never_used"]
    out = compare_models("binary", y, Outputs(label=label), Outputs(label=label), groups, gates[:1], max_regression={})
    assert out["rows"][0]["tolerance"] == 0.0


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (dict(task="ternary"), "task 'ternary' is not one of"),
        (dict(y=np.array([0, 1, 1])), "champion.label has 4 rows but y has 3"),
        (dict(champion=Outputs(label=np.array([0, 1, 1, 0]))), r"champion.score \(needed by eval/roc_auc\)"),
        (dict(groups={}), "needs the group column 'sex'"),
        (dict(groups={"sex": np.array(["F", "M"])}), r"groups\['sex'\] has 2 rows but y has 4"),
        (dict(max_regression=-0.1), "must be a finite number >= 0"),
        (dict(max_regression={"default": float("nan")}), "must be a finite number >= 0"),
        (dict(gates=[_gate("eval/accuracy", "==")]), "comparison must be '<=' or '>='"),
        (dict(gates=["eval/accuracy"]), "each gate must be a dict"),
        (dict(alpha=0.7), "alpha must be in"),
        (dict(n_boot=0), "n_boot must be a positive integer"),
        (dict(champion=Outputs(label=np.array([0, 1, 2, 0]), score=np.ones(4) / 2)), "more than two values"),
        (dict(positive="yes"), "positive label 'yes' occurs in neither"),
        (dict(champion=Outputs(label=np.array([0, 1, 1, 0]), score=np.array([0.1, np.nan, 1, 0]))), "NaN"),
    ],
)
def test_bad_input_raises_one_clear_line(call, message):
    model = Outputs(label=np.array([0, 1, 1, 0]), score=np.array([0.2, 0.8, 0.6, 0.4]))
    args = {
        "task": "binary",
        "y": np.array([0, 1, 0, 0]),
        "champion": model,
        "challenger": model,
        "groups": {"sex": np.array(list("FMFM"))},
        "gates": [_gate("eval/roc_auc", ">="), _gate("fairness/sex/demographic_parity_difference")],
        **call,
    }
    with pytest.raises(ValueError, match=message) as info:
        compare_models(**args)
    assert "\n" not in str(info.value)


def test_multiclass_input_errors():
    y = np.array(["a", "b", "c"])
    probs = np.eye(3)
    gate = [_gate("eval/accuracy", ">=")]
    with pytest.raises(ValueError, match="give classes="):
        compare_models("multiclass", y, Outputs(probs=probs), Outputs(probs=probs), {}, gate)
    with pytest.raises(ValueError, match="y has a value not in classes: 'c'"):
        compare_models("multiclass", y, Outputs(probs=probs), Outputs(probs=probs), {}, gate, classes=["a", "b", "x"])
    with pytest.raises(ValueError, match="different numbers of columns"):
        compare_models("multiclass", y, Outputs(probs=probs), Outputs(probs=probs[:, :2]), {}, gate, classes="abc")
    with pytest.raises(ValueError, match=r"multiclass outputs missing: challenger.probs/label"):
        compare_models("multiclass", y, Outputs(probs=probs), Outputs(), {}, gate, classes="abc")
    out = compare_models("multiclass", y, Outputs(probs=probs), Outputs(probs=probs), {}, gate, classes="abc")
    assert out["decision"] == "promote" and out["rows"][0]["champion"] == 1.0
