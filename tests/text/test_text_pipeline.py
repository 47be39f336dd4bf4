"""End-to-end runs of the text presets through the real flow (real Prefect server, MLflow SQLite)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from impactflow.flows.config import load_config

pytestmark = pytest.mark.e2e


def _run(preset, out, overrides=()):
    from impactflow.flows.pipeline import run_pipeline

    return run_pipeline(load_config(preset, [f"tracking.output_dir={out}", "train.device=cpu", *overrides]))


def test_text_preset_end_to_end(prefect_api, mlflow_uri, tmp_path):
    summary = _run("text", tmp_path)
    m = summary["models"]["transformer"]["metrics"]
    assert m["eval/accuracy"] >= 0.97  # acceptance: SMS spam test accuracy
    assert 0.8 <= m["eval/f1"] <= 1.0  # spam-class F1 is reported
    assert 0.0 <= m["fairness/identity/max_flip_rate"] <= 1.0
    assert "fairness/identity/fped" in m and "fairness/identity/gay/counterfactual_score_shift" in m
    assert summary["models"]["tfidf_logreg"]["metrics"]["eval/accuracy"] >= 0.95

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_uri)
    child = client.get_run(summary["models"]["transformer"]["mlflow_run_id"])
    assert child.data.metrics["fairness/identity/muslim/counterfactual_flip_rate"] >= 0.0
    report = json.loads(Path(summary["report"]["json"]).read_text())
    transformer = next(x for x in report["models"] if x["name"] == "transformer")
    identity = transformer["audits"]["identity"]
    assert len(identity["by_group"]) == 50 and identity["details"]["bar_charts"]
    assert report["data"]["n_rows"] == 5171  # de-duplicated before the split
    html = Path(summary["report"]["html"]).read_text()
    assert "Counterfactual flip rate per identity term" in html and "data:image/png;base64" in html
    # the logged model scores raw text
    import mlflow
    import pandas as pd

    model = mlflow.pyfunc.load_model(f"runs:/{child.info.run_id}/model")
    out = model.predict(
        pd.DataFrame({"message": ["WINNER!! Claim your free prize, call 09061701461 now", "ok see you at home later"]})
    )
    assert out["label"].tolist() == [1, 0]


def test_toxicity_preset_reports_bias_aucs_per_identity(prefect_api, mlflow_uri, tmp_path):
    summary = _run(
        "toxicity", tmp_path, ["model.params.epochs=1", "gates.identity.counterfactual_sample=50", "model.baselines=[]"]
    )
    m = summary["models"]["transformer"]["metrics"]
    for term in ("gay", "muslim", "black"):
        for k in ("subgroup_auc", "bpsn_auc", "bnsp_auc"):
            assert 0.0 <= m[f"fairness/identity/{term}/{k}"] <= 1.0
    final = m["fairness/identity/final_bias_score"]
    assert 0.0 <= final <= 1.0
    assert "fairness/identity/text_fuzzed_auc" in m
    from mlflow import MlflowClient

    child = MlflowClient(tracking_uri=mlflow_uri).get_run(summary["models"]["transformer"]["mlflow_run_id"])
    assert child.data.metrics["fairness/identity/final_bias_score"] == pytest.approx(final)
    assert child.data.metrics["fairness/identity/gay/bpsn_auc"] == pytest.approx(m["fairness/identity/gay/bpsn_auc"])
