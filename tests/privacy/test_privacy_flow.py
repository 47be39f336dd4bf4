"""The pipeline runs LiRA reference models and the canary run, and the findings reach the
report and MLflow (real Prefect server, real MLflow SQLite store, a small Adult sample)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from impactflow.flows.config import load_config

pytestmark = pytest.mark.e2e


def test_dp_run_reports_epsilon_next_to_empirical_lower_bounds(prefect_api, mlflow_uri, tmp_path):
    from mlflow import MlflowClient

    from impactflow.flows.pipeline import run_pipeline

    cfg = load_config(
        "tabular-dp",
        [
            f"tracking.output_dir={tmp_path}",
            "train.device=cpu",
            "data.sample=8000",
            "model.baselines=[]",
            "model.params.epochs=1",
            "model.params.hidden_sizes=[16]",
            "tracking.register_models=false",
            "privacy_audit.reference_models=2",
            "privacy_audit.audit_members=100",
            "privacy_audit.canaries=60",
        ],
    )
    summary = run_pipeline(cfg)
    metrics = summary["models"]["mlp-dp"]["metrics"]
    eps = summary["models"]["mlp-dp"]["dp"]["epsilon"]
    assert metrics["privacy/epsilon"] == pytest.approx(eps)
    assert 0 <= metrics["privacy/epsilon_lower_bound"] <= eps
    assert metrics["privacy/lira_reference_models"] == 2 and 0 <= metrics["privacy/lira_auc"] <= 1
    assert metrics["privacy/canaries"] == 60 and metrics["privacy/canary_guesses"] == 24

    child = MlflowClient(tracking_uri=mlflow_uri).get_run(summary["models"]["mlp-dp"]["mlflow_run_id"])
    for key in ("privacy/epsilon", "privacy/epsilon_lower_bound", "privacy/lira_auc", "privacy/lira_tpr_at_1pct_fpr"):
        assert child.data.metrics[key] == pytest.approx(metrics[key])

    # what the epsilon covers (issue 20, defect 2): the run's own facts, in one sentence
    dp = summary["models"]["mlp-dp"]["dp"]
    assert dp["covers"].startswith(f"(ε = {eps:.3g}, δ = 1e-05) covers the model weights")
    assert "declared in contract 'adult'" in dp["covers"] and "fixed at 0.5" in dp["covers"]
    assert "canary model and 2 LiRA reference models" in dp["covers"] and "baseline" not in dp["covers"]
    assert set(dp["preprocessing"]) == {"categories", "numeric_scaling", "decision"}
    # the logged model's encoder holds the contract's declared sets, not the sample's categories
    import mlflow

    from impactflow.data_contracts import get_contract
    from impactflow.data_contracts.domains import declared_domains

    logged = mlflow.pyfunc.load_model(f"runs:/{child.info.run_id}/model").unwrap_python_model()
    pre = logged.predictor.preprocessor
    declared = declared_domains(get_contract("adult"))
    assert pre.categories == {c: tuple(str(v) for v in declared.categories[c]) for c in pre.categorical}
    assert not hasattr(pre, "transformer")  # no fitted scikit-learn encoder/scaler in the artifact

    report = json.loads(Path(summary["report"]["json"]).read_text())
    audits = report["models"][0]["audits"]
    assert audits["privacy_canary"]["status"] == "pass"
    assert {r["attribute"] for r in audits["privacy_lira"]["by_group"]} >= {"sex"}
    assert not any("LiRA with shadow models" in s for s in report["not_measured"])
    md = Path(summary["report"]["md"]).read_text()
    assert "privacy/epsilon_lower_bound" in md and "Privacy lira" in md
