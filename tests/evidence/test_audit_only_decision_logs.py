"""Audit-only on real decision logs (issue 21, items 4 and 6).

A COMPAS-like log, hand-counted (label 'Yes' = re-offended; the predicted label 'Yes' = high risk,
the adverse decision; 'No' = low risk, favourable):

    African-American (n=100): TP 40, FN 10, FP 20, TN 30 -> predicted 'No' (favourable) 40
    Caucasian        (n=100): TP 20, FN 20, FP 10, TN 50 -> predicted 'No' 70
    Asian            (n=11):  TN 11                       -> too small to judge (min 30)

Unit tests run the audit task's function and build the report without a flow; the e2e test runs
``impactflow audit`` as a process."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from impactflow.audits.render import render_markdown
from impactflow.audits.report import build_report
from impactflow.errors import ConfigError
from impactflow.tasks.audit_only import (
    audit_predictions,
    group_settings,
    model_record,
    parse_intersections,
    present_groups_only,
    read_intended_use,
)


def _rows(group, tp, fn, fp, tn, sex="F"):
    # the predicted label: 'Yes' (predicted to re-offend: high risk) or 'No' (low risk)
    return (
        [(group, sex, "Yes", "Yes")] * tp
        + [(group, sex, "Yes", "No")] * fn
        + [(group, sex, "No", "Yes")] * fp
        + [(group, sex, "No", "No")] * tn
    )


def compas_log() -> pd.DataFrame:
    rows = (
        _rows("African-American", 20, 5, 10, 15, "M")
        + _rows("African-American", 20, 5, 10, 15, "F")
        + _rows("Caucasian", 10, 10, 5, 25, "M")
        + _rows("Caucasian", 10, 10, 5, 25, "F")
        + _rows("Asian", 0, 0, 0, 11, "M")
    )
    return pd.DataFrame(rows, columns=["race", "sex", "two_year_recid", "risk"])


def _audits(df, favourable="No", intersections=None):
    return audit_predictions.fn(
        df,
        "two_year_recid",
        None,
        "risk",
        ["race", "sex"],
        "Yes",
        0.5,
        {"fairness": {"n_boot": 100}},
        favourable,
        group_settings(30, intersections),
    )


def _report(df, audits, use=None):
    record = model_record(
        "compas",
        audits,
        "r1",
        score=None,
        prediction="risk",
        threshold=0.5,
        positive="Yes",
        threshold_given=False,
        favourable="No",
    )
    data = {
        "contract": "audit-only:compas.csv",
        "files": [{"path": "compas.csv", "sha256": "0" * 64}],
        "dataset_sha256": "0" * 64,
        "n_rows": len(df),
        "source": "compas.csv",
        "license": "unknown",
        "splits": {"train": 0, "validation": 0, "test": len(df)},
        "contract_result": {"success": True, "total_expectations": 5, "failures": []},
        "representation": [],
        "missing": {},
        "sensitive": ["race", "sex"],
        "excluded_features": [],
        "audit_only": True,
        "favourable_outcome": "No",
    }
    config = {"label": "two_year_recid", **({"use": use} if use else {})}
    run = {
        "run_id": "r1",
        "flow_run_id": None,
        "preset": "audit-only",
        "started_at": "2026-01-01T10:00:00+00:00",
        "finished_at": "2026-01-01T10:01:00+00:00",
        "mlflow": {"tracking_uri": "sqlite:////tmp/m.db", "experiment": "e", "parent_run_id": "r1"},
    }
    provenance = {
        "git_commit": "0123abc",
        "git_dirty": False,
        "python": "3.11",
        "platform": "Linux",
        "packages": {},
        "seeds": {},
        "command": "impactflow audit",
    }
    return build_report(run=run, data=data, models=[record], provenance=provenance, config=config)


def test_a_small_group_is_too_small_to_judge_not_a_refused_table():
    fairness = _audits(compas_log())["fairness"]
    rows = {(r["attribute"], r["group"]): r for r in fairness.by_group}
    assert rows[("race", "Asian")]["too_small"] and rows[("race", "Asian")]["n"] == 11
    assert fairness.metrics["fairness/race/n_groups_judged"] == 2
    assert any("too small to judge (n < 30): 'Asian' (n=11)" in n for n in fairness.notes)
    # the four-fifths ratio of the judged groups, on the favourable ('No') rate: 0.40 / 0.70
    assert fairness.metrics["fairness/race/four_fifths_min_ratio"] == pytest.approx(0.40 / 0.70)
    gaps = {g["metric"]: g for g in fairness.details["gaps"]}
    assert gaps["fairness/race/four_fifths_min_ratio"]["disadvantaged_group"] == "African-American"
    # the suite only asks every group to be present
    suite = {
        "expectations": [
            {
                "type": "expect_table_row_count_to_be_between",
                "kwargs": {
                    "min_value": 30,
                    "row_condition": {
                        "type": "comparison",
                        "column": {"name": "race"},
                        "operator": "==",
                        "parameter": "Asian",
                    },
                },
                "description": "Sensitive group race == Asian: at least 30 rows",
            }
        ]
    }
    relaxed = present_groups_only(suite, ["race"])["expectations"][0]
    assert relaxed["kwargs"]["min_value"] == 1 and relaxed["description"].endswith("present (at least 1 row)")


def test_intersections_are_configurable():
    df = compas_log()
    assert "race_x_sex" in _audits(df)["fairness"].details["attributes"]  # default: all combined
    assert _audits(df, intersections=[])["fairness"].details["intersections"] == []
    assert parse_intersections("none", ["race", "sex"]) == []
    assert parse_intersections("race,sex", ["race", "sex"]) == [["race", "sex"]]
    assert parse_intersections(None, ["race"]) is None
    with pytest.raises(ConfigError, match="'age' is not a --sensitive column"):
        parse_intersections("race,age", ["race", "sex"])
    with pytest.raises(ConfigError, match="fewer than two columns"):
        parse_intersections("race", ["race", "sex"])


def test_intended_use_file(tmp_path):
    p = tmp_path / "use.yaml"
    p.write_text("purpose: pretrial risk screening\nintended_users: [judges]\n")
    assert read_intended_use(str(p)) == {"purpose": "pretrial risk screening", "intended_users": ["judges"]}
    p.write_text("purpse: x\n")
    with pytest.raises(ConfigError, match=r"use.yaml: purpse: unknown key \(did you mean 'purpose'\?\)"):
        read_intended_use(str(p))
    with pytest.raises(ConfigError, match="cannot be read"):
        read_intended_use(str(tmp_path / "missing.yaml"))


def test_audit_only_report_wording_and_the_disadvantaged_group():
    df = compas_log()
    report = _report(df, _audits(df), use={"purpose": "pretrial risk screening", "intended_users": ["judges"]})
    md = render_markdown(report)
    assert "used as a model feature" not in md
    assert "a column of the decision log" in md
    # no membership-inference sentence (none ran); the AI Act's own wording in section 12 aside
    told = "\n".join(line for line in md.splitlines() if not line.startswith("| EU AI Act |"))
    assert "membership" not in told.lower() and "LiRA" not in told
    assert "trained without differential privacy" not in md
    assert "Differential privacy: unknown: the model was not trained here" in md
    assert "threshold 0.5" not in md and "score >= 0.5" not in md  # no threshold was given
    assert "hard predictions as logged" in md
    assert report["intended_use"]["purpose"] == "pretrial risk screening"
    assert "pretrial risk screening" in md
    gaps = [g for g in report["bias"]["gaps"] if g["metric"] == "fairness/race/four_fifths_min_ratio"]
    assert gaps[0]["disadvantaged_group"] == "African-American" and gaps[0]["advantaged_group"] == "Caucasian"
    assert "'No'" in report["bias"]["favourable"]
    # the pair is named in the rendered report (notes and gate notes come from the JSON)
    assert "disadvantaged: 'African-American'" in md
    assert "0.5714" in json.dumps(report)


def test_reconcile_covers_the_audit_flow():
    from impactflow.flows.audit_only import AUDIT_ONLY_FLOW
    from impactflow.tasks.reconcile import PIPELINE_FLOWS

    assert AUDIT_ONLY_FLOW in PIPELINE_FLOWS


@pytest.mark.e2e
def test_cli_audit_of_a_decision_log_through_a_contract(cli, tmp_path):
    """A semicolon log read through a contract (a derived column as sensitive), one group of 11 rows,
    'No' favourable (from the contract), no intersections, an intended-use file: exit 3 (four-fifths fails), and the
    report names African-American as the disadvantaged group."""
    df = compas_log()
    df["race_code"] = df["race"].map({"African-American": "AA", "Caucasian": "CA", "Asian": "AS"})
    df.drop(columns=["race"]).to_csv(tmp_path / "log.csv", sep=";", index=False)
    folder = tmp_path / "c"
    folder.mkdir()
    (folder / "contract.yaml").write_text("""
name: compas_log
read: {format: csv, delimiter: ";"}
columns:
  sex: {type: category, values: [M, F]}
  two_year_recid: {type: category, values: ["Yes", "No"]}
  risk: {type: category, values: ["Yes", "No"]}
  race_code: {type: category, values: [AA, CA, AS]}
derived:
  race: {from: race_code, map: {AA: African-American, CA: Caucasian, AS: Asian}}
target: two_year_recid
positive_label: "Yes"
favourable_outcome: "No"
sensitive: [race]
min_group_size: 30
""")
    (tmp_path / "use.yaml").write_text("purpose: pretrial risk screening\n")
    r = cli(
        "audit",
        "--data",
        str(tmp_path / "log.csv"),
        "--contract",
        str(folder),
        "--prediction",
        "risk",
        "--intersections",
        "none",
        "--intended-use",
        str(tmp_path / "use.yaml"),
        "--output-dir",
        str(tmp_path / "runs"),
        uri=f"sqlite:///{tmp_path / 'm.db'}",
    )
    assert r.returncode == 3, r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    report = json.loads(next((tmp_path / "runs").rglob("impact_report.json")).read_text())
    fairness = report["models"][0]["audits"]["fairness"]
    assert fairness["metrics"]["fairness/race/four_fifths_min_ratio"] == pytest.approx(0.40 / 0.70)
    assert fairness["details"]["intersections"] == []
    assert report["data"]["contract"] == "compas_log"
    assert report["intended_use"]["purpose"] == "pretrial risk screening"
    assert {g["disadvantaged_group"] for g in report["bias"]["gaps"]} == {"African-American"}
    r = cli(
        "audit",
        "--data",
        str(tmp_path / "log.csv"),
        "--contract",
        str(folder),
        "--prediction",
        "risk",
        "--favourable-outcome",
        "Medium",
        "--output-dir",
        str(tmp_path / "runs"),
        uri=f"sqlite:///{tmp_path / 'm.db'}",
    )
    assert r.returncode == 1 and "--favourable-outcome 'Medium': not a value of column 'two_year_recid'" in r.stderr


def test_every_number_of_the_audit_only_report_is_in_its_json():
    """The traceability rule of tests/report/test_real_reports.py on this report: the gap notes and
    the favourable-outcome wording add numbers only from the JSON."""
    from impactflow.audits.render import render_html
    from tests.report.test_real_reports import html_text, untraceable

    df = compas_log()
    report = _report(df, _audits(df), use={"purpose": "pretrial risk screening"})
    assert untraceable(render_markdown(report), report) == set()
    assert untraceable(html_text(render_html(report)), report) == set()


@pytest.mark.e2e
def test_cli_audit_scores_a_registered_model_at_its_own_threshold(cli, tmp_path):
    """`impactflow audit --model models:/NAME/VERSION`: a model trained by `impactflow run` (threshold chosen
    from costs 5:1) scores a table of Adult rows here and is audited at its own threshold."""
    import numpy as np

    from impactflow.data_contracts import get_contract, load_dataset

    uri = f"sqlite:///{tmp_path / 'm.db'}"
    sets = [
        "data.sample=4000",
        "model.params.epochs=1",
        "model.baselines=[]",
        "train.device=cpu",
        "model.costs.false_positive=5",
        "model.costs.false_negative=1",
        f"tracking.output_dir={tmp_path / 'o'}",
    ]
    r = cli("run", *[a for s in sets for a in ("--set", s)], uri=uri)
    assert r.returncode in (0, 3), r.stdout + r.stderr
    (path,) = (tmp_path / "o").glob("runs/*/reports/impact_report.json")
    run = json.loads(path.read_text())
    mlp = run["models"][0]
    own = mlp["training"]["decision"]["threshold"]
    model_uri = f"models:/{mlp['registry']['name']}/{mlp['registry']['version']}"
    table = load_dataset(get_contract("adult")).sample(n=3000, random_state=3)
    table.to_csv(tmp_path / "people.csv", index=False)
    r = cli(
        "audit",
        "--data",
        str(tmp_path / "people.csv"),
        "--model",
        model_uri,
        "--label",
        "income",
        "--positive-label",
        ">50K",
        "--sensitive",
        "sex",
        "--output-dir",
        str(tmp_path / "a"),
        uri=uri,
    )
    assert r.returncode in (0, 3), r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    report = json.loads(next((tmp_path / "a").rglob("impact_report.json")).read_text())
    record = report["models"][0]
    assert record["params"]["scored_by"] == f"MLflow model {model_uri}"
    assert f"decided at its own threshold {own}" in record["description"]
    fairness = record["audits"]["fairness"]
    assert fairness["details"]["conventions"]["prediction"] == f"predicted label = 1 iff score >= {own}"
    n = sum(row["n"] for row in fairness["by_group"] if row["attribute"] == "sex")
    assert n == 3000 and np.isfinite(fairness["metrics"]["fairness/sex/demographic_parity_difference"])
    r = cli(
        "audit",
        "--data",
        str(tmp_path / "people.csv"),
        "--model",
        model_uri,
        "--score",
        "age",
        "--label",
        "income",
        "--positive-label",
        ">50K",
        "--sensitive",
        "sex",
        "--output-dir",
        str(tmp_path / "a"),
        uri=uri,
    )
    assert r.returncode == 1 and "give exactly one of --score" in r.stderr
