"""DP training overhead per family: seconds per epoch with DP-SGD (Opacus, the preset's
grad_sample_mode) vs without, SAME model, batch size, data and epoch count.

For each family, the `<family>-dp` preset's model params are used for both arms (so the batch
size and architecture are identical); patience = epochs so both arms run every epoch. Arms are
interleaved (off, on, off, on, ...) so drift on a noisy machine hits both. Per-epoch times come
from the training loop's epoch callback; epoch 1 (which also holds Opacus set-up, first-batch
allocation, ...) is left out. Each epoch includes the validation loss; DP epochs include the
cheap per-epoch RDP read-out, and the DP arm's whole-task time includes the noise calibration
and the final accountant evaluation -- computed in the first DP training ("cold"), read from the
accountant memo in later ones ("warm"). The recommender uses MovieLens 100K when a copy is found (``--movielens DIR`` or
../shared/datasets/movielens-100k), else the synthetic ratings the project ships.

    python benchmarks/dp_overhead.py                       # all four families (~6-10 min on 2 cores)
    python benchmarks/dp_overhead.py --families tabular text --epochs 4 --repeats 3
    python benchmarks/dp_overhead.py --json dp.json

Asserts nothing: it prints a table (median / min / max per row) and the ratio of medians.
Targets from issue 10: DP <= 1.5x non-private for tabular, text and recommender, <= 3x for the CNN.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FAMILIES = {  # family -> (DP preset, contract when no MovieLens copy, target ratio)
    "tabular": ("tabular-dp", None, 1.5),
    "text": ("text-dp", None, 1.5),
    "image": ("image-dp", None, 3.0),
    "recommender": ("recommender-dp", "synthetic_ratings", 1.5),
}


def _movielens(arg: str | None) -> str | None:
    for cand in ([arg] if arg else []) + [str(ROOT.parent / "shared" / "datasets" / "movielens-100k")]:
        if cand and (Path(cand) / "u.data").exists():
            return cand
    return None


def _prepare(family: str, ml_dir: str | None, preset: str | None = None):
    """(run config, contract, split, data source) of ``family``'s DP preset (or ``preset``)."""
    from impactflow.flows.config import load_config
    from impactflow.tasks.data import load_data, split_data
    from impactflow.tasks.spec import RunSpec

    preset, fallback = (preset, None) if preset else FAMILIES[family][:2]
    cfg = load_config(preset, [], check=family != "hf")  # hf: the model directory is set by the caller
    contract, paths = cfg.data.contract, ([str(p) for p in cfg.data.path] if cfg.data.path else None)
    source = contract
    if family == "recommender":
        if ml_dir:
            contract, paths, source = "movielens", [ml_dir], "MovieLens 100K"
        else:
            contract, paths, source = fallback, None, "synthetic ratings (no MovieLens copy found)"
    spec = RunSpec(contract, cfg.model.family, cfg.data.exclude_sensitive_from_features)
    df, _ = load_data.fn(spec, paths, cfg.data.sample, cfg.seed)
    split = split_data.fn(df, spec, cfg.split.validation, cfg.split.test, cfg.seed)
    return cfg, contract, split, source


def bench_family(family: str, epochs: int, repeats: int, ml_dir: str | None) -> dict:
    from impactflow.data_contracts import get_contract
    from impactflow.models import get_family
    from impactflow.models.base import roles_for
    from impactflow.models.fit import fit_family_model
    from impactflow.models.training import PrivacySettings

    cfg, contract, split, source = _prepare(family, ml_dir)
    fam = get_family(cfg.model.family)
    roles = roles_for(get_contract(contract), fam.task, cfg.data.exclude_sensitive_from_features)
    params = {**cfg.model.params, "epochs": epochs, "patience": epochs}
    dp = PrivacySettings.from_config(cfg.privacy.model_dump())
    arms: dict[str, dict[str, list[float]]] = {a: {"epoch": [], "task": []} for a in ("off", "on")}
    info: dict = {}
    for _ in range(repeats):
        for arm in ("off", "on"):
            stamps: list[float] = []
            t0 = time.perf_counter()
            fitted = fit_family_model(
                fam,
                params,
                split,
                roles,
                seed=cfg.seed,
                device="cpu",
                threads=cfg.train.threads,
                privacy=dp if arm == "on" else PrivacySettings(),
                on_epoch=lambda row: stamps.append(time.perf_counter()),
            )
            task = time.perf_counter() - t0
            arms[arm]["epoch"] += [b - a for a, b in zip(stamps, stamps[1:])]  # epoch 1 left out
            arms[arm]["task"].append(task)
            if arm == "on":
                d = fitted.training["dp"]
                arms["on"].setdefault("calibration", []).append(d.get("noise_calibration", "n/a"))
                info = {
                    "epsilon": d["epsilon"],
                    "grad_sample_mode": d["grad_sample_mode"],
                    "clipping": d.get("clipping", "opacus"),
                    "n_train": fitted.training["n_train"],
                    "n_parameters": fitted.training["n_parameters"],
                }
    med = {a: statistics.median(v["epoch"]) for a, v in arms.items()}
    warm = arms["on"]["task"][1:] or arms["on"]["task"]
    return {
        "family": family,
        "data": source,
        "batch_size": params["batch_size"],
        "epochs": epochs,
        "repeats": repeats,
        "arms": arms,
        "ratio_epoch": med["on"] / med["off"],
        "ratio_task_cold": arms["on"]["task"][0] / statistics.median(arms["off"]["task"]),
        "ratio_task": statistics.median(warm) / statistics.median(arms["off"]["task"]),
        "target": FAMILIES[family][2],
        **info,
    }


def render(results: list[dict]) -> str:
    def mmm(xs: list[float]) -> str:
        return f"{statistics.median(xs):7.3f} {min(xs):7.3f} {max(xs):7.3f}"

    lines = [
        f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, python "
        f"{platform.python_version()}; seconds, median / min / max",
        f"{'family':<12} {'arm':<22} {'per epoch (med min max)':<26} {'whole task (med min max)':<26}",
    ]
    for r in results:
        for arm, label in (("off", "non-private"), ("on", f"DP {r['grad_sample_mode']}/{r['clipping']}")):
            lines.append(
                f"{r['family']:<12} {label:<22} {mmm(r['arms'][arm]['epoch']):<26} {mmm(r['arms'][arm]['task']):<26}"
            )
    lines.append("")
    lines.append(
        f"{'family':<12} {'data':<34} {'batch':>5} {'n_train':>8} {'eps':>6} "
        f"{'DP/non-DP epoch':>15} {'task cold':>9} {'task warm':>9} {'target':>6}"
    )
    for r in results:
        ok = "met" if r["ratio_epoch"] <= r["target"] else "NOT met"
        lines.append(
            f"{r['family']:<12} {r['data'][:34]:<34} {r['batch_size']:>5} {r['n_train']:>8} "
            f"{r['epsilon']:>6.2f} {r['ratio_epoch']:>14.2f}x {r['ratio_task_cold']:>8.2f}x "
            f"{r['ratio_task']:>8.2f}x {'<=' + format(r['target'], 'g') + 'x':>6} {ok}"
        )
    lines.append(
        "task cold: the first DP training, which computes the noise multiplier and the final "
        "epsilons; task warm: the median of the later ones, which read the noise multiplier from "
        "the accountant memo (models/dp.py _accountant_memo) and have the accountant re-check "
        "it, as a scheduled rerun does; the final epsilons are always recomputed."
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--families", nargs="+", default=list(FAMILIES), choices=list(FAMILIES))
    ap.add_argument("--epochs", type=int, default=4, help="epochs per training (>= 2; epoch 1 is left out)")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved (off, on) pairs per family")
    ap.add_argument("--movielens", default=None, help="MovieLens 100K folder (u.data, u.user, u.item)")
    ap.add_argument("--json", default=None, help="also write every raw time to this file")
    args = ap.parse_args(argv)
    if args.epochs < 2:
        ap.error("--epochs must be >= 2")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    import tempfile

    # a fresh accountant memo, so the first DP training of each family is a cold one
    os.environ["IMPACTFLOW_HOME"] = tempfile.mkdtemp(prefix="impactflow-dp-bench-")
    ml = _movielens(args.movielens)
    results = []
    for fam in args.families:
        print(f"... {fam}", file=sys.stderr, flush=True)
        results.append(bench_family(fam, args.epochs, args.repeats, ml))
    print(render(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
