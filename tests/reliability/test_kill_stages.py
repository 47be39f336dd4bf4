"""SIGKILL a real ``impactflow run`` at each stage — validation, training, logging, registration,
report, signing — and a DP run while it trains (issue 28, "Done when").

Each run is held at the start of its stage by the test-only hook of ``tasks/progress.py``
(``IMPACTFLOW_TEST_HOLD_AT``: the process says ``impactflow-test-hold: <stage>`` on stderr and
waits), then killed with SIGKILL: no handler, no ``finally``, no ``atexit`` runs. After each kill
and ``impactflow reconcile``:

- nothing approved: no ``champion`` alias anywhere, every version of a killed run is marked;
- nothing RUNNING in MLflow, and the killed command's Prefect flow run and task runs are Crashed;
- no temporary file (``*.tmp``) in the runs folder;
- a killed DP run's budget reservation is listed as stale, and released since it logged no model.

The kills share one runs folder (as an operator's would), and one rerun at the end shows that
a run then completes, passes and becomes champion: the "no champion" checks can fail.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.reliability.hold import kill_when_held
from tests.reliability.test_faults import _processes_with

pytestmark = pytest.mark.e2e

# a small, fast run whose gates pass (so a completed run would get the champion alias)
ARGS = [
    "-c",
    "text",
    "--set",
    "data.sample=300",
    "--set",
    "model.baselines=[]",
    "--set",
    "model.params.epochs=1",
    "--set",
    "gates.performance.min_accuracy=0.1",
    "--set",
    "gates.performance.min_roc_auc=0.1",
    "--set",
    "gates.performance.max_ece=1",
    "--set",
    "gates.privacy.max_mia_auc=1",
    "--set",
    "gates.identity.max_flip_rate=1",
    "--set",
    "gates.identity.max_template_fpr_range=1",
    "--set",
    "gates.identity.counterfactual_sample=50",
]
# the DP variant: a budget makes the ledger reserve before training (the contract is validated first)
DP_ARGS = [
    "--set",
    "privacy.enabled=true",
    "--set",
    "privacy.target_epsilon=8",
    "--set",
    "privacy.delta=0.00001",
    "--set",
    "privacy.budget_epsilon=1000",
    "--set",
    "model.params.epochs=200",
    "--set",
    "model.params.patience=1000",
    "--set",
    "privacy_audit.canaries=0",
]

STAGES = {  # stage -> (prefix of the progress stage to hold at, extra args)
    "validation": ("validate", []),
    "training": ("train transformer", ["--set", "model.params.epochs=200", "--set", "model.params.patience=1000"]),
    "logging": ("log ", []),
    "registration": ("register ", []),
    "report": ("write report", []),
    "signing": ("sign evidence", []),
    "training-dp": ("train transformer", DP_ARGS),
}


@pytest.fixture(scope="module")
def work(prefect_api, tmp_path_factory):
    root = tmp_path_factory.mktemp("kill_stages")
    out = root / "impactflow_runs"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PYTEST") and k not in ("MLFLOW_TRACKING_URI", "IMPACTFLOW_LEDGER_URL")
    }
    env.update(PREFECT_API_URL=prefect_api, PYTHONPATH=str(ROOT))
    return {"root": root, "out": out, "env": env, "db": out / "mlflow.db", "prefect_api": prefect_api}


def _cli(work, *args, extra_env=None, **kw):
    return subprocess.Popen(
        [sys.executable, "-m", "impactflow.flows.cli", *args],
        cwd=work["root"],
        env={**work["env"], **(extra_env or {})},
        **kw,
    )


def _ledger_env(work, stage: str) -> dict[str, str]:
    """The DP run's own ledger: the folder's ledger records the other runs' non-private models,
    against which no finite budget can hold."""
    return {"IMPACTFLOW_LEDGER_URL": f"sqlite:///{work['root'] / 'dp_ledger.db'}"} if stage.endswith("-dp") else {}


def _run_and_kill(work, stage: str) -> tuple[int, str]:
    """Start a run held at ``stage``, SIGKILL it there; returns (pid, what it printed on stderr)."""
    prefix, extra = STAGES[stage]
    proc = _cli(
        work,
        "run",
        *ARGS,
        *extra,
        "--set",
        f"tracking.output_dir={work['out']}",
        extra_env={"IMPACTFLOW_TEST_HOLD_AT": prefix, **_ledger_env(work, stage)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen = kill_when_held(proc, prefix, timeout=420, settle=0.5)  # a concurrent validation child may still write
    return proc.pid, seen


def _running_mlflow(db: Path) -> list[str]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as con:
        return [r[0] for r in con.execute("SELECT run_uuid FROM runs WHERE status = 'RUNNING'")]


def _owned_flow_runs(pid: int):
    """The Prefect flow runs the killed command owned (its ``impactflow.owner`` tag)."""
    from prefect.client.orchestration import get_client

    from prefect.client.schemas.filters import FlowFilter, FlowFilterName, FlowRunFilter, FlowRunFilterId
    from prefect.client.schemas.sorting import FlowRunSort

    owner = f"impactflow.owner={socket.gethostname()}/{pid}/"
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["impactflow-pipeline"])),
            sort=FlowRunSort.START_TIME_DESC,
            limit=200,
        )
        mine = [fr for fr in runs if any(t.startswith(owner) for t in fr.tags)]
        tasks = (
            client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[fr.id for fr in mine])), limit=200
            )
            if mine
            else []
        )
        return mine, tasks


def _no_champion(uri: str) -> list[str]:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    return [f"{rm.name}: {rm.aliases}" for rm in client.search_registered_models() if rm.aliases]


def _temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*.tmp")]


@pytest.mark.parametrize("stage", list(STAGES))
def test_sigkill_at_stage_leaves_nothing_approved_or_running_after_reconcile(work, stage):
    from mlflow import MlflowClient
    from prefect.client.schemas.objects import StateType

    from impactflow.tasks.registry import RUN_STATUS_TAG

    pid, _ = _run_and_kill(work, stage)
    marker = f"tracking.output_dir={work['out']}"
    deadline = time.monotonic() + 30  # what the command started ends with it (validation child)
    while _processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _processes_with(marker), "a process of the killed run outlived it"
    uri = f"sqlite:///{work['db']}"
    assert _no_champion(uri) == []
    # what SIGKILL leaves behind (the parent run is opened before validation)
    assert _running_mlflow(work["db"]), "the kill left nothing RUNNING: it did not hit a live run"

    rec = _cli(
        work,
        "reconcile",
        "--output-dir",
        str(work["out"]),
        extra_env=_ledger_env(work, stage),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    stdout, stderr = rec.communicate(timeout=300)
    assert rec.returncode == 0, stderr[-3000:]
    assert "Traceback" not in stderr
    assert _running_mlflow(work["db"]) == []
    assert _no_champion(uri) == []
    client = MlflowClient(tracking_uri=uri)
    for rm in client.search_registered_models():  # a version of a killed run is marked as such
        for mv in client.search_model_versions(f"name = '{rm.name}'"):
            parent = client.get_run(mv.run_id).data.tags.get("mlflow.parentRunId")
            if client.get_run(parent).info.status == "KILLED":
                assert (mv.tags or {}).get(RUN_STATUS_TAG) == "KILLED", (mv.name, mv.version)
    flow_runs, task_runs = _owned_flow_runs(pid)
    assert flow_runs, "the killed command's flow run is not on the Prefect server"
    assert [fr.state.type for fr in flow_runs] == [StateType.CRASHED], stdout
    assert not [tr for tr in task_runs if tr.state.type in (StateType.RUNNING, StateType.PENDING)]
    assert "Prefect flow run(s) marked Crashed" in stdout
    assert _temp_files(work["out"]) == []
    if stage == "training-dp":
        assert "1 stale privacy-budget reservation(s), 1 released" in stdout, stdout  # the DP model's
        from impactflow.tasks.ledger_store import Ledger

        ledger = Ledger(_ledger_env(work, stage)["IMPACTFLOW_LEDGER_URL"])
        try:
            assert [e["status"] for e in ledger.entries() if e["private"]] == ["released"]
        finally:
            ledger.close()
    # idempotent: a second reconcile finds nothing more (what `impactflow reconcile` runs and
    # prints, in this process: the command itself ran just above)
    from impactflow.tasks.reconcile import reconcile_all, summary_lines

    out2 = "\n".join(summary_lines(reconcile_all(uri, work["out"], prefect=True)))
    assert "0 run(s) reconciled" in out2 and "0 Prefect flow run(s) marked Crashed" in out2


def test_a_rerun_after_the_kills_completes_passes_and_becomes_champion(work):
    """The folder every kill above left behind (whatever of them ran) takes a complete run."""
    from mlflow import MlflowClient

    rerun = _cli(
        work,
        "run",
        *ARGS,
        "--set",
        f"tracking.output_dir={work['out']}",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    stdout, stderr = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, (stdout + stderr)[-3000:]
    assert "Traceback" not in stderr
    assert _running_mlflow(work["db"]) == []
    client = MlflowClient(tracking_uri=f"sqlite:///{work['db']}")
    (rm,) = client.search_registered_models()
    champion = client.get_model_version(rm.name, rm.aliases["champion"])
    assert client.get_run(champion.run_id).info.status == "FINISHED"
    assert _temp_files(work["out"]) == []
