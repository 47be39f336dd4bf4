"""GX validation of the shipped UCI Adult data (48,842 rows, the contract's 57 expectations, the
PII scan and the Data Docs), with and without the speed-ups in ``impactflow.data_contracts.validation``
(public GX API only: the patches of GX internals -- a jinja2 bytecode cache injected into
``DefaultJinjaView`` and a memoised ``Expectation.configuration`` -- were removed, issue 22 item 3:
under 10% of a realistic run):

- ``checkpoint``: GX 1.24 as its docs show it: a Checkpoint with an ``UpdateDataDocsAction``,
  SUMMARY results (how the pipeline validated before);
- ``gx``: the validation definition run directly, Data Docs built from the stores, SUMMARY;
- ``gx+basic``: the pipeline's path: and a BASIC first pass (a passing frame is not validated
  again).

    python benchmarks/validation.py [--repeats N] [--sample N]

Each variant runs in its own fresh process, all alternated
``--repeats`` times; in each process one warm-up validation, then 5 timed ones (CPU time of the
process and wall time); the table gives, per variant, the median over all its timed
validations. Every validation must pass; nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = ("checkpoint", "gx", "gx+basic")
TIMED = 5


def _run_gx_checkpoint(df, suite, docs_dir, result_format):
    """The pipeline's validation before: the same context, suite, definition and Data Docs site
    (``impactflow.data_contracts.validation._gx_definition``), run by a Checkpoint with its Data Docs action."""
    from impactflow.data_contracts.validation import _gx_definition

    gx, context, definition = _gx_definition(suite, docs_dir)
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(
            name=f"{suite['name']}-checkpoint",
            validation_definitions=[definition],
            result_format=result_format,
            actions=[gx.checkpoint.UpdateDataDocsAction(name="data_docs", site_names=["impactflow"])],
        )
    )
    (result,) = checkpoint.run(batch_parameters={"dataframe": df}).run_results.values()
    return result, gx.__version__, lambda: None  # the action built the Data Docs


def _child(variant: str, sample: int | None) -> None:
    sys.path.insert(0, str(ROOT))
    from impactflow.data_contracts import get_contract, load_dataset
    from impactflow.data_contracts import validation as v

    if variant in ("checkpoint", "gx"):
        v._FAST_FORMAT = v._RESULT_FORMAT  # one SUMMARY pass, as before
    if variant == "checkpoint":
        v._run_gx = _run_gx_checkpoint
    contract = get_contract("adult")
    df = load_dataset(contract)
    if sample:
        df = df.sample(n=sample, random_state=0).reset_index(drop=True)
    out = []
    with tempfile.TemporaryDirectory() as d:
        for i in range(TIMED + 1):
            t0, c0 = time.perf_counter(), time.process_time()
            report = v.validate(df, contract, Path(d) / f"docs{i}")
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            if not report.success:
                raise SystemExit(f"{variant}: the data failed its contract")
            if i:
                out.append({"wall": wall, "cpu": cpu})
    print(json.dumps(out))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3, help="processes per variant, alternated (default 3)")
    ap.add_argument("--sample", type=int, default=None, help="a seeded sample of N rows (default: all)")
    ap.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        _child(args.child, args.sample)
        return 0
    times: dict[str, list[dict]] = {k: [] for k in VARIANTS}
    for _ in range(args.repeats):
        for variant in VARIANTS:
            cmd = [sys.executable, __file__, "--child", variant] + (
                ["--sample", str(args.sample)] if args.sample else []
            )
            proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
            if proc.returncode != 0:
                print(f"{variant}: FAILED: {(proc.stderr or proc.stdout).strip()[-400:]}")
                return 1
            times[variant] += json.loads(proc.stdout.strip().splitlines()[-1])
    base = statistics.median(t["cpu"] for t in times["checkpoint"])
    print(
        f"GX validation of Adult ({args.sample or 'all 48,842'} rows), {args.repeats} processes x {TIMED} "
        "validations per variant, medians"
    )
    print(f"{'variant':<12} {'cpu s':>7} {'wall s':>7} {'cpu vs checkpoint':>18}")
    for variant, ts in times.items():
        cpu = statistics.median(t["cpu"] for t in ts)
        wall = statistics.median(t["wall"] for t in ts)
        print(f"{variant:<12} {cpu:7.3f} {wall:7.3f} {cpu / base:17.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
