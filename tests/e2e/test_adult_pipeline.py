"""End-to-end runs of the real flow on the shipped UCI Adult data (real Prefect server,
real MLflow SQLite store). These are the acceptance checks of the spine."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from impactflow.errors import ContractViolation
from impactflow.flows.config import load_config

pytestmark = pytest.mark.e2e


def _client(uri):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


@pytest.fixture(scope="module")
def default_run(prefect_api, tmp_path_factory):
    """The default preset on all 48,842 rows, run once for the module."""
    import os

    out = tmp_path_factory.mktemp("default_run")
    uri = f"sqlite:///{out / 'mlflow.db'}"
    os.environ["MLFLOW_TRACKING_URI"] = uri
    try:
        from impactflow.flows.pipeline import run_pipeline

        cfg = load_config("tabular", [f"tracking.output_dir={out}", "train.device=cpu"])
        summary = run_pipeline(cfg)
    finally:
        del os.environ["MLFLOW_TRACKING_URI"]
    return cfg, summary, uri


def test_mlp_reaches_the_accuracy_bar(default_run):
    _, summary, _ = default_run
    assert summary["models"]["mlp"]["metrics"]["eval/accuracy"] >= 0.84
    assert summary["models"]["logreg"]["metrics"]["eval/accuracy"] >= 0.83


def test_parent_and_child_runs_with_metrics_and_reports_in_mlflow(default_run):
    _, summary, uri = default_run
    client = _client(uri)
    parent = client.get_run(summary["parent_run_id"])
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["impactflow.gates"] == ("passed" if summary["status"] == "pass" else "failed")
    assert len(parent.data.tags["impactflow.dataset_sha256"]) == 64
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id, "reports")}
    assert artifacts == {"reports/impact_report.json", "reports/impact_report.md", "reports/impact_report.html"}
    assert client.list_artifacts(parent.info.run_id, "data_docs"), "GX Data Docs not logged"
    datasets = parent.inputs.dataset_inputs
    assert len(datasets) == 1 and datasets[0].dataset.name == "adult"
    assert parent.data.tags["impactflow.dataset_sha256"].startswith(datasets[0].dataset.digest)
    children = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert {c.data.tags["mlflow.runName"] for c in children} == {"mlp", "logreg"}
    for child in children:
        assert child.info.status == "FINISHED"
        for name in (
            "eval/accuracy",
            "eval/roc_auc",
            "eval/ece",
            "fairness/sex/demographic_parity_difference",
            "fairness/sex/equalized_odds_difference",
            "fairness/race/demographic_parity_ratio",
            "fairness/sex_x_race/demographic_parity_difference",
            "privacy/mia_auc",
        ):
            assert name in child.data.metrics, name
        # MLflow 3 stores the model as a LoggedModel whose source is the child run
        logged = [
            m for m in client.search_logged_models([parent.info.experiment_id]) if m.source_run_id == child.info.run_id
        ]
        assert [m.name for m in logged] == ["model"], "model not logged"
        assert logged[0].status.name == "READY"
        # the model page shows the run's step-0 metrics (the audits), not the per-epoch history
        model_metrics = {m.key: m.value for m in client.get_logged_model(logged[0].model_id).metrics}
        step0 = {k for k in child.data.metrics if not k.startswith("train/") or k == "train/wall_time_s"}
        assert set(model_metrics) == step0
        assert all(model_metrics[k] == child.data.metrics[k] for k in step0)


def test_fairness_metrics_match_fairlearn_on_the_logged_model(default_run):
    """Independent recomputation: reload the logged model from MLflow, rebuild the seeded
    test split, and compute the group metrics with fairlearn directly."""
    import mlflow
    from fairlearn.metrics import demographic_parity_difference, equalized_odds_difference

    from impactflow.data_contracts import get_contract, load_dataset
    from impactflow.models.data import split_frame

    cfg, summary, uri = default_run
    contract = get_contract("adult")
    split = split_frame(
        load_dataset(contract),
        target=contract.target,
        stratify_on=list(contract.sensitive),
        validation=cfg.split.validation,
        test=cfg.split.test,
        seed=cfg.seed,
    )
    from impactflow.tasks.tracking import using_tracking_uri

    run_id = summary["models"]["mlp"]["mlflow_run_id"]
    with using_tracking_uri(uri):  # restores MLFLOW_TRACKING_URI: later tests must not inherit it
        pred = mlflow.pyfunc.load_model(f"runs:/{run_id}/model").predict(split.test)
    y = (split.test[contract.target] == contract.positive_label).astype(int).to_numpy()
    logged = _client(uri).get_run(run_id).data.metrics
    assert np.mean(pred["label"].to_numpy() == y) == pytest.approx(logged["eval/accuracy"], abs=1e-12)
    for attr in ("sex", "race"):
        dpd = demographic_parity_difference(y, pred["label"], sensitive_features=split.test[attr])
        eod = equalized_odds_difference(y, pred["label"], sensitive_features=split.test[attr])
        assert logged[f"fairness/{attr}/demographic_parity_difference"] == pytest.approx(dpd, abs=1e-9)
        assert logged[f"fairness/{attr}/equalized_odds_difference"] == pytest.approx(eod, abs=1e-9)


def test_report_json_keeps_group_confusion_counts_that_recompute_the_rates(default_run):
    _, summary, _ = default_run
    report = json.loads(Path(summary["report"]["json"]).read_text())
    assert report["schema_version"] == "2.0"
    assert report["summary"]["status"] == summary["status"]
    assert report["data"]["n_rows"] == 48842
    fairness = report["models"][0]["audits"]["fairness"]
    rows = [r for r in fairness["by_group"] if r["attribute"] == "sex"]
    assert {r["group"] for r in rows} == {"Female", "Male"}
    for r in rows:
        assert r["tp"] + r["fp"] + r["tn"] + r["fn"] == r["n"]
        assert r["selection_rate"] == pytest.approx((r["tp"] + r["fp"]) / r["n"])
        assert r["true_positive_rate"] == pytest.approx(r["tp"] / (r["tp"] + r["fn"]))
    html = Path(summary["report"]["html"]).read_text()
    assert "data:image/png;base64," in html and "<script src=" not in html


def test_dp_run_stays_within_epsilon_one_and_is_useful(prefect_api, tmp_path, mlflow_uri):
    from impactflow.flows.pipeline import run_pipeline

    cfg = load_config("tabular-dp", [f"tracking.output_dir={tmp_path}", "model.baselines=[]", "train.device=cpu"])
    summary = run_pipeline(cfg)
    model = summary["models"]["mlp-dp"]
    assert model["dp"]["enabled"] is True
    assert model["dp"]["epsilon"] <= 1.0
    assert model["metrics"]["privacy/epsilon"] <= 1.0
    assert model["metrics"]["eval/accuracy"] >= 0.80  # README states the measured value (~0.85)
    metrics = _client(mlflow_uri).get_run(model["mlflow_run_id"]).data.metrics
    assert metrics["privacy/epsilon"] == pytest.approx(model["dp"]["epsilon"])
    assert metrics["privacy/mia_advantage"] <= metrics["privacy/mia_advantage_bound"]


@pytest.mark.parametrize("column, value", [("age", 200), ("sex", "Robot")], ids=["range", "category"])
def test_contract_violation_fails_the_run_before_any_training(
    prefect_api, tmp_path, mlflow_uri, monkeypatch, column, value
):
    """The contract is validated before anything is trained: a violation ends the run, no model
    is trained (a training would fail this test), nothing trained is logged or registered, and
    the Data Docs are kept with the failed run."""
    from impactflow.data_contracts import get_contract, load_dataset
    from impactflow.flows.pipeline import run_pipeline
    from impactflow.models import fit

    def no_training(*args, **kwargs):
        raise AssertionError("a model was trained although the data failed its contract")

    monkeypatch.setattr(fit, "fit_family_model", no_training)
    monkeypatch.setattr(fit, "fit_baseline", no_training)
    df = load_dataset(get_contract("adult")).head(8000).copy()
    df.loc[5, column] = value
    bad = tmp_path / "adult_bad.csv"
    df.to_csv(bad, index=False)
    cfg = load_config("tabular", [f"data.path={bad}", f"tracking.output_dir={tmp_path}"])
    with pytest.raises(ContractViolation) as err:
        run_pipeline(cfg)
    assert any(f.column == column and f.unexpected_count == 1 for f in err.value.failures)
    assert repr(value) in str(err.value)
    assert err.value.__cause__ is None
    client = _client(mlflow_uri)
    runs = client.search_runs([client.get_experiment_by_name("impactflow-tabular").experiment_id])
    assert len(runs) == 1, "a child (model) run was created although validation failed"
    assert runs[0].info.status == "FAILED"
    assert runs[0].data.tags["impactflow.gates"] == "failed"
    assert client.list_artifacts(runs[0].info.run_id, "data_docs")
    assert not client.search_registered_models()


def test_default_run_validated_the_contract_before_training(default_run):
    """The default run's Prefect task runs: the contract validation finished before the first
    training task started, in this process (no forked validation)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    _, summary, _ = default_run
    report = json.loads(Path(summary["report"]["json"]).read_text())
    assert report["data"]["contract_result"]["success"]
    assert "concurrent" not in report["data"]["contract_result"]["statistics"]
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[report["run"]["flow_run_id"]])), limit=200
        )
    by_name = {}
    for tr in runs:
        by_name.setdefault(tr.name.rsplit("-", 1)[0], []).append(tr)
    [validation] = by_name["validate-data"]
    trainings = by_name["train-model"] + by_name["train-baseline"]
    assert validation.state.is_completed() and len(trainings) == 2
    assert all(validation.end_time <= t.start_time for t in trainings)


def test_prefect_has_the_summary_artifact_linking_the_mlflow_run(default_run):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    _, summary, _ = default_run
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["impactflow-summary"]))
        )
    texts = [a.data for a in artifacts if a.type == "markdown"]
    assert any(summary["parent_run_id"] in t and summary["mlflow_url"] in t for t in texts)


def test_only_the_flow_run_carries_the_owner_tag(default_run):
    """The flow run names its owner process (``impactflow reconcile`` reads it); its task runs
    carry no tag, so Prefect takes no tag concurrency slots around each of them."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from impactflow.tasks.reconcile import PREFECT_OWNER_PREFIX, prefect_owner_tag

    _, summary, _ = default_run
    report = json.loads(Path(summary["report"]["json"]).read_text(encoding="utf-8"))
    flow_run_id = report["run"]["flow_run_id"]
    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(flow_run_id)
        task_runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    assert [t for t in flow_run.tags if t.startswith(PREFECT_OWNER_PREFIX)] == [prefect_owner_tag()]
    assert len(task_runs) > 10
    assert [t.tags for t in task_runs if t.tags] == []


def test_dask_task_runner_trains_model_and_baseline_on_a_local_cluster(prefect_api, tmp_path, mlflow_uri):
    """orchestration.task_runner=dask: the model and its baselines are submitted to a local
    Dask cluster (2 worker processes) through prefect-dask and finish like a sequential run."""
    pytest.importorskip("prefect_dask")
    from impactflow.flows.pipeline import run_pipeline

    cfg = load_config(
        "tabular",
        [
            f"tracking.output_dir={tmp_path}",
            "data.sample=8000",
            "model.params.epochs=2",
            "model.baselines=[logreg, hist_gb]",
            "orchestration.task_runner=dask",
            "orchestration.dask_workers=2",
        ],
    )
    summary = run_pipeline(cfg)
    assert set(summary["models"]) == {"mlp", "logreg", "hist_gb"}
    for m in summary["models"].values():
        assert m["metrics"]["eval/accuracy"] > 0.8
    client = _client(mlflow_uri)
    children = client.search_runs(
        [client.get_experiment_by_name("impactflow-tabular").experiment_id],
        f"tags.mlflow.parentRunId = '{summary['parent_run_id']}'",
    )
    assert len(children) == 3 and all(c.info.status == "FINISHED" for c in children)


def test_two_runs_in_one_process_each_track_to_their_own_store(prefect_api, tmp_path, monkeypatch):
    """With no MLFLOW_TRACKING_URI, each run tracks to SQLite under its own output_dir (a
    process that runs several flows, like `impactflow serve`, must not leak the first store)."""
    from impactflow.flows.pipeline import run_pipeline

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    # the cheapest family's preset (the shipped synthetic ratings): where a run tracks does not
    # depend on the family
    fast = ["model.params.epochs=1", "model.baselines=[]", "train.device=cpu"]
    first = run_pipeline(load_config("recommender", [f"tracking.output_dir={tmp_path / 'a'}", *fast]))
    second = run_pipeline(load_config("recommender", [f"tracking.output_dir={tmp_path / 'b'}", *fast]))
    assert first["tracking_uri"] == f"sqlite:///{tmp_path / 'a' / 'mlflow.db'}"
    assert second["tracking_uri"] == f"sqlite:///{tmp_path / 'b' / 'mlflow.db'}"
    assert _client(second["tracking_uri"]).get_run(second["parent_run_id"]).info.status == "FINISHED"
    assert not (tmp_path / "mlflow.db").exists()
