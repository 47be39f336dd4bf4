"""The project's error hierarchy.

Every error a *user* can cause (bad data, bad config, a refused run) is an
``ImpactflowError``. The CLI is the one place that catches them: it prints the
message (no traceback) and exits non-zero. Anything else is a bug and keeps its
traceback. It lives in the package root, outside every layer, because every layer raises
these (stdlib only, no heavy imports).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class ImpactflowError(Exception):
    """Base class of user-facing errors (printed without a traceback, exit code 1)."""

    exit_code = 1


class ConfigError(ImpactflowError):
    """The run configuration is invalid (unknown key, wrong type, missing file...)."""


class DataError(ImpactflowError):
    """A data file cannot be read or parsed (missing, empty, wrong number of fields...)."""


class OutputError(ImpactflowError):
    """An output folder cannot be written (read-only, disk full, outside the working tree)."""


class TrackingError(ImpactflowError):
    """The MLflow tracking server cannot be reached (checked before any training)."""


@dataclass(frozen=True)
class FailedExpectation:
    """One failed expectation of a contract, in reviewer-readable form."""

    expectation: str  # GX expectation type, e.g. "expect_column_values_to_be_in_set"
    column: str | None
    description: str  # one line: what was expected
    unexpected_count: int | None = None
    element_count: int | None = None
    examples: tuple[Any, ...] = ()
    observed: Any = None

    def line(self) -> str:
        where = f"column '{self.column}'" if self.column else "table"
        parts = [f"{self.expectation} on {where}: {self.description}"]
        if self.unexpected_count is not None:
            total = f" of {self.element_count}" if self.element_count is not None else ""
            parts.append(f"{self.unexpected_count}{total} rows violate it")
        if self.observed is not None:
            parts.append(f"observed {self.observed!r}")
        if self.examples:
            shown = ", ".join(repr(x) for x in self.examples[:5])
            parts.append(f"examples: {shown}")
        return "; ".join(parts)


CONTRACT_VIOLATION = "Data contract '{contract}' failed: {n} of {total} expectations not met"


@dataclass
class ContractViolation(ImpactflowError):
    """The data does not meet its contract; carries the structured result."""

    contract: str
    failures: list[FailedExpectation]
    total_expectations: int
    data_docs: str | None = None  # path of the GX Data Docs HTML, when built
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(self.summary())

    def summary(self) -> str:
        head = CONTRACT_VIOLATION.format(contract=self.contract, n=len(self.failures), total=self.total_expectations)
        lines = [head] + [f"  - {f.line()}" for f in self.failures]
        if self.data_docs:
            lines.append(f"  Data Docs: {self.data_docs}")
        return "\n".join(lines)

    def __str__(self) -> str:  # dataclass would otherwise replace Exception.__str__
        return self.summary()
