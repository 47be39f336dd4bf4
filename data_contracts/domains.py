"""Declared domains: the category set and value range the contract declares for each column.

Under differential privacy, preprocessing must not be fitted on training rows (a category seen
in one row, a mean, a vocabulary would be released with the model outside the (ε, δ) claim).
The data-independent replacement is what the contract already declares: the GX suite's
``expect_column_values_to_be_in_set`` (the category set) and
``expect_column_values_to_be_between`` (the numeric range) of each column. Only unconditional
expectations count (no ``row_condition``): a conditional one does not bound the whole column.
A set with ``mostly`` < 1 still declares the expected values; the rest fall in the models'
"other/missing" bucket. Stdlib only (every package may import this one).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from impactflow.errors import ConfigError

NO_DECLARED_DOMAIN = (
    "under DP, column {column!r} needs a declared {what} in contract {contract!r} "
    "(add {expectation} for it to {suite}): preprocessing fitted on training rows "
    "would be released outside the privacy claim"
)


@dataclass(frozen=True)
class Domains:
    """Per column: the declared category set (suite order) and the declared (min, max) range
    (``None`` for an open end)."""

    contract: str
    suite: str = ""  # the suite's file name, for error messages
    categories: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    ranges: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)

    def _add(self, column: str, expectation: str, declaration: str) -> dict[str, str]:
        """How to declare it: the key of a contract.yaml with declared columns, else the suite's
        expectation."""
        if self.suite.endswith((".yaml", ".yml")):
            return {"expectation": f"{declaration} under columns.{column}", "suite": self.suite}
        return {"expectation": expectation, "suite": self.suite or "its suite"}

    def category_set(self, column: str) -> tuple[Any, ...]:
        """The declared set of ``column``; ``ConfigError`` naming contract and column if none."""
        values = self.categories.get(column)
        if not values:
            raise ConfigError(
                NO_DECLARED_DOMAIN.format(
                    column=column,
                    what="category set",
                    contract=self.contract,
                    **self._add(column, "expect_column_values_to_be_in_set", "values"),
                )
            )
        return values

    def value_range(self, column: str) -> tuple[float, float]:
        """The declared, finite (min, max) of ``column``; ``ConfigError`` if either end is open."""
        lo, hi = self.ranges.get(column, (None, None))
        if lo is None or hi is None or not lo < hi:
            raise ConfigError(
                NO_DECLARED_DOMAIN.format(
                    column=column,
                    what="finite range (min_value < max_value)",
                    contract=self.contract,
                    **self._add(column, "expect_column_values_to_be_between", "min and max"),
                )
            )
        return lo, hi


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def domains_from_suite(contract_name: str, expectations: list[dict[str, Any]], suite: str = "") -> Domains:
    """Collect the declared sets and ranges of a suite's expectations (see the module doc).
    Several declarations of one column are intersected (each must hold)."""
    categories: dict[str, tuple[Any, ...]] = {}
    ranges: dict[str, tuple[float | None, float | None]] = {}
    for e in expectations:
        kw = e.get("kwargs") or {}
        column = kw.get("column")
        if not isinstance(column, str) or kw.get("row_condition"):
            continue
        if e.get("type") == "expect_column_values_to_be_in_set" and isinstance(kw.get("value_set"), list):
            values = tuple(dict.fromkeys(kw["value_set"]))
            if column in categories:
                values = tuple(v for v in categories[column] if v in set(values))
            categories[column] = values
        elif e.get("type") == "expect_column_values_to_be_between":
            lo, hi = _number(kw.get("min_value")), _number(kw.get("max_value"))
            old_lo, old_hi = ranges.get(column, (None, None))
            lo = old_lo if lo is None else lo if old_lo is None else max(lo, old_lo)
            hi = old_hi if hi is None else hi if old_hi is None else min(hi, old_hi)
            ranges[column] = (lo, hi)
    return Domains(contract=contract_name, suite=suite, categories=categories, ranges=ranges)


_MEMO: dict[tuple[str, str, int | tuple[int, int]], Domains] = {}


def declared_domains(contract) -> Domains:
    """The declared domains of ``contract`` (a ``Contract``), read from its GX suite (memoised
    per contract name, suite file and modification time)."""
    from impactflow.data_contracts.validation import load_suite

    path = Path(contract.suite_path or contract.contract_path or contract.name)
    mtime: int | tuple[int, int]
    try:
        mtime = path.stat().st_mtime_ns
    except OSError:
        mtime = -1
    if contract.contract_path is not None:  # a declared contract: its suite follows the YAML
        try:
            mtime = (mtime, Path(contract.contract_path).stat().st_mtime_ns)
        except OSError:
            pass
    key = (contract.name, str(path), mtime)
    if key not in _MEMO:
        suite = load_suite(contract)
        _MEMO[key] = domains_from_suite(contract.name, suite["expectations"], path.name)
    return _MEMO[key]
