"""The value every audit returns (see ARCHITECTURE.md, "An audit").

Audits never raise for a failed check: they return a finding; the flow decides
what a failure means (gates).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any


class Status(str, Enum):
    PASS = "pass"
    FAIL = "fail"
    SKIPPED = "skipped"
    NOT_MEASURED = "not-measured"


@dataclass(frozen=True)
class Gate:
    """One pass/fail decision against a threshold fixed before the run."""

    name: str  # e.g. "fairness/sex/demographic_parity_difference"
    status: Status
    value: float | None
    threshold: float | None
    comparison: str  # "<=" or ">="
    note: str = ""


@dataclass(frozen=True)
class AuditResult:
    name: str
    status: Status
    metrics: dict[str, float] = field(default_factory=dict)  # flat, slash-named, loggable
    by_group: list[dict[str, Any]] = field(default_factory=list)  # rows of a per-group table
    thresholds: dict[str, float] = field(default_factory=dict)
    gates: list[Gate] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)  # JSON-able extras (curves, tables)

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))


def overall_status(gates: list[Gate]) -> Status:
    """FAIL if any gate failed, PASS if at least one passed and none failed."""
    statuses = {g.status for g in gates}
    if Status.FAIL in statuses:
        return Status.FAIL
    if Status.PASS in statuses:
        return Status.PASS
    return Status.NOT_MEASURED


def _jsonable(obj: Any) -> Any:
    """Convert numpy scalars/arrays, enums and tuples into plain JSON types."""
    import math

    if isinstance(obj, Enum):
        return obj.value
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "tolist"):  # numpy array or scalar
        return _jsonable(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
