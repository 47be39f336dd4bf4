"""Trends across runs (audits/history.py): values, CIs and statuses per gate, gaps where a run
had no such gate; the plot is a PNG."""

from __future__ import annotations

from impactflow.audits.history import history_rows, trend_png


def _report(run_id: str, value: float | None, status: str, *, low=None, high=None, extra_gate: bool = False) -> dict:
    gates = [{"name": "eval/accuracy", "value": value, "threshold": 0.8, "comparison": ">=", "status": status}]
    if extra_gate:
        gates.append({"name": "eval/ece", "value": 0.02, "threshold": 0.05, "comparison": "<=", "status": "pass"})
    metrics = {} if low is None else {"eval/accuracy_ci_low": low, "eval/accuracy_ci_high": high}
    return {
        "run": {"run_id": run_id, "started_at": f"2026-12-0{run_id[-1]}"},
        "models": [
            {"name": "mlp", "role": "candidate", "audits": {"performance": {"gates": gates, "metrics": metrics}}},
            {"name": "logreg", "role": "baseline", "audits": {"performance": {"gates": gates, "metrics": metrics}}},
        ],
    }


def test_each_gate_across_runs_with_its_ci_and_status_and_gaps_for_missing_gates():
    rows = history_rows(
        [
            _report("r1", 0.84, "pass", low=0.82, high=0.86),
            _report("r2", 0.78, "fail", extra_gate=True),
            _report("r3", None, "not-measured"),
        ]
    )
    assert [(r["model"], r["gate"]) for r in rows] == [("mlp", "eval/accuracy"), ("mlp", "eval/ece")]  # no baseline
    acc = rows[0]["points"]
    assert [p["value"] for p in acc] == [0.84, 0.78, None]
    assert [p["status"] for p in acc] == ["pass", "fail", "not-measured"]
    assert (acc[0]["ci_low"], acc[0]["ci_high"]) == (0.82, 0.86) and acc[1]["ci_low"] is None
    assert [p and p["run_id"] for p in rows[1]["points"]] == [None, "r2", None]
    assert rows[0]["comparison"] == ">="


def test_trend_plot_is_a_png_even_without_values():
    rows = history_rows([_report("r1", 0.84, "pass", low=0.82, high=0.86), _report("r2", 0.78, "fail")])
    assert trend_png(rows[0])[:8] == b"\x89PNG\r\n\x1a\n"
    empty = history_rows([_report("r1", None, "not-measured")])
    assert trend_png(empty[0])[:8] == b"\x89PNG\r\n\x1a\n"
