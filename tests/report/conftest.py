"""A small, hand-built report input: two models, fairness on sex with two groups, one failing
gate (logreg's demographic-parity difference). No training."""
from __future__ import annotations

import copy

import pytest

from audits.results import AuditResult, Gate, Status

SHA_A = "a" * 64
SHA_B = "b" * 64


def _group_row(group, n, tp, fp, tn, fn, sel, ratio, too_small=False):
    pos = tp + fn
    neg = fp + tn
    return {
        "attribute": "sex", "group": group, "n": n, "share": n / 1000, "too_small": too_small,
        "tp": tp, "fp": fp, "tn": tn, "fn": fn,
        "selection_rate": sel, "selection_rate_ci_low": sel - 0.03, "selection_rate_ci_high": sel + 0.03,
        "tpr": tp / pos, "tpr_ci_low": tp / pos - 0.05, "tpr_ci_high": tp / pos + 0.05,
        "fpr": fp / neg, "fpr_ci_low": fp / neg - 0.01, "fpr_ci_high": fp / neg + 0.01,
        "fnr": fn / pos, "fnr_ci_low": fn / pos - 0.05, "fnr_ci_high": fn / pos + 0.05,
        "accuracy": (tp + tn) / n, "accuracy_ci_low": (tp + tn) / n - 0.02,
        "accuracy_ci_high": (tp + tn) / n + 0.02,
        "selection_rate_ratio_to_max": ratio,
    }


def _audits(model: str, dp_fail: bool, epsilon: float | None) -> dict:
    performance = AuditResult(
        name="performance",
        status=Status.PASS,
        metrics={"performance/roc_auc": 0.9012, "performance/roc_auc_ci_low": 0.89,
                 "performance/roc_auc_ci_high": 0.912, "performance/accuracy": 0.85,
                 "performance/brier": 0.1023, "performance/ece": 0.0008},
        thresholds={"roc_auc_min": 0.8},
        gates=[Gate("performance/roc_auc", Status.PASS, 0.9012, 0.8, ">=")],
        details={
            "roc": {"fpr": [0.0, 0.05, 0.2, 0.5, 1.0], "tpr": [0.0, 0.5, 0.8, 0.95, 1.0]},
            "calibration": [
                {"lower": i / 5, "upper": (i + 1) / 5, "count": 100 + 10 * i,
                 "mean_score": i / 5 + 0.1, "positive_rate": i / 5 + 0.08}
                for i in range(5)
            ],
            "confusion_matrix": [[700, 50], [100, 150]],
        },
    )
    dpd = 0.19 if dp_fail else 0.05
    fairness = AuditResult(
        name="fairness",
        status=Status.FAIL if dp_fail else Status.PASS,
        metrics={
            "fairness/sex/demographic_parity_difference": dpd,
            "fairness/sex/demographic_parity_ratio": 0.31 if dp_fail else 0.82,
            "fairness/sex/equalized_odds_difference": 0.08,
            "fairness/sex/equalized_odds_ratio": 0.7,
            "fairness/min_group_size": 30.0,
        },
        by_group=[
            _group_row("Male", 670, 140, 40, 420, 70, 0.27, 1.0),
            _group_row("Female", 330, 10, 10, 280, 30, 0.06 if dp_fail else 0.22, 0.22 if dp_fail else 0.81),
        ],
        thresholds={"demographic_parity_difference_max": 0.1},
        gates=[
            Gate("fairness/sex/demographic_parity_difference",
                 Status.FAIL if dp_fail else Status.PASS, dpd, 0.1, "<="),
            Gate("fairness/sex/equalized_odds_difference", Status.PASS, 0.08, 0.1, "<="),
        ],
        notes=["Groups with fewer than 30 test rows are flagged too small to judge."],
        details={"conventions": {
            "selection rate": "share of the group predicted positive (>50K)",
            "four-fifths": "a group selected at < 0.8 × the highest group's rate is flagged",
        }},
    )
    privacy = AuditResult(
        name="privacy",
        status=Status.PASS,
        metrics={"privacy/mia_auc": 0.52, "privacy/mia_tpr_at_fpr_0.001": 0.0015},
        gates=[Gate("privacy/mia_auc", Status.PASS, 0.52, 0.6, "<=")],
        details={"roc": {"fpr": [0.0, 1e-4, 1e-3, 1e-2, 0.1, 1.0],
                         "tpr": [0.0, 2e-4, 1.5e-3, 1.2e-2, 0.11, 1.0]}},
    )
    return {"performance": performance.to_dict(), "fairness": fairness.to_dict(),
            "privacy": privacy.to_dict()}


def make_inputs(*, failing: bool = True) -> dict:
    """Keyword arguments for ``build_report``; ``failing`` makes one gate fail."""
    def model(name, family_desc, dp, fail):
        return {
            "name": name, "family": "tabular", "description": family_desc,
            "params": {"hidden": 64, "lr": 0.001, "batch_size": 256, "dropout": None, "early_stop": True},
            "training": {"device": "cpu", "epochs_run": 8, "best_epoch": 6, "wall_time_s": 12.3456,
                         "n_parameters": 7041, "dp": dp},
            "audits": _audits(name, fail, dp.get("epsilon")),
            "mlflow_run_id": f"run-{name}",
        }

    dp_on = {"enabled": True, "epsilon": 3.0, "epsilon_rdp": 3.4, "delta": 1e-5,
             "noise_multiplier": 1.1, "max_grad_norm": 1.0, "accountant": "prv",
             "privacy_unit": "one person's row"}
    dp_off = {"enabled": False, "epsilon": None, "epsilon_rdp": None, "delta": None,
              "noise_multiplier": None, "max_grad_norm": None, "accountant": None,
              "privacy_unit": None}
    return {
        "run": {"run_id": "parent123", "flow_run_id": None, "preset": "adult",
                "started_at": "2025-01-01T10:00:00+00:00", "finished_at": "2025-01-01T10:05:00+00:00",
                "mlflow": {"tracking_uri": "sqlite:////tmp/mlflow.db", "experiment": "impactflow",
                           "parent_run_id": "parent123"}},
        "data": {
            "contract": "adult", "files": [{"path": "adult.data.gz", "sha256": SHA_A},
                                           {"path": "adult.test.gz", "sha256": SHA_B}],
            "dataset_sha256": SHA_A, "n_rows": 48842,
            "splits": {"train": 30000, "validation": 8000, "test": 10842},
            "contract_result": {"success": True, "total_expectations": 42, "failures": [],
                                "data_docs": None},
            "representation": [
                {"attribute": "sex", "group": "Male", "n": 32650, "share": 0.6685, "positive_rate": 0.3038},
                {"attribute": "sex", "group": "Female", "n": 16192, "share": 0.3315, "positive_rate": 0.1093},
            ],
            "missing": {"workclass": 2799, "occupation": 2809, "age": 0},
            "sensitive": ["sex"], "excluded_features": ["fnlwgt"],
            "source": "UCI Adult (Census Income), 1994 CPS extract",
            "license": "CC BY 4.0",
        },
        "models": [model("mlp", "2-layer MLP", dp_on, False),
                   model("logreg", "logistic regression", dp_off, failing)],
        "provenance": {"git_commit": "0123abc", "git_dirty": False, "python": "3.12.3",
                       "platform": "Linux-x86_64", "packages": {"torch": "2.6.0", "numpy": "2.1.0"},
                       "seeds": {"global": 0, "split": 1}, "command": "impactflow run --preset adult"},
        "config": {"preset": "adult", "train": {"epochs": 8, "lr": 0.001},
                   "fairness": {"demographic_parity_difference_max": 0.1}},
    }


@pytest.fixture
def inputs():
    return copy.deepcopy(make_inputs(failing=True))
