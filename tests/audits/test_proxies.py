"""Proxy detection (audits/proxies.py): a planted proxy is named, noise is not, the score's AUC
by hand, and on UCI Adult `relationship` carries sex when sex is left out of the features."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from impactflow.audits.inputs import AuditInputs
from impactflow.audits.proxies import proxy_audit, proxy_strength, score_auc
from impactflow.audits.results import Status


def _data(n: int = 2000, seed: int = 0):
    rng = np.random.default_rng(seed)
    sex = rng.choice(["F", "M"], n)
    flip = rng.random(n) < 0.05
    role = np.where((sex == "M") ^ flip, "Husband", "Wife")  # a proxy, 95 % faithful
    features = pd.DataFrame({"role": role, "hours": rng.integers(10, 80, n), "city": rng.choice(["a", "b", "c"], n)})
    return features, pd.DataFrame({"sex": sex, "race": rng.choice(["x", "y", "z"], n)})


def test_the_score_auc_by_hand():
    # b's scores (0.35, 0.8) above a's (0.1, 0.4) in 3 of 4 pairs: AUC 0.75; a's folds to 0.75
    assert score_auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array(["a", "a", "b", "b"])) == 0.75
    assert score_auc(np.array([0.5, 0.5]), np.array(["a", "b"])) == 0.5


def test_a_planted_proxy_is_named_and_noise_is_not():
    features, sensitive = _data()
    found = proxy_strength(features, sensitive, sample_size=1500)
    sex, race = found["attributes"]["sex"], found["attributes"]["race"]
    assert found["rows"] == 1500 and found["of"] == 2000
    assert sex["proxy_auc"] > 0.9 and sex["proxies"][0]["feature"] == "role" and sex["proxies"][0]["auc"] > 0.9
    assert sex["proxies"][0]["mutual_information"] > 10 * sex["proxies"][1]["mutual_information"]
    assert 0.4 < race["proxy_auc"] < 0.6  # race is independent of every feature here


def test_the_audit_gates_only_when_asked_and_reads_the_score():
    features, sensitive = _data(600, 1)
    y = (sensitive["sex"] == "M").astype(int).to_numpy()
    score = np.clip(0.2 + 0.6 * y + np.random.default_rng(2).normal(0, 0.05, y.size), 0, 1)
    inputs = AuditInputs(y, score, sensitive, extra={"proxy_frame": features})
    res = proxy_audit(inputs, {})
    assert res.status is Status.NOT_MEASURED and not res.gates
    assert res.metrics["proxies/sex/score_auc"] > 0.99  # the score separates the sexes
    assert res.metrics["proxies/proxy_auc"] == res.metrics["proxies/sex/proxy_auc"] > 0.9
    gated = proxy_audit(inputs, {"max_proxy_auc": 0.8})
    assert gated.status is Status.FAIL
    assert {g.name: g.status for g in gated.gates}["proxies/sex/proxy_auc"] is Status.FAIL


@pytest.mark.e2e  # real data: the whole of UCI Adult, cross-validated fits
def test_on_adult_relationship_carries_sex_when_sex_is_excluded():
    from impactflow.data_contracts import load_dataset
    from impactflow.tasks.spec import RunSpec

    spec = RunSpec("adult", "tabular", exclude_sensitive=True)
    df = load_dataset(spec.contract)
    assert "sex" not in spec.roles.features and "relationship" in spec.roles.features
    found = proxy_strength(df[list(spec.roles.features)], df[["sex"]], sample_size=4000)
    sex = found["attributes"]["sex"]
    assert sex["proxies"][0]["feature"] == "relationship", sex["proxies"]
    assert sex["proxy_auc"] > 0.9


def test_bad_input_is_refused_with_a_clear_message():
    features, sensitive = _data(100)
    with pytest.raises(ValueError, match="no model features"):
        proxy_strength(features[[]], sensitive)
    with pytest.raises(ValueError, match="sample_size must be at least 1"):
        proxy_strength(features, sensitive, sample_size=0)
    res = proxy_audit(AuditInputs(np.zeros(100, int), np.zeros(100), sensitive), {})
    assert res.status is Status.NOT_MEASURED and res.notes == ["no model features to test as proxies"]


def test_features_are_encoded_once_by_hand():
    from impactflow.audits.proxies import MIN_CATEGORY_ROWS, encode

    k = MIN_CATEGORY_ROWS
    cats = ["a"] * k + ["b"] * (k - 1) + [None] * k  # b is rare: pooled
    frame = pd.DataFrame({"x": [1.0, np.nan, 3.0] + [2.0] * (len(cats) - 3), "c": cats})
    X, columns = encode(frame)
    assert columns == {"x": [0], "c": [1, 2, 3]}  # "(missing)", "(rare)", "a": sorted names
    x = np.array([1.0, 2.0, 3.0] + [2.0] * (len(cats) - 3))  # the NaN takes the median, 2
    np.testing.assert_allclose(X[:, 0], (x - x.mean()) / x.std())
    np.testing.assert_array_equal(X[:, 1:].sum(axis=1), 1.0)  # one category per row
    assert X[:k, 3].all() and X[k : 2 * k - 1, 2].all() and X[2 * k - 1 :, 1].all()
