"""Image family: training throughput (images/s) with and without DP, and the DP overhead.

    python benchmarks/image.py [--epochs 2] [--batch-size 256] [--device cpu]

Trains the `image` preset's CNN on the shipped MNIST training images (4,250 after the
validation hold-out) for a few epochs, three ways: non-private; DP-SGD with Opacus's fast
gradient clipping (``ghost``: the Linear layers get the ghost norm, the convolutions and
GroupNorm fall back to per-example gradients); DP-SGD with plain per-example gradients
(``hooks``). Same model, same batch size; the DP runs use a fixed noise multiplier (1.0),
whose value does not change the cost. Prints one table; speed is measured here, never
asserted in tests.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    import torch

    from impactflow.data_contracts import get_contract, load_dataset
    from impactflow.flows.config import load_config
    from impactflow.models import get_family
    from impactflow.models.base import targets
    from impactflow.models.data import split_frame
    from impactflow.models.training import PrivacySettings, TrainSettings, train_torch
    from impactflow.tasks.train import roles_for

    cfg = load_config("image")
    contract = get_contract("mnist")
    df = load_dataset(contract)
    split = split_frame(
        df, target=contract.target, stratify_on=[], validation=0.15, test=0.15, seed=0, predefined=contract.split_column
    )
    family = get_family("image")
    roles = roles_for(contract, family.task, False)
    params = {**cfg.model.params, "batch_size": args.batch_size, "epochs": args.epochs, "patience": args.epochs}
    config = family.make_config(params)
    pre = family.make_preprocessor(roles, config)
    X = pre.fit_transform(split.train[list(roles.features)])
    Xv = pre.transform(split.validation[list(roles.features)])
    y, yv = targets(split.train, roles), targets(split.validation, roles)

    rows = []
    for label, privacy in [
        ("non-private", PrivacySettings()),
        ("DP ghost", PrivacySettings(enabled=True, noise_multiplier=1.0, grad_sample_mode="ghost")),
        ("DP hooks", PrivacySettings(enabled=True, noise_multiplier=1.0, grad_sample_mode="hooks")),
    ]:
        torch.manual_seed(0)
        model = family.build_model(pre.spec(), config)
        settings = TrainSettings(
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=config.lr,
            patience=args.epochs,
            device=args.device,
            amp=False,
            seed=0,
        )
        t0 = time.perf_counter()
        result = train_torch(
            model, X, y, Xv, yv, make_criterion=family.make_criterion, settings=settings, privacy=privacy
        )
        wall = time.perf_counter() - t0
        rows.append((label, result.wall_time_s, len(X) * result.epochs_run / result.wall_time_s, wall))
    base = rows[0][1]
    print(
        f"image CNN {list(config.channels)} / hidden {config.hidden}, {len(X)} training images, "
        f"batch {args.batch_size}, {args.epochs} epochs, device {args.device}, torch threads "
        f"{torch.get_num_threads()}"
    )
    print(f"{'mode':<12} {'train s':>8} {'images/s':>9} {'x non-private':>14}")
    for label, secs, ips, _ in rows:
        print(f"{label:<12} {secs:8.2f} {ips:9.0f} {secs / base:14.2f}")


if __name__ == "__main__":
    main()
