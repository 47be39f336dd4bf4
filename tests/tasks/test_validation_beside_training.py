"""The contract validated in a separate process beside training (tasks.data.start_validation,
flows.pipeline.validation_beside_training): the same report as validating in place, a failure
visible to the training's stop check as soon as it is in, the reuse cache filled by the child,
and the cases where the run validates first instead."""
from __future__ import annotations

import os

import pandas as pd
import pytest

from impactflow.data_contracts import get_contract, load_dataset
from impactflow.flows.config import load_config
from impactflow.tasks.data import start_validation
from impactflow.tasks.forked import available

pytestmark = pytest.mark.skipif(not available(), reason="validation beside training needs Linux fork()")


@pytest.fixture(scope="module")
def sample() -> pd.DataFrame:
    """Up to 300 rows per race: every sex/race group above the contract's minimum of 30."""
    return load_dataset(get_contract("adult")).groupby("race", sort=False).head(300).reset_index(drop=True)


def _comparable(report) -> dict:
    d = report.to_dict()
    stats = {k: v for k, v in d["statistics"].items() if k not in ("seconds", "concurrent")}
    return {**d, "statistics": stats, "data_docs": None}


@pytest.mark.parametrize("bad", [False, True], ids=["passing", "failing"])
def test_the_report_is_the_one_validating_in_place_gives(sample, tmp_path, bad):
    df = sample.copy()
    if bad:
        df.loc[3, "sex"] = "Robot"
    here = start_validation(df, "adult", str(tmp_path / "here"), concurrent=False)
    beside = start_validation(df, "adult", str(tmp_path / "beside"), concurrent=True)
    assert beside.concurrent and not here.concurrent
    a, b = here.result(), beside.result()
    assert a.success is (not bad)
    assert _comparable(b) == _comparable(a)
    ran = b.statistics["concurrent"]
    assert ran["with"] == "training" and ran["pid"] != os.getpid()
    assert ran["started_at"] <= ran["finished_at"]
    assert "concurrent" not in a.statistics
    assert (tmp_path / "beside" / "index.html").is_file()  # the child wrote the Data Docs
    if bad:
        assert beside.stop_reason() == ("the data failed its contract 'adult' (1 failed check(s)); "
                                        "training stopped")
    else:
        assert beside.stop_reason() is None


def test_no_stop_reason_before_the_verdict_is_in(sample, tmp_path):
    df = sample.copy()
    df.loc[3, "sex"] = "Robot"
    pending = start_validation(df, "adult", str(tmp_path / "d"), concurrent=True)
    first = pending.stop_reason()  # taken at once: GX needs far longer than this to answer
    pending.result()
    assert first is None and pending.stop_reason() is not None


def test_the_child_keeps_a_passing_result_for_reuse(sample, tmp_path):
    cache = str(tmp_path / "cache")
    first = start_validation(sample, "adult", str(tmp_path / "a"), cache, concurrent=True)
    assert first.concurrent and first.result().success
    again = start_validation(sample, "adult", str(tmp_path / "b"), cache, concurrent=True)
    assert not again.concurrent  # reused here, nothing forked
    assert again.result().statistics["reused"]
    assert (tmp_path / "b" / "index.html").is_file()


@pytest.mark.parametrize("overrides, reason", [
    ([], None),
    (["data.validate_while_training=false"], "data.validate_while_training is false"),
    (["privacy.budget_epsilon=3"], "a privacy budget is set"),
    (["privacy.budget_delta=0.001"], "a privacy budget is set"),
    (["orchestration.task_runner=dask"], "the Dask task runner"),
])
def test_when_the_contract_is_validated_first_instead(overrides, reason):
    from impactflow.flows.pipeline import validation_beside_training

    got = validation_beside_training(load_config("tabular", overrides))
    assert got == reason if reason is None else got.startswith(reason)
