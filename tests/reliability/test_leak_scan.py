"""One real pipeline run, then a scan of everything it leaves behind for values planted in its
input and for the password of its tracking URI: every file under the run's folder (MLflow
artifacts, the report, Data Docs, the pickled models), the run's params/tags/metric names in
MLflow, the CLI's stdout/stderr, and the flow run's Prefect logs, artifacts and parameters.

The same run carries a transient fault: the first MLflow tag write fails with a connection
error; Prefect retries the task and the run completes.
"""

from __future__ import annotations

import gzip
import json
import os
import uuid

import pytest

from tests.conftest import ROOT
from tests.topology import servers

PLANTED = ["Zqxplantalpha", "Wvyplantbravo", "Kjuplantcharlie"]  # one message each
SECRET = "PLANTEDSECRET"


@pytest.fixture(scope="module")
def tracking_uri():
    """A PostgreSQL tracking store whose URI carries a password (local trust auth accepts any),
    else SQLite (then only the planted values are checked)."""
    if servers.postgres_reachable() is not None:
        yield None
        return
    with servers.database(f"impactflow_test_leak_{os.getpid()}") as db:
        user_host = db.split("@", 1)
        yield f"postgresql+psycopg2://{user_host[0]}:{SECRET}@{user_host[1]}"


@pytest.fixture(scope="module")
def leak_run(prefect_api, tracking_uri, tmp_path_factory):
    from typer.testing import CliRunner

    import impactflow.tasks.tracking as tracking
    from impactflow.flows.cli import app

    tmp = tmp_path_factory.mktemp("leak")
    lines = (
        gzip.decompress((ROOT / "data_contracts/sms_spam/SMSSpamCollection.gz").read_bytes())
        .decode("utf-8")
        .splitlines()[:800]
    )
    lines += [
        f"ham\tsee you at {PLANTED[0]} street tomorrow",
        f"spam\tWIN cash now text {PLANTED[1]} to 8008",
        f"ham\tmy name is {PLANTED[2]} call me",
    ]
    data = tmp / "sms.txt"
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")

    real_set_tags, calls = tracking.set_tags, {"n": 0}

    def flaky_set_tags(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise ConnectionError("tracking server connection reset (injected)")
        return real_set_tags(*args, **kwargs)

    saved, cwd = dict(os.environ), os.getcwd()
    os.chdir(tmp)
    experiment = f"leak-{uuid.uuid4().hex[:8]}"
    if tracking_uri:
        os.environ["MLFLOW_TRACKING_URI"] = tracking_uri
    else:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    tracking.set_tags = flaky_set_tags
    try:
        result = CliRunner().invoke(
            app,
            [
                "run",
                "-c",
                "text",
                "--set",
                f"data.path={data}",
                "--set",
                "model.params.epochs=1",
                "--set",
                f"tracking.experiment={experiment}",
                "--set",
                "gates.identity.counterfactual_sample=100",
            ],
        )
    finally:
        tracking.set_tags = real_set_tags
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(saved)
    uri = tracking_uri or f"sqlite:///{tmp / 'impactflow_runs' / 'mlflow.db'}"
    return {"result": result, "tmp": tmp, "uri": uri, "experiment": experiment, "calls": calls}


def _report(run) -> dict:
    (path,) = list(run["tmp"].glob("impactflow_runs/runs/*/reports/impact_report.json"))
    return json.loads(path.read_text())


def test_run_completes(leak_run):
    r = leak_run["result"]
    assert r.exit_code in (0, 3), r.output
    assert r.exception is None or isinstance(r.exception, SystemExit)


def test_transient_tracking_failure_was_retried_by_prefect(leak_run, prefect_api):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    assert leak_run["calls"]["n"] > 1
    flow_run_id = _report(leak_run)["run"]["flow_run_id"]
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    log_data = [t for t in runs if t.name.startswith("log-data")]
    assert len(log_data) == 1
    assert log_data[0].run_count == 2, "log-data should have failed once and been retried once"
    assert log_data[0].state.is_completed()


def _everything(run, prefect_api) -> list[tuple[str, bytes]]:
    """(where, bytes) of every place the run wrote something."""
    from mlflow import MlflowClient
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, LogFilter, LogFilterFlowRunId

    out = [("stdout+stderr", run["result"].output.encode())]
    for p in run["tmp"].rglob("*"):
        if p.is_file() and p.name != "sms.txt":
            out.append((str(p), p.read_bytes()))
    client = MlflowClient(tracking_uri=run["uri"])
    exp = client.get_experiment_by_name(run["experiment"])
    for r in client.search_runs([exp.experiment_id]):
        out.append(
            (
                f"mlflow run {r.info.run_id}",
                json.dumps({"params": r.data.params, "tags": r.data.tags, "metrics": sorted(r.data.metrics)}).encode(),
            )
        )
    flow_run_id = _report(run)["run"]["flow_run_id"]
    with get_client(sync_client=True) as pc:
        flow_run = pc.read_flow_run(flow_run_id)
        out.append(("prefect flow run parameters", json.dumps(flow_run.parameters, default=str).encode()))
        logs = pc.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
        out.append(("prefect logs", "\n".join(entry.message for entry in logs).encode()))
        arts = pc.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
        out.append(("prefect artifacts", "\n".join(str(a.data) for a in arts).encode()))
        assert arts, "the run should have published its summary artifact"
    return out


def test_no_planted_value_in_any_output(leak_run, prefect_api):
    places = _everything(leak_run, prefect_api)
    assert any("impact_report.html" in w for w, _ in places) and any(
        w.endswith(".pkl") or "model" in w for w, _ in places
    )
    found = [(w, v) for w, data in places for v in PLANTED if v.lower().encode() in data.lower()]
    assert found == [], found


def test_no_tracking_password_in_any_output(leak_run, prefect_api, tracking_uri):
    if tracking_uri is None:
        pytest.skip(servers.postgres_reachable() or "no PostgreSQL")
    places = _everything(leak_run, prefect_api)
    found = [w for w, data in places if SECRET.encode() in data]
    assert found == [], found
    assert "***@" in leak_run["result"].output  # the URI is shown, redacted
