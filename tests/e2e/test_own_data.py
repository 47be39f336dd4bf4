"""Issue 21, "Done when": a dataset the project has never seen runs through ``impactflow run`` and
``impactflow audit`` with only files the user writes -- a contract YAML and a preset.

The dataset is built here from shipped data: 6,000 UCI Adult rows renamed (other column names,
sex as codes ``S1``/``S2``, income as ``high``/``low``), written semicolon-delimited with ``NA`` for
missing values. Its contract.yaml (written here, outside the repository) declares how to read it,
the columns' types, categories and ranges, a derived age band (bins) and a derived gender (value
map) that are the sensitive attributes. Nothing is registered anywhere. ``impactflow run`` and
``impactflow audit`` run from a pip-installed, non-editable copy of impactflow (``pip install
--target`` of a copy of the sources, deleted before the commands run), as a user's would."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import yaml

pytestmark = pytest.mark.e2e

RENAME = {
    "age": "years",
    "workclass": "job_sector",
    "education-num": "schooling_years",
    "marital-status": "marital",
    "occupation": "job",
    "sex": "sex_code",
    "hours-per-week": "weekly_hours",
    "capital-gain": "gains",
    "income": "earnings",
}
N_ROWS = 6000


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(folder, PYTHONPATH): impactflow pip-installed into a folder, not editable, from a copy of
    the sources that is deleted afterwards (the commands can read nothing from a source tree), and
    a PYTHONPATH with an unrelated top-level ``models`` package in front of it."""
    from tests.conftest import ROOT

    src = tmp_path_factory.mktemp("sources") / "impactflow"
    shutil.copytree(
        ROOT,
        src,
        ignore=shutil.ignore_patterns(
            ".git",
            ".venv",
            ".ci-venv",
            "build",
            "dist",
            "*.egg-info",
            "__pycache__",
            # caches other tests write while this copy runs (mypy's SQLite WAL files come and go)
            ".mypy_cache",
            ".ruff_cache",
            ".pytest_cache",
            "impactflow_runs",
            "site",
            "tests",
            "benchmarks",
            "mlflow.db",
        ),
    )
    target = tmp_path_factory.mktemp("installed")
    r = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), str(src)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    shutil.rmtree(src)
    assert not list(target.glob("__editable__*")) and not list(target.glob("*.pth")), "an editable install"
    # one import package: nothing else at the top level (issue 22, item 1)
    tops = sorted(p.name for p in target.iterdir() if p.name != "bin" and not p.name.endswith(".dist-info"))
    assert tops == ["impactflow"], tops
    # a user's own top-level `models` package in front of it, as in a notebook's environment
    user = target.parent / "user_packages"
    (user / "models").mkdir(parents=True)
    (user / "models" / "__init__.py").write_text("WHOSE = 'the user'\n")
    pythonpath = f"{user}{os.pathsep}{target}"
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import impactflow.flows, impactflow.models, models; "
            "print(impactflow.flows.__file__); print(impactflow.models.__file__); print(models.WHOSE)",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": pythonpath},
        cwd=target.parent,
        check=True,
    )
    flows_file, models_file, whose = probe.stdout.splitlines()
    assert flows_file.startswith(str(target)) and models_file.startswith(str(target)), probe.stdout
    assert whose == "the user"  # `import models` is the user's package, not ours
    return target, pythonpath


@pytest.fixture(scope="module")
def own_data(tmp_path_factory):
    """(folder, contract path, data path, the frame as written)."""
    from impactflow.data_contracts import get_contract, load_dataset

    adult = get_contract("adult")
    declared = {s.name: s for s in adult.declarations}
    df = load_dataset(adult).sample(n=N_ROWS, random_state=7).reset_index(drop=True)
    df = df[list(RENAME)].rename(columns=RENAME)
    df["sex_code"] = df["sex_code"].map({"Female": "S1", "Male": "S2"})
    df["earnings"] = df["earnings"].map({">50K": "high", "<=50K": "low"})
    folder = tmp_path_factory.mktemp("own_data")
    data = folder / "data" / "earnings.csv"
    data.parent.mkdir()
    df.to_csv(data, sep=";", index=False, na_rep="NA")

    def values(name):
        return json.dumps(list(declared[name].values))

    contract = textwrap.dedent(f"""\
        # written by a user: not registered anywhere
        name: earnings_survey
        source: "UCI Adult, renamed and reformatted for a test"
        license: "CC BY 4.0"
        read:
          format: csv
          delimiter: ";"
          header: true
          na_values: ["NA"]
        columns:
          years: {{type: integer, min: 17, max: 90}}
          job_sector: {{type: category, values: {values("workclass")}, max_missing: 0.1}}
          schooling_years: {{type: integer, min: 1, max: 16}}
          marital: {{type: category, values: {values("marital-status")}}}
          job: {{type: category, values: {values("occupation")}, max_missing: 0.1}}
          sex_code: {{type: category, values: [S1, S2]}}
          weekly_hours: {{type: integer, min: 1, max: 99}}
          gains: {{type: integer, min: 0, max: 99999}}
          earnings: {{type: category, values: [low, high]}}
        derived:
          gender: {{from: sex_code, map: {{S1: female, S2: male}}}}
          age_band: {{from: years, bins: [30, 50], labels: ["<30", "30-49", "50+"]}}
        target: earnings
        positive_label: high
        favourable_outcome: high
        sensitive: [gender, age_band]
        min_group_size: 30
        exclude_from_features: [sex_code]
        quasi_identifiers: [years, gender]
        """)
    (folder / "contract").mkdir()
    (folder / "contract" / "contract.yaml").write_text(contract)
    return folder, folder / "contract" / "contract.yaml", data, df


def test_impactflow_run_on_an_unregistered_dataset(cli, own_data, installed):
    from mlflow import MlflowClient

    folder, contract, data, df = own_data
    preset = folder / "my_run.yaml"
    preset.write_text(
        yaml.safe_dump(
            {
                "extends": "tabular",
                "description": "earnings survey, own contract",
                "data": {"contract": "contract", "path": str(data)},  # the contract's folder, relative to the cwd
                "model": {"params": {"epochs": 1}, "baselines": []},
                "train": {"device": "cpu"},
                "gates": {
                    "performance": {"min_accuracy": 0.5, "min_roc_auc": 0.5, "max_ece": 0.5},
                    "fairness": {
                        "intersections": [["gender", "age_band"]],
                        "skip": {
                            "max_demographic_parity_difference": "test: any value",
                            "max_equalized_odds_difference": "test: any value",
                            "four_fifths_ratio": "test: any value",
                        },
                    },
                },
                "tracking": {"output_dir": str(folder / "runs")},
            }
        )
    )
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    r = cli("validate", "--config", str(preset), cwd=folder, installed=installed[0], pythonpath=installed[1])
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert f"{N_ROWS} rows meet contract 'earnings_survey'" in out
    r = cli("run", "--config", str(preset), uri=uri, cwd=folder, installed=installed[0], pythonpath=installed[1])
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "Overall: PASS" in out and "Traceback" not in out
    (path,) = (folder / "runs").glob("runs/*/reports/impact_report.json")
    report = json.loads(path.read_text())
    text = json.dumps(report)
    assert report["data"]["contract_result"]["success"] is True
    assert report["data"]["contract_result"]["statistics"]["rows"] == N_ROWS
    for name in ("gender", "age_band", "gender_x_age_band"):
        assert f'"{name}"' in text, name  # the derived columns are the audited groups
    client = MlflowClient(tracking_uri=uri)
    (parent,) = [
        run
        for run in client.search_runs([e.experiment_id for e in client.search_experiments()])
        if "mlflow.parentRunId" not in run.data.tags
    ]
    (child,) = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    metrics = child.data.metrics
    assert "fairness/gender/demographic_parity_difference" in metrics
    assert "fairness/age_band/demographic_parity_difference" in metrics
    assert metrics["eval/accuracy"] > float(np.mean(df["earnings"] == "low")) - 0.05  # learnt something


def test_a_bad_contract_stops_the_run_before_any_task(cli, own_data, tmp_path):
    _, contract, data, _ = own_data
    bad = tmp_path / "bad" / "contract.yaml"
    bad.parent.mkdir()
    bad.write_text(contract.read_text().replace("favourable_outcome: high", "favourable_outcome: rich"))
    r = cli(
        "run",
        "--set",
        f"data.contract={bad.parent}",
        "--set",
        f"data.path={data}",
        "--set",
        f"tracking.output_dir={tmp_path / 'runs'}",
    )
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert f"{bad}: favourable_outcome: 'rich' is not one of the labels ['low', 'high']" in out
    assert "Traceback" not in out and not (tmp_path / "runs").exists()


def test_impactflow_audit_on_the_decisions_of_that_dataset(cli, own_data, installed):
    """Audit-only on a decision log of the same people: the derived groups (read through the user's
    contract) are the sensitive columns; the audit's numbers are the per-group rates of this table."""
    from impactflow.data_contracts import get_contract, load_dataset

    folder, contract, data, _ = own_data
    df = load_dataset(get_contract(str(contract)), data)
    score = 1 / (1 + np.exp(-(df["schooling_years"] - 10 + (df["weekly_hours"] - 40) / 10)))
    table = df[["earnings", "gender", "age_band"]].assign(score=score.round(4))
    decisions = folder / "decisions.csv"
    table.to_csv(decisions, index=False)
    out_dir = folder / "audit_runs"
    r = cli(
        "audit",
        "--data",
        str(decisions),
        "--label",
        "earnings",
        "--positive-label",
        "high",
        "--score",
        "score",
        "--sensitive",
        "gender,age_band",
        "--output-dir",
        str(out_dir),
        uri=f"sqlite:///{folder / 'audit.db'}",
        cwd=folder,
        installed=installed[0],
        pythonpath=installed[1],
    )
    out = r.stdout + r.stderr
    assert r.returncode in (0, 3), out  # 3: a fairness gate failed (a finding, not an error)
    assert "Traceback" not in out
    (path,) = out_dir.glob("runs/*/reports/impact_report.json")
    (model,) = json.loads(path.read_text())["models"]
    metrics = model["audits"]["fairness"]["metrics"]
    predicted = (table["score"] >= 0.5).astype(float)  # the default --threshold
    for column in ("gender", "age_band"):
        rates = predicted.groupby(table[column]).mean()  # selection rate per group, by hand
        assert metrics[f"fairness/{column}/demographic_parity_difference"] == pytest.approx(rates.max() - rates.min())
        assert metrics[f"fairness/{column}/demographic_parity_ratio"] == pytest.approx(rates.min() / rates.max())
