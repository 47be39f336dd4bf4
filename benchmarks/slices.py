"""Worst-slice discovery (audits/slices.py) against a brute-force enumeration, side by side.

Rows: UCI Adult rows resampled (with replacement, seeded) to each size, the model's features of
the tabular family, and errors planted for ``age < 30 AND hours-per-week >= 45`` (60 %) over a
15 % base rate. Both sides test the same slices with the same tests; they differ in how the
slices are enumerated:

- ``impactflow``: ``find_slices`` whole (predicates, slices, tests, findings): bit-packed masks,
  depth first, a slice's extensions at once, a slice below the minimum size not extended;
- ``brute force``: every conjunction of up to 3 predicates on distinct features
  (``itertools.combinations``), each mask built from scratch as bytes, the size filter applied
  after, sums a bounded block of masks at a time, then the same tests (no grouping). It stops
  after ``--brute-force-limit`` seconds a repeat (the note says how far it got).

Prints wall seconds and the peak RSS growth of each method over the memory in use before it,
each in a fresh process with the rows already loaded (Linux: the peak is reset there; elsewhere
the process's peak since start, which includes loading the data). Asserts nothing.

    python benchmarks/slices.py                     # the Adult test split's size (16,281 rows)
    python benchmarks/slices.py --rows 16281 1000000 --repeats 3 --brute-force-limit 120
"""

from __future__ import annotations

import argparse
import itertools
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench_memory import peak_mb, start_peak  # noqa: E402 (beside this script)


def brute_force(frame, loss, limit_s: float, max_order=3, n_bins=4, min_size=30) -> tuple[int, str]:
    """Every conjunction, built from scratch, then the same sums and tests; returns how many
    slices were tested and a note when it stopped at ``limit_s`` seconds."""
    from impactflow.audits.slices import BLOCK_CELLS, predicates, pvalues, slice_sums

    t0 = time.perf_counter()
    preds = predicates(frame, n_bins, min_size)
    combos = [
        combo
        for k in range(1, max_order + 1)
        for combo in itertools.combinations(preds, k)
        if len({p.feature for p in combo}) == k
    ]
    block = max(1, BLOCK_CELLS // loss.size)
    masks, sums, done = [], [], 0
    for done, combo in enumerate(combos, 1):
        m = np.logical_and.reduce([p.mask for p in combo])
        if min_size <= np.count_nonzero(m) < loss.size:
            masks.append(m)
        if len(masks) == block:
            sums.append(slice_sums(np.stack(masks), loss))
            masks = []
        if time.perf_counter() - t0 > limit_s:
            break
    if masks:
        sums.append(slice_sums(np.stack(masks), loss))
    size, in_sum, in_sq = (np.concatenate([s[j] for s in sums]) for j in range(3))
    pvalues(size, in_sum, in_sq, loss, True)
    if done == len(combos):
        return size.size, ""
    spent = time.perf_counter() - t0
    return size.size, (
        f"stopped at the {limit_s:g} s limit: {done:,} of {len(combos):,} conjunctions "
        f"({done / len(combos):.1%}); ~{spent * len(combos) / done:,.0f} s at that pace"
    )


def run(n: int, method: str, repeats: int, limit_s: float) -> str:
    """One table row: ``method`` on ``n`` resampled Adult rows, ``repeats`` times."""
    from impactflow.audits.slices import find_slices
    from impactflow.data_contracts import load_dataset
    from impactflow.tasks.spec import RunSpec

    spec = RunSpec("adult", "tabular")
    adult = load_dataset(spec.contract)
    rows = adult.sample(n, replace=n > len(adult), random_state=0).reset_index(drop=True)
    frame = rows[list(spec.roles.features)]
    del adult, rows
    rng = np.random.default_rng(0)
    planted = (frame["age"] < 30).to_numpy() & (frame["hours-per-week"] >= 45).to_numpy()
    loss = (rng.random(n) < np.where(planted, 0.6, 0.15)).astype(float)
    times, before = [], start_peak()
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = find_slices(frame, loss, binary=True) if method == "impactflow" else brute_force(frame, loss, limit_s)
        times.append(time.perf_counter() - t0)
    growth = peak_mb() - before
    tested, note = (out["n_tested"], "") if isinstance(out, dict) else out
    found = len(out["findings"]) if isinstance(out, dict) else "-"
    return (
        f"{n:>9,} {method:<12} {tested:>8,} {found!s:>8} {np.median(times):>9.2f} {min(times):>7.2f} "
        f"{growth:>13.0f}  {note}"
    )


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[16281])
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--skip-brute-force", action="store_true")
    ap.add_argument("--brute-force-limit", type=float, default=300.0, help="seconds per repeat (default 300)")
    ap.add_argument("--method", choices=["impactflow", "brute force"], help=argparse.SUPPRESS)  # one row, in-process
    args = ap.parse_args(argv)
    if args.method:
        print(run(args.rows[0], args.method, args.repeats, args.brute_force_limit), flush=True)
        return 0

    print(
        f"{'rows':>9} {'method':<12} {'slices':>8} {'findings':>8} {'median s':>9} {'min s':>7} "
        f"{'peak RSS +MB':>13}  note",
        flush=True,
    )
    for n in args.rows:
        for method in ("impactflow", "brute force"):
            if method == "brute force" and args.skip_brute_force:
                print(f"{n:>9,} {method:<12} {'-':>8} {'-':>8} {'-':>9} {'-':>7} {'-':>13}  skipped", flush=True)
                continue
            # each row in a fresh process: one method's freed memory does not hide the next one's
            cmd = [sys.executable, __file__, "--rows", str(n), "--repeats", str(args.repeats), "--method", method]
            done = subprocess.run(
                [*cmd, "--brute-force-limit", str(args.brute_force_limit)], capture_output=True, text=True
            )
            print(done.stdout.rstrip() or f"{n:>9,} {method:<12} failed: {done.stderr.strip()[-300:]}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
