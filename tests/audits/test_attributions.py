"""Attributions by sensitive group (audits/attributions.py): the marginal attribution of an
additive model is its interventional SHAP value, an ignored feature gets exactly 0, a planted
group interaction is the top difference, multiclass reads the predicted class, the sample is
bounded, string and categorical columns are permuted whole."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from impactflow.audits.attributions import (
    ATTRIBUTION_THRESHOLDS,
    FRAME_KEY,
    MIN_GROUP_ROWS,
    attribution_audit,
    marginal_attributions,
)
from impactflow.audits.inputs import AuditInputs
from impactflow.audits.results import Status


def _inputs(frame, predict, sensitive, task="binary", **given):
    n = len(frame)
    score = np.zeros((n, 3)) if task == "multiclass" else np.zeros(n)
    y = np.zeros(n, int)
    return AuditInputs(y, score, sensitive, task=task, extra={FRAME_KEY: {"frame": frame, "predict": predict, **given}})


def _linear(n: int = 300, seed: int = 0):
    rng = np.random.default_rng(seed)
    group = np.repeat(["a", "b"], n // 2)
    x0 = rng.normal(0, 1, n) + np.where(group == "b", 1.5, 0.0)  # b sits further from the mean
    x1 = rng.uniform(0, 3, n)
    return pd.DataFrame({"x0": x0, "x1": x1}), pd.DataFrame({"sex": group})


def test_an_additive_model_gets_its_interventional_shap_value():
    frame, _ = _linear()
    g = {"x0": np.square, "x1": np.sin}  # f(x) = x0^2 + sin(x1)

    def predict(X):
        return g["x0"](X["x0"].to_numpy()) + g["x1"](X["x1"].to_numpy())

    rows, attr = marginal_attributions(frame, predict, task="rating", repeats=400, seed=1)
    assert rows.tolist() == list(range(len(frame)))  # under sample_size: every row, in order
    for j, c in enumerate(frame.columns):
        shap = g[c](frame[c].to_numpy()) - g[c](frame[c].to_numpy()).mean()  # g_j(x_j) - E[g_j]
        spread = g[c](frame[c].to_numpy()).std()
        assert np.abs(attr[:, j] - shap).max() < 5 * spread / np.sqrt(400)  # permutation noise only


def test_a_linear_model_by_group_is_w_times_the_mean_distance_from_the_mean():
    frame, sensitive = _linear()
    w = {"x0": 2.0, "x1": -1.0}
    res = attribution_audit(
        _inputs(frame, lambda X: 2.0 * X["x0"].to_numpy() - 1.0 * X["x1"].to_numpy(), sensitive),
        {"repeats": 400},
    )
    groups = sensitive["sex"].to_numpy()
    for c in frame.columns:
        mu = frame[c].mean()
        for grp in ("a", "b"):
            expected = abs(w[c]) * np.abs(frame[c][groups == grp] - mu).mean()  # |w_j| mean|x_j - mu_j|
            assert res.details["by_group"]["sex"][grp][c] == pytest.approx(expected, rel=0.05)
        assert res.details["overall"][c] == pytest.approx(abs(w[c]) * np.abs(frame[c] - mu).mean(), rel=0.05)
    top = res.details["differences"]["sex"][0]
    assert top["feature"] == "x0" and top["max_group"] == "b" and top["min_group"] == "a"
    assert top["gap"] == pytest.approx(top["max"] - top["min"])
    assert res.metrics["attributions/max_gap/sex"] == top["gap"]
    assert res.details["sample_size"] == 300 and res.details["repeats"] == 400
    assert res.metrics["attributions/sample_size"] == 300.0
    assert "interventional SHAP" in res.details["method"] and "P(y = 1)" in res.details["method"]
    json.dumps(res.to_dict())  # JSON-able as the report stores it


def test_a_feature_the_model_ignores_gets_exactly_zero():
    frame, sensitive = _linear(100)
    frame["noise"] = np.random.default_rng(3).normal(size=100)
    _, attr = marginal_attributions(frame, lambda X: np.tanh(X["x0"].to_numpy()) + 0.1 * X["x1"].to_numpy())
    assert (attr[:, 2] == 0.0).all() and (attr[:, 0] != 0.0).any()
    res = attribution_audit(_inputs(frame, lambda X: 0.3 * X["x0"].to_numpy(), sensitive), {})
    assert res.details["overall"]["noise"] == 0.0 and res.details["overall"]["x1"] == 0.0
    assert res.details["by_group"]["sex"]["a"]["noise"] == 0.0


def test_a_planted_interaction_is_the_top_difference_and_names_the_groups():
    rng = np.random.default_rng(4)
    n = 400
    g = rng.integers(0, 2, n)
    frame = pd.DataFrame({"x0": rng.normal(size=n), "x1": rng.normal(size=n), "x2": rng.normal(size=n), "g": g})
    sensitive = pd.DataFrame({"grp": np.where(g == 1, "B", "A")})

    def predict(X):  # x2 matters only for group B's rows
        return X["x0"].to_numpy() + 0.5 * X["x1"].to_numpy() + 3.0 * X["x2"].to_numpy() * X["g"].to_numpy()

    res = attribution_audit(_inputs(frame, predict, sensitive, columns=["x0", "x1", "x2"]), {"top": 2})
    diffs = res.details["differences"]["grp"]
    assert len(diffs) == 2 and diffs[0]["feature"] == "x2"
    assert (diffs[0]["max_group"], diffs[0]["min_group"]) == ("B", "A")
    assert diffs[0]["min"] == 0.0  # A's rows: changing x2 changes nothing
    assert diffs[0]["gap"] > 5 * diffs[1]["gap"]
    assert set(res.details["overall"]) == {"x0", "x1", "x2"}  # only the columns asked for
    assert res.metrics["attributions/max_gap/grp"] == diffs[0]["gap"]
    assert res.status is Status.NOT_MEASURED and not res.gates  # no gate: overall_status([]), as proxies
    assert "x2" in res.notes[1] and "B" in res.notes[1]


def test_multiclass_reads_the_probability_of_the_class_predicted_on_the_unperturbed_row():
    n = 400
    x = np.tile([0, 1], n // 2)
    frame = pd.DataFrame({"x": x})
    table = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]])  # x = 0 -> class 0; x = 1 -> class 2

    def predict(X):
        return table[X["x"].to_numpy()]

    res = attribution_audit(_inputs(frame, predict, pd.DataFrame({"x": x}), task="multiclass"), {"repeats": 50})
    by = res.details["by_group"]["x"]
    # x = 0: 0.7 - (0.7 / 2 + 0.1 / 2) = 0.3 (P(class 0)); x = 1: 0.6 - (0.6 / 2 + 0.1 / 2) = 0.25 (P(class 2))
    assert by["0"]["x"] == pytest.approx(0.3, rel=0.05) and by["1"]["x"] == pytest.approx(0.25, rel=0.05)
    # the same as a rating model whose output is the fixed class's probability, permutation for permutation
    cls = table[x].argmax(axis=1)
    _, multi = marginal_attributions(frame, predict, task="multiclass", repeats=7, seed=9)
    _, fixed = marginal_attributions(frame, lambda X: predict(X)[np.arange(n), cls], task="rating", repeats=7, seed=9)
    np.testing.assert_array_equal(multi, fixed)
    with pytest.raises(ValueError, match=r"multiclass predict must return \(400, K\)"):
        marginal_attributions(frame, lambda X: X["x"].to_numpy(), task="multiclass")


def test_not_measured_skipped_and_bad_settings():
    frame, sensitive = _linear(60)
    plain = AuditInputs(np.zeros(60, int), np.zeros(60), sensitive)
    res = attribution_audit(plain, {})
    assert res.status is Status.NOT_MEASURED and "not computed" in res.notes[0]
    why = "the model's input is one column (text); per-column attributions are not computed"
    given = AuditInputs(np.zeros(60, int), np.zeros(60), sensitive, extra={FRAME_KEY: {"reason": why}})
    res = attribution_audit(given, {})
    assert res.status is Status.NOT_MEASURED and res.notes == [why]
    res = attribution_audit(_inputs(frame, lambda X: X["x0"].to_numpy(), sensitive, columns=[]), {})
    assert res.status is Status.NOT_MEASURED and res.notes == ["no feature columns to attribute"]
    res = attribution_audit(_inputs(frame[[]], lambda X: np.zeros(len(X)), sensitive), {})
    assert res.status is Status.NOT_MEASURED
    res = attribution_audit(_inputs(frame, lambda X: X["x0"].to_numpy(), sensitive[[]]), {})
    assert res.status is Status.SKIPPED and res.notes == ["no sensitive attribute declared"]
    for key in ("sample_size", "repeats"):
        with pytest.raises(ValueError, match=f"^attributions: {key} must be at least 1, got 0$"):
            attribution_audit(_inputs(frame, lambda X: X["x0"].to_numpy(), sensitive), {key: 0})
        with pytest.raises(ValueError, match=f"{key} must be at least 1"):
            marginal_attributions(frame, lambda X: X["x0"].to_numpy(), **{key: 0})
    assert all(not t.is_gate for t in ATTRIBUTION_THRESHOLDS.values())
    assert ATTRIBUTION_THRESHOLDS["sample_size"].problem(0) and ATTRIBUTION_THRESHOLDS["repeats"].problem(0)


def test_the_sample_is_bounded():
    rng = np.random.default_rng(5)
    n = 10_000
    frame = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n)})
    sizes: list[int] = []

    def predict(X):
        sizes.append(len(X))
        return X["a"].to_numpy() - X["b"].to_numpy()

    res = attribution_audit(
        _inputs(frame, predict, pd.DataFrame({"s": rng.choice(["u", "v"], n)})), {"sample_size": 500}
    )
    assert max(sizes) <= 500 and len(sizes) == 1 + 5 * 2
    assert res.details["sample_size"] == 500 and res.metrics["attributions/sample_size"] == 500.0
    assert res.notes[0].startswith("500 of 10000 test rows")


def test_string_and_categorical_columns_are_permuted_whole():
    rng = np.random.default_rng(6)
    n = 400
    color = rng.permutation(np.repeat(["red", "blue", "green", "blue"], n // 4))  # a quarter red
    size = pd.Categorical(rng.choice(["S", "L"], n), categories=["S", "L"])
    frame = pd.DataFrame({"color": color, "size": size, "x": rng.normal(size=n)})

    def predict(X):
        assert X["color"].dtype == object or pd.api.types.is_string_dtype(X["color"])
        assert isinstance(X["size"].dtype, pd.CategoricalDtype)  # the dtype a pipeline expects is kept
        return 2.0 * (X["color"] == "red").to_numpy() + (X["size"] == "L").to_numpy() + 0.0 * X["x"].to_numpy()

    res = attribution_audit(_inputs(frame, predict, pd.DataFrame({"s": rng.choice(["u", "v"], n)})), {"repeats": 100})
    # red rows: 2 (1 - 1/4); the others: 2 / 4; mean over rows 4 q (1 - q) = 0.75
    assert res.details["overall"]["color"] == pytest.approx(0.75, rel=0.05)
    q = (size == "L").mean()
    assert res.details["overall"]["size"] == pytest.approx(2 * q * (1 - q), rel=0.05)
    assert res.details["overall"]["x"] == 0.0


def test_missing_values_are_a_group_and_small_groups_are_left_out():
    rng = np.random.default_rng(7)
    n = 200
    frame = pd.DataFrame({"x": rng.normal(size=n)})
    race = pd.Series(["p"] * 120 + [None] * 60 + ["q"] * (MIN_GROUP_ROWS - 10), dtype=object)
    res = attribution_audit(_inputs(frame, lambda X: X["x"].to_numpy(), pd.DataFrame({"race": race})), {})
    assert set(res.details["by_group"]["race"]) == {"p", "(missing)"}
    assert res.details["small_groups"] == {"race": ["q"]}
    assert any("1 group(s) under 30" in note for note in res.notes)
    one = attribution_audit(_inputs(frame, lambda X: X["x"].to_numpy(), pd.DataFrame({"k": ["z"] * n})), {})
    assert one.details["differences"] == {"k": []} and one.metrics["attributions/max_gap/k"] is None
