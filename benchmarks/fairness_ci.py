"""Fairness audit with bootstrap CIs: impactflow (multinomial over confusion cells) vs fairlearn
(MetricFrame(n_boot=...), one row resample per replicate). Prints a table; rerun any time.

    python benchmarks/fairness_ci.py [--fairlearn-boot 20] [--rows-large 1000000] [--repeats 3]

fairlearn's cost grows linearly with the replicates (each one resamples and regroups all rows),
so it is measured at --fairlearn-boot replicates and the per-replicate time is reported next to
the measured figure; impactflow's audit is timed whole at 1,000 replicates.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _adult_predictions():
    """Real Adult rows (48,842) with the predictions of a logistic regression (5-fold)."""
    from sklearn.model_selection import cross_val_predict

    from impactflow.data_contracts import get_contract, load_dataset
    from impactflow.models.tabular import logreg_baseline
    from impactflow.tasks.train import roles_for

    contract = get_contract("adult")
    df = load_dataset(contract)
    roles = roles_for(contract, "binary", False)
    y = (df[contract.target] == contract.positive_label).astype(int).to_numpy()
    yhat = cross_val_predict(logreg_baseline(roles, 0), df[list(roles.features)], y, cv=5)
    return y, yhat, df[["sex", "race"]].reset_index(drop=True)


def _time(fn, repeats):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), min(times), max(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fairlearn-boot", type=int, default=20)
    ap.add_argument("--rows-large", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    from fairlearn.metrics import MetricFrame, false_positive_rate, selection_rate, true_positive_rate

    from impactflow.audits import AuditInputs
    from impactflow.audits.fairness import fairness_audit

    y, yhat, sens = _adult_predictions()
    inputs = AuditInputs(y_true=y, y_score=yhat.astype(float), sensitive=sens)
    ours = _time(lambda: fairness_audit(inputs, {"n_boot": 1000}), args.repeats)
    metrics = {"selection_rate": selection_rate, "tpr": true_positive_rate, "fpr": false_positive_rate}

    def fl(n_boot):
        for cols in (["sex"], ["race"], ["sex", "race"]):
            mf = MetricFrame(
                metrics=metrics,
                y_true=y,
                y_pred=yhat,
                sensitive_features=sens[cols],
                n_boot=n_boot,
                ci_quantiles=[0.025, 0.975],
                random_state=0,
            )
            mf.difference_ci()

    fl_points = _time(
        lambda: [
            MetricFrame(metrics=metrics, y_true=y, y_pred=yhat, sensitive_features=sens[c])
            for c in (["sex"], ["race"], ["sex", "race"])
        ],
        args.repeats,
    )
    fl_boot = _time(lambda: fl(args.fairlearn_boot), 1)
    per_rep = (fl_boot[0] - fl_points[0]) / args.fairlearn_boot

    rng = np.random.default_rng(0)
    n = args.rows_large
    big = AuditInputs(
        y_true=rng.integers(0, 2, n),
        y_score=rng.random(n),
        sensitive=pd.DataFrame(
            {
                "sex": rng.choice(["Female", "Male"], n, p=[0.33, 0.67]),
                "race": rng.choice(
                    ["White", "Black", "Asian-Pac-Islander", "Amer-Indian-Eskimo", "Other"],
                    n,
                    p=[0.85, 0.096, 0.031, 0.01, 0.013],
                ),
            }
        ),
    )
    large = _time(lambda: fairness_audit(big, {"n_boot": 1000}), args.repeats)

    rows = [
        ("impactflow fairness audit, 1,000 replicates, Adult 48,842 rows (sex, race, sex x race)", ours),
        ("fairlearn MetricFrame point estimates only, same groupings", fl_points),
        (f"fairlearn MetricFrame n_boot={args.fairlearn_boot}, same groupings (measured)", fl_boot),
        (f"impactflow fairness audit, 1,000 replicates, {n:,} rows (sex, race, sex x race)", large),
    ]
    print(f"{'what':<92} {'median s':>9} {'min s':>8} {'max s':>8}")
    for label, (med, lo, hi) in rows:
        print(f"{label:<92} {med:9.3f} {lo:8.3f} {hi:8.3f}")
    print(
        f"fairlearn bootstrap cost per replicate: {per_rep:.3f} s -> 1,000 replicates ~ {1000 * per_rep:,.0f} s "
        f"(extrapolated); ratio at equal replicates ~ {1000 * per_rep / ours[0]:,.0f}x"
    )


if __name__ == "__main__":
    main()
