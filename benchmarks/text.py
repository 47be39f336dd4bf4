"""Training throughput of the text family (examples/s), with and without DP-SGD.

    python benchmarks/text.py [--epochs 2] [--repeats 2] [--json out.json]

Trains the `text` preset's Transformer on the shipped, de-duplicated SMS Spam Collection
(the pipeline's seeded split) with the shared training loop (``impactflow.models.training.train_torch``),
once non-private and once with Opacus DP-SGD (fast gradient clipping, the `text-dp` batch
size and noise for epsilon = 8), and prints training examples per second (examples seen per
second of the training loop, validation included). Nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    warnings.filterwarnings("ignore")

    import torch

    from impactflow.data_contracts import get_contract, load_dataset
    from impactflow.flows.config import load_config
    from impactflow.models import get_family
    from impactflow.models.base import targets
    from impactflow.models.data import split_frame
    from impactflow.models.training import PrivacySettings, TrainSettings, train_torch
    from impactflow.tasks.train import roles_for

    contract = get_contract("sms_spam")
    family = get_family("text")
    roles = roles_for(contract, family.task, False)
    split = split_frame(
        load_dataset(contract), target=contract.target, stratify_on=[], validation=0.15, test=0.15, seed=0
    )
    rows = []
    for preset in ("text", "text-dp"):
        cfg = load_config(preset, [f"model.params.epochs={args.epochs}", f"model.params.patience={args.epochs}"])
        config = family.make_config(cfg.model.params)
        pre = family.make_preprocessor(roles, config)
        X, Xv = pre.fit_transform(split.train), pre.transform(split.validation)
        y, yv = targets(split.train, roles), targets(split.validation, roles)
        privacy = PrivacySettings.from_config(cfg.privacy.model_dump())
        times = []
        for r in range(args.repeats):
            torch.manual_seed(r)
            model = family.build_model(pre.spec(), config)
            t0 = time.perf_counter()
            res = train_torch(
                model,
                X,
                y,
                Xv,
                yv,
                make_criterion=family.make_criterion,
                privacy=privacy,
                settings=TrainSettings(
                    epochs=args.epochs,
                    batch_size=config.batch_size,
                    lr=config.lr,
                    patience=args.epochs,
                    device="cpu",
                    seed=r,
                ),
            )
            times.append(time.perf_counter() - t0)
        per_s = [len(X) * args.epochs / t for t in times]
        rows.append(
            {
                "preset": preset,
                "dp": privacy.enabled,
                "batch_size": config.batch_size,
                "n_train": len(X),
                "epochs": args.epochs,
                "torch_threads": torch.get_num_threads(),
                "examples_per_s_median": statistics.median(per_s),
                "examples_per_s_min": min(per_s),
                "examples_per_s_max": max(per_s),
                "epsilon_after": res.dp.get("epsilon"),
            }
        )
    print(f"{'preset':<9} {'DP':<5} {'batch':>5} {'examples/s (median [min, max])':>34}")
    for row in rows:
        print(
            f"{row['preset']:<9} {str(row['dp']):<5} {row['batch_size']:>5} "
            f"{row['examples_per_s_median']:>12.0f} [{row['examples_per_s_min']:.0f}, {row['examples_per_s_max']:.0f}]"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
