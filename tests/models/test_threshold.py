"""Decision threshold (issue 21, item 5): fixed, or chosen from a cost matrix on the validation
split (never the test split), by hand on six rows.

    validation y     = 0    0    1    0    1    1
    validation score = 0.1  0.3  0.4  0.6  0.7  0.9

Costs FP 5 : FN 1 (German credit's 5:1), predicted 1 iff score >= t; total 5 x FP + 1 x FN:
t = 0 or 0.1: FP 3 -> 15; 0.3: FP 2 -> 10; 0.4: FP 1 -> 5; 0.6: FP 1 + FN 1 -> 6;
0.7: FN 1 -> 1 (the minimum); 0.9: FN 2 -> 2; above 0.9: FN 3 -> 3.
Costs 1 : 1: 0.4 and 0.7 both cost 1; the tie goes to the one nearer the Bayes threshold 0.5: 0.4.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from impactflow.models.base import Roles
from impactflow.models.data import Split
from impactflow.models.fit import FittedModel, _Predictor
from impactflow.models.threshold import apply_decision, bayes_threshold, choose_threshold, decision_record

Y = [0, 0, 1, 0, 1, 1]
S = [0.1, 0.3, 0.4, 0.6, 0.7, 0.9]


def test_cost_matrix_5_to_1_by_hand():
    out = choose_threshold(Y, S, 5.0, 1.0)
    assert out == {
        "threshold": 0.7,
        "cost": 1.0,
        "cost_per_row": pytest.approx(1 / 6),
        "fp": 0,
        "fn": 1,
        "n": 6,
        "bayes_threshold": pytest.approx(5 / 6),
    }


def test_ties_go_to_the_candidate_nearest_the_bayes_threshold():
    assert choose_threshold(Y, S, 1.0, 1.0)["threshold"] == 0.4
    assert bayes_threshold(1, 4) == 0.2


def test_everyone_negative_is_a_candidate():
    out = choose_threshold([0, 0, 1], [0.2, 0.5, 0.9], 100.0, 1.0)  # FP is very costly: predict 1 only at 0.9
    assert (out["threshold"], out["fp"], out["fn"]) == (0.9, 0, 0)
    out = choose_threshold([0, 0, 0], [0.2, 0.5, 0.9], 1.0, 1.0)  # no positive: predict nobody
    assert out["threshold"] > 0.9 and out["cost"] == 0


class _Scores(_Predictor):
    def __init__(self, roles):
        self.roles = roles

    def predict(self, df):
        return df["s"].to_numpy(dtype=float)


def _fitted_and_split(test_scores):
    roles = Roles(target="y", task="binary", features=("s",), labels=("yes", "no"), positive_label="yes")
    val = pd.DataFrame({"s": S, "y": ["yes" if v else "no" for v in Y]})
    # a test split whose own best threshold differs (0.2): the choice must not read it
    test = pd.DataFrame({"s": test_scores, "y": ["no", "yes", "yes", "yes"]})
    split = Split(train=val.iloc[:0], validation=val, test=test)
    fitted = FittedModel(
        name="m",
        family="tabular",
        task="binary",
        kind="torch",
        description="",
        predictor=_Scores(roles),
        params={},
        training={"dp": {"enabled": False}},
        y_test=np.array([0, 1, 1, 1]),
        test_output=np.asarray(test_scores),
        member_loss=np.zeros(0),
        nonmember_loss=np.zeros(0),
    )
    return fitted, split, roles


def test_apply_decision_chooses_on_validation_and_records_it():
    fitted, split, roles = _fitted_and_split([0.1, 0.2, 0.3, 0.35])
    out = apply_decision(
        fitted, split, roles, {"threshold": None, "costs": {"false_positive": 5, "false_negative": 1}}, private=False
    )
    d = out.training["decision"]
    assert d["threshold"] == 0.7 and d["method"] == "min cost on the validation split"
    assert (d["validation_fp"], d["validation_fn"], d["validation_cost"], d["validation_n"]) == (0, 1, 1.0, 6)
    assert out.predictor.threshold == 0.7
    assert out.predictor.predict_frame(split.test)["label"].tolist() == [0, 0, 0, 0]


def test_fixed_default_and_private_thresholds():
    fitted, split, roles = _fitted_and_split([0.1, 0.2, 0.3, 0.35])
    assert (
        apply_decision(fitted, split, roles, {"threshold": 0.3, "costs": None}, private=False).training["decision"][
            "text"
        ]
        == "fixed at 0.3 (model.threshold)"
    )
    assert fitted.predictor.threshold == 0.3
    assert apply_decision(fitted, split, roles, None, private=False).training["decision"]["method"] == "default"
    # under DP the threshold comes from the costs alone: validation rows are not read
    d = decision_record({"costs": {"false_positive": 5, "false_negative": 1}}, private=True)
    assert d["threshold"] == pytest.approx(5 / 6) and "not fitted on rows" in d["method"]
    dp = {
        "enabled": True,
        "covers": "… and the decision threshold (fixed at 0.5) are data-independent",
        "preprocessing": {"decision": "data-independent: fixed threshold 0.5 on P(positive) (not fitted)"},
    }
    fitted.training = {"dp": dp}
    out = apply_decision(fitted, split, roles, {"threshold": 0.25}, private=True)
    assert "(fixed at 0.25)" in out.training["dp"]["covers"]
    assert out.training["dp"]["preprocessing"]["decision"].startswith("data-independent: fixed threshold 0.25")


def test_config_keys():
    from impactflow.errors import ConfigError
    from impactflow.flows.config import load_config

    cfg = load_config(None, ["model.costs.false_positive=5", "model.costs.false_negative=1"])
    assert cfg.model.costs.false_positive == 5 and cfg.model.threshold is None
    assert load_config(None, ["model.threshold=0.3"]).model.threshold == 0.3
    with pytest.raises(ConfigError, match="model.threshold and model.costs: give one"):
        load_config(None, ["model.threshold=0.3", "model.costs.false_positive=5", "model.costs.false_negative=1"])
    with pytest.raises(ConfigError, match="model.threshold"):
        load_config(None, ["model.threshold=1.5"])


@pytest.mark.e2e
def test_a_run_with_costs_chooses_and_reports_its_threshold(cli, tmp_path):
    """`impactflow run` with German credit's 5:1 (on Adult, 4,000 rows): every binary model's threshold is
    chosen on the validation split and reported (JSON: training.decision, performance.decision_thresholds;
    the audits' prediction convention), and the audits cut the test scores there."""
    import json

    sets = [
        "data.sample=4000",
        "model.params.epochs=1",
        "model.baselines=[logreg]",
        "train.device=cpu",
        "model.costs.false_positive=5",
        "model.costs.false_negative=1",
        f"tracking.output_dir={tmp_path / 'o'}",
    ]
    r = cli("run", *[a for s in sets for a in ("--set", s)], uri=f"sqlite:///{tmp_path / 'm.db'}")
    assert r.returncode in (0, 3), r.stdout + r.stderr
    (path,) = (tmp_path / "o").glob("runs/*/reports/impact_report.json")
    report = json.loads(path.read_text())
    rows = {d["model"]: d for d in report["performance"]["decision_thresholds"]}
    assert set(rows) == {"mlp", "logreg"}
    for m in report["models"]:
        d = m["training"]["decision"]
        assert d == {k: v for k, v in rows[m["name"]].items() if k != "model"}
        assert (
            d["method"] == "min cost on the validation split"
            and d["validation_n"] == report["data"]["splits"]["validation"]
        )
        assert d["cost_false_positive"] == 5 and d["bayes_threshold"] == pytest.approx(5 / 6)
        conv = m["audits"]["fairness"]["details"]["conventions"]["prediction"]
        assert conv.startswith(f"predicted label = 1 iff score >= {d['threshold']}") and "validation split" in conv
        md = path.with_suffix(".md").read_text()
        assert f"score >= {d['threshold']}" in md
