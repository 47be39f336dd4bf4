"""A config the pipeline accepts and that used to crash after training (issue 28, defect 1):
``disclosure.min_cell_size`` above the data set's size suppressed the report's only data sheet,
the schema refused the report, and the run ended in a traceback (FAILED, no champion)."""

from __future__ import annotations

import pytest


def test_min_cell_size_above_the_data_size_keeps_the_data_sheet(tmp_path):
    from impactflow.tasks.report import write_report
    from tests.report.conftest import make_inputs

    inputs = make_inputs()
    config = {**inputs["config"], "disclosure": {"min_cell_size": 100000}}
    out = write_report.fn(
        inputs["run"], inputs["data"], inputs["models"], inputs["provenance"], config, str(tmp_path)
    )  # raised ValueError: $.datasheets: [] should be non-empty
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "impact_report.html",
        "impact_report.json",
        "impact_report.md",
    ]
    import json

    doc = json.loads((tmp_path / "impact_report.json").read_text())
    (sheet,) = doc["datasheets"]
    assert sheet["representation"] == []  # every group row has fewer than 100000 people: suppressed
    assert doc["disclosure"]["min_cell_size"] == 100000 and doc["disclosure"]["suppressed_rows"] > 0
    assert out["status"] == doc["summary"]["status"]


@pytest.mark.e2e
def test_the_issues_config_runs_to_the_end_and_aliases_only_a_passing_run(cli, tmp_path):
    """`run` with min_cell_size=100000 and the performance thresholds null: exit 0 or 3 with no
    traceback (was exit 1 with a traceback after registering); champion only if it passed."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    r = cli(
        "run",
        "-c",
        "tabular",
        "--set",
        "data.sample=8000",
        "--set",
        "model.params.epochs=1",
        "--set",
        "disclosure.min_cell_size=100000",
        "--set",
        "gates.performance.min_accuracy=null",
        "--set",
        "gates.performance.min_roc_auc=null",
        "--set",
        "gates.performance.max_ece=null",
        uri=uri,
    )
    out = r.stdout + r.stderr
    assert r.returncode in (0, 3), out
    assert "Traceback" not in out
    client = MlflowClient(tracking_uri=uri)
    aliases = client.get_registered_model("impactflow-tabular-mlp").aliases or {}
    assert ("champion" in aliases) == (r.returncode == 0), (aliases, out)
