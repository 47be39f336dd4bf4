"""Run comparison: direction of each change, per metric name, from two report documents."""

from __future__ import annotations

import pytest

from impactflow.audits.compare import compare_metrics, compare_reports, direction_of, report_metrics


@pytest.mark.parametrize(
    "metric,expected",
    [
        ("mlp:eval/accuracy", 1),
        ("mlp:eval/roc_auc", 1),
        ("mlp:eval/macro_f1", 1),
        ("mlp:eval/ndcg_at_10", 1),
        ("mlp:fairness/sex/four_fifths_min_ratio", 1),
        ("mlp:fairness/sex/demographic_parity_difference", -1),
        ("mlp:fairness/sex/equalized_odds_difference_all_groups", -1),
        ("mf:fairness/gender/rmse_gap", -1),
        ("mlp:eval/ece", -1),
        ("mf:eval/rmse", -1),
        ("mlp:privacy/mia_auc", -1),
        ("mlp:privacy/mia_advantage", -1),
        ("mlp:privacy/mia_tpr_at_1pct_fpr", -1),
        ("mlp:privacy/epsilon", -1),
        ("mf:exposure/gini_at_10", -1),
        ("mlp:eval/accuracy_ci_low", 0),
        ("mlp:fairness/sex/n_groups_judged", 0),
        ("mlp:train/wall_time_s", 0),
        ("mlp:privacy/mia_advantage_bound", 0),
    ],
)
def test_direction_of_known_metrics(metric, expected):
    assert direction_of(metric) == expected


def test_compare_metrics_rows_and_directions():
    a = {
        "m:eval/accuracy": 0.80,
        "m:fairness/s/demographic_parity_difference": 0.10,
        "m:privacy/epsilon": 1.0,
        "m:train/wall_time_s": 3.0,
        "m:eval/ece": 0.05,
        "m:gone": 1.0,
    }
    b = {
        "m:eval/accuracy": 0.75,
        "m:fairness/s/demographic_parity_difference": 0.04,
        "m:privacy/epsilon": 8.0,
        "m:train/wall_time_s": 5.0,
        "m:eval/ece": 0.05,
        "m:new": 2.0,
    }
    rows = {r["metric"]: r for r in compare_metrics(a, b)}
    assert rows["m:eval/accuracy"]["direction"] == "worse"
    assert rows["m:eval/accuracy"]["delta"] == pytest.approx(-0.05)
    assert rows["m:fairness/s/demographic_parity_difference"]["direction"] == "better"
    assert rows["m:fairness/s/demographic_parity_difference"]["delta"] == pytest.approx(-0.06)
    assert rows["m:privacy/epsilon"]["direction"] == "worse"
    assert rows["m:train/wall_time_s"]["direction"] == "changed"
    assert rows["m:eval/ece"]["direction"] == "same" and rows["m:eval/ece"]["delta"] == 0
    assert rows["m:gone"] == {"metric": "m:gone", "a": 1.0, "b": None, "delta": None, "direction": "removed"}
    assert rows["m:new"]["direction"] == "added"
    assert list(rows) == sorted(set(a) | set(b))


def _report(run_id, acc, dp_diff, eps):
    return {
        "run": {"run_id": run_id, "preset": "tabular", "finished_at": "t"},
        "summary": {"status": "pass"},
        "models": [
            {
                "name": "mlp",
                "training": {"dp": {"enabled": eps is not None, "epsilon": eps, "delta": 1e-5}},
                "audits": {
                    "performance": {"metrics": {"eval/accuracy": acc, "eval/roc_auc": None}},
                    "fairness": {"metrics": {"fairness/sex/demographic_parity_difference": dp_diff}},
                },
            }
        ],
    }


def test_report_metrics_flattens_models_audits_and_epsilon():
    m = report_metrics(_report("a", 0.85, 0.12, 1.0))
    assert m == {
        "mlp:eval/accuracy": 0.85,
        "mlp:eval/roc_auc": None,
        "mlp:fairness/sex/demographic_parity_difference": 0.12,
        "mlp:privacy/epsilon": 1.0,
        "mlp:privacy/delta": 1e-5,
    }
    assert "mlp:privacy/epsilon" not in report_metrics(_report("b", 0.85, 0.12, None))


def test_compare_reports_counts_directions():
    out = compare_reports(_report("a", 0.85, 0.12, None), _report("b", 0.86, 0.15, 3.0))
    assert out["a"]["run_id"] == "a" and out["b"]["run_id"] == "b"
    by = {r["metric"]: r["direction"] for r in out["metrics"]}
    assert by == {
        "mlp:eval/accuracy": "better",
        "mlp:eval/roc_auc": "unmeasured",
        "mlp:fairness/sex/demographic_parity_difference": "worse",
        "mlp:privacy/epsilon": "added",
        "mlp:privacy/delta": "added",
    }
    assert out["counts"] == {"better": 1, "unmeasured": 1, "worse": 1, "added": 2}
