"""The GX contract: the shipped data passes; corrupted copies fail naming the right check."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pandas as pd
import pytest

from impactflow.data_contracts import get_contract, load_dataset
from impactflow.errors import ConfigError, ContractViolation
from impactflow.data_contracts.validation import MIN_GROUP_CHECK, ValidationReport, load_suite, validate

ROW_COUNT = "expect_table_row_count_to_be_between"
IN_SET = "expect_column_values_to_be_in_set"
TYPES = "expect_column_values_to_be_in_type_list"
BETWEEN = "expect_column_values_to_be_between"
COLUMNS = "expect_table_columns_to_match_set"


@pytest.fixture(scope="module")
def contract():
    return get_contract("adult")


@pytest.fixture(scope="module")
def adult(contract) -> pd.DataFrame:
    return load_dataset(contract)


@pytest.fixture(scope="module")
def shipped_report(adult, contract, tmp_path_factory) -> ValidationReport:
    return validate(adult, contract, docs_dir=tmp_path_factory.mktemp("docs"))


@pytest.fixture(scope="module")
def sample(adult) -> pd.DataFrame:
    """2,676 rows: up to 600 per race (every sex/race group well above the minimum of 30)."""
    return adult.groupby("race", sort=False).head(600).reset_index(drop=True)


def _write_uci(df: pd.DataFrame, path: Path) -> Path:
    """Headerless UCI format (", " separated, "?" for missing)."""
    df.to_csv(path, header=False, index=False, na_rep="?")
    return path


def _fails(report: ValidationReport) -> set[tuple[str, str | None]]:
    return {(f.expectation, f.column) for f in report.failures}


# --------------------------------------------------------------------------- shipped data


def test_shipped_data_meets_its_contract(shipped_report, contract):
    assert shipped_report.success, "\n".join(f.line() for f in shipped_report.failures)
    assert shipped_report.failures == []
    suite = load_suite(contract)
    assert shipped_report.total_expectations == len(suite["expectations"]) == 57
    stats = shipped_report.statistics
    assert stats["rows"] == 48_842 and stats["not_evaluated"] == []
    assert stats["evaluated_expectations"] == stats["successful_expectations"] == len(suite["expectations"])
    shipped_report.raise_if_failed()  # no-op


def test_data_docs_written(shipped_report):
    index = Path(shipped_report.data_docs)
    assert index.name == "index.html" and index.is_file()
    pages = list(index.parent.glob("validations/**/*.html"))
    assert pages and "Sensitive group sex == Female" in pages[0].read_text()


def test_no_data_docs_without_dir(sample, contract):
    report = validate(sample, contract)
    assert report.success and report.data_docs is None


# --------------------------------------------------------------------------- suite


def test_suite_is_a_gx_1x_suite_with_notes(contract):
    import great_expectations as gx

    raw = load_suite(contract)  # generated from the contract's declarations
    suite = gx.ExpectationSuite(**raw)
    assert len(suite.expectations) == len(raw["expectations"])
    for e in raw["expectations"]:
        assert e.get("meta", {}).get("notes"), e
    (cols,) = [e for e in raw["expectations"] if e["type"] == COLUMNS]
    assert cols["kwargs"]["exact_match"] is True
    assert cols["kwargs"]["column_set"] == list(contract.columns)
    groups = [e for e in raw["expectations"] if e["meta"].get("impactflow_check") == MIN_GROUP_CHECK]
    assert len(groups) == 2 + 5  # sex: 2 groups, race: 5
    assert {e["kwargs"]["min_value"] for e in groups} == {contract.min_group_size}


def test_hand_written_suite_must_agree_with_min_group_size(contract, tmp_path):
    written = tmp_path / "expectations.json"
    written.write_text(json.dumps(load_suite(contract)))  # a hand-written suite checking 30 rows per group
    legacy = dataclasses.replace(contract, declarations=(), suite_path=written, min_group_size=50)
    with pytest.raises(ConfigError, match="min_group_size 50"):
        load_suite(legacy)
    generated = load_suite(dataclasses.replace(contract, min_group_size=50))  # follows the contract
    assert {
        e["kwargs"]["min_value"]
        for e in generated["expectations"]
        if e.get("meta", {}).get("impactflow_check") == MIN_GROUP_CHECK
    } == {50}


# --------------------------------------------------------------------------- corruptions


def test_dropped_column_headered_csv(sample, contract, tmp_path):
    path = tmp_path / "no_race.csv"
    sample.drop(columns=["race"]).to_csv(path, index=False)
    report = validate(load_dataset(contract, [path]), contract)
    assert not report.success
    assert _fails(report) == {(COLUMNS, None)}
    (f,) = report.failures
    assert f.observed == {"missing": ["race"], "unexpected": []} and "race" in f.description
    # expectations on the absent column are not run, and are listed
    assert any("(race)" in s for s in report.statistics["not_evaluated"])


def test_wrong_dtype(sample, contract, tmp_path):
    bad = sample.astype({"age": object})
    bad.loc[7, "age"] = "abc"
    report = validate(load_dataset(contract, [_write_uci(bad, tmp_path / "age.data")]), contract)
    assert (TYPES, "age") in _fails(report)
    assert _fails(report) <= {(TYPES, "age"), (BETWEEN, "age")}
    (f,) = [f for f in report.failures if f.expectation == TYPES]
    assert f.examples == ("abc",) and f.unexpected_count == 1 and f.element_count == len(sample)
    assert f.observed in {"str", "object"}


def test_unseen_category(sample, contract, tmp_path):
    bad = sample.copy()
    bad.loc[[3, 11], "sex"] = "Robot"
    report = validate(load_dataset(contract, [_write_uci(bad, tmp_path / "sex.data")]), contract)
    assert _fails(report) == {(IN_SET, "sex")}
    (f,) = report.failures
    assert f.examples == ("Robot",) and f.unexpected_count == 2 and f.element_count == len(sample)


def test_non_binary_label(sample, contract, tmp_path):
    bad = sample.copy()
    bad.loc[5, "income"] = "maybe"
    report = validate(load_dataset(contract, [_write_uci(bad, tmp_path / "label.data")]), contract)
    assert _fails(report) == {(IN_SET, "income")}
    assert report.failures[0].examples == ("maybe",)


def test_sensitive_group_below_minimum(sample, contract, tmp_path):
    others = sample.index[sample["race"] == "Other"]
    bad = sample.drop(index=others[10:])  # 10 rows of race == Other (< 30)
    report = validate(load_dataset(contract, [_write_uci(bad, tmp_path / "few.data")]), contract)
    assert _fails(report) == {(ROW_COUNT, "race")}
    (f,) = report.failures
    assert f.observed == 10 and "Other" in f.description and "30" in f.description


def test_report_is_json_and_raises(sample, contract):
    bad = sample.copy()
    bad.loc[0, "sex"] = "Robot"
    report = validate(bad, contract)
    json.dumps(report.to_dict(), allow_nan=False)
    with pytest.raises(ContractViolation) as exc:
        report.raise_if_failed()
    err = exc.value
    assert err.contract == "adult" and err.failures == report.failures
    assert err.total_expectations == report.total_expectations
    assert "column 'sex'" in str(err) and "'Robot'" in str(err)


@pytest.fixture
def gx_formats(monkeypatch) -> list[str]:
    """The result format of every GX pass ``validate`` runs, in order."""
    from impactflow.data_contracts import validation

    formats: list[str] = []
    run_gx = validation._run_gx
    monkeypatch.setattr(
        validation,
        "_run_gx",
        lambda df, suite, docs, fmt: formats.append(fmt["result_format"]) or run_gx(df, suite, docs, fmt),
    )
    return formats


def test_a_passing_frame_is_validated_once_with_basic_results(sample, contract, tmp_path, gx_formats):
    report = validate(sample, contract, docs_dir=tmp_path / "docs")
    assert report.success and gx_formats == ["BASIC"]
    pages = list((tmp_path / "docs").glob("validations/**/*.html"))
    assert len(pages) == 1 and "Sensitive group sex == Female" in pages[0].read_text()
    assert Path(report.data_docs).is_file()


def test_a_failing_frame_is_validated_again_for_counts_of_its_bad_values(
    sample, contract, tmp_path, gx_formats, monkeypatch
):
    """GX's BASIC result lists the first 20 bad values in row order; SUMMARY also counts them
    (``partial_unexpected_counts``, most frequent first, over those 20), which is what a failure
    quotes and its Data Docs page tabulates: a failing frame gets the same report as before."""
    from impactflow.data_contracts import validation

    bad = sample.copy()
    bad.loc[bad.index[0], "sex"] = "Early"  # the first bad value in row order, once
    bad.loc[bad.index[1:40], "sex"] = "Common"  # then 39 more: the most frequent
    report = validate(bad, contract, docs_dir=tmp_path / "docs")
    assert gx_formats == ["BASIC", "SUMMARY"]
    (f,) = [f for f in report.failures if f.column == "sex" and f.expectation == IN_SET]
    assert f.examples == ("Common", "Early") and f.unexpected_count == 40
    pages = list((tmp_path / "docs").glob("validations/**/*.html"))
    assert len(pages) == 1, "only the kept (SUMMARY) result has a Data Docs page"
    assert "Common" in pages[0].read_text()
    # the same report as one SUMMARY validation gives
    monkeypatch.setattr(validation, "_FAST_FORMAT", validation._RESULT_FORMAT)
    gx_formats.clear()
    single = validate(bad, contract)
    assert gx_formats == ["SUMMARY", "SUMMARY"]
    assert single.failures == report.failures
