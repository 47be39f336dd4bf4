"""Issue 21, item 2: from a CSV to a first audited run in two commands -- ``impactflow init`` then
``impactflow run`` -- on a dataset built here from shipped Adult rows (renamed, recoded,
semicolon-delimited, ``NA`` for missing, with a person id column). Nothing is registered."""

from __future__ import annotations

import json

import pytest
import yaml

pytestmark = pytest.mark.e2e

RENAME = {
    "age": "years",
    "workclass": "job_sector",
    "education-num": "schooling_years",
    "marital-status": "marital",
    "sex": "sex_code",
    "hours-per-week": "weekly_hours",
    "income": "earnings",
}
N_ROWS = 4000


def test_init_then_run(cli, tmp_path):
    from impactflow.data_contracts import get_contract, load_dataset

    df = load_dataset(get_contract("adult")).sample(n=N_ROWS, random_state=11).reset_index(drop=True)
    df = df[list(RENAME)].rename(columns=RENAME)
    df["sex_code"] = df["sex_code"].map({"Female": "S1", "Male": "S2"})
    df["earnings"] = df["earnings"].map({">50K": "high", "<=50K": "low"})
    df.insert(0, "person_id", [f"{4_200_000 + 13 * i}" for i in range(N_ROWS)])
    df.to_csv(tmp_path / "earnings.csv", sep=";", index=False, na_rep="NA")

    r = cli(
        "init",
        "--data",
        "earnings.csv",
        "--label",
        "earnings",
        "--sensitive",
        "sex_code,years",
        "--out",
        "my_contract",
        cwd=tmp_path,
    )
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "impactflow run --config my_contract/run.yaml" in out
    contract = yaml.safe_load((tmp_path / "my_contract" / "contract.yaml").read_text())
    assert contract["read"]["delimiter"] == ";" and "NA" in contract["read"]["na_values"]
    assert contract["exclude_from_features"] == ["person_id"]
    assert contract["sensitive"] == ["sex_code", "years_band"]

    # the command init printed, with a short training
    r = cli(
        "run",
        "--config",
        "my_contract/run.yaml",
        "--set",
        "model.params.epochs=2",
        "--set",
        "train.device=cpu",
        uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        cwd=tmp_path,
        cold=True,  # a new user's first run: a fresh process, no warm runner
    )
    out = r.stdout + r.stderr
    assert r.returncode in (0, 3), out  # completed: passed, or a gate failed (the default gates are strict)
    assert "Traceback" not in out
    (path,) = (tmp_path / "impactflow_runs").glob("runs/*/reports/impact_report.json")
    report = json.loads(path.read_text())
    assert report["data"]["contract_result"]["success"] is True
    assert report["data"]["contract_result"]["statistics"]["rows"] == N_ROWS
    text = json.dumps(report)
    for name in ("sex_code", "years_band", "sex_code_x_years_band"):
        assert f'"{name}"' in text, name
