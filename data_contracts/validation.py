"""Validate a DataFrame against its contract's Great Expectations (1.x) suite.

``validate(df, contract, docs_dir=None) -> ValidationReport``. GX runs in an ephemeral context
(nothing written unless ``docs_dir`` asks for Data Docs HTML); it is imported lazily, with its
usage analytics off. The report turns GX results into ``FailedExpectation`` lines a reviewer can
read (what was expected, how many rows break it, a few bad values).

The per-group minimum count of every sensitive group is a plain GX expectation:
``expect_table_row_count_to_be_between`` with a ``row_condition`` (GX >= 1.9 ``Condition``
objects, serialised in the suite JSON), one per group, tagged
``meta.impactflow_check = "min_group_count"``; ``validate`` refuses a suite whose minimum differs
from ``contract.min_group_size``.

Traps handled here (GX 1.24 with pandas 3):
- pandas 3 reads text as ``StringDtype(na_value=nan)`` ("str"), which no ``type_list`` entry of
  ``expect_column_values_to_be_in_type_list`` matches; text columns are handed to GX as
  ``object`` (values unchanged), which GX checks value by value (``str`` passes).
- An expectation on a column that is absent raises inside GX; such expectations are not run
  (``statistics["not_evaluated"]``): the missing column is reported once, by
  ``expect_table_columns_to_match_set``.
"""

from __future__ import annotations

import html
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from impactflow.errors import ConfigError, ContractViolation, FailedExpectation

if TYPE_CHECKING:
    import pandas as pd

    from impactflow.data_contracts import Contract

__all__ = ["ValidationReport", "validate", "load_suite", "MIN_GROUP_CHECK"]

MIN_GROUP_CHECK = "min_group_count"  # meta.impactflow_check of the per-group row counts
BAD_SUITE = "Expectation suite {path}: {problem}"
MAX_EXAMPLES = 5
# A first pass asks GX for BASIC results (counts and the first 20 unexpected values, without their
# value counts or row indices): the same success for every expectation, for 20-30% less
# CPU. Only a frame that fails is validated a second time, with SUMMARY, so that its failures
# quote the bad values most frequent first and its Data Docs tabulate their counts, as before.
_FAST_FORMAT = {"result_format": "BASIC", "partial_unexpected_count": 20}
_RESULT_FORMAT = {"result_format": "SUMMARY", "partial_unexpected_count": 20}


@dataclass
class ValidationReport:
    """Outcome of validating one DataFrame against a contract."""

    success: bool
    contract: str
    total_expectations: int
    failures: list[FailedExpectation] = field(default_factory=list)
    statistics: dict[str, Any] = field(default_factory=dict)
    data_docs: str | None = None  # path of the Data Docs index.html, when built

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (for MLflow/Prefect artifacts)."""
        return {
            "success": self.success,
            "contract": self.contract,
            "total_expectations": self.total_expectations,
            "failures": [_plain({**asdict(f), "line": f.line()}) for f in self.failures],
            "statistics": _plain(self.statistics),
            "data_docs": self.data_docs,
        }

    def raise_if_failed(self) -> None:
        """Raise ``ContractViolation`` (with the failures) unless the data met the contract."""
        if not self.success:
            raise ContractViolation(
                contract=self.contract,
                failures=list(self.failures),
                total_expectations=self.total_expectations,
                data_docs=self.data_docs,
                extra={"statistics": self.to_dict()["statistics"]},
            )


# --------------------------------------------------------------------------- suite


def load_suite(contract: Contract) -> dict[str, Any]:
    """The contract's suite as a JSON dict (``gx.ExpectationSuite(**d)`` loads it): generated from
    its declared columns (``impactflow.data_contracts.spec.generate_suite``) merged with its hand-written
    ``suite_path`` when it has one; checked to hold a minimum-count expectation for every
    sensitive group."""
    suite = None
    if contract.suite_path is not None:
        path = Path(contract.suite_path)
        try:
            suite = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(BAD_SUITE.format(path=path, problem=exc)) from None
        if not isinstance(suite, dict) or not isinstance(suite.get("expectations"), list):
            raise ConfigError(BAD_SUITE.format(path=path, problem="no 'expectations' list"))
    if contract.declarations:
        from impactflow.data_contracts.spec import generate_suite, merge_suites

        generated = generate_suite(contract)
        suite = generated if suite is None else merge_suites(generated, suite)
        path = contract.contract_path or Path(contract.name)
    elif suite is None:
        raise ConfigError(
            BAD_SUITE.format(
                path=contract.contract_path or contract.name, problem="no suite: declare the columns or give suite:"
            )
        )
    problems = _group_check_problems(contract, suite["expectations"])
    if problems:
        raise ConfigError(BAD_SUITE.format(path=path, problem="; ".join(problems)))
    return suite


def _condition_group(kwargs: dict[str, Any]) -> tuple[Any, Any] | None:
    """(column, value) of a ``column == value`` row_condition, else None."""
    cond = kwargs.get("row_condition")
    if isinstance(cond, dict) and cond.get("type") == "comparison" and cond.get("operator") == "==":
        return (cond.get("column") or {}).get("name"), cond.get("parameter")
    return None


def _group_check_problems(contract: Contract, expectations: list[dict]) -> list[str]:
    allowed: dict[str, list] = {}
    minimum: dict[tuple[str, Any], Any] = {}
    for e in expectations:
        kw = e.get("kwargs", {})
        if e.get("type") == "expect_column_values_to_be_in_set" and kw.get("column") in contract.sensitive:
            allowed[kw["column"]] = list(kw.get("value_set") or [])
        if e.get("type") == "expect_table_row_count_to_be_between" and (grp := _condition_group(kw)):
            minimum[grp] = kw.get("min_value")
    problems = []
    for col in contract.sensitive:
        if col not in allowed:
            problems.append(f"no expect_column_values_to_be_in_set for sensitive column {col!r}")
        for value in allowed.get(col, []):
            got = minimum.get((col, value))
            if got != contract.min_group_size:
                problems.append(
                    f"group {col}=={value!r}: min row count {got} != contract min_group_size {contract.min_group_size}"
                )
    return problems


def _columns_of(e: dict[str, Any]) -> list[str]:
    kw = e.get("kwargs", {})
    cols = [kw[k] for k in ("column", "column_A", "column_B") if k in kw]
    cols += list(kw.get("column_list") or [])
    if grp := _condition_group(kw):
        cols.append(grp[0])
    return [str(c) for c in cols]


# --------------------------------------------------------------------------- run


def _for_gx(df: pd.DataFrame) -> pd.DataFrame:
    """The frame GX sees: text columns as ``object`` (see module doc), string column names."""
    import pandas as pd

    text = [c for c in df.columns if isinstance(df[c].dtype, pd.StringDtype)]
    out = df.astype({c: object for c in text}) if text else df
    if any(not isinstance(c, str) for c in out.columns):
        out = out.rename(columns=str)
    return out


def _gx_definition(suite: dict[str, Any], docs_dir: Path | None):
    """A new ephemeral GX context holding ``suite``, a whole-dataframe batch and their validation
    definition (and, with ``docs_dir``, a Data Docs site there); returns (gx, context, definition)."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    if docs_dir is not None:
        docs_dir.mkdir(parents=True, exist_ok=True)
        context.add_data_docs_site(
            "impactflow",
            {
                "class_name": "SiteBuilder",
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(docs_dir),
                },
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            },
        )
    asset = context.data_sources.add_pandas("impactflow").add_dataframe_asset(suite["name"])
    batch = asset.add_batch_definition_whole_dataframe("all_rows")
    gx_suite = context.suites.add(gx.ExpectationSuite(**suite))
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=f"{suite['name']}-contract", data=batch, suite=gx_suite)
    )
    return gx, context, definition


def _run_gx(df: pd.DataFrame, suite: dict[str, Any], docs_dir: Path | None, result_format: dict[str, Any]):
    """Validate ``df`` in a new ephemeral GX context; returns (suite result, GX version,
    ``build_docs``: a function that writes this result's Data Docs into ``docs_dir``)."""
    gx, context, definition = _gx_definition(suite, docs_dir)  # (imports GX with analytics off)
    # the validation definition alone, not a Checkpoint: a Checkpoint here would only add a second
    # freshness check of the same objects (GX compares them with their stored copies: ~8% of a
    # validation) and its store entry; the result is stored either way, and the Data Docs are
    # built from the stores (this context holds this one suite and this one result)
    suite_result = definition.run(batch_parameters={"dataframe": df}, result_format=result_format)

    def build_docs() -> None:
        context.build_data_docs(site_names=["impactflow"])

    return suite_result, gx.__version__, build_docs


def validate(df: pd.DataFrame, contract: Contract, docs_dir: Path | None = None) -> ValidationReport:
    """Run the contract's GX suite on ``df``; with ``docs_dir``, also write GX Data Docs HTML
    there (``report.data_docs`` = its index.html). Never raises for bad data: see
    ``ValidationReport.raise_if_failed``.

    A contract with a ``validation_view`` (e.g. images: one row of statistics per image) is
    validated on that view; the view's own errors are data errors of the input."""
    start = time.perf_counter()
    from impactflow.data_contracts.docs_html import sanitise_docs
    from impactflow.data_contracts.pii import contract_scan, refused_failures

    pii_findings = contract_scan(df, contract)  # on the loaded frame: the columns a model reads
    if contract.validation_view is not None:
        df = contract.validation_view(df)
    suite = load_suite(contract)
    present = {str(c) for c in df.columns}
    run: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    for e in suite["expectations"]:
        (run if set(_columns_of(e)) <= present else skipped).append(e)
    docs = Path(docs_dir).resolve() if docs_dir is not None else None
    gx_df, gx_suite = _for_gx(df), {**suite, "expectations": run}
    gx_result, gx_version, build_docs = _run_gx(gx_df, gx_suite, docs, _FAST_FORMAT)
    if not gx_result.success:  # again with SUMMARY: the bad values' counts, for failures and Data Docs
        gx_result, gx_version, build_docs = _run_gx(gx_df, gx_suite, docs, _RESULT_FORMAT)
    if docs is not None:
        build_docs()
        sanitise_docs(docs)  # GX prints data values raw and loads CDN scripts: see docs_html

    failures = [_failure(r, df, contract) for r in gx_result.results if not r.success]
    failures.sort(key=lambda f: f.column is not None)  # table-level first, then suite order
    failures += refused_failures(pii_findings)  # identifiers/PII the contract does not allow
    index = docs / "index.html" if docs is not None else None
    stats = gx_result.statistics
    statistics = {
        "rows": int(len(df)),
        "columns": int(df.shape[1]),
        "evaluated_expectations": stats.get("evaluated_expectations"),
        "successful_expectations": stats.get("successful_expectations"),
        "unsuccessful_expectations": stats.get("unsuccessful_expectations"),
        "not_evaluated": [f"{e['type']}({', '.join(_columns_of(e))})" for e in skipped],
        "seconds": round(time.perf_counter() - start, 3),
        "great_expectations_version": gx_version,
        "pii": [f.to_dict() for f in pii_findings],  # column + rule + counts, never a value
    }
    return ValidationReport(
        success=not failures and not skipped,
        contract=contract.name,
        total_expectations=len(suite["expectations"]),
        failures=failures,
        statistics=statistics,
        data_docs=str(index) if index is not None and index.is_file() else None,
    )


# --------------------------------------------------------------------------- reporting


def _fmt_set(values: list[Any], limit: int = 6) -> str:
    if len(values) <= limit:
        return "{" + ", ".join(repr(v) for v in values) + "}"
    return f"one of the {len(values)} allowed values"


def _num(v: Any) -> Any:
    return int(v) if isinstance(v, float) and v.is_integer() else v


def _between(kw: dict[str, Any]) -> str:
    lo, hi = _num(kw.get("min_value")), _num(kw.get("max_value"))
    lo_op = ">" if kw.get("strict_min") else ">="
    hi_op = "<" if kw.get("strict_max") else "<="
    parts = ([f"{lo_op} {lo}"] if lo is not None else []) + ([f"{hi_op} {hi}"] if hi is not None else [])
    return " and ".join(parts)


def _describe(etype: str, kw: dict[str, Any], contract: Contract) -> str:
    """One line: what the expectation asks for."""
    if etype == "expect_table_columns_to_match_set":
        return f"exactly the contract's {len(kw.get('column_set') or [])} columns"
    if etype == "expect_table_row_count_to_be_between":
        return f"row count {_between(kw)}"
    if etype == "expect_column_values_to_be_in_type_list":
        if kw.get("column") in contract.numeric:
            return "numeric values (int or float)"
        return "text values (str)"
    if etype == "expect_column_values_to_not_be_null":
        mostly = kw.get("mostly", 1)
        if mostly < 1:
            return f"at most {round((1 - mostly) * 100, 2):g}% missing values"
        return "no missing values"
    if etype == "expect_column_values_to_be_in_set":
        return f"values in {_fmt_set(list(kw.get('value_set') or []))}"
    if etype == "expect_column_distinct_values_to_contain_set":
        return f"every value of {_fmt_set(list(kw.get('value_set') or []), limit=8)} present"
    if etype == "expect_column_values_to_be_between":
        return f"values {_between(kw)}"
    if etype == "expect_column_pair_values_to_be_in_set":
        pairs = kw.get("value_pairs_set") or []
        return f"({kw.get('column_A')}, {kw.get('column_B')}) pairs in the {len(pairs)} allowed combinations"
    shown = {k: v for k, v in kw.items() if k not in ("batch_id", "column")}
    return f"{etype} {shown}"


def _exception_message(res: Any) -> str | None:
    info = res.exception_info or {}
    candidates = [info] + [v for v in info.values() if isinstance(v, dict)]
    for c in candidates:
        if c.get("raised_exception"):
            return str(c.get("exception_message") or "error").splitlines()[0][:300]
    return None


def _examples(result: dict[str, Any]) -> tuple[Any, ...]:
    counts = result.get("partial_unexpected_counts") or []
    if counts:
        values = [c.get("value") for c in counts]
    else:
        values = list(result.get("partial_unexpected_list") or [])
    seen: list[Any] = []
    for v in values:
        v = _plain(v)
        if v not in seen:
            seen.append(v)
        if len(seen) == MAX_EXAMPLES:
            break
    return tuple(seen)


def _is_numeric(series: pd.Series) -> bool:
    import pandas as pd

    return bool(pd.api.types.is_numeric_dtype(series.dtype))


def _non_numeric(series: pd.Series) -> tuple[int, tuple[Any, ...]]:
    """Count and first distinct examples of non-null values that ``pd.to_numeric`` rejects."""
    import pandas as pd

    values = series.dropna()
    bad = values[pd.to_numeric(values, errors="coerce").isna()]
    return int(len(bad)), tuple(_plain(v) for v in bad.drop_duplicates().head(MAX_EXAMPLES))


def _failure(res: Any, df: pd.DataFrame, contract: Contract) -> FailedExpectation:
    config = res.expectation_config
    etype, kw, meta = config.type, dict(config.kwargs), config.meta or {}
    result = dict(res.result or {})
    column = kw.get("column")
    if "column_A" in kw:
        column = f"{kw['column_A']}, {kw['column_B']}"
    description = config.description or _describe(etype, kw, contract)
    if meta.get("impactflow_check") == MIN_GROUP_CHECK and config.description:
        description = html.unescape(description)  # escaped for the Data Docs (predictions.py)
    unexpected = result.get("unexpected_count")
    elements = result.get("element_count")
    examples = _examples(result)
    observed = result.get("observed_value")

    if meta.get("impactflow_check") == MIN_GROUP_CHECK or _condition_group(kw):
        column = (meta.get("group") or {}).get("column") or (_condition_group(kw) or (None,))[0]
    elif etype == "expect_table_columns_to_match_set":
        details = (result.get("details") or {}).get("mismatched") or {}
        expected = list(kw.get("column_set") or [])
        missing = list(details.get("missing") or [c for c in expected if c not in {str(x) for x in df.columns}])
        extra = list(details.get("unexpected") or [c for c in map(str, df.columns) if c not in expected])
        bits = ([f"missing: {', '.join(map(str, missing))}"] if missing else []) + (
            [f"unexpected: {', '.join(map(str, extra))}"] if extra else []
        )
        description = f"{description} ({'; '.join(bits)})" if bits else description
        observed = {"missing": missing, "unexpected": extra}
        examples = tuple(missing + extra)[:MAX_EXAMPLES]
    elif etype == "expect_column_values_to_be_in_type_list" and column in df.columns:
        series = df[column]
        observed = str(series.dtype)
        elements = int(len(series))
        if column in contract.numeric:
            unexpected, examples = _non_numeric(series)
            description = (
                f"{description}; column read as {observed!r}: {unexpected} "
                f"value{'s are' if unexpected != 1 else ' is'} not a number"
            )
        elif not examples:
            examples = tuple(_plain(v) for v in series.dropna().drop_duplicates().head(MAX_EXAMPLES))
    elif etype == "expect_column_distinct_values_to_contain_set":
        if result.get("partial_missing_list") is not None:
            # GX 1.24 reports the missing values there (observed_value is None): reading
            # observed_value alone called every value absent (issue 9 corpus)
            examples = tuple(_plain(v) for v in result["partial_missing_list"])[:MAX_EXAMPLES]
            observed = None
        else:
            present = set(observed or [])
            examples = tuple(v for v in kw.get("value_set") or [] if v not in present)[:MAX_EXAMPLES]
            observed = sorted(map(str, present))
        description = f"{description}; absent: {', '.join(map(str, examples))}" if examples else description
    elif etype == "expect_column_values_to_not_be_null" and unexpected is not None:
        observed = f"{result.get('unexpected_percent', 0):.2f}% missing"
        examples = ()

    error = _exception_message(res)
    if error and column in contract.numeric and column in df.columns and not _is_numeric(df[column]):
        error = "the column is not numeric (see its type check)"
    if error:
        description = f"{description} (could not be evaluated: {error})"
    return FailedExpectation(
        expectation=etype,
        column=column,
        description=description,
        unexpected_count=None if unexpected is None else int(unexpected),
        element_count=None if elements is None else int(elements),
        examples=tuple(examples),
        observed=_plain(observed),
    )


def _plain(value: Any) -> Any:
    """JSON-able copy: numpy scalars -> Python, NaN -> None, tuples/sets -> lists."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        try:
            value = value.item()
        except (ValueError, TypeError):
            return str(value)
    if isinstance(value, float) and math.isnan(value):
        return None
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)
