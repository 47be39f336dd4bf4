"""Worst-slice discovery (audits/slices.py) against a brute-force enumeration, side by side.

Rows: UCI Adult rows resampled (with replacement, seeded) to each size, the model's features of
the tabular family, and errors planted for ``age < 30 AND hours-per-week >= 45`` (60 %) over a
15 % base rate. Both sides test the same slices with the same tests; they differ in how the
slices are enumerated:

- ``impactflow``: level-wise, a slice below the minimum size is not extended, sums in blocks;
- ``brute force``: every conjunction of up to 3 predicates on distinct features
  (``itertools.combinations``), each mask built from scratch, the size filter applied after.

Prints wall seconds and the process's peak RSS growth for each. Asserts nothing.

    python benchmarks/slices.py                     # the Adult test split's size (16,281 rows)
    python benchmarks/slices.py --rows 16281 100000 --repeats 3
"""

from __future__ import annotations

import argparse
import itertools
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def brute_force(frame, loss, max_order=3, n_bins=4, min_size=30) -> int:
    """Every conjunction, built from scratch, then the same sums and tests; returns how many
    slices were tested."""
    from impactflow.audits.slices import predicates, pvalues, slice_sums

    preds = predicates(frame, n_bins, min_size)
    masks = []
    for k in range(1, max_order + 1):
        for combo in itertools.combinations(preds, k):
            if len({p.feature for p in combo}) < k:
                continue
            m = np.logical_and.reduce([p.mask for p in combo])
            if min_size <= m.sum() < loss.size:
                masks.append(m)
    sums = [slice_sums(np.stack(masks[i : i + 1000]), loss) for i in range(0, len(masks), 1000)]
    size, in_sum, in_sq = (np.concatenate([s[j] for s in sums]) for j in range(3))
    pvalues(size, in_sum, in_sq, loss, True)
    return len(masks)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[16281])
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--skip-brute-force", action="store_true")
    args = ap.parse_args(argv)

    from impactflow.audits.slices import find_slices
    from impactflow.data_contracts import load_dataset
    from impactflow.tasks.spec import RunSpec

    spec = RunSpec("adult", "tabular")
    adult = load_dataset(spec.contract)
    print(f"{'rows':>9} {'method':<12} {'slices':>8} {'findings':>8} {'median s':>9} {'min s':>7} {'peak RSS +MB':>13}")
    for n in args.rows:
        rows = adult.sample(n, replace=n > len(adult), random_state=0).reset_index(drop=True)
        frame = rows[list(spec.roles.features)]
        rng = np.random.default_rng(0)
        planted = (frame["age"] < 30).to_numpy() & (frame["hours-per-week"] >= 45).to_numpy()
        loss = (rng.random(n) < np.where(planted, 0.6, 0.15)).astype(float)
        methods = [("impactflow", lambda: find_slices(frame, loss, binary=True))]
        if not args.skip_brute_force:
            methods.append(("brute force", lambda: brute_force(frame, loss)))
        for name, fn in methods:
            times, before = [], _rss_mb()
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                out = fn()
                times.append(time.perf_counter() - t0)
            tested = out["n_tested"] if isinstance(out, dict) else out
            found = len(out["findings"]) if isinstance(out, dict) else "-"
            print(
                f"{n:>9,} {name:<12} {tested:>8,} {found!s:>8} {np.median(times):>9.2f} {min(times):>7.2f} "
                f"{_rss_mb() - before:>13.0f}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
