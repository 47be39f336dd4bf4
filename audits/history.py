"""Trends: every gated metric across a pipeline's runs, from their report documents.

``history_rows`` reads the reports of a run sequence (oldest first) and gives, for each model's
gate, its value, 95 % CI (where the audit reports one: the metric of the gate's name with
``_ci_low`` / ``_ci_high``, e.g. ``eval/accuracy_ci_low``), threshold and status in each run;
``trend_png`` draws one gate over the runs with its CI band and the gate line. ``impactflow
history`` prints them; every run logs the plots (``history/`` beside its report).

A run a gate did not exist in shows as a gap (``None``), never as a zero. Pure: no MLflow.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from .plots import BAND_COLOR, _figure, _no_values, _png, _t


def _ci(audit: dict, gate: str) -> tuple[float | None, float | None]:
    """The gate's CI from its audit's metrics: ``<gate>_ci_low`` / ``_ci_high``, else the same
    with the gate's audit prefix replaced by ``eval/`` (the performance audits' naming)."""
    metrics = audit.get("metrics") or {}
    tail = gate.split("/", 1)[1] if "/" in gate else gate
    for base in (gate, f"eval/{tail}", tail):
        low, high = metrics.get(f"{base}_ci_low"), metrics.get(f"{base}_ci_high")
        if isinstance(low, (int, float)) and isinstance(high, (int, float)):
            return float(low), float(high)
    return None, None


def history_rows(reports: Sequence[dict]) -> list[dict[str, Any]]:
    """``[{"model", "gate", "comparison", "points": [{"run_id", "started", "value", "ci_low",
    "ci_high", "threshold", "status"} | None per run]}]`` for every gate of a candidate model in
    any of ``reports`` (oldest first); a run without that gate has ``None`` in its place."""
    runs = [(r.get("run") or {}) for r in reports]
    table: dict[tuple[str, str], dict[str, Any]] = {}
    for i, report in enumerate(reports):
        for m in report.get("models") or []:
            if m.get("role") == "baseline":
                continue
            for audit in (m.get("audits") or {}).values():
                for g in audit.get("gates") or []:
                    key = (str(m.get("name")), str(g.get("name")))
                    row = table.setdefault(
                        key,
                        {
                            "model": key[0],
                            "gate": key[1],
                            "comparison": g.get("comparison"),
                            "points": [None] * len(reports),
                        },
                    )
                    low, high = _ci(audit, key[1])
                    row["points"][i] = {
                        "run_id": runs[i].get("run_id"),
                        "started": runs[i].get("started_at"),
                        "value": g.get("value"),
                        "ci_low": low,
                        "ci_high": high,
                        "threshold": g.get("threshold"),
                        "status": g.get("status"),
                    }
    return sorted(table.values(), key=lambda r: (r["model"], r["gate"]))


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def trend_png(row: dict[str, Any]) -> bytes:
    """One gate over the runs: its value (failed runs in red), the CI band where known, and the
    threshold of each run as a dashed line."""
    points = row["points"]
    xs = list(range(1, len(points) + 1))
    with _figure(width=5.6, height=3.2) as (fig, ax):
        measured = [(x, p) for x, p in zip(xs, points) if p and _finite(p.get("value"))]
        if not measured:
            return _no_values(fig, ax)
        band = [(x, p) for x, p in measured if _finite(p.get("ci_low")) and _finite(p.get("ci_high"))]
        if band:
            ax.fill_between(
                [x for x, _ in band],
                [p["ci_low"] for _, p in band],
                [p["ci_high"] for _, p in band],
                color=BAND_COLOR,
                alpha=0.6,
                linewidth=0,
                label="95 % CI",
            )
        ax.plot(
            [x for x, _ in measured],
            [p["value"] for _, p in measured],
            color="#333333",
            linewidth=1.2,
            marker="o",
            markersize=3,
        )
        failed = [(x, p) for x, p in measured if p.get("status") == "fail"]
        if failed:
            ax.scatter(
                [x for x, _ in failed], [p["value"] for _, p in failed], color="#c0392b", zorder=3, s=18, label="failed"
            )
        gates = [(x, p["threshold"]) for x, p in zip(xs, points) if p and _finite(p.get("threshold"))]
        if gates:
            ax.step(
                [x for x, _ in gates],
                [t for _, t in gates],
                where="mid",
                color="#c0392b",
                linestyle="--",
                linewidth=0.9,
                label=f"gate ({row.get('comparison') or ''})",
            )
        ax.set_xticks(xs)
        ax.set_xlabel("run (oldest to newest)")
        ax.set_title(_t(f"{row['model']}: {row['gate']}"), fontsize=8)
        ax.legend(fontsize=7, frameon=False)
        return _png(fig)
