"""GPU smoke test and timing, every family, in a few minutes on any machine with a CUDA GPU.

For each family (tabular: UCI Adult, text: SMS Spam, image: MNIST 5k, recommender: MovieLens
100K when a copy is found, else the shipped synthetic ratings, hf: SMS Spam on ``--hf-model``
or, without one, the tiny BERT built from a config that the tests use), on its preset's model
(hf: ``hf-text`` full fine-tuning, ``hf-text-dp`` LoRA under DP):

1. train on the GPU with bf16 mixed precision (the pipeline's default on CUDA) for ``--epochs``
   epochs, and check the run really used CUDA and AMP;
2. one DP-SGD training (Opacus, the `<family>-dp` preset's settings, ``--epochs`` epochs) on the
   GPU, and check the accountant's epsilon is finite and positive;
3. the same non-private training on the CPU, for samples/s GPU vs CPU;
4. GPU utilisation while training (mean of ``nvidia-smi`` samples every 0.2 s) and peak GPU
   memory (``torch.cuda.max_memory_allocated``).

    python benchmarks/gpu_smoke.py                     # all families (exit 1 if any check fails)
    python benchmarks/gpu_smoke.py --families tabular image --epochs 2
    python benchmarks/gpu_smoke.py --json gpu.json
    python benchmarks/gpu_smoke.py --families hf --hf-model /models/distilbert-base-uncased

Without a CUDA device it says so, runs the CPU rows only, and exits 0 (``--require-gpu``: 1).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from dp_overhead import FAMILIES as DP_FAMILIES, _movielens, _prepare  # noqa: E402

FAMILIES = [*DP_FAMILIES, "hf"]
HF_DP_PRESET = "hf-text-dp"


def _hf_model(path: str | None) -> str:
    """``--hf-model``, or the tiny BERT of the tests built from a config in a temporary folder."""
    if path:
        return path
    import tempfile

    from impactflow.data_contracts import get_contract, load_dataset
    from impactflow.models.hf import build_tiny

    contract = get_contract("sms_spam")
    texts = load_dataset(contract)[dict(contract.roles_extra)["text"]].astype(str).tolist()
    return str(build_tiny(tempfile.mkdtemp(prefix="impactflow-tiny-bert-"), texts))


class GpuSampler:
    """Mean GPU utilisation (%) from ``nvidia-smi`` every ``interval`` s while active."""

    def __init__(self, interval: float = 0.2) -> None:
        self.interval, self.samples, self._stop = interval, [], threading.Event()
        self._exe = shutil.which("nvidia-smi")
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                out = subprocess.run(
                    [
                        self._exe,
                        "--query-gpu=utilization.gpu",
                        "--format=csv,noheader,nounits",
                        "-i",
                        os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0] or "0",
                    ],
                    capture_output=True,
                    text=True,
                    timeout=5,
                ).stdout.strip()
                self.samples.append(float(out.splitlines()[0]))
            except (OSError, ValueError, IndexError, subprocess.SubprocessError):
                pass
            self._stop.wait(self.interval)

    def __enter__(self) -> "GpuSampler":
        if self._exe:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._exe:
            self._thread.join(timeout=10)

    @property
    def mean(self) -> float | None:
        return sum(self.samples) / len(self.samples) if self.samples else None


def run_family(family: str, epochs: int, ml_dir: str | None, cuda: bool, hf_model: str | None = None) -> dict:
    import torch

    from impactflow.data_contracts import get_contract
    from impactflow.models import get_family
    from impactflow.models.base import roles_for
    from impactflow.models.fit import fit_family_model
    from impactflow.models.training import PrivacySettings

    cfg, contract, split, source = _prepare(family, ml_dir, HF_DP_PRESET if family == "hf" else None)
    fam = get_family(cfg.model.family)
    roles = roles_for(get_contract(contract), fam.task, cfg.data.exclude_sensitive_from_features)
    from impactflow.flows.config import load_config

    base = load_config(cfg.extends or cfg.preset, [], check=family != "hf")  # the non-DP preset this DP one extends
    plain = {**base.model.params, "epochs": epochs, "patience": epochs}
    dp_params = {**cfg.model.params, "epochs": epochs, "patience": epochs}
    if family == "hf":
        plain["path"] = dp_params["path"] = _hf_model(hf_model)
        source = f"{source}, model {plain['path']}"
    rows, checks = [], []

    def one(arm: str, device: str, params: dict, privacy: PrivacySettings) -> dict:
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
            torch.cuda.synchronize()
        with GpuSampler() as sampler:
            t0 = time.perf_counter()
            fitted = fit_family_model(
                fam,
                params,
                split,
                roles,
                seed=cfg.seed,
                device=device,
                amp=True,
                threads=cfg.train.threads,
                privacy=privacy,
            )
            wall = time.perf_counter() - t0
        tr = fitted.training
        row = {
            "family": family,
            "arm": arm,
            "device": tr["device"],
            "amp": tr["amp"],
            "epochs": tr["epochs_run"],
            "train_s": tr["wall_time_s"],
            "task_s": wall,
            "samples_per_s": tr["n_train"] * tr["epochs_run"] / tr["wall_time_s"],
            "gpu_util_pct": sampler.mean if device == "cuda" else None,
            "gpu_peak_mb": torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else None,
            "epsilon": tr["dp"].get("epsilon") if tr["dp"].get("enabled") else None,
        }
        rows.append(row)
        return row

    if cuda:
        r = one("train, bf16 AMP", "cuda", plain, PrivacySettings())
        checks.append((f"{family}: trained on CUDA with AMP", r["device"].startswith("cuda") and r["amp"]))
        r = one("DP-SGD", "cuda", dp_params, PrivacySettings.from_config(cfg.privacy.model_dump()))
        ok = r["device"].startswith("cuda") and r["epsilon"] is not None and 0 < r["epsilon"] < float("inf")
        checks.append((f"{family}: DP step on CUDA, finite epsilon", ok))
    one("train (CPU reference)", "cpu", plain, PrivacySettings())
    return {"family": family, "data": source, "rows": rows, "checks": checks}


def render(results: list[dict], cuda_name: str | None) -> str:
    def f(v, spec):
        return format(v, spec) if isinstance(v, (int, float)) else "-"

    lines = [
        f"machine: {platform.node()}, {os.cpu_count()} CPUs, GPU: {cuda_name or 'none (CPU rows only)'}",
        f"{'family':<12} {'arm':<22} {'device':<7} {'amp':<5} {'ep':>3} {'train s':>8} {'samples/s':>10} "
        f"{'GPU util %':>10} {'GPU MB':>8} {'eps':>6}",
    ]
    for res in results:
        cpu = next(r for r in res["rows"] if r["device"] == "cpu")
        for r in res["rows"]:
            lines.append(
                f"{r['family']:<12} {r['arm']:<22} {r['device']:<7} {str(r['amp']):<5} {r['epochs']:>3} "
                f"{r['train_s']:>8.2f} {r['samples_per_s']:>10.0f} {f(r['gpu_util_pct'], '.0f'):>10} "
                f"{f(r['gpu_peak_mb'], '.0f'):>8} {f(r['epsilon'], '.2f'):>6}"
            )
        gpu = next((r for r in res["rows"] if r["arm"].startswith("train,")), None)
        if gpu:
            lines.append(f"{'':<12} GPU/CPU samples/s: {gpu['samples_per_s'] / cpu['samples_per_s']:.1f}x")
    lines.append("")
    for res in results:
        for name, ok in res["checks"]:
            lines.append(f"[{'PASS' if ok else 'FAIL'}] {name}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--families", nargs="+", default=list(FAMILIES), choices=list(FAMILIES))
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--movielens", default=None)
    ap.add_argument("--hf-model", default=None, help="a local Hugging Face model directory (default: a tiny BERT)")
    ap.add_argument("--require-gpu", action="store_true", help="exit 1 when no CUDA device is available")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    import torch

    cuda = torch.cuda.is_available()
    name = torch.cuda.get_device_name(0) if cuda else None
    if not cuda:
        print("no CUDA device: GPU rows skipped, CPU rows only", file=sys.stderr)
        if args.require_gpu:
            return 1
    ml = _movielens(args.movielens)
    results = []
    for fam in args.families:
        print(f"... {fam}", file=sys.stderr, flush=True)
        results.append(run_family(fam, args.epochs, ml, cuda, args.hf_model))
    print(render(results, name))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))
    return 0 if all(ok for r in results for _, ok in r["checks"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
