"""End-to-end runs of the recommender family through the real flow (real Prefect server, MLflow
SQLite store): the offline synthetic default, MovieLens 100K from ../shared/datasets (skipped
with a reason when absent), and a DP run."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from impactflow.errors import ConfigError
from impactflow.flows.config import load_config
from tests.conftest import SHARED_DATASETS

pytestmark = pytest.mark.e2e
MOVIELENS = SHARED_DATASETS / "movielens-100k"


def _run(preset: str, out: Path, *overrides: str) -> dict:
    from impactflow.flows.pipeline import run_pipeline

    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{out / 'mlflow.db'}"
    try:
        cfg = load_config(preset, [f"tracking.output_dir={out}", "train.device=cpu", *overrides])
        return run_pipeline(cfg)
    finally:
        del os.environ["MLFLOW_TRACKING_URI"]


def _report(summary: dict) -> dict:
    return json.loads(Path(summary["report"]["json"]).read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def synthetic_run(prefect_api, tmp_path_factory):
    out = tmp_path_factory.mktemp("recommender_run")
    return _run("recommender", out), out


def test_synthetic_default_runs_offline_and_is_labelled_synthetic(synthetic_run):
    summary, _ = synthetic_run
    m = summary["models"]["recommender"]["metrics"]
    b = summary["models"]["bias"]["metrics"]
    assert m["eval/rmse"] < b["eval/rmse"] < 1.0  # MF learns the planted tastes beyond the biases
    assert m["eval/ndcg_at_10"] > m["eval/random/ndcg_at_10"]
    report = _report(summary)
    assert report["data"]["synthetic_groups"] == ["gender", "age_band"]
    notes = " ".join(report["models"][0]["audits"]["user_groups"]["notes"])
    assert "SYNTHETIC groups: gender, age_band" in notes
    # the expected performance/fairness audits are covered by the rating-task audits
    assert not any("performance" in s or "group fairness" in s for s in report["not_measured"])
    statuses = {k: a["status"] for k, a in report["models"][0]["audits"].items()}
    # a rating model has no confidence to defer on: the oversight audit says so instead of guessing
    assert statuses.pop("oversight") == "not-measured"
    # what the gates did not cover gates nothing here: measured (or skipped: the groups are synthetic)
    assert {statuses.pop(a) for a in ("slices", "proxies", "attributions")} <= {"not-measured", "skipped"}
    # the first run of its experiment: no earlier data to drift from (said, its gates skipped)
    assert statuses.pop("drift") == "skipped"
    assert set(statuses.values()) == {"pass"}
    html = Path(summary["report"]["html"]).read_text(encoding="utf-8")
    assert "Lorenz curve of item exposure" in html and "data:image/png;base64" in html


def test_synthetic_run_logs_models_and_metrics_to_mlflow(synthetic_run):
    import mlflow
    import pandas as pd
    from mlflow import MlflowClient

    summary, out = synthetic_run
    uri = f"sqlite:///{out / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    child = client.get_run(summary["models"]["recommender"]["mlflow_run_id"])
    for name in ("eval/rmse", "eval/ndcg_at_10", "exposure/gini_at_10", "fairness/gender/rmse_gap", "privacy/mia_auc"):
        assert name in child.data.metrics, name
    from impactflow.tasks.tracking import using_tracking_uri

    with using_tracking_uri(uri):
        model = mlflow.pyfunc.load_model(f"runs:/{child.info.run_id}/model")
    out_frame = model.predict(pd.DataFrame({"user_id": [1, 999_999], "item_id": [1, 1]}))
    assert list(out_frame.columns) == ["rating"] and out_frame["rating"].notna().all()


@pytest.fixture(scope="module")
def movielens_run(prefect_api, tmp_path_factory):
    if not (MOVIELENS / "u.data").is_file():
        pytest.skip(f"MovieLens 100K not found at {MOVIELENS} (licence: never shipped); CI provides it")
    out = tmp_path_factory.mktemp("movielens_run")
    return _run("movielens", out, f"data.path={MOVIELENS}")


def test_movielens_biased_mf_acceptance(movielens_run):
    summary = movielens_run
    m = summary["models"]["recommender"]["metrics"]
    assert m["eval/rmse"] <= 0.93
    assert summary["models"]["recommender"]["metrics"]["eval/rmse"] < summary["models"]["bias"]["metrics"]["eval/rmse"]
    assert 0.0 < m["eval/ndcg_at_10"] < 1.0
    # per-gender gaps with CIs, and exposure concentration next to the popularity baseline
    gap = m["fairness/gender/rmse_gap"]
    assert m["fairness/gender/rmse_gap_ci_low"] < gap < m["fairness/gender/rmse_gap_ci_high"]
    assert "fairness/gender/ndcg_at_10_gap_ci_high" in m
    for key in ("gini_at_10", "top10pct_popular_share_at_10", "avg_popularity_at_10"):
        assert f"exposure/{key}" in m and f"exposure/most_popular/{key}" in m and f"exposure/random/{key}" in m
    assert m["exposure/most_popular/top10pct_popular_share_at_10"] == 1.0
    assert m["exposure/random/gini_at_10"] < m["exposure/gini_at_10"]
    groups = _report(summary)["models"][0]["audits"]["user_groups"]["by_group"]
    assert {r["group"] for r in groups if r["attribute"] == "gender"} == {"F", "M"}
    assert sum(r["n_ratings"] for r in groups if r["attribute"] == "gender") == 15_000


def test_dp_run_reports_epsilon_and_rmse(prefect_api, tmp_path):
    summary = _run(
        "recommender",
        tmp_path,
        "privacy.enabled=true",
        "privacy.target_epsilon=8",
        "model.params.epochs=4",
        "model.params.patience=4",
        "model.params.batch_size=2048",
        "model.params.lr=0.02",
        "model.params.weight_decay=0",
        "model.baselines=[]",
    )
    dp = summary["models"]["recommender-dp"]["dp"]
    m = summary["models"]["recommender-dp"]["metrics"]
    assert dp["enabled"] and dp["grad_sample_mode"] == "ghost" and 0 < dp["epsilon"] <= 8.0 + 1e-6
    assert m["privacy/epsilon"] == pytest.approx(dp["epsilon"])
    assert 0.5 < m["eval/rmse"] < 1.5


def test_movielens_without_a_path_is_refused_before_any_task(tmp_path):
    # MovieLens may not be redistributed: the preset ships no data, so the config names the key
    # to set, at load (no flow, no MLflow run is started)
    with pytest.raises(
        ConfigError, match=r"data\.path: required: the contract 'movielens' ships no data.*--set data\.path=PATH"
    ):
        _run("movielens", tmp_path)
    assert not (tmp_path / "mlflow.db").exists()
