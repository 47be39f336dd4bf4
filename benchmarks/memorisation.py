"""Exposure of planted secrets against the number of repeats, with and without DP
(models/memorisation.py): the hf family on SMS Spam, fine-tuning the tiny BERT built from a
config (or ``--hf-model DIR``; ``--family text``: the text family's Transformer from scratch),
once without DP and once with DP-SGD at ``--epsilon``.

    python benchmarks/memorisation.py                      # tiny model, ε = 1 (about 3 min on 2 cores)
    python benchmarks/memorisation.py --hf-model /models/distilbert-base-uncased --epsilon 8
    python benchmarks/memorisation.py --family text        # the text family from scratch, 3 epochs

Prints one row per arm, number of repeats and label: the secrets' ranks among the candidates,
mean and largest exposure (bits), the 95% chance interval of the mean, and the test AUC.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from gpu_smoke import _hf_model  # noqa: E402


def arm(family_name: str, privacy, params: dict):
    from sklearn.metrics import roc_auc_score

    from impactflow.data_contracts import get_contract, load_dataset
    from impactflow.models import get_family
    from impactflow.models.base import roles_for
    from impactflow.models.data import split_frame
    from impactflow.models.fit import fit_family_model
    from impactflow.models.memorisation import SecretSettings

    contract, family = get_contract("sms_spam"), get_family(family_name)
    split = split_frame(
        load_dataset(contract), target=contract.target, stratify_on=[], validation=0.15, test=0.15, seed=0
    )
    fitted = fit_family_model(
        family,
        {"max_len": 48, **params},
        split,
        roles_for(contract, family.task, False),
        seed=0,
        device="auto",
        privacy=privacy,
        secrets=SecretSettings(),
    )
    return fitted, roc_auc_score(fitted.y_test, fitted.test_output)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--family", choices=["hf", "text"], default="hf")
    ap.add_argument("--hf-model", default=None)
    ap.add_argument("--epsilon", type=float, default=1.0)
    args = ap.parse_args(argv)
    from impactflow.models.training import PrivacySettings

    if args.family == "hf":
        path = _hf_model(args.hf_model)
        base = {"path": path, "epochs": 10, "patience": 10}
        plain, private = {**base, "lr": 0.002, "batch_size": 64}, {**base, "lr": 0.005, "batch_size": 256}
        print(f"model: {path}")
    else:  # the preset's Transformer from scratch, with its default hyperparameters
        plain, private = {"epochs": 3}, {"epochs": 3, "lr": 0.005, "batch_size": 256}
        print("model: the text family's Transformer, trained from scratch")
    arms = [
        ("no DP", PrivacySettings(), plain),
        (
            f"DP ε={args.epsilon:g}",
            PrivacySettings(enabled=True, target_epsilon=args.epsilon, delta=1e-5, max_grad_norm=1.0),
            private,
        ),
    ]
    print(
        f"{'arm':<10} {'repeats':>7} {'label':<6} {'ranks (of 1,000)':<28} {'mean bits':>9} {'max':>6} {'chance 95%':>13} {'AUC':>6}"
    )
    for name, privacy, params in arms:
        fitted, auc = arm(args.family, privacy, params)
        for lv in fitted.training["secrets"]["levels"]:
            ranks = ", ".join(f"{r:g}" for r in lv["ranks"])
            chance = f"{lv['chance_low']:.2f}-{lv['chance_high']:.2f}"
            print(
                f"{name:<10} {lv['repeats']:>7} {lv['label']:<6} {ranks:<28} {lv['exposure_mean']:>9.2f} "
                f"{lv['exposure_max']:>6.2f} {chance:>13} {auc:>6.3f}"
            )
        dp = fitted.training["dp"]
        if dp.get("enabled"):
            print(f"{'':<10} epsilon (PRV accountant) = {dp['epsilon']:.4f}, delta = {dp['delta']:g}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
