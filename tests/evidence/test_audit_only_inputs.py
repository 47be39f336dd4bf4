"""Audit-only inputs and degenerate models (issue 28, defect 7): a constant model fails; a FIFO
is "not a regular file", not "file not found"; a file over the size cap is refused before a
byte is read. All checked before any tracking starts."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

from impactflow.audits.results import Status, run_status
from impactflow.errors import DataError


def _flow(tmp_path, data, **kwargs):
    from impactflow.flows.audit_only import audit_only_flow

    return audit_only_flow.fn(
        data=str(data), label="y", sensitive=["g"], score="s", output_dir=str(tmp_path / "runs"), **kwargs
    )


def test_a_fifo_is_not_a_regular_file_not_a_missing_one(tmp_path):
    fifo = tmp_path / "scores.csv"
    os.mkfifo(fifo)  # nothing writes to it: reading it would block forever
    with pytest.raises(DataError, match=r"scores.csv: not a regular file \(a FIFO \(named pipe\)\); give a file"):
        _flow(tmp_path, fifo)
    assert not (tmp_path / "runs").exists()
    from impactflow.data_contracts.files import check_input_file

    with pytest.raises(DataError, match=r"not a regular file \(a folder\)"):
        check_input_file(tmp_path, None)
    with pytest.raises(DataError, match=r"nope.csv: file not found"):
        check_input_file(tmp_path / "nope.csv", None)


def test_an_input_over_the_size_cap_is_refused_before_reading(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("y,g,s\n" + "1,a,0.5\n" * 20)  # 6 + 20 * 8 = 166 bytes
    from impactflow.data_contracts.files import check_input_file

    assert check_input_file(path, 166) == 166 and check_input_file(path, 0) == 166  # 0: no limit
    with pytest.raises(
        DataError,
        match=r"t.csv: 166 bytes is more than the input limit of 100 bytes; "
        r"raise it with --max-input-bytes",
    ):
        _flow(tmp_path, path, max_input_bytes=100, engine="memory")
    assert not (tmp_path / "runs").exists()
    from impactflow.flows.audit_only import choose_engine

    # the default engine streams such a file instead (bounded memory: tests/flows/test_stream_audit.py)
    assert choose_engine("auto", str(path), None, None, 100, None, None, "probability") == "stream"
    assert choose_engine("auto", str(path), None, None, 166, None, None, "probability") == "memory"


def test_audit_cli_names_the_fifo_in_one_error_line(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from impactflow.flows.cli import app

    os.mkfifo(tmp_path / "p.csv")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")  # never reached: refused before the flow
    result = CliRunner().invoke(
        app, ["audit", "--data", "p.csv", "--label", "y", "--score", "s", "--sensitive", "g", "--max-input-bytes", "10"]
    )
    out = " ".join(result.output.split())
    assert result.exit_code == 1, out
    assert out.startswith("error: p.csv: not a regular file (a FIFO (named pipe))"), out


def _table(scores) -> pd.DataFrame:
    y = np.array([0, 1] * 40)
    return pd.DataFrame({"y": y, "g": ["a"] * 40 + ["b"] * 40, "s": scores})


def _audits(df, score="s", prediction=None):
    from impactflow.tasks.audit_only import audit_predictions

    return audit_predictions.fn(df, "y", score, prediction, ["g"], 1, 0.5, {})


def _gates(audits) -> dict:
    return {g.name: g for a in audits.values() for g in a.gates}


@pytest.mark.parametrize(
    "scores,what",
    [
        ([0.1] * 80, "every score is 0.1"),  # the constant model: passed with exit 0
        ([0.6, 0.9] * 40, "every row is predicted 1"),  # scores vary, decisions do not
    ],
)
def test_a_model_giving_everyone_the_same_decision_fails(scores, what):
    audits = _audits(_table(scores))
    gate = _gates(audits)["fairness/distinct_decisions"]
    assert (gate.status, gate.value, gate.threshold, gate.comparison) == (Status.FAIL, 1.0, 2.0, ">=")
    assert what in gate.note
    assert audits["fairness"].status is Status.FAIL
    assert run_status([g.status for a in audits.values() for g in a.gates]) == "fail"


def test_hard_predictions_of_one_class_fail_and_varied_decisions_pass():
    df = _table([0.1] * 80).assign(p=[0] * 80)
    gate = _gates(_audits(df, score=None, prediction="p"))["fairness/distinct_decisions"]
    assert gate.status is Status.FAIL and "every row is predicted 0" in gate.note
    varied = _gates(_audits(_table([0.2, 0.8] * 40)))["fairness/distinct_decisions"]
    assert (varied.status, varied.value) == (Status.PASS, 2.0)
