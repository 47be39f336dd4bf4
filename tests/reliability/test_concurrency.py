"""Eight pipeline runs at once against one MLflow server on PostgreSQL (and one Prefect server
on PostgreSQL): every run completes, every run has its own child run, metrics, model and
report, and nothing of one run lands in another (each run has its own seed, checked in its
params, its report and its child)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT
from tests.topology import servers

REASON = servers.postgres_reachable()
pytestmark = [pytest.mark.topology, pytest.mark.skipif(REASON is not None, reason=REASON or "")]

N_RUNS = 8
FAST = ["-c", "text", "--set", "data.sample=800", "--set", "model.params.epochs=1", "--set", "model.baselines=[]",
        "--set", "gates.identity.counterfactual_sample=50", "--set", "tracking.experiment=concurrency"]


@pytest.fixture(scope="module")
def eight_runs(tmp_path_factory):
    home = tmp_path_factory.mktemp("concurrency")
    suffix = f"{os.getpid()}"
    with servers.database(f"impactflow_test_conc_prefect_{suffix}") as pdb, \
            servers.database(f"impactflow_test_conc_mlflow_{suffix}") as mdb, \
            servers.prefect_server(pdb, home) as api, \
            servers.mlflow_server(mdb, home) as (mlflow_uri, artifacts):
        env = {**servers.base_env(home), "PREFECT_API_URL": api, "MLFLOW_TRACKING_URI": mlflow_uri,
               "PYTHONPATH": str(ROOT)}
        procs = []
        start = time.monotonic()
        for seed in range(N_RUNS):
            cwd = home / f"run{seed}"
            cwd.mkdir()
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "flows.cli", "run", *FAST, "--set", f"seed={seed}"],
                cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        outs = [p.communicate(timeout=900) for p in procs]
        wall = time.monotonic() - start
        print(f"{N_RUNS} concurrent runs took {wall:.0f} s")
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=mlflow_uri)
        exp = client.get_experiment_by_name("concurrency")
        runs = client.search_runs([exp.experiment_id]) if exp else []
        logged = client.search_logged_models([exp.experiment_id]) if exp else []
        yield {"codes": [p.returncode for p in procs], "outs": outs, "runs": runs, "client": client,
               "logged": logged, "home": home}


def test_every_run_completes(eight_runs):
    for code, (out, err) in zip(eight_runs["codes"], eight_runs["outs"]):
        assert code in (0, 3), err[-3000:]
        assert "Traceback" not in err


def test_each_run_has_its_own_complete_record(eight_runs, tmp_path):
    client, runs = eight_runs["client"], eight_runs["runs"]
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == N_RUNS and len(children) == N_RUNS
    assert {r.info.status for r in runs} == {"FINISHED"}
    assert sorted(int(p.data.params["seed"]) for p in parents) == list(range(N_RUNS))
    metric_sets = {frozenset(c.data.metrics) for c in children}
    assert len(metric_sets) == 1, "runs logged different metric sets"
    (metrics,) = metric_sets
    assert {"eval/accuracy", "eval/roc_auc", "privacy/mia_auc"} <= metrics
    for parent in parents:
        own = [c for c in children if c.data.tags["mlflow.parentRunId"] == parent.info.run_id]
        assert len(own) == 1, "a run has no child or another run's child"
        seed = parent.data.params["seed"]
        models = [m for m in eight_runs["logged"] if m.source_run_id == own[0].info.run_id]
        assert [m.name for m in models] == ["model"] and models[0].status.name == "READY"
        local = client.download_artifacts(parent.info.run_id, "reports/impact_report.json", str(tmp_path))
        report = json.loads(open(local).read())
        assert report["run"]["run_id"] == parent.info.run_id
        assert report["config"]["seed"] == int(seed)
        assert [m["mlflow_run_id"] for m in report["models"]] == [own[0].info.run_id]
        assert report["data"]["n_rows"] == 800


def test_privacy_ledger_stays_exact(eight_runs):
    # TODO(integrator, privacy-budget ledger branch): run some of the eight with
    # privacy.enabled=true and assert that the ledger holds exactly one entry per DP run and
    # that its total equals the sum of the runs' logged privacy/epsilon (no lost or doubled
    # entry under concurrency). The ledger's interface is not on this branch.
    pytest.skip("hook for the privacy-budget ledger (other branch)")
