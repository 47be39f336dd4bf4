"""Calibration by group on hand-computed values; the predictions contract built from arguments."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from impactflow.audits import AuditInputs
from impactflow.audits.calibration import calibration_group_audit
from impactflow.errors import ConfigError, DataError
from impactflow.data_contracts.predictions import (
    binarize,
    label_values,
    parse_sensitive,
    predictions_suite,
    read_table,
    require_columns,
    sensitive_as_text,
)


def test_calibration_by_group_hand_values():
    # group a: y = [1, 0], s = [0.8, 0.4]; group b: y = [1, 1], s = [0.5, 0.9]
    inputs = AuditInputs(
        y_true=[1, 0, 1, 1], y_score=[0.8, 0.4, 0.5, 0.9], sensitive=pd.DataFrame({"g": ["a", "a", "b", "b"]})
    )
    res = calibration_group_audit(inputs, {"min_group_size": 1, "max_ece_gap": 0.1})
    rows = {r["group"]: r for r in res.by_group}
    # Brier a = ((0.8-1)^2 + (0.4-0)^2)/2 = (0.04 + 0.16)/2 = 0.10; b = (0.25 + 0.01)/2 = 0.13
    assert rows["a"]["brier"] == pytest.approx(0.10)
    assert rows["b"]["brier"] == pytest.approx(0.13)
    # ECE (15 bins): a: scores in different bins -> (|0.8-1| + |0.4-0|)/2 = 0.3; b: (0.5 + 0.1)/2 = 0.3
    assert rows["a"]["ece"] == pytest.approx(0.3) and rows["b"]["ece"] == pytest.approx(0.3)
    assert rows["a"]["roc_auc"] == 1.0 and np.isnan(rows["b"]["roc_auc"])  # b has one class
    assert res.metrics["calibration/g/brier_gap"] == pytest.approx(0.03)
    assert res.metrics["calibration/g/ece_gap"] == pytest.approx(0.0)
    assert [g.status.value for g in res.gates] == ["pass"]


def test_calibration_skipped_for_hard_predictions():
    inputs = AuditInputs(
        y_true=[1, 0], y_score=[1.0, 0.0], sensitive=pd.DataFrame({"g": ["a", "b"]}), extra={"hard_predictions": True}
    )
    assert calibration_group_audit(inputs, {}).status.value == "skipped"


def test_label_values_and_binarize():
    df = pd.DataFrame({"y": [">50K", "<=50K", ">50K"]})
    allowed, pos = label_values(df, "y", ">50K")
    assert pos == ">50K" and set(allowed) == {">50K", "<=50K"}
    assert binarize(df["y"], pos).tolist() == [1, 0, 1]
    assert binarize(pd.Series([1, 0, 1]), 1).tolist() == [1, 0, 1]
    with pytest.raises(DataError, match="positive label 'yes' does not occur"):
        label_values(df, "y", "yes")


def test_suite_has_group_minimums_and_score_range():
    df = sensitive_as_text(pd.DataFrame({"y": [0, 1], "s": [0.2, 0.9], "g": [1, 2]}), ["g"])
    suite = predictions_suite(
        df, name="t", label="y", label_set=[0, 1], score="s", prediction=None, sensitive=["g"], min_group_size=30
    )
    types = [e["type"] for e in suite["expectations"]]
    assert types.count("expect_table_row_count_to_be_between") == 3  # >= 1 row + one per group
    between = [e for e in suite["expectations"] if e["type"] == "expect_column_values_to_be_between"]
    assert between[0]["kwargs"] == {"column": "s", "min_value": 0.0, "max_value": 1.0}
    groups = [
        e["kwargs"]["row_condition"]["parameter"] for e in suite["expectations"] if "row_condition" in e["kwargs"]
    ]
    assert groups == ["1", "2"]  # sensitive values as text


def test_table_errors_name_the_file_and_columns(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_table(tmp_path / "none.csv")
    p = tmp_path / "t.csv"
    p.write_text("y,s\n1,0.5\n")
    df = read_table(p)
    # the header is not quoted (a mistaken file's first line: issue 28); near misses are suggested
    with pytest.raises(DataError, match=r"missing column\(s\) 'sex' \(the table has 2 column\(s\)\)"):
        require_columns(df, ["y", "sex"], p)
    assert parse_sensitive(["sex,race", "age"]) == ["sex", "race", "age"]
    with pytest.raises(ConfigError, match="listed twice"):
        parse_sensitive("sex,sex")
