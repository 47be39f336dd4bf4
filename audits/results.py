"""The value every audit returns (see ARCHITECTURE.md, "An audit"), and the one rule that
turns gates into a verdict.

Audits never raise for a failed check: they return a finding; the flow decides
what a failure means (gates).

The rule (``run_status``): a run passes only if every configured gate was measured and
passed. Any failed gate -> ``"fail"``; otherwise any gate not measured (a missing or
non-finite value, an audit that raised, a configured threshold that produced no gate), or no
gate at all -> ``"incomplete"``; a gate the run owner skipped with a reason does not count.
A gate whose status says pass or fail but whose value is missing or not finite is
not measured (``checked_gate``). A *vacuous* gate (``vacuous_reason``) is one its threshold
lets every possible value pass: it still counts as measured, but is labelled.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field, replace
from enum import Enum
from collections.abc import Mapping
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
    vacuous: bool = False  # the threshold cannot be missed by any possible value (vacuous_reason)


@dataclass(frozen=True)
class AuditResult:
    name: str
    status: Status
    metrics: Mapping[str, float | None] = field(
        default_factory=dict
    )  # flat, slash-named, loggable (None: not measured)
    by_group: list[dict[str, Any]] = field(default_factory=list)  # rows of a per-group table
    thresholds: dict[str, Any] = field(default_factory=dict)  # numbers, and the settings that shaped them
    gates: list[Gate] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)  # JSON-able extras (curves, tables)

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))


#: Run-level verdicts (``run_status``); gate and audit statuses stay ``Status`` values.
RUN_PASS, RUN_FAIL, RUN_INCOMPLETE = "pass", "fail", "incomplete"

#: A membership-advantage bound at or above this is vacuous: advantage = max(TPR - FPR), so an
#: attacker held to 0.5 may still tell members from non-members with 75% balanced accuracy
#: ((1 + advantage) / 2). The DP bound (e^eps - 1 + 2 delta) / (e^eps + 1) reaches it at
#: e^eps >= 3 - 4 delta, i.e. eps >= ln 3 ~ 1.1 (0.905 at eps = 3, 0.9993 at eps = 8): such a gate
#: is failed only by a gross training/accounting bug, never by an ordinary model.
VACUOUS_ADVANTAGE = 0.5
#: Gate metrics whose values lie in [0, 1] (matched on the last segment of the gate's name);
#: RMSE/MAE, their gaps and epsilon bounds are unbounded above and are not in this list.
_UNIT_INTERVAL = re.compile(
    r"(^|_)(accuracy|auc|ece|ece_gap|difference|ratio|advantage|"
    r"flip_rate|fpr_range|bias_score|macro_f1|worst_group_gap|ndcg_at_\d+|ndcg_at_\d+_gap|gini_at_\d+|"
    r"share_at_\d+|coverage|deferral_rate_gap|accuracy_cost)$"
)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def vacuous_reason(name: str, comparison: str, threshold: Any) -> str:
    """Why a gate cannot fail whatever the model does ("" if it can). The rule, one line each:

    - a ``<=`` gate on a metric in [0, 1] with a threshold >= 1, or a ``>=`` gate with a
      threshold <= 0 (the threshold admits the metric's whole range);
    - a ``<=`` gate on a membership advantage with a threshold >= ``VACUOUS_ADVANTAGE`` (0.5),
      e.g. the (epsilon, delta)-DP advantage bound at epsilon >= ln 3.
    """
    if not _finite(threshold):
        return ""
    last = str(name).rsplit("/", 1)[-1]
    if comparison == "<=" and last.endswith("advantage") and threshold >= VACUOUS_ADVANTAGE:
        return (
            f"vacuous: the bound {threshold:.4g} >= {VACUOUS_ADVANTAGE} would allow an attack "
            f"{(1 + min(threshold, 1.0)) / 2:.0%} accurate on balanced members/non-members; only a gross "
            "training or accounting bug fails it"
        )
    if _UNIT_INTERVAL.search(last):
        if comparison == "<=" and threshold >= 1:
            return f"vacuous: the metric is at most 1, so '<= {threshold:g}' always holds"
        if comparison == ">=" and threshold <= 0:
            return f"vacuous: the metric is at least 0, so '>= {threshold:g}' always holds"
    return ""


def checked_gate(gate: Gate) -> Gate:
    """The gate as the verdict reads it: pass/fail with a missing or non-finite value becomes
    not measured (a pass on nothing is no pass); a gate that cannot fail is marked vacuous,
    its reason appended to the note."""
    if gate.status in (Status.PASS, Status.FAIL) and not _finite(gate.value):
        why = f"status {gate.status.value} without a finite value: not measured"
        return replace(
            gate,
            status=Status.NOT_MEASURED,
            value=None,
            note=f"{gate.note}; {why}" if gate.note else why,
            vacuous=False,
        )
    why = vacuous_reason(gate.name, gate.comparison, gate.threshold)
    if why and gate.status is Status.PASS and not gate.vacuous:
        return replace(gate, vacuous=True, note=f"{gate.note}; {why}" if gate.note else why)
    return gate


def overall_status(gates: list[Gate]) -> Status:
    """An audit's status from its gates: FAIL if any failed; NOT_MEASURED if any was not
    measured (``checked_gate``) or there is no gate; SKIPPED if every gate was skipped; PASS
    only when every gate that was not skipped was measured and passed."""
    statuses = [checked_gate(g).status for g in gates]
    if Status.FAIL in statuses:
        return Status.FAIL
    if not statuses or Status.NOT_MEASURED in statuses:
        return Status.NOT_MEASURED
    if all(s is Status.SKIPPED for s in statuses):
        return Status.SKIPPED
    return Status.PASS


def run_status(statuses: list[Any]) -> str:
    """The run's verdict from the statuses of its deciding gates (strings or ``Status``):
    ``"fail"`` if any failed; ``"incomplete"`` if any was not measured (or has an unknown
    status) or nothing at all was measured and passed; else ``"pass"``. Skipped gates do not
    count either way."""
    values = [s.value if isinstance(s, Status) else s for s in statuses]
    if Status.FAIL.value in values:
        return RUN_FAIL
    decided = [s for s in values if s != Status.SKIPPED.value]
    if not decided or any(s != Status.PASS.value for s in decided):
        return RUN_INCOMPLETE
    return RUN_PASS


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
