"""The data-drift audit (audits/drift.py) at scale: summarize a reference, summarize this run on
its bins, compare.

Rows: UCI Adult (adult.data and adult.test as shipped with the contract, 48,842 rows) resampled
with replacement, seeded, to each size: 6 numeric and 8 categorical columns, sex and race as the
sensitive attributes, income (>50K) as the binary label. The reference is one resample; this run
another, with a planted shift unless ``--no-shift``: women drawn 1.3 times as often and every
age one year older (so sex, the columns that go with it, and age drift). Timed:

- ``summarize ref``: ``summarize`` of the reference (bin edges and categories derived);
- ``summarize cur``: ``summarize(..., reference=ref)`` of this run (on the reference's bins);
- ``audit``: ``drift_audit`` (PSI, KS / chi-square, the group tests, Benjamini-Hochberg);
- ``total``: the three.

Prints wall seconds (median and min over ``--repeats``), the peak RSS growth over the memory in
use before the timed steps (Linux: the peak is reset there; elsewhere the process's peak since
start, which includes building the rows), and the size of the stored summary. Asserts nothing.

    python benchmarks/drift.py                          # 1,000,000 rows
    python benchmarks/drift.py --rows 48842 1000000 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench_memory import peak_mb, start_peak  # noqa: E402 (beside this script)

NUMERIC = ["age", "fnlwgt", "education-num", "capital-gain", "capital-loss", "hours-per-week"]
CATEGORICAL = [
    "workclass",
    "education",
    "marital-status",
    "occupation",
    "relationship",
    "race",
    "sex",
    "native-country",
]
SENSITIVE = ["sex", "race"]
STEPS = ("summarize ref", "summarize cur", "audit")


def adult_rows():
    """UCI Adult as shipped with its contract (adult.data, then adult.test)."""
    import impactflow.data_contracts.adult as adult
    from impactflow.data_contracts.adult import load_uci_adult

    here = Path(adult.__file__).parent
    return load_uci_adult([here / "adult.data.gz", here / "adult.test.gz"])


def frames(n: int, shift: bool):
    """The reference and this run's rows: two seeded resamples of Adult (this run shifted)."""
    adult = adult_rows()[[*NUMERIC, *CATEGORICAL, "income"]]
    reference = adult.iloc[np.random.default_rng(0).integers(0, len(adult), n)].reset_index(drop=True)
    weights = np.ones(len(adult))
    if shift:
        weights[(adult["sex"] == "Female").to_numpy()] = 1.3
    rows = np.random.default_rng(1).choice(len(adult), n, p=weights / weights.sum())
    current = adult.iloc[rows].reset_index(drop=True)
    if shift:
        current["age"] = current["age"] + 1
    return reference, current


def run(n: int, repeats: int, shift: bool) -> list[str]:
    from impactflow.audits.drift import DRIFT_DEFAULTS, column_kinds, drift_audit, summarize

    reference_rows, current_rows = frames(n, shift)
    kinds = column_kinds(reference_rows, [*NUMERIC, *CATEGORICAL])
    label = ("income", "binary", ">50K")
    times: dict[str, list[float]] = {s: [] for s in STEPS}
    before = start_peak()
    for _ in range(repeats):
        t0 = time.perf_counter()
        ref = summarize(reference_rows, kinds, SENSITIVE, *label)
        t1 = time.perf_counter()
        cur = summarize(current_rows, kinds, SENSITIVE, *label, reference=ref)
        t2 = time.perf_counter()
        result = drift_audit(ref, cur, DRIFT_DEFAULTS, reference_label="resample 0")
        t3 = time.perf_counter()
        for step, seconds in zip(STEPS, (t1 - t0, t2 - t1, t3 - t2)):
            times[step].append(seconds)
    growth = peak_mb() - before
    totals = [sum(times[s][i] for s in STEPS) for i in range(repeats)]
    size_kb = len(json.dumps(ref, allow_nan=False)) / 1024.0
    found = (
        f"{int(result.metrics['drift/drifted_columns'])} of {len(kinds)} columns, "
        f"{int(result.metrics['drift/drifted_groups'])} of {len(result.by_group)} groups drifted; "
        f"max PSI {result.metrics['drift/max_psi']:.3f}"
    )
    lines = [f"{n:>9,} {s:<14} {np.median(times[s]):>9.2f} {min(times[s]):>7.2f}" for s in STEPS]
    lines.append(
        f"{n:>9,} {'total':<14} {np.median(totals):>9.2f} {min(totals):>7.2f} {growth:>13.0f} {size_kb:>10.1f}  {found}"
    )
    return lines


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[1_000_000])
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--no-shift", action="store_true", help="this run drawn like the reference (no planted drift)")
    args = ap.parse_args(argv)
    print(
        f"{'rows':>9} {'step':<14} {'median s':>9} {'min s':>7} {'peak RSS +MB':>13} {'summary kB':>10}  found",
        flush=True,
    )
    for n in args.rows:
        for line in run(n, args.repeats, not args.no_shift):
            print(line, flush=True)
    print(f"process peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0:,.0f} MB", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
