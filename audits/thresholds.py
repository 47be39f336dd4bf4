"""What each audit accepts under ``gates.<audit>`` in the run config, typed by the audit itself.

Every audit module declares its keys as ``{key: Threshold}``: a *gate* threshold (``at_most`` /
``at_least``: the gates it produces, their comparison, and the metric they read where the
audit gates through ``stats.threshold_gates``), or a *setting* (a size, a level, ``k``, a
choice). The config loaders check values with ``Threshold.problem``, the gating rules
(``gating.py``) read ``default``, ``gate`` and ``comparison`` from here, and nothing guesses a
key's meaning from its name. ``audits.AUDIT_THRESHOLDS`` collects the tables.

A plugin audit's ``THRESHOLDS`` may give ``Threshold`` values, or plain defaults: a plain value
is an unchecked setting (the plugin's function validates it and makes its own gates).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, Mapping

#: ``fraction``: a number in [0, 1]; ``open_fraction``: in (0, 1) (a level such as an FDR);
#: ``number``: a finite number; ``count``: a whole number >= 1; ``whole``: a whole number >= 0; ``columns``: a list of column lists; ``choice``: one of
#: ``choices``; ``column``: a column name; ``any``: not checked here (a plugin's plain value).
Kind = Literal["fraction", "open_fraction", "number", "count", "whole", "columns", "choice", "column", "any"]


@dataclass(frozen=True)
class Threshold:
    """One key of ``gates.<audit>``: its default (None: no gate or the audit's own choice unless
    configured), its kind, and for a gate threshold the last segment of the gate names it makes
    (a regex), the comparison, and the metric it reads (when the audit gates by table)."""

    default: Any = None
    kind: Kind = "fraction"
    gate: str | None = None
    comparison: str | None = None
    metric: str | None = None
    choices: tuple[str, ...] = ()

    @property
    def is_gate(self) -> bool:
        return self.gate is not None

    def problem(self, value: Any) -> str | None:
        """What is wrong with ``value`` for this key (a phrase for ``gates.<audit>.<key>: ...``),
        or None. ``None`` itself is judged by ``gating.section_problems``."""
        if value is None or self.kind == "any":
            return None
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if self.kind in ("fraction", "open_fraction", "number", "count", "whole"):
            if not number or not math.isfinite(value):
                return f"expected a number, got {value!r}"
            if self.kind == "fraction" and not 0 <= value <= 1:
                return f"expected a value in [0, 1], got {value!r}"
            if self.kind == "open_fraction" and not 0 < value < 1:
                return f"expected a value in (0, 1), got {value!r}"
            if self.kind == "count" and (value < 1 or int(value) != value):
                return f"expected a positive integer, got {value!r}"
            if self.kind == "whole" and (value < 0 or int(value) != value):
                return f"expected a whole number >= 0, got {value!r}"
            return None
        if self.kind == "columns":
            ok = isinstance(value, list) and all(
                isinstance(g, list) and all(isinstance(c, str) for c in g) for g in value
            )
            return None if ok else "expected a list of column lists, e.g. [[sex, race]]"
        if self.kind == "choice":
            return None if value in self.choices else f"expected one of {', '.join(self.choices)}, got {value!r}"
        return None if isinstance(value, str) and value else f"expected a column name, got {value!r}"


def at_most(gate: str, default: Any = None, *, kind: Kind = "fraction", metric: str | None = None) -> Threshold:
    """A gate that passes when its measured value is <= the threshold."""
    return Threshold(default, kind, gate, "<=", metric)


def at_least(gate: str, default: Any = None, *, kind: Kind = "fraction", metric: str | None = None) -> Threshold:
    """A gate that passes when its measured value is >= the threshold."""
    return Threshold(default, kind, gate, ">=", metric)


def setting(default: Any, kind: Kind, choices: tuple[str, ...] = ()) -> Threshold:
    """A key that parameterises the audit and makes no gate of its own."""
    return Threshold(default, kind, choices=choices)


def defaults(spec: Mapping[str, Threshold]) -> dict[str, Any]:
    """``{key: default}`` of one audit's table (what the audit uses for a key not configured)."""
    return {key: t.default for key, t in spec.items()}


def gate_table(spec: Mapping[str, Threshold]) -> dict[str, tuple[str, str]]:
    """``{key: (metric, comparison)}`` for ``stats.threshold_gates``: the gate thresholds that
    name their metric."""
    return {key: (t.metric, t.comparison) for key, t in spec.items() if t.metric and t.comparison}


def as_spec(thresholds: Mapping[str, Any]) -> dict[str, Threshold]:
    """A plugin's ``THRESHOLDS``: ``Threshold`` values kept, plain defaults as unchecked settings."""
    return {k: v if isinstance(v, Threshold) else setting(v, "any") for k, v in thresholds.items()}
