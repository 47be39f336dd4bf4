"""A small report input: two models (an (ε = 3)-DP MLP and a logistic regression), fairness on sex
with two groups, logreg failing its fairness gates. The fairness and privacy audits are the real
``fairness_audit``/``privacy_audit`` run on small literal arrays (so the shapes are the pipeline's);
the performance audit is hand-made. No training.

``real_reports`` (session scope, e2e): the JSON of REAL pipeline runs of every family and of the
audit-only flow, for the renderer tests."""

from __future__ import annotations

import copy

import pytest

from impactflow.audits.results import AuditResult, Gate, Status

SHA_A = "a" * 64
SHA_B = "b" * 64


# (tp, fp, tn, fn) per sex group; the fairness and privacy audits below are the REAL audits run on
# arrays built from these counts, so the report sees exactly the keys the pipeline writes.
COUNTS = {
    "Male": (140, 40, 420, 70),  # n 670, selection rate 180/670 = 0.2687
    "Female_fail": (10, 10, 280, 30),  # n 330, selection rate 20/330 = 0.0606 (ratio 0.2256)
    "Female_ok": (67, 20, 210, 33),  # n 330, selection rate 87/330 = 0.2636 (ratio 0.9813)
}


def _arrays(dp_fail: bool):
    """y_true, y_score (0.9 predicted positive, 0.1 negative) and the sex column, group by group."""
    import numpy as np
    import pandas as pd

    y, score, sex = [], [], []
    for group, key in (("Male", "Male"), ("Female", "Female_fail" if dp_fail else "Female_ok")):
        tp, fp, tn, fn = COUNTS[key]
        for label, pred, k in ((1, 1, tp), (0, 1, fp), (0, 0, tn), (1, 0, fn)):
            y += [label] * k
            score += [0.9 if pred else 0.1] * k
            sex += [group] * k
    return np.array(y), np.array(score), pd.DataFrame({"sex": sex})


def _audits(model: str, dp_fail: bool, epsilon: float | None) -> dict:
    import numpy as np

    from impactflow.audits.fairness import fairness_audit
    from impactflow.audits.inputs import AuditInputs
    from impactflow.audits.privacy import privacy_audit

    performance = AuditResult(
        name="performance",
        status=Status.PASS,
        metrics={
            "performance/roc_auc": 0.9012,
            "performance/roc_auc_ci_low": 0.89,
            "performance/roc_auc_ci_high": 0.912,
            "performance/accuracy": 0.85,
            "performance/brier": 0.1023,
            "performance/ece": 0.0008,
        },
        thresholds={"roc_auc_min": 0.8},
        gates=[Gate("performance/roc_auc", Status.PASS, 0.9012, 0.8, ">=")],
        details={
            "roc": {"fpr": [0.0, 0.05, 0.2, 0.5, 1.0], "tpr": [0.0, 0.5, 0.8, 0.95, 1.0]},
            "calibration": [
                {
                    "lower": i / 5,
                    "upper": (i + 1) / 5,
                    "count": 100 + 10 * i,
                    "mean_score": i / 5 + 0.1,
                    "positive_rate": i / 5 + 0.08,
                }
                for i in range(5)
            ],
            "confusion_matrix": [[700, 50], [100, 150]],
        },
    )
    y, score, sex = _arrays(dp_fail)
    rng = np.random.default_rng(0)
    inputs = AuditInputs(
        y_true=y,
        y_score=score,
        sensitive=sex,
        member_loss=rng.exponential(0.50, 400),
        nonmember_loss=rng.exponential(0.52, 400),
        epsilon=epsilon,
        delta=1e-5 if epsilon is not None else None,
    )
    fairness = fairness_audit(
        inputs,
        {
            "max_demographic_parity_difference": 0.1,
            "max_equalized_odds_difference": 0.1,
            "min_group_size": 30,
            "n_boot": 50,
        },
    )
    privacy = privacy_audit(inputs, {"max_mia_auc": 0.6})
    return {"performance": performance.to_dict(), "fairness": fairness.to_dict(), "privacy": privacy.to_dict()}


def make_inputs(*, failing: bool = True) -> dict:
    """Keyword arguments for ``build_report``; ``failing`` makes one gate fail."""

    def model(name, family_desc, dp, fail):
        return {
            "name": name,
            "family": "tabular",
            "description": family_desc,
            "params": {"hidden": 64, "lr": 0.001, "batch_size": 256, "dropout": None, "early_stop": True},
            "training": {
                "device": "cpu",
                "epochs_run": 8,
                "best_epoch": 6,
                "wall_time_s": 12.3456,
                "n_parameters": 7041,
                "dp": dp,
            },
            "audits": _audits(name, fail, dp.get("epsilon")),
            "mlflow_run_id": f"run-{name}",
        }

    dp_on = {
        "enabled": True,
        "epsilon": 3.0,
        "epsilon_rdp": 3.4,
        "delta": 1e-5,
        "noise_multiplier": 1.1,
        "max_grad_norm": 1.0,
        "accountant": "prv",
        "privacy_unit": "one person's row",
    }
    dp_off = {
        "enabled": False,
        "epsilon": None,
        "epsilon_rdp": None,
        "delta": None,
        "noise_multiplier": None,
        "max_grad_norm": None,
        "accountant": None,
        "privacy_unit": None,
    }
    return {
        "run": {
            "run_id": "parent123",
            "flow_run_id": None,
            "preset": "adult",
            "started_at": "2025-01-01T10:00:00+00:00",
            "finished_at": "2025-01-01T10:05:00+00:00",
            "mlflow": {
                "tracking_uri": "sqlite:////tmp/mlflow.db",
                "experiment": "impactflow",
                "parent_run_id": "parent123",
            },
        },
        "data": {
            "contract": "adult",
            "files": [{"path": "adult.data.gz", "sha256": SHA_A}, {"path": "adult.test.gz", "sha256": SHA_B}],
            "dataset_sha256": SHA_A,
            "n_rows": 48842,
            "splits": {"train": 30000, "validation": 8000, "test": 10842},
            "contract_result": {"success": True, "total_expectations": 42, "failures": [], "data_docs": None},
            "representation": [
                {"attribute": "sex", "group": "Male", "n": 32650, "share": 0.6685, "positive_rate": 0.3038},
                {"attribute": "sex", "group": "Female", "n": 16192, "share": 0.3315, "positive_rate": 0.1093},
            ],
            "missing": {"workclass": 2799, "occupation": 2809, "age": 0},
            "sensitive": ["sex"],
            "excluded_features": ["fnlwgt"],
            "source": "UCI Adult (Census Income), 1994 CPS extract",
            "license": "CC BY 4.0",
        },
        "models": [model("mlp", "2-layer MLP", dp_on, False), model("logreg", "logistic regression", dp_off, failing)],
        "provenance": {
            "git_commit": "0123abc",
            "git_dirty": False,
            "python": "3.12.3",
            "platform": "Linux-x86_64",
            "packages": {"torch": "2.6.0", "numpy": "2.1.0"},
            "seeds": {"global": 0, "split": 1},
            "command": "impactflow run --preset adult",
        },
        "config": {
            "preset": "adult",
            "train": {"epochs": 8, "lr": 0.001},
            "fairness": {"demographic_parity_difference_max": 0.1},
        },
    }


@pytest.fixture
def inputs():
    return copy.deepcopy(make_inputs(failing=True))


# --------------------------------------------------------------------------- real runs (e2e)

# One short run per family on the data the project ships (1 epoch; Adult sampled: a smaller sample
# fails the contract; the SMS texts sampled to 2,000 with 100 identity counterfactuals, which
# halves the hf run), plus the audit-only flow. The tabular run is the DP preset, so the report
# holds a DP candidate, a non-private baseline on the same rows (total ε = ∞) and the canary audit.
SMALL_TEXT = ["data.sample=2000", "gates.identity.counterfactual_sample=100"]
REAL_RUNS = {
    "tabular": ("tabular-dp", ["data.sample=6000", "model.params.epochs=1"]),
    "text": ("text", ["model.params.epochs=1", *SMALL_TEXT]),
    "image": ("image", ["model.params.epochs=1"]),
    "recommender": ("recommender", ["model.params.epochs=1"]),
    # the tiny model built from a config (tests/conftest.py tiny_hf), fine-tuned in full
    "hf": ("hf-text", ["model.params.path={tiny_hf}", "model.params.epochs=1", "model.params.lr=0.002", *SMALL_TEXT]),
}


def _audit_only_table(n: int = 8000):  # smaller samples fail the contract (race groups < 30)
    """Adult rows with a deterministic scoring rule (a stand-in for a model not trained here)."""
    import numpy as np
    import pandas as pd

    from impactflow.data_contracts import get_contract, load_dataset

    df = load_dataset(get_contract("adult")).sample(n=n, random_state=0).reset_index(drop=True)
    z = (df["education-num"] - 10) / 2.0 + (df["hours-per-week"] - 40) / 15.0 + (df["age"] - 38) / 20.0
    return pd.DataFrame(
        {"income": df["income"], "sex": df["sex"], "race": df["race"], "score": 1.0 / (1.0 + np.exp(-z))}
    )


@pytest.fixture(scope="session")
def real_reports(prefect_api, tmp_path_factory, tiny_hf):
    """``{family: {"json", "md", "html"} paths}`` of real runs of every family, of ``audit-only``
    and of the same decisions streamed (``audit-stream``)."""
    import os

    from impactflow.flows.config import load_config
    from impactflow.flows.pipeline import run_pipeline

    out = {}
    for family, (preset, overrides) in REAL_RUNS.items():
        path = tmp_path_factory.mktemp(f"report_{family}")
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{path / 'mlflow.db'}"
        try:
            cfg = load_config(
                preset,
                [
                    f"tracking.output_dir={path}",
                    "train.device=cpu",
                    "tracking.register_models=false",
                    *(o.format(tiny_hf=tiny_hf) for o in overrides),
                ],
            )
            out[family] = run_pipeline(cfg)["report"]
        finally:
            del os.environ["MLFLOW_TRACKING_URI"]
    path = tmp_path_factory.mktemp("report_audit_only")
    table = path / "scores.csv"
    _audit_only_table().to_csv(table, index=False)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{path / 'mlflow.db'}"
    try:
        from impactflow.flows.audit_only import run_audit_only

        out["audit-only"] = run_audit_only(
            data=str(table),
            label="income",
            score="score",
            sensitive=["sex", "race"],
            positive_label=">50K",
            threshold=0.5,
            output_dir=str(path / "runs"),
        )["report"]
        # the same decisions as a folder of Parquet files, streamed (tasks/stream_audit.py)
        logs = path / "log"
        logs.mkdir()
        frame = _audit_only_table()
        frame.iloc[:5000].to_parquet(logs / "part-0.parquet", index=False)
        frame.iloc[5000:].to_parquet(logs / "part-1.parquet", index=False)
        out["audit-stream"] = run_audit_only(
            data=str(logs),
            label="income",
            score="score",
            sensitive=["sex", "race"],
            positive_label=">50K",
            threshold=0.5,
            output_dir=str(path / "stream-runs"),
            engine="stream",
        )["report"]
    finally:
        del os.environ["MLFLOW_TRACKING_URI"]
    return out
