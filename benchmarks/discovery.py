"""The whole discovery audit (slices, proxies, attributions: report section 10) of one model on
UCI Adult's official test rows (adult.test, 16,281 rows; a default run's own test split is
7,327 rows), as a pipeline run makes it.

The model is the tabular family's logistic-regression baseline fitted on Adult's training rows
(a stand-in for any model: only its predictions and ``predict`` are read); the sensitive
columns are left out of its features (``data.exclude_sensitive_from_features``), so the proxy
audit has something to find. Prints each audit's wall seconds (median and min over
``--repeats``) and their sum. Asserts nothing.

    python benchmarks/discovery.py --repeats 3
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

AUDITS = ("slices", "proxies", "attributions")
N_TEST = 16_281


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args(argv)

    from impactflow.audits import AuditInputs, run_audits
    from impactflow.data_contracts import load_dataset
    from impactflow.models.base import discovery_inputs, targets
    from impactflow.models.data import Split
    from impactflow.models.fit import SklearnPredictor
    from impactflow.tasks.spec import RunSpec

    spec = RunSpec("adult", "tabular", exclude_sensitive=True)
    adult = load_dataset(spec.contract)
    # the loader returns adult.data's 32,561 rows, then adult.test's 16,281 (the official test set)
    train, held_out = adult.iloc[:-N_TEST], adult.iloc[-N_TEST:].reset_index(drop=True)
    split = Split(train=train, validation=train.iloc[:0], test=held_out)
    roles = spec.roles
    estimator = spec.family.baselines["logreg"](roles, 0).fit(
        split.train[list(roles.features)], targets(split.train, roles)
    )
    predictor = SklearnPredictor(estimator, roles)
    inputs = AuditInputs(
        y_true=targets(split.test, roles).astype(int),
        y_score=predictor.predict(split.test),
        sensitive=split.test[list(spec.audit_roles.groups)],
        extra=discovery_inputs(spec.family, predictor, split, roles, True),
    )
    print(f"{len(split.test):,} test rows, {len(roles.features)} features, sensitive: {', '.join(roles.groups)}")
    print(f"{'audit':<14} {'median s':>9} {'min s':>7}")
    medians = []
    for name in AUDITS:
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            run_audits(inputs, {}, names=[name])
            times.append(time.perf_counter() - t0)
        medians.append(float(np.median(times)))
        print(f"{name:<14} {medians[-1]:>9.2f} {min(times):>7.2f}")
    print(f"{'all three':<14} {sum(medians):>9.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
