"""Model quality per family on its real dataset, with and without DP, next to reference values.

Runs each preset through the real pipeline (``impactflow.flows.pipeline.run_pipeline``: contract,
training, audits, report, MLflow into a temporary SQLite store; one temporary Prefect server
for the whole script) and prints the headline metric of the family's candidate model, its
epsilon, and the reference value from ../shared/REFERENCE.md (and the issue that introduced
the family). The gate status of each run is shown too: a run whose fairness gates fail still
has a model whose quality is measured.

    python benchmarks/quality.py                       # every preset below (~15-25 min on 2 cores)
    python benchmarks/quality.py --presets tabular tabular-dp
    python benchmarks/quality.py --movielens DIR       # MovieLens 100K copy (else ../shared/...)

Asserts nothing. MovieLens presets are skipped when no copy of MovieLens 100K is found (it
may not be redistributed; the project never ships it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from dp_overhead import _movielens  # noqa: E402

# preset -> (family, dataset, headline metric, higher is better, reference text, issue)
ROWS = {
    "tabular": (
        "tabular",
        "UCI Adult",
        "eval/accuracy",
        True,
        "logreg ~0.85, gradient boosting ~0.87; MLP 0.858 (REFERENCE)",
        "#2",
    ),
    "tabular-dp": ("tabular", "UCI Adult", "eval/accuracy", True, "MLP 0.855 at eps=1 (REFERENCE)", "#2"),
    "text": ("text", "SMS Spam", "eval/accuracy", True, "0.98 non-private (REFERENCE)", "#3"),
    "text-dp": ("text", "SMS Spam", "eval/accuracy", True, "0.95-0.96 at eps=8 (REFERENCE)", "#3"),
    "image": (
        "image",
        "MNIST 5k train / official 10k test",
        "eval/accuracy",
        True,
        "0.98 (small CNN, 5k); 98.9% on 60k (Opacus example)",
        "#4",
    ),
    "image-dp": (
        "image",
        "MNIST 5k train / official 10k test",
        "eval/accuracy",
        True,
        "0.937 at eps=3 (5k, REFERENCE); 96.8% at eps=2.91 on 60k",
        "#4",
    ),
    "movielens": (
        "recommender",
        "MovieLens 100K",
        "eval/rmse",
        False,
        "SVD-style MF ~0.93, well-tuned ~0.90; 0.926 (REFERENCE)",
        "#5",
    ),
    "recommender-dp": ("recommender", "MovieLens 100K", "eval/rmse", False, "0.967 at eps=8 (REFERENCE)", "#5"),
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", nargs="+", default=list(ROWS), choices=list(ROWS))
    ap.add_argument("--movielens", default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    ml = _movielens(args.movielens)
    work = Path(tempfile.mkdtemp(prefix="impactflow-quality-"))
    os.environ.update(
        {
            "PREFECT_HOME": str(work / "prefect"),
            "PREFECT_LOGGING_LEVEL": "WARNING",
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
            "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}",
        }
    )
    os.environ.pop("PREFECT_API_URL", None)
    from impactflow.flows.config import load_config
    from impactflow.flows.pipeline import run_pipeline

    results = []
    for preset in args.presets:
        family, dataset, metric, higher, ref, issue = ROWS[preset]
        overrides = [f"tracking.output_dir={work / 'runs'}", "tracking.register_models=false"]
        if preset in ("movielens", "recommender-dp"):
            if not ml:
                print(f"... {preset}: skipped (no MovieLens 100K copy)", file=sys.stderr)
                continue
            overrides.append(f"data.path={ml}")
        print(f"... {preset}", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        summary = run_pipeline(load_config(preset, overrides), command=f"benchmarks/quality.py {preset}")
        wall = time.perf_counter() - t0
        cand = next(
            name
            for name in summary["models"]
            if summary["models"][name]["dp"].get("enabled") or name in ("mlp", "transformer", "cnn", "recommender")
        )
        m = summary["models"][cand]
        dp = m["dp"]
        results.append(
            {
                "preset": preset,
                "family": family,
                "dataset": dataset,
                "model": cand,
                "metric": metric,
                "value": m["metrics"].get(metric),
                "higher_is_better": higher,
                "epsilon": dp.get("epsilon") if dp.get("enabled") else None,
                "reference": ref,
                "issue": issue,
                "status": summary["status"],
                "wall_s": wall,
            }
        )
        print(
            f"    {preset}: {metric} = {results[-1]['value']}, eps = {results[-1]['epsilon']}, {wall:.0f} s",
            file=sys.stderr,
            flush=True,
        )
        if args.json:  # written after every preset: a long run that stops still leaves its rows
            Path(args.json).write_text(json.dumps(results, indent=2))
    lines = [
        f"machine: {platform.node()}, {os.cpu_count()} CPUs; seed 0; one run per preset",
        f"{'preset':<15} {'family':<12} {'dataset':<20} {'metric':<14} {'value':>7} {'eps':>6} "
        f"{'gates':<6} {'wall s':>7}  reference (issue)",
    ]
    for r in results:
        eps = f"{r['epsilon']:.2f}" if r["epsilon"] is not None else "-"
        val = f"{r['value']:.4f}" if r["value"] is not None else "-"
        lines.append(
            f"{r['preset']:<15} {r['family']:<12} {r['dataset'][:20]:<20} {r['metric']:<14} {val:>7} "
            f"{eps:>6} {r['status']:<6} {r['wall_s']:>7.0f}  {r['reference']} ({r['issue']})"
        )
    print("\n".join(lines))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
