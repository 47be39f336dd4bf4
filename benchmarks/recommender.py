"""Training throughput (ratings/s) of the recommender family with and without DP, and peak memory.

    python benchmarks/recommender.py [--data synthetic|movielens] [--path DIR] [--epochs N]
                                     [--repeats N] [--threads N] [--variant mf|neumf] [--json out.json]

Each measurement runs in a fresh subprocess (so peak memory is that run's own): it loads the
data, splits it as the pipeline does, and trains with ``impactflow.models.training.train_torch`` (the
pipeline's loop) for exactly ``--epochs`` epochs (early stopping off). ratings/s = training
ratings × epochs / wall time of the loop (DP: expected ratings under Poisson sampling, the
same). Peak memory = the child's max RSS (``resource.ru_maxrss``) and, on CUDA,
``torch.cuda.max_memory_allocated``. DP uses the presets' settings: Opacus ghost clipping,
PRV accountant, target ε = 8. Nothing is asserted: it prints what it measured.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_ML = ROOT.parent / "shared" / "datasets" / "movielens-100k"

CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, {root!r})
import torch
torch.set_num_threads({threads})
from impactflow.data_contracts import get_contract, load_dataset
from impactflow.models import get_family
from impactflow.models.base import select_device, targets
from impactflow.models.data import split_frame
from impactflow.models.training import PrivacySettings, TrainSettings, train_torch
from impactflow.tasks.train import roles_for
contract = get_contract({contract!r})
df = load_dataset(contract, {path!r})
split = split_frame(df, target="rating", stratify_on=[], validation=0.15, test=0.15, seed=0, stratify=False)
family = get_family("recommender")
roles = roles_for(contract, "rating", False)
config = family.make_config({params!r})
pre = family.make_preprocessor(roles, config)
X = pre.fit_transform(split.train[list(roles.features)]); Xv = pre.transform(split.validation[list(roles.features)])
device = select_device({device!r})
privacy = PrivacySettings(enabled=True, target_epsilon=8.0, delta=1e-5) if {dp!r} else PrivacySettings()
settings = TrainSettings(epochs=config.epochs, batch_size=config.batch_size, lr=config.lr,
                         weight_decay=config.weight_decay, patience=config.epochs + 1, device=device, amp=False)
torch.manual_seed(0)
model = family.build_model(pre.spec(), config)
if device.startswith("cuda"):
    torch.cuda.reset_peak_memory_stats()
res = train_torch(model, X, targets(split.train, roles), Xv, targets(split.validation, roles),
                  make_criterion=family.make_criterion, settings=settings, privacy=privacy)
out = {{"n_train": len(X), "epochs": res.epochs_run, "wall_s": res.wall_time_s,
       "ratings_per_s": len(X) * res.epochs_run / res.wall_time_s,
       "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
       "cuda_peak_mb": torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else None,
       "epsilon": res.dp.get("epsilon"), "device": device}}
print("RESULT " + json.dumps(out))
"""


def measure(contract: str, path: str | None, params: dict, dp: bool, threads: int, device: str) -> dict:
    code = CHILD.format(
        root=str(ROOT), threads=threads, contract=contract, path=path, params=params, dp=dp, device=device
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode or not lines:
        raise SystemExit(f"benchmark child failed:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", choices=["synthetic", "movielens"], default="synthetic")
    ap.add_argument("--path", default=str(DEFAULT_ML))
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--variant", choices=["mf", "neumf"], default="mf")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    contract, path = ("movielens", args.path) if args.data == "movielens" else ("synthetic_ratings", None)
    rows = []
    for dp in (False, True):
        # the presets' batch/lr: movielens (1024) and recommender-dp (4096); same factors
        params = {
            "variant": args.variant,
            "n_factors": 32,
            "epochs": args.epochs,
            "batch_size": 4096 if dp else 1024,
            "lr": 0.02 if dp else 0.005,
        }
        runs = [measure(contract, path, params, dp, args.threads, args.device) for _ in range(args.repeats)]
        rate = [r["ratings_per_s"] for r in runs]
        row = {
            "dp": dp,
            "variant": args.variant,
            "data": args.data,
            "batch_size": params["batch_size"],
            "threads": args.threads,
            "device": runs[0]["device"],
            "n_train": runs[0]["n_train"],
            "epochs": args.epochs,
            "ratings_per_s_median": statistics.median(rate),
            "ratings_per_s_min": min(rate),
            "ratings_per_s_max": max(rate),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
            "cuda_peak_mb": runs[0]["cuda_peak_mb"],
            "epsilon": runs[0]["epsilon"],
        }
        rows.append(row)
        print(
            f"{'DP (ghost, eps=8)' if dp else 'non-private':18s} batch {row['batch_size']:5d}: "
            f"{row['ratings_per_s_median']:>10,.0f} ratings/s (min {row['ratings_per_s_min']:,.0f}, "
            f"max {row['ratings_per_s_max']:,.0f}); peak RSS {row['peak_rss_mb']:.0f} MB"
            + (f"; CUDA peak {row['cuda_peak_mb']:.0f} MB" if row["cuda_peak_mb"] is not None else "")
            + (f"; epsilon {row['epsilon']:.2f} after {args.epochs} epochs" if dp else "")
        )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
