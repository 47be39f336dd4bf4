"""The reference of the drift audit and the champion comparison's refusals (tasks/watch.py), on a
local MLflow store: the first run has none (said, no comparison), a reference run whose summary
is missing makes the drift audit not measured (a configured gate: incomplete), a champion trained
on another schema is not compared and holds, naming what differs."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from impactflow.audits import run_audits
from impactflow.audits.inputs import AuditInputs
from impactflow.tasks import tracking
from impactflow.tasks.registry import PARENT_TAG
from impactflow.tasks.spec import RunSpec
from impactflow.tasks.watch import (
    SUMMARY_ARTIFACT,
    challenge_champion,
    drift_check,
    find_reference,
    summarize_split,
)
from impactflow.task_kind import TaskKind

SPEC = RunSpec("adult", "tabular")


@pytest.fixture(scope="module")
def split():
    from impactflow.data_contracts import get_contract, load_dataset

    df = load_dataset(get_contract("adult")).sample(1500, random_state=0).reset_index(drop=True)
    return SimpleNamespace(train=df.iloc[:1000], validation=df.iloc[1000:1250], test=df.iloc[1250:])


@pytest.fixture
def store(mlflow_uri, tmp_path):
    client = tracking._client(mlflow_uri)
    exp = client.create_experiment("impactflow-tabular", artifact_location=str(tmp_path / "artifacts"))

    def run(preset: str = "tabular", summary: dict | None = None) -> str:
        r = client.create_run(exp, tags={"impactflow.preset": preset})
        if summary is not None:
            folder = tmp_path / r.info.run_id / "drift"
            folder.mkdir(parents=True)
            (folder / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
            client.log_artifacts(r.info.run_id, str(folder), "drift")
        client.set_terminated(r.info.run_id, "FINISHED")
        return r.info.run_id

    def ctx(run_id: str = "this-run") -> dict:
        return {
            "uri": mlflow_uri,
            "experiment_id": exp,
            "experiment": "impactflow-tabular",
            "parent_run_id": run_id,
            "run_dir": str(tmp_path / "run"),
        }

    return SimpleNamespace(client=client, run=run, ctx=ctx)


def _drift_audit(found: dict, gates: dict):
    inputs = AuditInputs(
        y_true=[0, 1], y_score=[0.2, 0.8], sensitive=None, task=TaskKind.BINARY, extra={"drift": found}
    )
    return run_audits(inputs, gates, names=["drift"])["drift"]


def test_the_first_run_has_no_reference_and_says_so(store, split):
    assert find_reference(store.ctx(), "tabular", "mlp")["source"] is None
    found = drift_check.fn(store.ctx(), split, SPEC, {}, "tabular", "mlp")
    assert found["reference"] is None and found["reason"].startswith("first run")
    audit = _drift_audit(found, {"drift": {"max_psi": 0.25}})
    assert audit.status.value == "skipped"
    assert [(g.name, g.status.value) for g in audit.gates] == [("drift/max_psi", "skipped")]
    assert "first run" in audit.gates[0].note


def test_a_reference_run_without_its_summary_is_not_measured_never_passed(store, split):
    ref = store.run(summary=None)  # an earlier run of the preset whose artifacts are gone
    found = drift_check.fn(store.ctx(), split, SPEC, {}, "tabular", "mlp")
    assert found["source"] == "previous run" and found["run_id"] == ref
    assert f"the reference run {ref} has no readable {SUMMARY_ARTIFACT} artifact" == found["problem"]
    audit = _drift_audit(found, {"drift": {"max_psi": 0.25}})
    assert audit.status.value == "not-measured"
    assert audit.gates[0].status.value == "not-measured" and ref in audit.gates[0].note


def test_the_previous_run_of_the_same_preset_is_the_reference_until_there_is_a_champion(store, split):
    summary = summarize_split(split, SPEC, {})
    store.run(preset="text", summary=summary)  # another preset: never a reference
    previous = store.run(summary=summary)
    ref = find_reference(store.ctx(), "tabular", "mlp")
    assert (ref["source"], ref["run_id"]) == ("previous run", previous) and ref["summary"] == summary
    assert "previous run of preset tabular" in ref["label"] and ref["label"].startswith("the training data of")
    dp = store.run(summary={**summary, "rows": "test"})  # a DP run summarises its held-out rows
    assert find_reference(store.ctx(), "tabular", "mlp")["label"].startswith(
        f"the held-out test rows of the previous run of preset tabular (run {dp}"
    )
    found = drift_check.fn(store.ctx(), split, SPEC, {}, "tabular", "mlp")
    audit = _drift_audit(found, {"drift": {"max_psi": 0.25}})
    assert audit.status.value == "pass" and audit.metrics["drift/max_psi"] == 0.0  # the same rows
    champion_run = store.run(summary=summary)
    name = "impactflow-tabular-mlp"
    store.client.create_registered_model(name)
    mv = store.client.create_model_version(name, "file:///nowhere", tags={PARENT_TAG: champion_run})
    store.client.set_registered_model_alias(name, "champion", mv.version)
    later = store.run(summary=summary)  # newer than the champion's run: still not the reference
    ref = find_reference(store.ctx(), "tabular", "mlp")
    assert (ref["source"], ref["run_id"]) == ("champion", champion_run) and ref["run_id"] != later
    assert f"{name} version {mv.version}" in ref["label"]


def test_no_champion_means_no_comparison(store, split):
    fitted = SimpleNamespace(name="mlp")
    out = challenge_champion.fn(store.ctx(), fitted, split, SPEC, {}, {}, {})
    assert out["decision"] == "first" and out["rows"] == []
    assert "no champion of impactflow-tabular-mlp yet" in out["reasons"][0]


def test_a_champion_trained_on_another_schema_is_not_compared_and_holds(store, split):
    summary = summarize_split(split, SPEC, {})
    summary["kinds"]["age"] = "categorical"
    del summary["kinds"]["hours-per-week"]
    summary["kinds"]["zip"] = "categorical"
    run = store.run(summary=summary)
    name = "impactflow-tabular-mlp"
    store.client.create_registered_model(name)
    mv = store.client.create_model_version(name, "file:///nowhere", tags={PARENT_TAG: run})
    store.client.set_registered_model_alias(name, "champion", mv.version)
    out = challenge_champion.fn(store.ctx(), SimpleNamespace(name="mlp"), split, SPEC, {}, {}, {})
    assert out["decision"] == "hold" and out["rows"] == []
    reason = out["reasons"][0]
    assert f"the champion ({name} version {mv.version}) was trained on a different schema" in reason
    assert 'column "age" was categorical, is numeric' in reason
    assert 'column "zip" is in the reference but not in this run' not in reason  # not a contract column
    assert 'column "hours-per-week" is in this run but not in the reference' in reason
    assert "impactflow promote --force" in reason
    # and the drift audit refuses to compare such a reference too
    found = drift_check.fn(store.ctx(), split, SPEC, {}, "tabular", "mlp")
    assert found["problem"].startswith("the reference's schema differs:")


def test_the_previous_run_is_found_behind_a_page_of_child_runs(store):
    """Child runs carry the preset tag too: a run with many reference models must not hide the
    previous parent run (the search pages on until it finds a parent)."""
    from impactflow.tasks.watch import finished_parent_runs, previous_run

    parent = store.run()
    ctx = store.ctx()
    for _ in range(105):  # newer than the parent, FINISHED, same preset
        child = store.client.create_run(
            ctx["experiment_id"], tags={"impactflow.preset": "tabular", "mlflow.parentRunId": parent}
        )
        store.client.set_terminated(child.info.run_id, "FINISHED")
    assert previous_run(store.client, ctx["experiment_id"], "tabular", "this-run").info.run_id == parent
    assert [r.info.run_id for r in finished_parent_runs(store.client, ctx["experiment_id"], limit=5)] == [parent]
