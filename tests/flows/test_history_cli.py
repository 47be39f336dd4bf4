"""`impactflow history` (every gate across the last runs, from their logged reports) and
`impactflow compare` on identical runs ("no differences", not an empty table)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.audits.test_history import _report


def _cli(args: list[str], env: dict):
    from typer.testing import CliRunner

    from impactflow.flows.cli import app

    saved = dict(os.environ)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    os.environ.update(env)
    try:
        return CliRunner().invoke(app, args)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _store(tmp_path: Path, experiments: dict[str, list[dict]]) -> str:
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    for name, reports in experiments.items():
        exp = client.create_experiment(name, artifact_location=(tmp_path / name).resolve().as_uri())
        for i, report in enumerate(reports):
            run = client.create_run(exp, tags={"impactflow.preset": "tabular"}, start_time=1_000 + i).info.run_id
            folder = tmp_path / run / "reports"
            folder.mkdir(parents=True)
            (folder / "impact_report.json").write_text(json.dumps({**report, "run": {**report["run"], "run_id": run}}))
            client.log_artifacts(run, str(folder), "reports")
            client.set_terminated(run, "FINISHED")
    return uri


def test_history_prints_each_gate_across_runs_oldest_first(tmp_path):
    uri = _store(
        tmp_path,
        {"impactflow-tabular": [_report("r1", 0.84, "pass", low=0.82, high=0.86), _report("r2", 0.78, "fail")]},
    )
    result = _cli(["history", "--json"], {"MLFLOW_TRACKING_URI": uri})
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["experiment"] == "impactflow-tabular" and len(out["runs"]) == 2
    (acc,) = [r for r in out["gates"] if r["gate"] == "eval/accuracy"]
    assert [(p["value"], p["status"]) for p in acc["points"]] == [(0.84, "pass"), (0.78, "fail")]
    result = _cli(["history", "--last", "1"], {"MLFLOW_TRACKING_URI": uri, "COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "mlp / eval/accuracy (>= 0.8000)" in result.output and "0.7800 fail" in result.output
    assert "0.8400" not in result.output  # --last 1: only the newest run


def test_history_names_the_experiments_when_it_cannot_choose(tmp_path):
    uri = _store(tmp_path, {"a": [_report("r1", 0.84, "pass")], "b": [_report("r1", 0.84, "pass")]})
    result = _cli(["history"], {"MLFLOW_TRACKING_URI": uri})
    assert result.exit_code == 2 and "--experiment: choose one of the experiments with runs (a, b)" in result.output
    result = _cli(["history", "--experiment", "c"], {"MLFLOW_TRACKING_URI": uri})
    assert result.exit_code == 2 and "--experiment 'c': no such experiment (known: a, b)" in result.output


def test_compare_of_identical_runs_says_no_differences(tmp_path):
    path = tmp_path / "impact_report.json"
    report = _report("r1", 0.84, "pass")
    report["summary"] = {"status": "pass"}
    path.write_text(json.dumps(report))
    result = _cli(["compare", str(path), str(path)], {})
    assert result.exit_code == 0, result.output
    assert "no differences" in result.output and "┏" not in result.output
