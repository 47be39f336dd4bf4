"""The pipeline signs its run folder and its models: the real run dir verifies, by path and by
MLflow run id (which re-hashes the logged and registered models); one changed byte fails
`impactflow report verify` (exit 4), so do the registered MLP's files swapped for the logistic
regression's; runs form a hash chain; `compare` reads both."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from impactflow.audits import evidence as ev
from impactflow.flows.config import load_config

pytestmark = pytest.mark.e2e

# the first run logs the MLP and its logreg baseline and registers the MLP; the second is lighter
FAST = ["data.sample=8000", "model.params.epochs=1", "train.device=cpu"]
LIGHT = ["model.baselines=[]", "tracking.register_models=false"]


@pytest.fixture(scope="module")
def two_runs(prefect_api, tmp_path_factory):
    """Two tiny tabular runs in one experiment (the second chains to the first)."""
    out = tmp_path_factory.mktemp("evidence_runs")
    uri = f"sqlite:///{out / 'mlflow.db'}"
    os.environ["MLFLOW_TRACKING_URI"] = uri
    try:
        from impactflow.flows.pipeline import run_pipeline

        first = run_pipeline(load_config("tabular", [f"tracking.output_dir={out}", *FAST]))
        second = run_pipeline(load_config("tabular", [f"tracking.output_dir={out}", *FAST, *LIGHT]))
    finally:
        del os.environ["MLFLOW_TRACKING_URI"]
    return out, uri, first, second


def _run_dir(out: Path, summary: dict) -> Path:
    return out / "runs" / summary["parent_run_id"]


def _statement(run_dir: Path) -> dict:
    import base64

    return json.loads(base64.b64decode(json.loads((run_dir / ev.MANIFEST_NAME).read_bytes())["payload"]))


def _own_trust() -> dict:
    return ev.trusted_keys()  # the session's IMPACTFLOW_HOME key signed the runs


def test_run_folder_verifies_and_report_shows_its_integrity_cover(two_runs):
    out, uri, first, _ = two_runs
    run_dir = _run_dir(out, first)
    res = ev.verify(run_dir, trust=_own_trust())
    assert res.ok, res.problems
    assert res.run_id == first["parent_run_id"]
    report_path = Path(first["report"]["json"])
    report = json.loads(report_path.read_text())
    statement = _statement(run_dir)
    assert ev.statement_problems(statement) == []
    pred = statement["predicate"]
    assert {
        "reports/impact_report.json",
        "reports/impact_report.md",
        "reports/impact_report.html",
        "evidence.json",
    } <= set(pred["files"])
    assert any(p.startswith("models/") for p in pred["files"])
    assert pred["summary"]["status"] == report["summary"]["status"] == first["status"]
    assert pred["gates"] == report["summary"]["gates"]
    # every logged model's files, the MLP bound to its registry version (tagged with its digest)
    models = {m["name"]: m for m in pred["models"]}
    assert set(models) == {"mlp", "logreg"}
    assert models["mlp"]["registry"] == {
        "name": first["models"]["mlp"]["registry"]["name"],
        "version": first["models"]["mlp"]["registry"]["version"],
    }
    assert models["logreg"]["registry"] is None and "MLmodel" in models["mlp"]["files"]
    from mlflow import MlflowClient

    reg = models["mlp"]["registry"]
    version = MlflowClient(uri).get_model_version(reg["name"], reg["version"])
    assert version.tags["impactflow.model_sha256"] == models["mlp"]["digest"] == ev.model_digest(models["mlp"]["files"])
    names = {s["name"] for s in statement["subject"]}
    assert {"model/mlp", "model/logreg", f"models:/{reg['name']}/{reg['version']}"} <= names
    assert {f"data/{Path(f['path']).name}" for f in report["data"]["files"]} <= names
    integ = report["integrity"]
    assert integ["evidence_manifest_sha256"] == hashlib.sha256((run_dir / "evidence.json").read_bytes()).hexdigest()
    assert integ["signer_public_key"] == pred["signer"]["public_key"]
    assert integ["signer_key_id"] == pred["signer"]["key_id"]
    assert integ["previous_report_sha256"] is None  # first run of the experiment
    assert res.report_sha256 == hashlib.sha256(report_path.read_bytes()).hexdigest()


def test_second_run_chains_to_the_first_reports_hash_and_tags_runs(two_runs):
    out, uri, first, second = two_runs
    from mlflow import MlflowClient

    first_sha = hashlib.sha256(Path(first["report"]["json"]).read_bytes()).hexdigest()
    report2 = json.loads(Path(second["report"]["json"]).read_text())
    assert report2["integrity"]["previous_report_sha256"] == first_sha
    assert ev.verify(_run_dir(out, second), trust=_own_trust()).previous_report_sha256 == first_sha
    tags = MlflowClient(uri).get_run(first["parent_run_id"]).data.tags
    assert tags["impactflow.report_sha256"] == first_sha
    assert (
        tags["impactflow.manifest_sha256"]
        == hashlib.sha256((_run_dir(out, first) / ev.MANIFEST_NAME).read_bytes()).hexdigest()
    )


def test_verify_by_mlflow_run_id_downloads_the_same_evidence(two_runs, tmp_path):
    out, uri, first, _ = two_runs
    from impactflow.tasks.evidence import check_models, download_run_artifacts

    local = download_run_artifacts(uri, first["parent_run_id"], tmp_path / "dl")
    res = ev.verify(local, trust=_own_trust())
    assert res.ok, res.problems
    assert res.n_files == len(_statement(_run_dir(out, first))["predicate"]["files"])
    assert len(res.models) == 2 and check_models(uri, res.models) == []


def test_cli_verify_exit_codes_on_untouched_and_one_byte_edited_report(two_runs, cli, tmp_path):
    import shutil

    out, uri, first, second = two_runs
    ok = cli("report", "verify", str(_run_dir(out, first) / "reports"))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "verified" in ok.stdout
    by_id = cli("report", "verify", first["parent_run_id"], uri=uri)
    assert by_id.returncode == 0, by_id.stdout + by_id.stderr
    assert "2 model(s) re-hashed from MLflow" in by_id.stdout
    pub = _statement(_run_dir(out, first))["predicate"]["signer"]["public_key"]
    assert cli("report", "verify", str(_run_dir(out, first)), "--key", pub).returncode == 0
    other = cli("report", "verify", str(_run_dir(out, first)), "--key", "11" * 32)  # another signer pinned
    assert other.returncode == 5 and "UNTRUSTED SIGNER" in other.stdout

    copy = tmp_path / "copy"
    shutil.copytree(_run_dir(out, first), copy)
    html = copy / "reports" / "impact_report.html"
    data = bytearray(html.read_bytes())
    data[len(data) // 2] ^= 0x20
    html.write_bytes(bytes(data))
    bad = cli("report", "verify", str(copy), "--json")
    assert bad.returncode == 4, bad.stdout + bad.stderr
    assert json.loads(bad.stdout)["changed"] == ["reports/impact_report.html"]
    table = cli("report", "verify", str(copy))
    assert table.returncode == 4 and "reports/impact_report.html" in table.stdout
    missing = cli("report", "verify", "not-a-run")
    assert missing.returncode == 1 and "not an MLflow run id" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_cli_compare_two_runs_by_id(two_runs, cli):
    out, uri, first, second = two_runs
    res = cli("compare", first["parent_run_id"], second["parent_run_id"], "--json", uri=uri)
    assert res.returncode == 0, res.stdout + res.stderr
    doc = json.loads(res.stdout)
    rows = {r["metric"]: r for r in doc["metrics"]}
    a_acc = first["models"]["mlp"]["metrics"]["eval/accuracy"]
    b_acc = second["models"]["mlp"]["metrics"]["eval/accuracy"]
    row = rows["mlp:eval/accuracy"]
    assert row["a"] == pytest.approx(a_acc) and row["b"] == pytest.approx(b_acc)
    assert row["direction"] == ("same" if a_acc == b_acc else "better" if b_acc > a_acc else "worse")
    table = cli("compare", str(_run_dir(out, first)), second["report"]["json"], "--all")
    assert table.returncode == 0 and "mlp:eval/accuracy" in table.stdout


def test_second_run_reuses_the_first_runs_passing_contract_result(two_runs):
    """Same data, same contract: the second run reuses the result (data.reuse_validation), and
    its own run folder still holds the Data Docs, signed with the rest."""
    out, _, first, second = two_runs
    one, two = (json.loads(Path(s["report"]["json"]).read_text())["data"]["contract_result"] for s in (first, second))
    assert "reused" not in one["statistics"] and one["success"]
    reused = two["statistics"]["reused"]
    assert two["success"] and reused["validation_seconds"] == one["statistics"]["seconds"]
    assert (out / "cache" / "validation" / reused["key"] / "report.json").is_file()
    assert second["parent_run_id"] in Path(two["data_docs"]).parts  # this run's own copy
    assert "data_docs/index.html" in _statement(_run_dir(out, second))["predicate"]["files"]
    assert "Result reused" in Path(second["report"]["md"]).read_text()


def test_registered_mlp_swapped_for_the_logreg_fails_verify_by_run_id(two_runs, cli):
    """Regression: after the registered MLP's files were swapped for the logistic regression's,
    `report verify <run id>` still exited 0 (the models live in child runs, outside the
    parent's artifacts). Runs last in this module: it restores the files afterwards."""
    import shutil
    from urllib.parse import urlparse

    from mlflow import MlflowClient

    out, uri, first, _ = two_runs
    client = MlflowClient(uri)
    pred = _statement(_run_dir(out, first))["predicate"]
    locations = {
        m["name"]: Path(urlparse(client.get_logged_model(m["model_id"]).artifact_location).path) for m in pred["models"]
    }
    mlp, logreg = locations["mlp"], locations["logreg"]
    backup = out / "mlp-backup"
    shutil.copytree(mlp, backup)
    try:
        shutil.rmtree(mlp)
        shutil.copytree(logreg, mlp)
        res = cli("report", "verify", first["parent_run_id"], uri=uri)
        assert res.returncode == 4, res.stdout + res.stderr
        text = " ".join(res.stdout.split())
        assert "model mlp (run" in text and "model mlp (models:/" in text
    finally:
        shutil.rmtree(mlp)
        shutil.copytree(backup, mlp)
    assert cli("report", "verify", first["parent_run_id"], uri=uri).returncode == 0


def test_verify_of_a_folder_checks_what_its_run_logged(two_runs, cli):
    """A run killed while logging (KILLED, half its artifacts uploaded) has an intact local
    folder: `report verify FOLDER` finds the store beside it and fails on the logged copy (exit
    4); `--local-only` checks the folder alone. The state is restored afterwards."""
    from urllib.parse import urlparse

    from mlflow import MlflowClient

    out, uri, _, second = two_runs
    run_dir, run_id = _run_dir(out, second), second["parent_run_id"]
    ok = cli("report", "verify", str(run_dir))
    assert ok.returncode == 0 and "the copy logged to MLflow is this one" in ok.stdout, ok.stdout + ok.stderr
    client = MlflowClient(uri)
    logged_html = Path(urlparse(client.get_run(run_id).info.artifact_uri).path) / "reports" / "impact_report.html"
    assert logged_html.is_file()
    aside = logged_html.with_name("aside.html")
    logged_html.rename(aside)
    client.set_terminated(run_id, "KILLED")
    try:
        half = cli("report", "verify", str(run_dir))
        assert half.returncode == 4, half.stdout + half.stderr
        assert "status KILLED, not FINISHED" in half.stdout
        assert "MLflow copy" in half.stdout and "impact_report.html" in half.stdout
        local = cli("report", "verify", str(run_dir), "--local-only")
        assert local.returncode == 0, local.stdout + local.stderr
    finally:
        aside.rename(logged_html)
        client.set_terminated(run_id, "FINISHED")
