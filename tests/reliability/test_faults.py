"""Faults: a killed process, an unreachable tracking server, a transient task failure, a
full or read-only report folder. Each ends in a clear message or a complete rerun, never in a
run left RUNNING forever or a half-written report."""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the block ends


# --------------------------------------------------------------------------- tracking server


def test_unreachable_tracking_server_is_a_clear_error_before_training(prefect_api, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from impactflow.flows.cli import app

    port = _closed_port()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://alice:PLANTEDSECRET@127.0.0.1:{port}")
    saved = dict(os.environ)
    try:
        result = CliRunner().invoke(app, ["run", "-c", "text", "--set", "data.sample=200"])
    finally:
        os.environ.clear()
        os.environ.update(saved)
    out = result.output
    assert result.exit_code == 1, out
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert f"MLflow tracking server http://***@127.0.0.1:{port} is unreachable" in out
    assert "nothing was trained" in out
    assert "PLANTEDSECRET" not in out
    assert not list(tmp_path.rglob("impact_report.*"))


def test_preflight_accepts_a_live_server_and_names_a_dead_database():
    from impactflow.errors import TrackingError
    from impactflow.tasks.tracking import preflight

    preflight("sqlite:///:memory:")  # local stores are created on first use: nothing to check
    with pytest.raises(TrackingError, match=r"postgresql://\*\*\*@127\.0\.0\.1:\d+/db is unreachable"):
        preflight(f"postgresql://bob:PLANTEDSECRET@127.0.0.1:{_closed_port()}/db")


# --------------------------------------------------------------------------- reconcile


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


@pytest.mark.e2e  # starts a process
def test_reconcile_marks_runs_of_dead_owners_killed_and_leaves_live_ones(tmp_path):
    from mlflow import MlflowClient

    from impactflow.tasks.reconcile import HOST_TAG, PID_START_TAG, PID_TAG, RECONCILED_TAG, owner_tags, reconcile

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("e")
    host = socket.gethostname()
    dead = client.create_run(exp, tags={HOST_TAG: host, PID_TAG: str(_dead_pid()), PID_START_TAG: "1"}).info.run_id
    child = client.create_run(exp, tags={"mlflow.parentRunId": dead}).info.run_id
    alive = client.create_run(exp, tags=owner_tags()).info.run_id
    # the pid is alive but started at another time: the process that owned the run is gone
    reused = client.create_run(exp, tags={**owner_tags(), PID_START_TAG: "12345"}).info.run_id
    other_host_recent = client.create_run(exp, tags={HOST_TAG: "elsewhere", PID_TAG: "1"}).info.run_id
    untagged = client.create_run(exp).info.run_id  # not ours: never touched

    marked = reconcile(uri, [exp])
    assert {m["run_id"] for m in marked} == {dead, child, reused}
    status = {r: client.get_run(r).info.status for r in (dead, child, alive, reused, other_host_recent, untagged)}
    assert status == {
        dead: "KILLED",
        child: "KILLED",
        alive: "RUNNING",
        reused: "KILLED",
        other_host_recent: "RUNNING",
        untagged: "RUNNING",
    }
    assert "is gone" in client.get_run(dead).data.tags[RECONCILED_TAG]
    # another host: reconciled only once older than stale_after_s
    assert [m["run_id"] for m in reconcile(uri, [exp], stale_after_s=0)] == [other_host_recent]
    assert reconcile(uri, [exp]) == []  # idempotent


def _running(db: Path) -> list[str]:
    """RUNNING MLflow runs of the store (read with sqlite3: an MlflowClient here would race the
    child's migrations)."""
    import sqlite3

    if not db.exists():
        return []
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as con:
            rows = con.execute("SELECT run_uuid FROM runs WHERE status = 'RUNNING'").fetchall()
    except sqlite3.Error:  # schema not created yet, or locked: ask again
        return []
    return [r[0] for r in rows]


def _training(prefect_api: str) -> bool:
    """A ``train-model`` task run is RUNNING on the session's Prefect server."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        TaskRunFilter,
        TaskRunFilterName,
        TaskRunFilterState,
        TaskRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    with get_client(sync_client=True) as client:
        return bool(
            client.read_task_runs(
                task_run_filter=TaskRunFilter(
                    name=TaskRunFilterName(like_="train-model"),
                    state=TaskRunFilterState(type=TaskRunFilterStateType(any_=[StateType.RUNNING])),
                )
            )
        )


def _processes_with(marker: str) -> list[int]:
    """Pids other than this process whose command line contains ``marker`` (Linux /proc)."""
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit() and int(d.name) != os.getpid():
            try:
                if marker in (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    pids.append(int(d.name))
            except OSError:
                pass
    return pids


def test_sigkill_mid_training_then_rerun_completes_and_reconciles(prefect_api, tmp_path):
    """Kill ``impactflow run`` with SIGKILL while it trains (its contract validated beside the
    training, in a child process); nothing of it is left running, and the next run completes
    and marks the killed run KILLED (it would otherwise stay RUNNING forever)."""
    from mlflow import MlflowClient

    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST") and k != "MLFLOW_TRACKING_URI"}
    env.update(PREFECT_API_URL=prefect_api, PYTHONPATH=str(ROOT))
    base = [
        sys.executable,
        "-m",
        "impactflow.flows.cli",
        "run",
        "-c",
        "text",
        "--set",
        "data.sample=1500",
        "--set",
        "model.baselines=[]",
        "--set",
        "model.params.patience=1000",
    ]
    uri = f"sqlite:///{tmp_path / 'impactflow_runs' / 'mlflow.db'}"
    marker = f"model.params.epochs=500 --set tracking.output_dir={tmp_path / 'impactflow_runs'}"  # this run only
    proc = subprocess.Popen(
        [*base, "--set", *marker.split()], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    killed_run = None
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(1)
            running = _running(tmp_path / "impactflow_runs" / "mlflow.db")
            if running and _training(prefect_api):
                killed_run = running[0]
                time.sleep(1)  # into the 500 epochs (the contract's verdict may still be out)
                break
        assert killed_run, "the run never reached training"
        assert proc.poll() is None, "the run ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    deadline = time.monotonic() + 10  # a validation process still running stops on its own
    while _processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _processes_with(marker), "a process of the killed run outlived it"
    client = MlflowClient(tracking_uri=uri)
    assert client.get_run(killed_run).info.status == "RUNNING"  # what SIGKILL leaves behind

    rerun = subprocess.run(
        [*base, "--set", "model.params.epochs=1"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert rerun.returncode in (0, 3), rerun.stderr[-3000:]
    assert "Traceback" not in rerun.stderr
    old = client.get_run(killed_run)
    assert old.info.status == "KILLED"
    assert "is gone" in old.data.tags["impactflow.reconciled"]
    runs = client.search_runs([old.info.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags and r.info.run_id != killed_run]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert (tmp_path / "impactflow_runs" / "runs" / parents[0].info.run_id / "reports" / "impact_report.json").is_file()


# --------------------------------------------------------------------------- transient failure


def test_transient_io_failure_is_retried_and_a_user_error_is_not(prefect_api, monkeypatch):
    from prefect import flow

    from impactflow import data_contracts
    from impactflow.errors import DataError
    from impactflow.tasks.data import load_data
    from impactflow.tasks.spec import RunSpec

    calls = {"n": 0}
    real = data_contracts.load_dataset

    def flaky(contract, paths=None):
        calls["n"] += 1
        if calls["n"] == 1:
            raise ConnectionResetError("network file system hiccup")
        return real(contract, paths)

    monkeypatch.setattr(data_contracts, "load_dataset", flaky)

    @flow
    def load_once(paths=None):
        state = load_data(RunSpec("sms_spam", "text"), paths, 50, 0, return_state=True)
        return state.result(), state.state_details.run_count if hasattr(state.state_details, "run_count") else None

    (df, info), _ = load_once()
    assert calls["n"] == 2, "the transient failure was not retried"
    assert len(df) == info["n_rows"] == 50

    calls["n"] = 10  # from now on, load_dataset behaves; a missing file is a user error

    def missing(contract, paths=None):
        calls["n"] += 1
        raise DataError("x.txt: file not found")

    monkeypatch.setattr(data_contracts, "load_dataset", missing)
    with pytest.raises(DataError, match="x.txt: file not found"):
        load_once(["x.txt"])
    assert calls["n"] == 11, "a user error was retried"


# --------------------------------------------------------------------------- full / read-only disk


@pytest.mark.parametrize(
    "where, err, text",
    [
        ("fsync", errno.ENOSPC, "No space left on device"),
        ("mkstemp", errno.EROFS, "Read-only file system"),
    ],
)
def test_full_or_read_only_report_folder_is_a_clear_error_and_leaves_nothing(tmp_path, monkeypatch, where, err, text):
    import impactflow.audits.atomic as atomic
    import impactflow.audits.render as render
    from impactflow.errors import OutputError
    from impactflow.tasks.report import write_report
    from tests.report.conftest import make_inputs

    inputs = make_inputs()
    out = tmp_path / "reports"
    out.mkdir()

    def fail(*a, **k):
        raise OSError(err, os.strerror(err))

    if where == "fsync":
        monkeypatch.setattr(render.os, "fsync", fail)
    else:
        monkeypatch.setattr(atomic.tempfile, "mkstemp", fail)
    with pytest.raises(OutputError) as info:
        write_report.fn(
            inputs["run"], inputs["data"], inputs["models"], inputs["provenance"], inputs["config"], str(out)
        )
    assert str(info.value) == f"cannot write the report into {out}: {text}"
    assert list(out.iterdir()) == [], "a partial report or temporary file was left behind"


@pytest.mark.e2e  # starts a process
def test_reconcile_command_marks_a_dead_owners_run(tmp_path):
    from mlflow import MlflowClient
    from typer.testing import CliRunner

    from impactflow.flows.cli import app
    from impactflow.tasks.reconcile import HOST_TAG, PID_TAG

    db = tmp_path / "impactflow_runs" / "mlflow.db"
    db.parent.mkdir()
    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    run = client.create_run(
        client.create_experiment("e"), tags={HOST_TAG: socket.gethostname(), PID_TAG: str(_dead_pid())}
    ).info.run_id
    saved = dict(os.environ)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    try:
        result = CliRunner().invoke(app, ["reconcile", "--output-dir", str(db.parent)])
    finally:
        os.environ.clear()
        os.environ.update(saved)
    assert result.exit_code == 0, result.output
    assert f"{run}: KILLED" in result.output and "1 run(s) reconciled" in result.output
    assert client.get_run(run).info.status == "KILLED"
