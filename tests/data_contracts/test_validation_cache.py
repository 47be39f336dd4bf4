"""Reuse of a passing contract result (data_contracts.validation_cache): the key changes with
anything the result depends on, a reused result carries its Data Docs and says it was reused,
and failing or unreadable results are never reused."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pandas as pd
import pytest

from impactflow.data_contracts import get_contract, load_dataset
from impactflow.data_contracts import validation_cache as cache
from impactflow.data_contracts.validation import validate


@pytest.fixture(scope="module")
def contract():
    return get_contract("adult")


@pytest.fixture(scope="module")
def sample(contract) -> pd.DataFrame:
    """Up to 600 rows per race: every sex/race group above the contract's minimum of 30."""
    return load_dataset(contract).groupby("race", sort=False).head(600).reset_index(drop=True)


def test_key_is_stable_for_equal_frames_and_changes_with_one_cell(sample, contract):
    key = cache.frame_key(sample, contract)
    assert key == cache.frame_key(sample.copy(), contract)
    one_cell = sample.copy()
    one_cell.loc[7, "age"] += 1
    assert cache.frame_key(one_cell, contract) != key
    text_cell = sample.copy()
    text_cell.loc[7, "sex"] = "Male" if text_cell.loc[7, "sex"] == "Female" else "Female"
    assert cache.frame_key(text_cell, contract) != key
    reordered = sample.iloc[::-1]
    assert cache.frame_key(reordered, contract) != key  # row order and index are part of the frame


def test_key_changes_with_dtypes_types_and_the_contract(sample, contract, tmp_path):
    key = cache.frame_key(sample, contract)
    assert cache.frame_key(sample.astype({"age": "float64"}), contract) != key  # same values, other dtype
    ints = pd.DataFrame({"x": pd.Series([1, 2], dtype=object)})
    strs = pd.DataFrame({"x": pd.Series(["1", "2"], dtype=object)})
    assert cache.frame_key(ints, contract) != cache.frame_key(strs, contract)  # pandas hashes 1 and "1" alike
    suite = {
        "name": "extra",
        "expectations": [
            {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 1, "max_value": 10**9}}
        ],
    }
    copy = dataclasses.replace(contract, suite_path=tmp_path / "expectations.json")  # hand-written extras
    copy.suite_path.write_text(json.dumps(suite))
    before = cache.frame_key(sample, copy)
    assert before != key
    suite["expectations"][0]["kwargs"]["min_value"] = 2
    copy.suite_path.write_text(json.dumps(suite))  # same path, other content
    assert cache.frame_key(sample, copy) != before
    assert cache.frame_key(sample, dataclasses.replace(contract, declarations=contract.declarations[:-1])) != key
    assert cache.frame_key(sample, dataclasses.replace(contract, min_group_size=31)) != key


def test_unhashable_cells_are_never_cached(contract):
    arrays = pd.DataFrame({"image": [np.zeros(3), np.ones(3)]})
    assert cache.frame_key(arrays, contract) is None


def test_a_stored_pass_is_reused_with_its_data_docs(sample, contract, tmp_path):
    first = validate(sample, contract, tmp_path / "run1")
    key = cache.frame_key(sample, contract)
    assert cache.store(tmp_path / "cache", key, first, tmp_path / "run1")
    entry = tmp_path / "cache" / key
    assert not (entry / "data_docs" / "static").exists(), "GX's static assets are not copied into the cache"
    reused = cache.lookup(tmp_path / "cache", key, tmp_path / "run2")
    assert reused.success and reused.failures == []
    assert reused.total_expectations == first.total_expectations
    assert reused.data_docs == str(tmp_path / "run2" / "index.html")
    pages = list((tmp_path / "run2").glob("validations/**/*.html"))
    assert pages and "Sensitive group sex == Female" in pages[0].read_text()
    assert (tmp_path / "run2" / "static" / "styles").is_dir(), "the pages' styles are there"
    stats = reused.statistics
    assert stats["reused"]["key"] == key and stats["reused"]["validated_at"]
    assert stats["reused"]["validation_seconds"] == first.statistics["seconds"]
    assert {k: v for k, v in stats.items() if k not in ("reused", "seconds")} == {
        k: v for k, v in first.to_dict()["statistics"].items() if k != "seconds"
    }
    # a second store of the same key keeps the first entry
    assert not cache.store(tmp_path / "cache", key, first, tmp_path / "run1")


def test_a_failing_result_is_not_stored(sample, contract, tmp_path):
    bad = sample.copy()
    bad.loc[0, "age"] = -5
    report = validate(bad, contract, tmp_path / "docs")
    assert not report.success
    assert not cache.store(tmp_path / "cache", cache.frame_key(bad, contract), report, tmp_path / "docs")
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_an_unreadable_or_failed_entry_is_not_reused(sample, contract, tmp_path):
    first = validate(sample, contract, tmp_path / "run1")
    key = cache.frame_key(sample, contract)
    cache.store(tmp_path / "cache", key, first, tmp_path / "run1")
    report = tmp_path / "cache" / key / "report.json"
    saved = report.read_text()
    report.write_text(saved[:40])
    assert cache.lookup(tmp_path / "cache", key, tmp_path / "run2") is None
    report.write_text(json.dumps({**json.loads(saved), "success": False}))
    assert cache.lookup(tmp_path / "cache", key, tmp_path / "run3") is None
    report.write_text(saved)
    shutil.rmtree(tmp_path / "cache" / key / "data_docs")
    assert cache.lookup(tmp_path / "cache", key, tmp_path / "run4") is None


def test_the_task_reuses_only_when_asked(sample, contract, tmp_path, monkeypatch):
    from impactflow.tasks import data
    from impactflow.tasks.spec import RunSpec

    calls = []
    real = validate
    monkeypatch.setattr(
        "impactflow.data_contracts.validation.validate", lambda *a, **k: calls.append(1) or real(*a, **k)
    )
    spec = RunSpec("adult", "tabular")
    fresh = data.validate_data.fn(sample, spec, str(tmp_path / "a"), str(tmp_path / "cache"))
    again = data.validate_data.fn(sample, spec, str(tmp_path / "b"), str(tmp_path / "cache"))
    assert len(calls) == 1 and "reused" not in fresh.statistics and "reused" in again.statistics
    off = data.validate_data.fn(sample, spec, str(tmp_path / "c"), None)
    assert len(calls) == 2 and "reused" not in off.statistics
