"""What changed between two runs: every metric present in either report, A, B, Δ and the
direction of the change (pure functions over report documents).

Metrics are keyed ``<model>:<metric>`` (e.g. ``mlp:eval/accuracy``,
``mlp:fairness/sex/demographic_parity_difference``), plus ``<model>:privacy/epsilon`` from the
model's DP record. Direction ("better"/"worse") is defined per metric by name (``direction_of``):
accuracy, AUC, F1, NDCG, coverage, selection-rate ratios up is better; fairness gaps and
differences, calibration error, RMSE/MAE, membership-inference AUC/advantage/TPR, ε,
exposure concentration down is better; anything else (counts, CI bounds, sizes) is only
"changed". Equal values are "same"; a metric in only one run is "added"/"removed".
"""

from __future__ import annotations

import math
import re
from typing import Any

# (pattern on the metric name after "<model>:", +1 higher is better / -1 lower is better).
# First match wins; order matters (privacy AUC before the generic AUC).
DIRECTION_RULES: tuple[tuple[str, int], ...] = (
    (r"(_ci_low|_ci_high|/ci_low|/ci_high)$", 0),
    (r"(^|/)n_[a-z_]+$|_count$|/n$", 0),
    (r"^privacy/mia_advantage_bound$", 0),
    (r"^privacy/(mia_|lira|attack)", -1),  # attack success: lower is better
    (r"(^|/)epsilon[a-z_]*$", -1),
    (r"(^|/)delta$", -1),
    (r"(difference|_gap|gap$|_range)([a-z_]*)$", -1),
    (
        r"(^|/)(ece|brier|log_loss|rmse|mae|fped|fned|max_flip_rate|mean_flip_rate|score_shift[a-z_]*)"
        r"([a-z_]*|_at_\d+)$",
        -1,
    ),
    (r"(gini|hhi|top10pct_popular_share|avg_popularity)", -1),
    (
        r"(ratio|accuracy|auc|f1|precision|recall|ndcg|coverage|hit_rate|final_bias_score|power_mean)"
        r"([a-z_]*|_at_\d+)$",
        1,
    ),
)
_RULES = tuple((re.compile(p), d) for p, d in DIRECTION_RULES)


def direction_of(metric: str) -> int:
    """+1 when higher is better, -1 when lower is better, 0 when neither is defined."""
    name = metric.split(":", 1)[-1]
    for pattern, direction in _RULES:
        if pattern.search(name):
            return direction
    return 0


def report_metrics(report: dict) -> dict[str, float | None]:
    """Flat ``{"<model>:<metric>": value}`` of a report document (None for missing values)."""
    out: dict[str, float | None] = {}
    for model in report.get("models") or []:
        name = model.get("name", "?")
        for audit in (model.get("audits") or {}).values():
            for k, v in ((audit or {}).get("metrics") or {}).items():
                out[f"{name}:{k}"] = _num(v)
        dp = (model.get("training") or {}).get("dp") or {}
        if dp.get("enabled"):
            out[f"{name}:privacy/epsilon"] = _num(dp.get("epsilon"))
            out[f"{name}:privacy/delta"] = _num(dp.get("delta"))
    return out


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or v is None:
        return None if v is None else float(v)
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def compare_metrics(a: dict[str, float | None], b: dict[str, float | None], tol: float = 1e-12) -> list[dict]:
    """One row per metric in either run: metric, a, b, delta (b − a), direction.

    direction: better / worse (by ``direction_of``), changed (no defined direction), same,
    added (only in B), removed (only in A), unmeasured (None on both sides)."""
    rows = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        delta = vb - va if va is not None and vb is not None else None
        if key not in a:
            change = "added"
        elif key not in b:
            change = "removed"
        elif va is None and vb is None:
            change = "unmeasured"
        elif va is None:
            change = "added"
        elif vb is None:
            change = "removed"
        else:  # both measured
            assert delta is not None
            d = direction_of(key)
            if abs(delta) <= tol:
                change = "same"
            else:
                change = "changed" if d == 0 else ("better" if d * delta > 0 else "worse")
        rows.append({"metric": key, "a": va, "b": vb, "delta": delta, "direction": change})
    return rows


def compare_reports(a: dict, b: dict) -> dict:
    """Both runs' identities, gate status, and the metric rows (JSON-able)."""

    def ident(r: dict) -> dict:
        run = r.get("run") or {}
        return {
            "run_id": run.get("run_id"),
            "preset": run.get("preset"),
            "finished_at": run.get("finished_at"),
            "status": (r.get("summary") or {}).get("status"),
        }

    rows = compare_metrics(report_metrics(a), report_metrics(b))
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["direction"]] = counts.get(r["direction"], 0) + 1
    return {"a": ident(a), "b": ident(b), "counts": counts, "metrics": rows}
