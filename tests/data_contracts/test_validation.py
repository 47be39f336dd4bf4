"""The GX contract: the shipped data passes; corrupted copies fail naming the right check."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pandas as pd
import pytest

from data_contracts import get_contract, load_dataset
from data_contracts.errors import ConfigError, ContractViolation
from data_contracts.validation import MIN_GROUP_CHECK, ValidationReport, load_suite, validate

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


def test_data_docs_templates_compile_once_then_come_from_the_bytecode_cache(sample, contract, tmp_path,
                                                                            monkeypatch):
    import jinja2

    from data_contracts import validation

    cache_dir = tmp_path / "jinja"
    cache_dir.mkdir()
    monkeypatch.setitem(validation._TEMPLATE_CACHE, "cache", None)
    assert validation.cache_data_docs_templates(str(cache_dir)).directory == str(cache_dir)
    compiled = []
    compile_ = jinja2.Environment.compile
    monkeypatch.setattr(jinja2.Environment, "compile",
                        lambda self, *a, **k: compiled.append(1) or compile_(self, *a, **k))
    pages = []
    for run in ("first", "second"):
        compiled.clear()
        report = validate(sample, contract, docs_dir=tmp_path / run)
        pages.append((len(compiled), list((tmp_path / run).glob("validations/**/*.html"))))
    (first, first_pages), (second, second_pages) = pages
    assert first > 10 and list(cache_dir.iterdir()), "the first build compiles and fills the cache"
    assert second == 0, "the second build compiled templates again"
    assert report.success and "Sensitive group sex == Female" in second_pages[0].read_text()
    # the cached pages are the same pages: same size up to the run's timestamps and element ids
    assert abs(len(second_pages[0].read_text()) - len(first_pages[0].read_text())) < 200


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
    assert {e["kwargs"]["min_value"] for e in generated["expectations"]
            if e.get("meta", {}).get("impactflow_check") == MIN_GROUP_CHECK} == {50}


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


# --------------------------------------------------------------------------- speed-ups inside GX


def test_memoized_configuration_gives_gx_s_own_kwargs_for_every_shipped_expectation():
    """Every expectation of every shipped suite: the memoized look-ups return what GX's own
    (unmemoized) methods return, and outside a look-up nothing is memoized."""
    import great_expectations as gx
    from great_expectations.expectations.expectation import Expectation

    from data_contracts import validation

    validation.memoize_expectation_configuration()
    validation.memoize_expectation_configuration()  # idempotent: wrapped once
    build = Expectation.configuration.fget.__wrapped__
    assert not hasattr(build, "_impactflow_memo")
    from data_contracts import get_contract

    suites = [json.loads(p.read_text()) for p in sorted(Path(validation.__file__).parent.glob("*/expectations.json"))]
    suites.append(validation.load_suite(get_contract("adult")))  # generated from its declarations
    assert len(suites) >= 5
    for name in validation._MEMO_SCOPES:  # each getter wrapped once, around GX's own
        assert not hasattr(getattr(Expectation, name).__wrapped__, "__wrapped__")
    runtime = {"result_format": validation._RESULT_FORMAT}
    checked = 0
    for raw in suites:
        suite = gx.ExpectationSuite(**raw)
        for e in suite.expectations:
            # outside a look-up every read builds afresh, as GX does
            assert e.configuration == build(e) and e.configuration is not e.configuration
            assert e._get_runtime_kwargs(runtime) == Expectation._get_runtime_kwargs.__wrapped__(e, runtime)
            assert e._get_success_kwargs() == Expectation._get_success_kwargs.__wrapped__(e)
            assert e._get_domain_kwargs() == Expectation._get_domain_kwargs.__wrapped__(e)
            assert e._get_result_format(runtime) == Expectation._get_result_format.__wrapped__(e, runtime)
            checked += 1
    assert checked > 100
    assert validation._CONFIGURATION_MEMO.memo is None


def test_memo_builds_the_configuration_once_per_look_up(sample, contract, monkeypatch):
    import great_expectations as gx
    import great_expectations.expectations.expectation as gx_expectation

    from data_contracts import validation

    validation.memoize_expectation_configuration()
    built = []

    class Counted(gx_expectation.ExpectationConfiguration):
        def __init__(self, *args, **kwargs):
            built.append(1)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(gx_expectation, "ExpectationConfiguration", Counted)
    e = gx.ExpectationSuite(**load_suite(contract)).expectations[0]
    Expectation = gx_expectation.Expectation
    Expectation._get_success_kwargs.__wrapped__(e)  # GX's own: once per key
    assert len(built) == len(e.domain_keys) + len(e.success_keys) > 1
    built.clear()
    e._get_success_kwargs()
    assert len(built) == 1
    monkeypatch.undo()
    report = validate(sample, contract)
    assert report.success and validation._CONFIGURATION_MEMO.memo is None


@pytest.fixture
def gx_formats(monkeypatch) -> list[str]:
    """The result format of every GX pass ``validate`` runs, in order."""
    from data_contracts import validation

    formats: list[str] = []
    run_gx = validation._run_gx
    monkeypatch.setattr(validation, "_run_gx",
                        lambda df, suite, docs, fmt: formats.append(fmt["result_format"]) or run_gx(df, suite, docs, fmt))
    return formats


def test_a_passing_frame_is_validated_once_with_basic_results(sample, contract, tmp_path, gx_formats):
    report = validate(sample, contract, docs_dir=tmp_path / "docs")
    assert report.success and gx_formats == ["BASIC"]
    pages = list((tmp_path / "docs").glob("validations/**/*.html"))
    assert len(pages) == 1 and "Sensitive group sex == Female" in pages[0].read_text()
    assert Path(report.data_docs).is_file()


def test_a_failing_frame_is_validated_again_for_counts_of_its_bad_values(sample, contract, tmp_path,
                                                                        gx_formats, monkeypatch):
    """GX's BASIC result lists the first 20 bad values in row order; SUMMARY also counts them
    (``partial_unexpected_counts``, most frequent first, over those 20), which is what a failure
    quotes and its Data Docs page tabulates: a failing frame gets the same report as before."""
    from data_contracts import validation

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
