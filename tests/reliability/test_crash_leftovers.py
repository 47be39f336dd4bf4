"""Crash leftovers (issue 28, defect 5), on hand-made state: duplicate child runs of failed
attempts, Prefect flow runs of dead owners, temporary files of killed writers, stale
privacy-budget reservations, versions of failed runs at pipeline start. Each test builds the
state a crash leaves in a temporary SQLite store (and the session's Prefect server) and checks
what reconcile makes of it."""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.conftest import ROOT


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _dead_owner() -> dict[str, str]:
    from impactflow.tasks.reconcile import HOST_TAG, PID_START_TAG, PID_TAG

    return {HOST_TAG: socket.gethostname(), PID_TAG: str(_dead_pid()), PID_START_TAG: "1"}


@pytest.fixture
def store(tmp_path):
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    return SimpleNamespace(uri=uri, client=client, exp=client.create_experiment("e"))


# --------------------------------------------------------------------------- (a) child runs


def test_reconcile_ends_running_child_runs_whose_parent_ended(store):
    """A retried task attempt's child run stays RUNNING beside a parent that ended (any status);
    a child of a live parent, and a child run no impactflow task opened, are left alone."""
    from impactflow.tasks.reconcile import RECONCILED_TAG, owner_tags, reconcile

    c, exp = store.client, store.exp
    finished = c.create_run(exp, tags=owner_tags()).info.run_id
    c.set_terminated(finished, "FINISHED")
    failed = c.create_run(exp, tags=owner_tags()).info.run_id
    c.set_terminated(failed, "FAILED")
    live = c.create_run(exp, tags=owner_tags()).info.run_id  # this process: alive
    dup = c.create_run(exp, tags={"mlflow.parentRunId": finished, "impactflow.model": "mlp"}).info.run_id
    ok = c.create_run(exp, tags={"mlflow.parentRunId": finished, "impactflow.model": "mlp"}).info.run_id
    c.set_terminated(ok, "FINISHED")
    dup_failed = c.create_run(exp, tags={"mlflow.parentRunId": failed, "impactflow.model": "mlp"}).info.run_id
    live_child = c.create_run(exp, tags={"mlflow.parentRunId": live, "impactflow.model": "mlp"}).info.run_id
    foreign = c.create_run(exp, tags={"mlflow.parentRunId": finished}).info.run_id

    marked = reconcile(store.uri, [exp])
    assert {m["run_id"] for m in marked} == {dup, dup_failed}
    status = {r: c.get_run(r).info.status for r in (dup, ok, dup_failed, live_child, foreign, live)}
    assert status == {
        dup: "KILLED",
        ok: "FINISHED",
        dup_failed: "KILLED",
        live_child: "RUNNING",
        foreign: "RUNNING",
        live: "RUNNING",
    }
    assert c.get_run(dup).data.tags[RECONCILED_TAG].startswith(f"parent run {finished} is FINISHED")
    assert reconcile(store.uri, [exp]) == []


def _fitted():
    predictor = SimpleNamespace(features=["x"])
    return SimpleNamespace(
        name="mlp",
        kind="candidate",
        params={"h": 1},
        predictor=predictor,
        history=[],
        training={"dp": {"enabled": False}, "wall_time_s": 0.1},
    )


def test_a_failed_attempt_of_log_model_run_ends_its_child_run_failed(store, tmp_path, monkeypatch):
    """The disk fills while the model is logged: the attempt's child run ends FAILED (the retry
    opens another); before, it stayed RUNNING beside the retry's run."""
    import pandas as pd

    from impactflow.tasks import log, tracking

    parent = store.client.create_run(store.exp).info.run_id
    ctx = {"uri": store.uri, "experiment_id": store.exp, "parent_run_id": parent, "experiment": "e"}

    def full_disk(*a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(tracking, "log_model", full_disk)
    for _ in range(3):  # the task's attempts (retries=2), each as Prefect would call it
        with pytest.raises(OSError, match="No space left"):
            log.log_model_run.fn(ctx, _fitted(), {}, pd.DataFrame({"x": [1.0]}), {}, str(tmp_path / "models"))
    children = store.client.search_runs([store.exp], filter_string=f"tags.`mlflow.parentRunId` = '{parent}'")
    assert len(children) == 3
    assert {r.info.status for r in children} == {"FAILED"}


def test_an_interrupted_attempt_ends_its_child_run_killed(store, tmp_path, monkeypatch):
    import pandas as pd

    from impactflow.tasks import log, tracking

    parent = store.client.create_run(store.exp).info.run_id
    ctx = {"uri": store.uri, "experiment_id": store.exp, "parent_run_id": parent, "experiment": "e"}

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(tracking, "log_model", interrupted)
    with pytest.raises(KeyboardInterrupt):
        log.log_model_run.fn(ctx, _fitted(), {}, pd.DataFrame({"x": [1.0]}), {}, str(tmp_path / "models"))
    (child,) = store.client.search_runs([store.exp], filter_string=f"tags.`mlflow.parentRunId` = '{parent}'")
    assert child.info.status == "KILLED"


# --------------------------------------------------------------------------- (b) Prefect flow runs


def test_owner_tag_round_trips():
    from impactflow.tasks.reconcile import owner_from_prefect_tags, owner_tags, prefect_owner_tag

    tag = prefect_owner_tag()
    assert owner_from_prefect_tags(["x", tag]) == {
        k: v for k, v in owner_tags().items() if k != "impactflow.prefect_flow_run_id"
    }
    assert owner_from_prefect_tags(["impactflow.owner=nonsense"]) is None
    assert owner_from_prefect_tags(None) is None


@pytest.mark.e2e  # a Prefect server
def test_flow_runs_of_dead_owners_are_marked_crashed_with_their_task_runs(prefect_api, store):
    """Flow runs named by a dead owner (their own tag, or the MLflow parent run that records
    their id) and their open task runs become Crashed; a live owner's and an unknown owner's stay."""
    from prefect import flow, task
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import StateType
    from prefect.states import Running

    from impactflow.tasks.reconcile import (
        FLOW_RUN_TAG,
        PREFECT_OWNER_PREFIX,
        owner_tags,
        prefect_owner_tag,
        reconcile_flow_runs,
    )

    @flow(name="impactflow-pipeline")
    def pipeline():  # pragma: no cover - never run, only named
        pass

    @task(name="train-model")
    def train():  # pragma: no cover
        pass

    dead = _dead_owner()
    dead_tag = f"{PREFECT_OWNER_PREFIX}{dead['impactflow.host']}/{dead['impactflow.pid']}/1"
    with get_client(sync_client=True) as client:
        by_tag = client.create_flow_run(pipeline, tags=[dead_tag], state=Running())
        task_run = client.create_task_run(train, by_tag.id, dynamic_key="0", state=Running())
        by_mlflow = client.create_flow_run(pipeline, state=Running())
        alive = client.create_flow_run(pipeline, tags=[prefect_owner_tag()], state=Running())
        unknown = client.create_flow_run(pipeline, state=Running())
    store.client.create_run(store.exp, tags={**dead, FLOW_RUN_TAG: str(by_mlflow.id)})
    store.client.create_run(store.exp, tags={**owner_tags(), FLOW_RUN_TAG: str(alive.id)})

    done = reconcile_flow_runs(store.uri, [store.exp])
    assert {d["flow_run_id"] for d in done} >= {str(by_tag.id), str(by_mlflow.id)}
    assert not {d["flow_run_id"] for d in done} & {str(alive.id), str(unknown.id)}
    with get_client(sync_client=True) as client:
        state = [client.read_flow_run(fr.id).state.type for fr in (by_tag, by_mlflow, alive, unknown)]
        assert client.read_task_run(task_run.id).state.type == StateType.CRASHED
    assert state == [StateType.CRASHED, StateType.CRASHED, StateType.RUNNING, StateType.RUNNING]
    assert "is gone" in done[0]["reason"]
    again = reconcile_flow_runs(store.uri, [store.exp])
    assert not {d["flow_run_id"] for d in again} & {str(by_tag.id), str(by_mlflow.id)}


# --------------------------------------------------------------------------- (c) temporary files


def test_temporary_files_name_their_writer(tmp_path):
    from impactflow.audits.atomic import TEMP_RE, mkstemp_for, write_atomic, writer_pid

    fd, tmp = mkstemp_for(tmp_path / "impact_report.json")
    os.close(fd)
    name = Path(tmp).name
    assert TEMP_RE.match(name) and name.startswith(".impact_report.json.") and name.endswith(".tmp")
    assert writer_pid(name) == os.getpid()
    assert writer_pid(".impact_report.json.ab12cd34.tmp") is None  # the earlier naming
    Path(tmp).unlink()
    write_atomic(tmp_path / "a.txt", "x")
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


@pytest.mark.e2e  # starts a writer process
def test_a_killed_writers_temporary_file_is_removed_and_a_live_ones_kept(tmp_path):
    """A real writer is SIGKILLed between its temporary file and ``os.replace``: the file stays
    (nothing in-process can remove it); ``remove_orphans`` takes it, not a live writer's, not a
    user's file, and an earlier-named leftover only once it is old."""
    from impactflow.audits.atomic import LEGACY_AFTER_S, remove_orphans

    reports = tmp_path / "runs" / "r1" / "reports"
    reports.mkdir(parents=True)
    code = (
        "import sys, time; from pathlib import Path; from impactflow.audits.atomic import mkstemp_for\n"
        "fd, tmp = mkstemp_for(Path(sys.argv[1]) / 'impact_report.json'); print(tmp, flush=True); time.sleep(60)"
    )
    p = subprocess.Popen(
        [sys.executable, "-c", code, str(reports)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    killed_tmp = Path(p.stdout.readline().strip())
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    assert killed_tmp.is_file()
    live = reports / f".impact_report.md.{os.getpid()}.abcdefgh.tmp"
    live.write_text("being written")
    staging = tmp_path / "cache" / "validation" / f".key.{_dead_pid()}.zz_zz_zz.tmp"  # a staging folder
    (staging / "data_docs").mkdir(parents=True)
    legacy_old, legacy_new = reports / ".impact_report.html.a1b2c3d4.tmp", reports / ".impact_report.json.z9y8x7w6.tmp"
    legacy_old.write_text("x")
    legacy_new.write_text("x")
    old = time.time() - LEGACY_AFTER_S - 10
    os.utime(legacy_old, (old, old))
    user = reports / "notes.tmp"
    user.write_text("mine")

    removed = set(remove_orphans(tmp_path))
    assert removed == {killed_tmp, staging, legacy_old}
    assert live.exists() and legacy_new.exists() and user.exists() and not staging.exists()
    assert remove_orphans(tmp_path) == []


def test_report_and_evidence_writes_use_the_writer_naming(tmp_path, monkeypatch):
    """Every atomic-write site names its temporary file after its writer (caught at the moment
    it is renamed into place)."""
    import impactflow.audits.evidence as evidence
    import impactflow.audits.render as render  # noqa: F401 - the module whose write is observed
    from impactflow.audits.atomic import writer_pid
    from impactflow.tasks.report import write_report
    from tests.report.conftest import make_inputs

    seen: list[str] = []
    real = os.replace

    def spy(src, dst):
        seen.append(Path(src).name)
        return real(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    inputs = make_inputs()
    write_report.fn(
        inputs["run"],
        inputs["data"],
        inputs["models"],
        inputs["provenance"],
        inputs["config"],
        str(tmp_path / "reports"),
    )
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    signer = evidence.signer_info(key, None)
    evidence.write_evidence(tmp_path / "ev", run_id="r1", signer=signer, previous_report_sha256=None)
    evidence.write_signed_manifest(tmp_path / "ev", key, run_id="r1")
    assert len(seen) == 5 and all(writer_pid(n) == os.getpid() for n in seen), seen


# --------------------------------------------------------------------------- (d) privacy-budget reservations


SHA = "ab" * 32


def _reserve(url: str, run_id: str, owner: str, monkeypatch, eps: float = 1.0) -> list[int]:
    import impactflow.tasks.ledger_store as ls

    with monkeypatch.context() as m:
        m.setattr(ls, "owner_string", lambda: owner)
        ledger = ls.Ledger(url)
        try:
            return ledger.reserve(
                SHA,
                "adult",
                run_id,
                [{"model": "mlp-dp", "private": True, "epsilon": eps, "delta": 1e-5, "accountant": "prv"}],
                budget_epsilon=10.0,
            )
        finally:
            ledger.close()


@pytest.mark.e2e  # starts a process
def test_stale_reservations_are_flagged_and_released_only_when_nothing_was_logged(store, tmp_path, monkeypatch):
    """Three DP runs reserved epsilon = 1 each: one killed before it logged anything (released),
    one killed after it opened a model's child run (kept, counted, flagged), one still running
    (neither). The ledger's view and its totals say which."""
    import impactflow.tasks.ledger_store as ls
    from impactflow.tasks.reconcile import stale_reservations

    url = f"sqlite:///{tmp_path / 'privacy_ledger.db'}"
    host, c = socket.gethostname(), store.client
    nothing = c.create_run(store.exp, tags=_dead_owner()).info.run_id
    c.set_terminated(nothing, "KILLED")
    logged = c.create_run(store.exp, tags=_dead_owner()).info.run_id
    c.create_run(store.exp, tags={"mlflow.parentRunId": logged, "impactflow.model": "mlp-dp"})
    c.set_terminated(logged, "KILLED")
    running = c.create_run(store.exp).info.run_id
    (e_nothing,) = _reserve(url, nothing, f"{host}/{_dead_pid()}/1", monkeypatch)
    (e_logged,) = _reserve(url, logged, f"{host}/{_dead_pid()}/1", monkeypatch)
    (e_running,) = _reserve(url, running, ls.owner_string(), monkeypatch)

    ledger = ls.Ledger(url)
    assert {e["id"] for e in ledger.stale_entries()} == {e_nothing, e_logged}
    assert ledger.summary(SHA)["epsilon"] == pytest.approx(3.0)
    shown = {e["id"]: ls.shown_status(e) for e in ledger.entries()}
    assert shown == {e_nothing: ls.STALE, e_logged: ls.STALE, e_running: "reserved"}

    # flagged only (release=False): nothing changes
    assert {r["entry_id"]: r["released"] for r in stale_reservations(url, store.uri, release=False)} == {
        e_nothing: False,
        e_logged: False,
    }
    assert ledger.summary(SHA)["epsilon"] == pytest.approx(3.0)

    result = {r["entry_id"]: r for r in stale_reservations(url, store.uri)}
    assert result[e_nothing]["released"] and not result[e_logged]["released"]
    assert "logged a model run" in result[e_logged]["reason"]
    entries = {e["id"]: e for e in ledger.entries()}
    assert entries[e_nothing]["status"] == "released" and "without logging any model" in entries[e_nothing]["note"]
    assert ledger.summary(SHA)["epsilon"] == pytest.approx(2.0)  # the killed, logged run still counts
    assert ledger.summary(SHA)["released"] == 1
    # without the tracking store nothing can be proved: flagged, kept
    assert [r["released"] for r in stale_reservations(url, None)] == [False]
    text = _render(ls.budget_tables(url))
    assert "stale: owner gone" in text and "1 stale reservation(s)" in text and "1 released reservation(s)" in text
    ledger.close()


def _render(tables) -> str:
    from rich.console import Console

    console = Console(record=True, width=400)
    for t in tables:
        console.print(t)
    return " ".join(console.export_text().split())  # wrapped captions read as one line


def test_a_ledger_from_before_the_owner_column_is_migrated(tmp_path):
    import sqlite3

    import impactflow.tasks.ledger_store as ls

    db = tmp_path / "privacy_ledger.db"
    with sqlite3.connect(db) as con:
        con.execute(
            "CREATE TABLE impactflow_privacy_ledger (id INTEGER PRIMARY KEY, dataset_sha256 VARCHAR(64) "
            "NOT NULL, contract VARCHAR(200), run_id VARCHAR(64), model VARCHAR(200), private BOOLEAN NOT "
            "NULL, epsilon FLOAT, delta FLOAT, planned_epsilon FLOAT, accountant VARCHAR(20), status "
            "VARCHAR(20) NOT NULL, budget_epsilon FLOAT, budget_delta FLOAT, created_at VARCHAR(40) NOT "
            "NULL, finalized_at VARCHAR(40))"
        )
        con.execute(
            "INSERT INTO impactflow_privacy_ledger (dataset_sha256, run_id, model, private, planned_epsilon, "
            f"status, created_at) VALUES ('{SHA}', 'r', 'm', 1, 2.0, 'reserved', 'then')"
        )
    ledger = ls.Ledger(f"sqlite:///{db}")
    (old,) = ledger.entries()
    assert old["owner"] is None and ls.shown_status(old) == "reserved"  # no owner: never called stale
    assert ledger.stale_entries() == []
    assert ledger.summary(SHA)["epsilon"] == 2.0
    ledger.close()


# --------------------------------------------------------------------------- (e) and the CLI


@pytest.mark.e2e  # starts a process
def test_pipeline_start_marks_versions_of_failed_runs_and_removes_orphans(store, tmp_path):
    """What ``start_tracking`` runs first: a version whose run FAILED (a full disk after
    registration) loses ``champion`` and is marked, like ``impactflow reconcile`` does."""
    from mlflow import MlflowClient

    from impactflow.tasks.reconcile import reconcile_at_start
    from impactflow.tasks.registry import CHAMPION, PARENT_TAG, RUN_STATUS_TAG

    c = store.client
    parent = c.create_run(store.exp, tags=_dead_owner()).info.run_id
    c.set_terminated(parent, "FAILED")
    child = c.create_run(store.exp, tags={"mlflow.parentRunId": parent, "impactflow.model": "mlp"}).info.run_id
    c.set_terminated(child, "FINISHED")
    c.create_registered_model("m")
    mv = c.create_model_version("m", f"runs:/{child}/model", run_id=child, tags={PARENT_TAG: parent})
    c.set_registered_model_alias("m", CHAMPION, mv.version)
    orphan = tmp_path / "out" / "runs" / "x" / "reports" / f".impact_report.json.{_dead_pid()}.abcdefgh.tmp"
    orphan.parent.mkdir(parents=True)
    orphan.write_text("{")

    result = reconcile_at_start(store.uri, store.exp, tmp_path / "out")
    assert [(v["name"], v["run_status"], v["alias_removed"]) for v in result["versions"]] == [("m", "FAILED", True)]
    assert CHAMPION not in MlflowClient(tracking_uri=store.uri).get_registered_model("m").aliases
    assert c.get_model_version("m", mv.version).tags[RUN_STATUS_TAG] == "FAILED"
    assert result["temp_files"] == [str(orphan)] and not orphan.exists()


@pytest.mark.e2e  # starts a process
def test_reconcile_command_reports_every_kind_of_leftover(tmp_path, monkeypatch):
    """``impactflow reconcile`` on a runs folder with a killed run, a duplicate child run, an
    orphan temporary file and a stale reservation: one line for each, then the counts."""
    from mlflow import MlflowClient
    from typer.testing import CliRunner

    from impactflow.flows.cli import app

    out = tmp_path / "impactflow_runs"
    out.mkdir()
    c = MlflowClient(tracking_uri=f"sqlite:///{out / 'mlflow.db'}")
    exp = c.create_experiment("e")
    killed = c.create_run(exp, tags=_dead_owner()).info.run_id
    done = c.create_run(exp).info.run_id
    c.set_terminated(done, "FINISHED")
    dup = c.create_run(exp, tags={"mlflow.parentRunId": done, "impactflow.model": "mlp"}).info.run_id
    orphan = out / "runs" / killed / "reports" / f".impact_report.json.{_dead_pid()}.abcdefgh.tmp"
    orphan.parent.mkdir(parents=True)
    orphan.write_text("{")
    (entry,) = _reserve(
        f"sqlite:///{out / 'privacy_ledger.db'}", killed, f"{socket.gethostname()}/{_dead_pid()}/1", monkeypatch
    )
    saved = dict(os.environ)
    for k in ("MLFLOW_TRACKING_URI", "PREFECT_API_URL", "IMPACTFLOW_LEDGER_URL"):
        os.environ.pop(k, None)
    os.environ["PREFECT_HOME"] = str(tmp_path / "prefect_home")  # no kept server there
    try:
        result = CliRunner().invoke(app, ["reconcile", "--output-dir", str(out)])
    finally:
        os.environ.clear()
        os.environ.update(saved)
    text = result.output
    assert result.exit_code == 0, text
    assert f"{killed}: KILLED" in text and f"{dup}: KILLED" in text and "2 run(s) reconciled" in text
    # no Prefect API in the command's environment says so; the session's test server (an in-process
    # setting once the Prefect tests ran) is asked instead: both are one line
    assert "Prefect: not checked" in text or "Prefect flow run(s) marked Crashed" in text
    assert f"removed {orphan}" in text and "1 orphan temporary file(s) removed" in text and not orphan.exists()
    # the killed run had no child run: its reservation is released
    assert (
        f"stale privacy-budget reservation {entry} " in text
        and "1 stale privacy-budget reservation(s), 1 released" in text
    )
    assert c.get_run(killed).info.status == "KILLED" and c.get_run(dup).info.status == "KILLED"


def test_summary_lines_say_when_prefect_was_not_checked_or_unreachable():
    from impactflow.tasks.reconcile import summary_lines

    empty = {"runs": [], "flow_runs": [], "versions": [], "temp_files": [], "reservations": []}
    assert (
        "Prefect: not checked (no PREFECT_API_URL and no kept server; the next `impactflow run` checks its "
        "flow runs)" in summary_lines({**empty, "prefect": None})
    )
    assert "Prefect: not reachable (ConnectError: refused); flow runs not checked" in summary_lines(
        {**empty, "prefect": "ConnectError: refused"}
    )
    assert summary_lines({**empty, "prefect": "ok"}) == [
        "0 run(s) reconciled",
        "0 Prefect flow run(s) marked Crashed",
        "0 model version(s) marked",
        "0 orphan temporary file(s) removed",
        "0 stale privacy-budget reservation(s), 0 released",
    ]


def test_disk_error_names_the_file_a_full_disk_refused_and_ignores_other_errors():
    from impactflow.audits.atomic import disk_error

    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/runs/a.gif", None, "/runs/mlartifacts/a.gif")
    assert disk_error(full).startswith(
        "cannot write /runs/mlartifacts/a.gif: No space left on device; the run ended FAILED and nothing was approved"
    )
    assert "File too large" in disk_error(OSError(errno.EFBIG, os.strerror(errno.EFBIG), "/runs/m.pt"))
    try:  # wrapped by a library: found through the cause chain
        try:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), "/ro/x")
        except OSError as inner:
            raise RuntimeError("MLflow could not log the artifact") from inner
    except RuntimeError as outer:
        assert "cannot write /ro/x: Read-only file system" in disk_error(outer)
    import sqlite3

    assert "database or disk is full" in disk_error(sqlite3.OperationalError("database or disk is full"))
    assert disk_error(OSError(errno.ENOENT, "No such file or directory", "x")) is None
    assert disk_error(ValueError("bad")) is None
