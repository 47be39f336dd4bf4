"""Pipeline level: two tiny DP runs on the same Adult sample against a budget; the second is
refused before training (no model registered, the message names the numbers), the first's
report and MLflow run carry the ledger totals and the k-anonymity of the quasi-identifiers.
Each DP run trains two models on the data — the candidate and the one-run canary-audit model
(privacy_audit.canaries defaults to 500 on DP runs) — and the ledger counts both."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from impactflow.flows.config import load_config
from impactflow.tasks.ledger_store import BudgetExceeded, Ledger, ledger_url

pytestmark = pytest.mark.e2e

DP = [
    "data.sample=5000",
    "train.device=cpu",
    "model.params.epochs=1",
    "model.baselines=[]",
    "privacy.enabled=true",
    "privacy.target_epsilon=1",
    "privacy.budget_epsilon=2.5",
]


def _run(out: Path, *overrides: str):
    from impactflow.flows.pipeline import run_pipeline

    return run_pipeline(load_config("tabular", [f"tracking.output_dir={out}", *DP, *overrides]))


def test_second_dp_run_over_budget_is_refused_before_training(prefect_api, mlflow_uri, tmp_path, monkeypatch):
    monkeypatch.delenv("IMPACTFLOW_LEDGER_URL", raising=False)
    from mlflow import MlflowClient

    first = _run(tmp_path)
    eps = first["models"]["mlp-dp"]["dp"]["epsilon"]
    assert 0 < eps <= 1.0 + 1e-6
    ledger = Ledger(ledger_url(tmp_path))
    entries = ledger.entries()
    ledger.close()
    assert [e["model"] for e in entries] == ["mlp-dp", "mlp-dp-canary-audit"]
    assert entries[0]["epsilon"] == pytest.approx(eps) and 0 < entries[1]["epsilon"] <= 1.0 + 1e-6
    assert all(e["status"] != "reserved" for e in entries)  # both finalised with the accountant's epsilon
    spent = entries[0]["epsilon"] + entries[1]["epsilon"]
    report = json.loads(Path(first["report"]["json"]).read_text())
    budget = report["data"]["privacy_budget"]
    assert budget["entries"] == 2 and budget["epsilon_spent"] == pytest.approx(spent)
    assert budget["budget_epsilon"] == 2.5 and budget["remaining_epsilon"] == pytest.approx(2.5 - spent)
    anon = report["data"]["anonymity"]
    assert anon["quasi_identifiers"] == ["age", "sex", "race", "native-country"] and anon["k"] >= 1
    client = MlflowClient(tracking_uri=mlflow_uri)
    metrics = client.get_run(first["parent_run_id"]).data.metrics
    assert metrics["privacy/budget_spent"] == pytest.approx(spent)
    assert metrics["privacy/budget_remaining"] == pytest.approx(2.5 - spent)
    assert metrics["data/k_anonymity"] == anon["k"]
    versions = len(client.search_model_versions())

    with pytest.raises(BudgetExceeded) as err:
        _run(tmp_path)
    msg = str(err.value)
    assert f"spent epsilon={spent:.6g}" in msg and "needs epsilon=2" in msg and "budget epsilon=2.5" in msg
    assert len(client.search_model_versions()) == versions  # nothing trained, nothing registered
    runs = client.search_runs([client.get_experiment_by_name("impactflow-tabular").experiment_id])
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId")]
    assert [r.info.run_id for r in children] == first["child_run_ids"]  # no model run of the refused run
    ledger = Ledger(ledger_url(tmp_path))
    assert len(ledger.entries()) == 2  # the refused run left nothing
    ledger.close()

    # a budgeted run that would also train a non-private baseline is refused, naming it
    with pytest.raises(BudgetExceeded, match="non-private models .*baseline-logreg"):
        _run(tmp_path, "model.baselines=[logreg]", "privacy.budget_epsilon=10")
