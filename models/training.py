"""The one training loop every torch family uses (flat, nanoGPT-style), with optional DP-SGD.

- Adam, early stopping on validation loss (best weights restored), seeded.
- Device: CUDA with bf16 autocast when present and not private, else CPU (``select_device``).
- DP: Opacus ``PrivacyEngine`` with Poisson sampling and the fast gradient-clipping
  ("ghost") mode by default, its clipped gradients computed in one backward pass by
  ``impactflow.models.dp_bookkeeping`` where the model allows (Linear/Embedding/LayerNorm layers);
  the accountant's epsilon is computed after training from the run's own step history
  (PRV by default; RDP computed alongside from the same history) and is never read from a
  file. Making the model private, the noise search and the accounting live in
  ``impactflow.models.dp`` (``make_private`` returns one ``PrivateTraining``). If Opacus cannot
  make the model private the run fails -- it never silently trains without privacy.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Any, Callable, cast

import numpy as np

from impactflow.errors import ConfigError
from impactflow.models.dp import RdpReadout, epsilons, make_private

DELTA_TOO_LARGE = (
    "privacy.delta={delta} must be smaller than 1/n_train = {bound:.3g} "
    "(n_train={n}); a larger delta allows leaking whole records"
)


@dataclass(frozen=True)
class TrainSettings:
    epochs: int = 20
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    patience: int = 3
    device: str = "cpu"
    amp: bool = True  # bf16 autocast on CUDA (ignored on CPU and under DP)
    threads: int | None = None  # torch CPU threads; None = cpu_threads() policy
    seed: int = 0


@dataclass(frozen=True)
class PrivacySettings:
    enabled: bool = False
    target_epsilon: float | None = None
    noise_multiplier: float | None = None
    delta: float = 1e-5
    max_grad_norm: float = 1.0
    accountant: str = "prv"
    grad_sample_mode: str = "ghost"
    clipping: str = "bookkeeping"  # with "ghost": models/dp_bookkeeping.py where the model allows

    @classmethod
    def from_config(cls, privacy: dict[str, Any]) -> "PrivacySettings":
        """From the run config's ``privacy`` section, ignoring its bookkeeping keys (budget, min_k)."""
        return cls(**{k: v for k, v in privacy.items() if k in cls.__dataclass_fields__})


@dataclass
class TrainResult:
    model: Any  # the standard (unwrapped) torch module, on CPU, in eval mode
    history: list[dict[str, float]]
    epochs_run: int
    best_epoch: int
    wall_time_s: float
    device: str
    amp: bool
    n_parameters: int
    dp: dict[str, Any] = field(default_factory=dict)


def cpu_threads(requested: int | None = None) -> int:
    """Torch CPU threads for training and scoring. An explicit value wins; otherwise 1 on
    machines with at most 2 cores, where torch's default (one thread per core) was measured
    erratic and up to ~60x slower on these small VMs (100 MLP steps: 0.3-11 s with 2 threads,
    0.16 s with 1; benchmarks/stages.py "torch threads check"), else torch's own default."""
    import os

    import torch

    if requested is not None:
        return int(requested)
    if (os.cpu_count() or 1) <= 2:
        return 1
    return torch.get_num_threads()


class _BatchTensors:
    """A map-style dataset over equal-length tensors that DataLoader fetches one batch at a time
    (``__getitems__``: one index operation per tensor) instead of one ``__getitem__`` per row
    followed by ``default_collate`` stacking them: same batches, same order, far fewer Python
    calls. Opacus's Poisson ``DPDataLoader`` keeps the dataset and wraps our collate function,
    so DP training gets the same fast path (an empty Poisson batch comes out as zero-length
    tensors)."""

    def __init__(self, *tensors) -> None:
        self.tensors = tensors

    def __len__(self) -> int:
        return len(self.tensors[0])

    def __getitem__(self, i):
        return tuple(t[i] for t in self.tensors)

    def __getitems__(self, indices):
        import torch

        ix = torch.as_tensor(indices, dtype=torch.long)
        return tuple(t[ix] for t in self.tensors)


def _already_batched(batch):
    return batch


def _loader(X: np.ndarray, y: np.ndarray, batch_size: int, shuffle: bool, seed: int):
    import torch
    from torch.utils.data import DataLoader

    ds = _BatchTensors(torch.as_tensor(X), torch.as_tensor(y))
    gen = torch.Generator().manual_seed(seed)
    return DataLoader(
        ds,  # type: ignore[arg-type]  # (map-style by protocol, without torch's Dataset base)
        batch_size=batch_size,
        shuffle=shuffle,
        generator=gen,
        collate_fn=_already_batched,
    )


def mean_loss(model, X: np.ndarray, y: np.ndarray, criterion_none, device: str, batch_size: int = 4096) -> float:
    return float(per_example_loss(model, X, y, criterion_none, device, batch_size).mean())


def per_example_loss(model, X, y, criterion_none, device: str, batch_size: int = 4096) -> np.ndarray:
    """Per-example loss (``criterion_none`` has reduction='none'), used for validation and MIA."""
    import torch

    model.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(X), batch_size):
            xb = torch.as_tensor(X[start : start + batch_size]).to(device)
            yb = torch.as_tensor(y[start : start + batch_size]).to(device)
            out.append(criterion_none(model(xb).float(), yb).reshape(-1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


def predict_logits(model, X: np.ndarray, device: str, batch_size: int = 4096) -> np.ndarray:
    import torch

    model.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(X), batch_size):
            xb = torch.as_tensor(X[start : start + batch_size]).to(device)
            out.append(model(xb).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


def train_torch(
    model,
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_val: np.ndarray,
    y_val: np.ndarray,
    *,
    make_criterion: Callable[[str], Any],
    settings: TrainSettings,
    privacy: PrivacySettings = PrivacySettings(),
    on_epoch: Callable[[dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train ``model`` with Adam and early stopping; optionally with DP-SGD (Opacus)."""
    import torch

    from impactflow.models.base import seed_everything

    seed_everything(settings.seed)
    torch.set_num_threads(cpu_threads(settings.threads))
    device = settings.device
    n_train = len(X_train)
    if privacy.enabled and privacy.delta >= 1.0 / n_train:
        raise ConfigError(DELTA_TOO_LARGE.format(delta=privacy.delta, bound=1.0 / n_train, n=n_train))

    model = model.to(device)
    n_parameters = sum(p.numel() for p in model.parameters() if p.requires_grad)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    criterion = make_criterion("mean")
    criterion_none = make_criterion("none")
    loader = _loader(X_train, y_train, settings.batch_size, shuffle=True, seed=settings.seed)

    engine = clipper = None
    dp_notes: dict[str, Any] = {}
    readout = RdpReadout()
    if privacy.enabled:
        private = make_private(model, optimizer, loader, criterion, privacy, settings.epochs)
        engine, model, optimizer, criterion, loader = (
            private.engine,
            private.model,
            private.optimizer,
            private.criterion,
            private.loader,
        )
        clipper, dp_notes = private.clipper, private.notes
    use_amp = bool(settings.amp and device.startswith("cuda") and not privacy.enabled)

    base = getattr(model, "_module", model)  # the plain module inside an Opacus wrapper
    best_state = copy.deepcopy(base.state_dict())
    best_val, best_epoch, bad_epochs = float("inf"), 0, 0
    history: list[dict[str, float]] = []
    start = time.perf_counter()
    epoch = 0
    for epoch in range(1, settings.epochs + 1):
        model.train()
        total, seen = 0.0, 0
        for xb, yb in loader:
            # Poisson sampling can draw an empty batch. It is still a step of the mechanism: it
            # goes through the model and the optimizer as any other, so the noise is added and
            # the accountant records the step (as Opacus's DPDataLoader intends). Skipping it
            # would make the number of noisy steps depend on who was sampled, which the
            # accountant's analysis (a fixed number of Poisson-subsampled steps) does not cover.
            xb, yb = xb.to(device), yb.to(device)
            optimizer.zero_grad(set_to_none=True)
            if clipper is not None:  # DP, book-keeping: p.grad = sum of clipped per-example grads
                with clipper.recording():
                    loss = criterion_none(model(xb).float(), yb)
                clipper.backward(loss)
                loss = loss.detach().mean()
            else:
                with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=use_amp):
                    out = model(xb)
                loss = criterion(out.float(), yb)
                loss.backward()
            optimizer.step()
            if len(xb):  # the mean loss of an empty batch is nan
                total += float(loss.item()) * len(xb)
                seen += len(xb)
        val_loss = mean_loss(model, X_val, y_val, criterion_none, device)
        row = {"epoch": epoch, "train_loss": total / max(seen, 1), "val_loss": val_loss}
        if engine is not None:
            # per-epoch read-out: the RDP bound (cheap); the configured accountant's epsilon
            # (PRV by default) is computed once, after training
            row["epsilon_rdp"] = readout.epsilon(engine.accountant.history, privacy.delta)
        history.append(row)
        if val_loss < best_val - 1e-6:
            best_val, best_epoch, bad_epochs = val_loss, epoch, 0
            best_state = copy.deepcopy(base.state_dict())
        else:
            bad_epochs += 1
        stop = bad_epochs >= settings.patience
        if on_epoch is not None:  # the progress bar says why it ends before `epochs`
            on_epoch(
                {
                    **row,
                    "epochs": settings.epochs,
                    "best_epoch": best_epoch,
                    "stopped_early": float(stop and epoch < settings.epochs),
                }
            )
        if stop:
            break
    wall = time.perf_counter() - start
    if clipper is not None:
        clipper.remove()

    dp: dict[str, Any] = {"enabled": False}
    if engine is not None:
        dp = {
            "enabled": True,
            **epsilons(engine, privacy),
            "delta": privacy.delta,
            "noise_multiplier": float(cast(Any, optimizer).noise_multiplier),  # (Opacus's DPOptimizer)
            "max_grad_norm": privacy.max_grad_norm,
            "sample_rate": float(1.0 / len(loader)) if len(loader) else None,
            "steps": int(sum(h[2] for h in engine.accountant.history)),
            "accountant": privacy.accountant,
            "accountant_rdp": "rdp",
            "grad_sample_mode": privacy.grad_sample_mode,
            **dp_notes,
            "target_epsilon": privacy.target_epsilon,
            "privacy_unit": "one training row (example-level DP); validation rows used for early stopping are not covered",
        }
    base.load_state_dict(best_state)
    base = base.to("cpu").eval()
    return TrainResult(
        model=base,
        history=history,
        epochs_run=epoch,
        best_epoch=best_epoch,
        wall_time_s=wall,
        device=device,
        amp=use_amp,
        n_parameters=int(n_parameters),
        dp=dp,
    )
