"""The task kind: one type in place of the strings every layer compared."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest

from impactflow.task_kind import TaskKind


def test_a_kind_reads_and_writes_as_its_value():
    assert TaskKind.parse("rating") is TaskKind.RATING
    assert json.dumps({"task": TaskKind.MULTICLASS}) == '{"task": "multiclass"}'
    assert f"{TaskKind.BINARY}" == "binary" and TaskKind.BINARY == "binary"
    with pytest.raises(ValueError, match=r"task 'regression' is not one of binary, multiclass, rating"):
        TaskKind.parse("regression")


def test_what_each_kind_carries():
    assert [k.classifies for k in TaskKind] == [True, True, False]
    assert [(k.headline.key, k.headline.label, k.headline.higher_is_better) for k in TaskKind] == [
        ("eval/accuracy", "accuracy", True),
        ("eval/accuracy", "accuracy", True),
        ("eval/rmse", "RMSE", False),
    ]
    assert TaskKind.BINARY.decision_rule(0.3) == "data-independent: fixed threshold 0.3 on P(positive) (not fitted)"
    assert TaskKind.MULTICLASS.decision_phrase() == "the decision rule (argmax)"
    assert TaskKind.RATING.decision_phrase() == "the output (the rating itself)"


def test_families_and_audit_inputs_hold_a_kind_even_when_given_a_string():
    from dataclasses import replace

    from impactflow.audits.inputs import AuditInputs
    from impactflow.models import get_family

    assert {get_family(n).task for n in ("tabular", "text", "image", "recommender")} == set(TaskKind)
    family = replace(get_family("tabular"), task="rating")
    assert family.task is TaskKind.RATING
    with pytest.raises(ValueError, match="family tabular: task 'ordinal' is not one of"):
        replace(get_family("tabular"), task="ordinal")
    inputs = AuditInputs(np.array([3.0, 4.0]), np.array([2.5, 4.5]), pd.DataFrame(index=range(2)), task="rating")
    assert inputs.task is TaskKind.RATING
    assert inputs.y_pred.tolist() == [2.5, 4.5]  # a rating's decision is the rating itself


def _record(family: str, metrics: dict) -> dict:
    return {"family": family, "audits": {"performance": {"metrics": metrics}}}


def test_the_summary_line_leads_with_the_kinds_metric():
    from rich.console import Console

    from impactflow.flows.cli import _print_summary
    from impactflow.tasks.report import _headline

    assert _headline(_record("recommender", {"eval/rmse": 0.91234, "eval/mae": 0.7})) == {
        "label": "RMSE",
        "key": "eval/rmse",
        "value": 0.91234,
    }
    assert _headline(_record("tabular", {"eval/roc_auc": 0.9}))["value"] is None  # not measured, not 0
    buf = io.StringIO()
    models = {
        "mf": {"headline": _headline(_record("recommender", {"eval/rmse": 0.91234})), "dp": {}},
        "mlp": {"headline": _headline(_record("tabular", {})), "dp": {}},
    }
    summary = {
        "gates": [],
        "models": models,
        "status": "pass",
        "incomplete": [],
        "parent_run_id": "r1",
        "experiment": "e",
        "tracking_uri": "sqlite:///m.db",
        "mlflow_url": "http://127.0.0.1:5000/#/x",
        "report": {"html": "r.html", "json": "r.json"},
    }
    _print_summary(Console(file=buf, width=200), summary)
    out = buf.getvalue()
    assert "  mf: RMSE 0.9123\n" in out
    assert "  mlp: accuracy not measured\n" in out
