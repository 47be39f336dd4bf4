"""Scale benchmark: an Adult-shaped tabular dataset at 10k, 100k and 1M rows through load,
validate (the full GX suite + Data Docs), split, train the MLP for one epoch (+ the logistic
regression baseline), audit (performance, fairness with 1,000-replicate bootstrap CIs,
membership inference) and report (JSON/Markdown/HTML) — each stage timed, and the peak
resident memory of the process after each stage.

The data: rows resampled with replacement from the shipped UCI Adult files (seeded), with the
continuous columns jittered (age ±2 years clipped to 17-90, hours-per-week ±3 clipped to 1-99,
fnlwgt ×U(0.9, 1.1)), so every size has Adult's schema, categories, group structure and label
rates, and passes Adult's contract. Written as a headerless UCI-format CSV, the format the
`adult` contract's loader reads (``--set data.path=FILE``).

Each size runs in a fresh subprocess (`--child`), so the peak memory of one size does not
carry over to the next; the stage functions are the Prefect tasks' undecorated functions
(``task.fn``) with the arguments flows/pipeline.py passes (no Prefect engine, no MLflow).

    python benchmarks/scale.py                      # 10k, 100k, 1M (~5-10 min on 2 cores)
    python benchmarks/scale.py --sizes 10000 100000
    python benchmarks/scale.py --json scale.json

Asserts nothing: it prints the table and the growth factor of each stage per 10x rows
(linear = 10x). Target (issue 10): 1M rows within 4 GB peak memory.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
STAGES = ["load", "validate", "split", "train (MLP 1 epoch + logreg)", "audit", "report"]


def make_data(n: int, path: Path, seed: int = 0) -> None:
    """Write n Adult-shaped rows (see the module docstring) as a headerless UCI CSV."""
    import numpy as np

    from impactflow.data_contracts import get_contract, load_dataset

    contract = get_contract("adult")
    df = load_dataset(contract)
    rng = np.random.default_rng(seed)
    out = df.iloc[rng.integers(0, len(df), size=n)].reset_index(drop=True)
    out["age"] = np.clip(out["age"].to_numpy() + rng.integers(-2, 3, size=n), 17, 90)
    out["hours-per-week"] = np.clip(out["hours-per-week"].to_numpy() + rng.integers(-3, 4, size=n), 1, 99)
    out["fnlwgt"] = (out["fnlwgt"].to_numpy() * rng.uniform(0.9, 1.1, size=n)).round().astype("int64")
    out = out[list(contract.columns)]
    out.to_csv(path, header=False, index=False, sep=",")


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def child(n: int, work: Path) -> dict:
    """Run every stage on n rows in this process; return times and peak memory per stage."""
    import warnings

    for pattern in ("Secure RNG turned off", "Full backward hook", "Optimal order is the"):
        warnings.filterwarnings("ignore", message=pattern)
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations  # noqa: F401  (imports are not stage time)
    import sklearn  # noqa: F401
    import torch  # noqa: F401

    from impactflow.data_contracts import get_contract
    from impactflow.flows.config import load_config
    from impactflow.tasks.audit import audit_model
    from impactflow.tasks.data import load_data, split_data, validate_data
    from impactflow.tasks.report import model_record, provenance, representation, write_report
    from impactflow.tasks.spec import RunSpec
    from impactflow.tasks.train import train_baseline, train_model

    t = time.perf_counter()
    csv = work / f"adult_{n}.csv"
    make_data(n, csv)
    gen_s = time.perf_counter() - t
    cfg = load_config("tabular", [f"data.path={csv}", "model.params.epochs=1"])
    spec, seed = RunSpec.of(cfg), cfg.seed
    contract = get_contract(spec.contract_ref)
    times: dict[str, float] = {}
    peaks: dict[str, float] = {}

    def stage(name, fn):
        t0 = time.perf_counter()
        out = fn()
        times[name] = time.perf_counter() - t0
        peaks[name] = _peak_mb()
        return out

    df, info = stage("load", lambda: load_data.fn(spec, [str(csv)], None, seed))
    validation = stage("validate", lambda: validate_data.fn(df, spec, str(work / f"docs_{n}")))
    split = stage("split", lambda: split_data.fn(df, spec, cfg.split.validation, cfg.split.test, seed))
    fitted = stage(
        STAGES[3],
        lambda: [
            train_model.fn(split, spec, cfg.model.params, cfg.train.model_dump(), cfg.privacy.model_dump(), seed),
            *[train_baseline.fn(split, spec, b, seed) for b in cfg.model.baselines],
        ],
    )
    audits = stage("audit", lambda: [audit_model.fn(m, split, spec, cfg.gates) for m in fitted])

    def report():
        records = [model_record(m, a, f"bench-{i}") for i, (m, a) in enumerate(zip(fitted, audits))]
        data = {
            **info,
            "splits": split.sizes(),
            "contract_result": validation.to_dict(),
            "representation": representation(
                df, contract.target, contract.positive_label, [*contract.sensitive, *contract.groups]
            ),
            "synthetic_groups": list(contract.synthetic_groups),
            "missing": {k: int(v) for k, v in df.isna().sum().items() if v},
            "sensitive": list(contract.sensitive),
            "excluded_features": sorted({contract.weight, *contract.exclude_from_features} - {None}),
        }
        run = {
            "run_id": f"scale-{n}",
            "preset": cfg.preset,
            "started_at": "",
            "finished_at": "",
            "mlflow": {
                "tracking_uri": "none (benchmark: not tracked)",
                "experiment": "benchmark",
                "parent_run_id": f"scale-{n}",
            },
        }
        return write_report.fn(
            run,
            data,
            records,
            provenance(seed, "benchmarks/scale.py"),
            cfg.model_dump(mode="json"),
            str(work / f"report_{n}"),
        )

    rep = stage("report", report)
    return {
        "rows": n,
        "generate_s": gen_s,
        "times": times,
        "peak_mb": peaks,
        "validation_success": validation.success,
        "expectations": validation.total_expectations,
        "accuracy": audits[0]["performance"].metrics.get("eval/accuracy"),
        "status": rep["status"],
        "train_rows": split.sizes()["train"],
    }


def render(results: list[dict]) -> str:
    sizes = [r["rows"] for r in results]
    lines = [
        f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs; "
        "seconds per stage (one run per size, fresh process each); peak RSS after the stage in MB"
    ]
    head = f"{'stage':<30}" + "".join(f"{n:>12,}" for n in sizes)
    if len(sizes) > 1:
        head += "  growth per 10x rows"
    lines.append(head)
    for s in STAGES + ["total"]:
        vals = [sum(r["times"].values()) if s == "total" else r["times"][s] for r in results]
        row = f"{s:<30}" + "".join(f"{v:>12.2f}" for v in vals)
        if len(sizes) > 1:
            row += "  " + ", ".join(f"{b / a:.1f}x" for a, b in zip(vals, vals[1:]))
        lines.append(row)
    lines.append(f"{'peak RSS (MB)':<30}" + "".join(f"{max(r['peak_mb'].values()):>12.0f}" for r in results))
    lines.append(f"{'contract passed':<30}" + "".join(f"{str(r['validation_success']):>12}" for r in results))
    lines.append(f"{'MLP accuracy (1 epoch)':<30}" + "".join(f"{r['accuracy']:>12.4f}" for r in results))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="+", type=int, default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--json", default=None)
    ap.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--work", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child is not None:
        print("RESULT " + json.dumps(child(args.child, Path(args.work))))
        return 0
    results = []
    with tempfile.TemporaryDirectory(prefix="impactflow-scale-") as work:
        for n in args.sizes:
            print(f"... {n:,} rows", file=sys.stderr, flush=True)
            env = {**os.environ, "PYTHONPATH": str(ROOT), "PREFECT_LOGGING_LEVEL": "WARNING"}
            proc = subprocess.run(
                [sys.executable, __file__, "--child", str(n), "--work", work],
                capture_output=True,
                text=True,
                env=env,
                cwd=work,
            )
            line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
            if proc.returncode != 0 or line is None:
                print(proc.stdout[-3000:], proc.stderr[-3000:], file=sys.stderr)
                return 1
            results.append(json.loads(line[len("RESULT ") :]))
    print(render(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
