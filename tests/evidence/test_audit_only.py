"""The audit-only flow on a predictions table: the group metrics equal fairlearn's, computed
independently here; the report is signed and verifies; bad tables fail with clear errors."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest

from impactflow.audits import evidence as ev

pytestmark = pytest.mark.e2e


def _statement(run_dir: str) -> dict:
    import base64

    envelope = json.loads(open(os.path.join(run_dir, ev.MANIFEST_NAME), "rb").read())
    return json.loads(base64.b64decode(envelope["payload"]))


def _predictions_table(n: int = 8000) -> pd.DataFrame:
    """Adult rows with a deterministic scoring rule (a stand-in for someone else's model)."""
    from impactflow.data_contracts import get_contract, load_dataset

    df = load_dataset(get_contract("adult")).sample(n=n, random_state=0).reset_index(drop=True)
    z = (df["education-num"] - 10) / 2.0 + (df["hours-per-week"] - 40) / 15.0 + (df["age"] - 38) / 20.0
    return pd.DataFrame(
        {
            "income": df["income"],
            "sex": df["sex"],
            "race": df["race"],
            "score": 1.0 / (1.0 + np.exp(-z)),
        }
    )


@pytest.fixture(scope="module")
def scored(prefect_api, tmp_path_factory):
    out = tmp_path_factory.mktemp("audit_only")
    table = _predictions_table()
    path = out / "scores.csv"
    table.to_csv(path, index=False)
    uri = f"sqlite:///{out / 'mlflow.db'}"
    os.environ["MLFLOW_TRACKING_URI"] = uri
    try:
        from impactflow.flows.audit_only import run_audit_only

        summary = run_audit_only(
            data=str(path),
            label="income",
            score="score",
            sensitive=["sex", "race"],
            positive_label=">50K",
            threshold=0.5,
            output_dir=str(out / "runs"),
        )
    finally:
        del os.environ["MLFLOW_TRACKING_URI"]
    return out, table, uri, summary


def test_group_metrics_equal_fairlearns(scored):
    from fairlearn.metrics import (
        MetricFrame,
        demographic_parity_difference,
        equalized_odds_difference,
        false_positive_rate,
        selection_rate,
        true_positive_rate,
    )

    _, table, _, summary = scored
    report = json.loads(open(summary["report"]["json"]).read())
    fairness = report["models"][0]["audits"]["fairness"]
    y = (table["income"] == ">50K").astype(int).to_numpy()
    y_pred = (table["score"].to_numpy() >= 0.5).astype(int)
    suppressed: set = set()
    for attr in ("sex", "race"):
        mf = MetricFrame(
            metrics={
                "selection_rate": selection_rate,
                "true_positive_rate": true_positive_rate,
                "false_positive_rate": false_positive_rate,
            },
            y_true=y,
            y_pred=y_pred,
            sensitive_features=table[attr],
        )
        rows = {r["group"]: r for r in fairness["by_group"] if r["attribute"] == attr}
        assert set(rows) == set(mf.by_group.index)
        for group, expected in mf.by_group.iterrows():
            for metric in ("selection_rate", "true_positive_rate", "false_positive_rate"):
                if rows[group][metric] is None:  # disclosure control: a rate beside a blanked count
                    assert None in [rows[group][k] for k in ("tp", "fp", "tn", "fn")], (attr, group, metric)
                    suppressed.add((attr, group))
                    continue
                assert rows[group][metric] == pytest.approx(expected[metric], abs=1e-12), (attr, group, metric)
        assert all(not r["too_small"] for r in rows.values())  # gates use every group here
        assert fairness["metrics"][f"fairness/{attr}/demographic_parity_difference"] == pytest.approx(
            demographic_parity_difference(y, y_pred, sensitive_features=table[attr]), abs=1e-12
        )
        assert fairness["metrics"][f"fairness/{attr}/equalized_odds_difference"] == pytest.approx(
            equalized_odds_difference(y, y_pred, sensitive_features=table[attr]), abs=1e-12
        )
    # only race rows are blanked: two small groups hold a count under disclosure.min_cell_size (10),
    # and one more row loses a count as complementary suppression; both sex rows are compared
    assert {a for a, _ in suppressed} == {"race"} and len(suppressed) <= 3, suppressed


def test_calibration_by_group_equals_sklearn_brier_and_auc(scored):
    from sklearn.metrics import brier_score_loss, roc_auc_score

    _, table, _, summary = scored
    report = json.loads(open(summary["report"]["json"]).read())
    cal = report["models"][0]["audits"]["calibration_by_group"]
    y = (table["income"] == ">50K").astype(int)
    briers = {}
    for r in (r for r in cal["by_group"] if r["attribute"] == "sex"):
        m = table["sex"] == r["group"]
        briers[r["group"]] = brier_score_loss(y[m], table["score"][m])
        assert r["brier"] == pytest.approx(briers[r["group"]], abs=1e-12)
        assert r["roc_auc"] == pytest.approx(roc_auc_score(y[m], table["score"][m]), abs=1e-12)
        assert r["base_rate"] == pytest.approx(y[m].mean())
    assert cal["metrics"]["calibration/sex/brier_gap"] == pytest.approx(max(briers.values()) - min(briers.values()))
    perf = report["models"][0]["audits"]["performance"]["metrics"]
    assert perf["eval/roc_auc"] == pytest.approx(roc_auc_score(y, table["score"]), abs=1e-12)


def test_audit_only_report_is_signed_tracked_and_verifies(scored):
    from mlflow import MlflowClient

    out, _, uri, summary = scored
    res = ev.verify(summary["run_dir"], trust=ev.trusted_keys())  # signed with this session's own key
    assert res.ok, res.problems
    assert res.models == []  # an external model: nothing logged to hash
    statement = _statement(summary["run_dir"])
    assert "contract/expectations.json" in statement["predicate"]["files"]
    assert statement["predicate"]["summary"]["status"] == summary["status"]
    run = MlflowClient(uri).get_run(summary["parent_run_id"])
    assert run.data.tags["impactflow.flow"] == "audit-only"
    assert run.data.tags["impactflow.manifest_sha256"] == summary["manifest_sha256"]
    assert run.info.status == "FINISHED"
    assert run.data.metrics["fairness/sex/demographic_parity_difference"] == pytest.approx(
        summary["metrics"]["fairness/sex/demographic_parity_difference"]
    )
    report = json.loads(open(summary["report"]["json"]).read())
    assert report["integrity"]["signer_key_id"] == res.key_id
    assert report["data"]["contract_result"]["success"] is True


def test_cli_audit_with_hard_predictions_and_bad_tables(cli, tmp_path):
    table = _predictions_table(4000)
    table["pred"] = np.where(table["score"] >= 0.5, ">50K", "<=50K")
    good = tmp_path / "preds.csv"
    table.drop(columns=["score"]).to_csv(good, index=False)
    r = cli(
        "audit",
        "--data",
        str(good),
        "--label",
        "income",
        "--prediction",
        "pred",
        "--sensitive",
        "sex",
        "--positive-label",
        ">50K",
        "--output-dir",
        str(tmp_path / "runs"),
        "--gate",
        "fairness.max_demographic_parity_difference=1.0",
        "--gate",
        "fairness.max_equalized_odds_difference=1.0",
        "--gate",
        "fairness.four_fifths_ratio=0.0",
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "report verify" in r.stdout

    bad = table.drop(columns=["pred"]).assign(score=table["score"].where(table.index != 5, 1.7))
    bad_path = tmp_path / "bad.csv"
    bad.to_csv(bad_path, index=False)
    r = cli(
        "audit",
        "--data",
        str(bad_path),
        "--label",
        "income",
        "--score",
        "score",
        "--sensitive",
        "sex,color",
        "--positive-label",
        ">50K",
        "--output-dir",
        str(tmp_path / "runs"),
    )
    assert r.returncode == 1 and "missing column(s) 'color'" in r.stderr, r.stderr
    r = cli(
        "audit",
        "--data",
        str(bad_path),
        "--label",
        "income",
        "--score",
        "score",
        "--sensitive",
        "sex",
        "--positive-label",
        ">50K",
        "--output-dir",
        str(tmp_path / "runs"),
    )
    assert r.returncode == 1
    assert "expect_column_values_to_be_between on column 'score'" in r.stderr and "1.7" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr + r.stdout
