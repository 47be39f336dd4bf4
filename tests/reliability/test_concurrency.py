"""Eight pipeline runs at once against one MLflow server on PostgreSQL (and one Prefect server
on PostgreSQL): every run completes, every run has its own child run, metrics, model and
report, and nothing of one run lands in another (each run has its own seed, checked in its
params, its report and its child). Half of the runs are DP, and all eight record their model in
one privacy-budget ledger on PostgreSQL at the same time: it must hold exactly one entry per
run, each DP entry finalised with that run's own epsilon (no lost or doubled update).

The eight are forked from one warm runner (``impactflow server start --warm``'s process, here
started on these servers), as an operator running many jobs on one machine would: eight real
processes, each with its own database connections, without eight times ~7 s of imports. That a
fork computes what a cold process does is tests/flows/test_warm_runner.py's subject; the cold
process is tested by the topology, kill and lifetime tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.conftest import ROOT, start_warm_runner, stop_warm_runner
from tests.topology import servers

REASON = servers.postgres_reachable()
pytestmark = [pytest.mark.topology, pytest.mark.skipif(REASON is not None, reason=REASON or "")]

N_RUNS = 8
DP_SEEDS = range(0, N_RUNS, 2)  # every other run trains with DP-SGD
# a fixed noise multiplier: the ledger reserves the DP model without an epsilon and each run
# finalises it with its accountant's epsilon (a target epsilon would make each of the four
# start-at-once runs search the same noise multiplier: ~5 s of CPU each, nothing more tested)
DP = ["--set", "privacy.enabled=true", "--set", "privacy.noise_multiplier=1.0", "--set", "privacy_audit.canaries=0"]
FAST = [
    "-c",
    "text",
    "--set",
    "data.sample=800",
    "--set",
    "model.params.epochs=1",
    "--set",
    "model.baselines=[]",
    "--set",
    "gates.identity.counterfactual_sample=50",
    "--set",
    "tracking.experiment=concurrency",
]


@pytest.fixture(scope="module")
def eight_runs(tmp_path_factory):
    home = tmp_path_factory.mktemp("concurrency")
    suffix = f"{os.getpid()}"
    with (
        servers.database(f"impactflow_test_conc_prefect_{suffix}") as pdb,
        servers.database(f"impactflow_test_conc_mlflow_{suffix}") as mdb,
        servers.database(f"impactflow_test_conc_ledger_{suffix}") as ldb,
        servers.prefect_server(pdb, home) as api,
        servers.mlflow_server(mdb, home) as (mlflow_uri, artifacts),
        ExitStack() as stack,  # the warm runner, stopped before the servers
    ):
        ledger_url = f"postgresql+psycopg2://{ldb}"
        env = {
            **servers.base_env(home),
            "PREFECT_API_URL": api,
            "MLFLOW_TRACKING_URI": mlflow_uri,
            "PYTHONPATH": str(ROOT),
            "IMPACTFLOW_LEDGER_URL": ledger_url,
        }
        procs = []
        runner = Path(start_warm_runner(env)["log"])  # one "run pid" line per forked run
        stack.callback(stop_warm_runner, env)
        start = time.monotonic()
        for seed in range(N_RUNS):
            cwd = home / f"run{seed}"
            cwd.mkdir()
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "impactflow.flows.cli",
                        "run",
                        *FAST,
                        "--set",
                        f"seed={seed}",
                        *(DP if seed in DP_SEEDS else []),
                    ],
                    cwd=cwd,
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
        outs = [p.communicate(timeout=900) for p in procs]
        wall = time.monotonic() - start
        forked = runner.read_text().count("run pid ")
        print(f"{N_RUNS} concurrent runs took {wall:.0f} s")
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=mlflow_uri)
        exp = client.get_experiment_by_name("concurrency")
        runs = client.search_runs([exp.experiment_id]) if exp else []
        logged = client.search_logged_models([exp.experiment_id]) if exp else []
        from impactflow.tasks.ledger_store import Ledger

        ledger = Ledger(ledger_url)
        entries = ledger.entries()
        ledger.close()
        yield {
            "codes": [p.returncode for p in procs],
            "outs": outs,
            "runs": runs,
            "client": client,
            "logged": logged,
            "home": home,
            "ledger": entries,
            "forked": forked,
        }


def test_every_run_completes(eight_runs):
    for code, (out, err) in zip(eight_runs["codes"], eight_runs["outs"]):
        assert code in (0, 3), err[-3000:]
        assert "Traceback" not in err and "warm runner not used" not in err
    assert eight_runs["forked"] == N_RUNS  # all eight ran as forks of the warm runner


def test_each_run_has_its_own_complete_record(eight_runs, tmp_path):
    client, runs = eight_runs["client"], eight_runs["runs"]
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == N_RUNS and len(children) == N_RUNS
    assert {r.info.status for r in runs} == {"FINISHED"}
    assert sorted(int(p.data.params["seed"]) for p in parents) == list(range(N_RUNS))
    for dp in ("true", "false"):  # DP runs log privacy/epsilon etc. on top
        metric_sets = {frozenset(c.data.metrics) for c in children if c.data.tags["impactflow.dp"] == dp}
        assert len(metric_sets) == 1, "runs logged different metric sets"
        (metrics,) = metric_sets
        assert {"eval/accuracy", "eval/roc_auc", "privacy/mia_auc"} <= metrics
        assert ("privacy/epsilon" in metrics) == (dp == "true")
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
    runs, entries = eight_runs["runs"], eight_runs["ledger"]
    parents = {r.info.run_id: r for r in runs if "mlflow.parentRunId" not in r.data.tags}
    children = {r.data.tags["mlflow.parentRunId"]: r for r in runs if "mlflow.parentRunId" in r.data.tags}
    assert sorted(e["run_id"] for e in entries) == sorted(parents)  # one entry per run: none lost or doubled
    assert len({e["dataset_sha256"] for e in entries}) == 1  # all eight raced on the same dataset's record
    for e in entries:
        seed = int(parents[e["run_id"]].data.params["seed"])
        assert e["private"] == (seed in DP_SEEDS)
        if e["private"]:
            assert e["status"] != "reserved"
            assert e["epsilon"] == pytest.approx(children[e["run_id"]].data.metrics["privacy/epsilon"], rel=1e-9)
    from impactflow.tasks.ledger_store import compose

    total = compose(entries)
    assert total["n_private"] == len(DP_SEEDS) and total["n_non_private"] == N_RUNS - len(DP_SEEDS)
    assert total["epsilon_private"] == pytest.approx(
        sum(
            children[r].data.metrics["privacy/epsilon"]
            for r in parents
            if int(parents[r].data.params["seed"]) in DP_SEEDS
        ),
        rel=1e-12,
    )
