"""The one training loop every torch family uses (flat, nanoGPT-style), with optional DP-SGD.

- Adam, early stopping on validation loss (best weights restored), seeded.
- Device: CUDA with bf16 autocast when present and not private, else CPU (``select_device``).
- DP: Opacus ``PrivacyEngine`` with Poisson sampling and the fast gradient-clipping
  ("ghost") mode by default, its clipped gradients computed in one backward pass by
  ``impactflow.models.dp_bookkeeping`` where the model allows (Linear/Embedding/LayerNorm layers);
  the accountant's epsilon is computed after training from the run's own step history
  (PRV by default; RDP computed alongside from the same history) and is never read from a
  file. Only the noise search for a ``target_epsilon`` is memoised on disk
  (``_accountant_memo``), and a remembered noise multiplier is re-checked by the accountant
  before use (``_noise_for_target``). If Opacus cannot make the model private the run fails --
  it never silently trains without privacy.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Any, Callable, cast

import numpy as np

from impactflow.data_contracts.errors import ConfigError

DELTA_TOO_LARGE = (
    "privacy.delta={delta} must be smaller than 1/n_train = {bound:.3g} "
    "(n_train={n}); a larger delta allows leaking whole records"
)
# Opacus's default orders stop at 63; small epsilons with small sampling rates need larger
# orders for a tight bound (otherwise "Optimal order is the largest alpha").
RDP_ORDERS = [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64)) + [80, 100, 128, 192, 256, 512, 1024]
DP_NEEDS_NOISE = "privacy.enabled is true: set privacy.target_epsilon or privacy.noise_multiplier"


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


def _embedding_norm_sample(layer, activations, backprops):
    """Per-example gradient norms of an ``nn.Embedding`` for Opacus's ghost clipping, exact and
    without ``torch.unique(dim=0)`` (models.dp_bookkeeping.embedding_sq_norms; tested against
    Opacus's ``compute_embedding_norm_sample``). Used where Opacus's own ghost clipping runs
    (``privacy.clipping: opacus``, or a model book-keeping does not support)."""
    import torch

    from impactflow.models.dp_bookkeeping import embedding_sq_norms

    ids = activations[0]
    ids = ids.reshape(ids.shape[0], -1)
    g = backprops.reshape(ids.shape[0], ids.shape[1], -1)
    return {layer.weight: torch.sqrt(embedding_sq_norms(ids, g, layer.num_embeddings).clamp_min(0))}


def _use_fast_embedding_norms() -> None:
    """Opacus's public norm-sampler registry: ghost clipping of an embedding uses
    ``_embedding_norm_sample`` (registering twice replaces the entry with the same function)."""
    import torch.nn as nn
    from opacus.grad_sample.utils import register_norm_sampler

    register_norm_sampler(nn.Embedding)(_embedding_norm_sample)


def _make_private(model, optimizer, loader, criterion, privacy: PrivacySettings, epochs: int):
    """Wrap model/optimizer/loader with Opacus. Raises (never falls back) if it cannot.

    Returns (engine, model, optimizer, criterion, loader, clipper, notes): with ghost mode and
    ``privacy.clipping == "bookkeeping"`` on a model that allows it, Opacus's module wrapper is
    taken off again and ``clipper`` (models/dp_bookkeeping.py) computes the clipped gradient in
    one backward pass; Opacus keeps the Poisson loader, the noise, the scaling and the accountant.
    ``notes`` records which clipping ran (and, when book-keeping was asked for but the model
    does not allow it, why) and whether the noise multiplier was computed or cached."""
    from opacus import PrivacyEngine
    from opacus.validators import ModuleValidator

    errors = ModuleValidator.validate(model, strict=False)
    if errors:
        raise ConfigError(f"privacy.enabled: the model is not DP-compatible: {errors[0]}")
    ghost = privacy.grad_sample_mode == "ghost"
    notes: dict[str, Any] = {"clipping": "opacus"}
    use_bk = False
    if ghost and privacy.clipping == "bookkeeping":
        from impactflow.models.dp_bookkeeping import unsupported_reason

        reason = unsupported_reason(model)
        use_bk = reason is None
        notes = (
            {"clipping": "bookkeeping"}
            if use_bk
            else {"clipping": "opacus", "clipping_note": f"book-keeping clipping not used: {reason}"}
        )
    if ghost:
        _use_fast_embedding_norms()
    engine = PrivacyEngine(accountant=privacy.accountant)
    common = dict(
        module=model,
        optimizer=optimizer,
        data_loader=loader,
        criterion=criterion,
        max_grad_norm=privacy.max_grad_norm,
        grad_sample_mode=privacy.grad_sample_mode,
        poisson_sampling=True,
    )
    if privacy.target_epsilon is not None:
        # = engine.make_private_with_epsilon, with the noise search memoised and re-checked
        noise, notes["noise_calibration"], notes["planned_epsilon"] = _noise_for_target(
            {
                "accountant": privacy.accountant,
                "target_epsilon": privacy.target_epsilon,
                "target_delta": privacy.delta,
                "sample_rate": 1 / len(loader),
                "epochs": epochs,
            }
        )
        wrapped = engine.make_private(noise_multiplier=noise, **common)
    elif privacy.noise_multiplier is not None:
        wrapped = engine.make_private(noise_multiplier=privacy.noise_multiplier, **common)
    else:
        raise ConfigError(DP_NEEDS_NOISE)
    if ghost:
        model, optimizer, criterion, loader = wrapped
    else:
        model, optimizer, loader = wrapped
    clipper = None
    if use_bk:
        from impactflow.models.dp_bookkeeping import BookkeepingClipper, with_fresh_grads

        model = model.to_standard_module()  # Opacus's hooks off: the clipper computes what they would have
        clipper = BookkeepingClipper(model, privacy.max_grad_norm)
        optimizer = with_fresh_grads(optimizer)
    return engine, model, optimizer, criterion, loader, clipper, notes


class _RdpReadout:
    """The RDP accountant's epsilon for an Opacus step history, cheaply: the per-step RDP curve
    of each (noise multiplier, sample rate) is computed once and scaled by the step count (RDP
    composes additively, Mironov 2017), so reading epsilon after every epoch costs microseconds
    instead of a full accountant evaluation (PRV: ~0.2 s, RDP: ~0.08 s on 2 cores, which on
    small tabular epochs was as long as the epoch itself). Equals
    ``RDPAccountant(history).get_epsilon(delta, alphas=RDP_ORDERS)``; tested."""

    def __init__(self) -> None:
        self._per_step: dict[tuple[float, float], np.ndarray] = {}

    def epsilon(self, history, delta: float) -> float:
        from opacus.accountants.analysis import rdp as rdp_analysis

        total = np.zeros(len(RDP_ORDERS))
        for noise, rate, steps in history:
            key = (float(noise), float(rate))
            if key not in self._per_step:
                self._per_step[key] = np.asarray(
                    rdp_analysis.compute_rdp(q=rate, noise_multiplier=noise, steps=1, orders=RDP_ORDERS), dtype=float
                )
            total = total + self._per_step[key] * steps
        eps, _ = rdp_analysis.get_privacy_spent(orders=RDP_ORDERS, rdp=total, delta=delta)
        return float(eps)


def _get_noise_multiplier(key: dict[str, Any]) -> float:
    from opacus.accountants.utils import get_noise_multiplier

    return float(
        get_noise_multiplier(
            accountant=key["accountant"],
            target_epsilon=key["target_epsilon"],
            target_delta=key["target_delta"],
            sample_rate=key["sample_rate"],
            epochs=key["epochs"],
            epsilon_tolerance=NOISE_SEARCH_TOLERANCE,
        )
    )


#: Opacus's ``get_noise_multiplier`` (its default tolerance) stops once
#: target - tolerance <= epsilon(sigma) <= target for the planned schedule
NOISE_SEARCH_TOLERANCE = 0.01
#: values of the DP metadata's ``noise_calibration``
CALIBRATION_COMPUTED = "computed"
CALIBRATION_CACHED = "cached (verified)"
CALIBRATION_RECOMPUTED = "recomputed (the cached noise multiplier failed the accountant's check)"


def _planned_epsilon(key: dict[str, Any], noise: float) -> float:
    """The accountant's epsilon of the planned schedule at ``noise``: what Opacus's noise
    search evaluates (``int(epochs / sample_rate)`` steps at the sample rate)."""
    from opacus.accountants import create_accountant

    acc = create_accountant(key["accountant"])
    acc.history = [(float(noise), float(key["sample_rate"]), int(key["epochs"] / key["sample_rate"]))]
    return float(acc.get_epsilon(delta=key["target_delta"]))


def _noise_for_target(key: dict[str, Any]) -> tuple[float, str, float]:
    """The noise multiplier for ``key["target_epsilon"]`` (= ``make_private_with_epsilon``'s
    search), its provenance and the planned schedule's epsilon at it.

    The search is memoised (``_accountant_memo``), but a remembered value is never trusted: the
    accountant recomputes the planned epsilon at it, and it is used only when
    target - ``NOISE_SEARCH_TOLERANCE`` <= epsilon <= target, the condition Opacus's search
    ends on. Otherwise (a stale, damaged or planted entry) the search runs again and the entry
    is overwritten. Provenance: ``CALIBRATION_COMPUTED``, ``CALIBRATION_CACHED`` or
    ``CALIBRATION_RECOMPUTED``. Whatever the cache held, the epsilon a run reports is computed
    afterwards from its own step history (``_epsilons``)."""
    target = float(key["target_epsilon"])
    planned: dict[float, float] = {}

    def check(noise: float) -> bool:
        if not (np.isfinite(noise) and noise > 0):
            return False
        planned[noise] = _planned_epsilon(key, noise)
        return target - NOISE_SEARCH_TOLERANCE <= planned[noise] <= target

    noise, how = _accountant_memo("noise_multiplier", key, _get_noise_multiplier, check)
    eps = planned[noise] if noise in planned else _planned_epsilon(key, noise)
    if eps > target:  # Opacus's search guarantees this never happens; never train above the target
        raise ConfigError(
            f"privacy.target_epsilon={target}: the noise search returned sigma={noise} "
            f"with epsilon {eps:.4f} above the target"
        )
    return noise, how, eps


def _history_epsilon(accountant: str, history: list, delta: float, extended_orders: bool = False) -> float:
    """The accountant's epsilon for an Opacus step history [(noise, sample rate, steps), ...]."""
    from opacus.accountants import create_accountant

    acc = create_accountant(accountant)
    acc.history = [tuple(h) for h in history]
    if extended_orders:  # RDP with RDP_ORDERS (the Opacus default stops at 63)
        return float(acc.get_epsilon(delta, alphas=RDP_ORDERS))
    return float(acc.get_epsilon(delta))


def _accountant_memo(
    kind: str, key: dict[str, Any], compute: Callable[[dict[str, Any]], float], check: Callable[[float], bool]
):
    """``compute(key)``, remembered on disk: the noise multiplier Opacus's search finds for a
    target epsilon is a deterministic function of its inputs and the Opacus version, but costs
    1-9 s per run on 2 cores (the PRV accountant evaluates a slow RDP series for its domain at
    every step of the search). A scheduled rerun of the same configuration reads it from
    ``$IMPACTFLOW_HOME/cache/dp`` (default ``~/.impactflow``).

    The folder is not authenticated (anyone who can write it can plant a value), so a stored
    value is used only when ``check(value)`` accepts it (``_noise_for_target`` recomputes the
    accountant's epsilon at it). Returns (value, ``CALIBRATION_CACHED`` | ``CALIBRATION_COMPUTED``
    | ``CALIBRATION_RECOMPUTED``). A file that cannot be read, does not match its key or fails
    the check is recomputed and rewritten (atomically); one that cannot be written leaves the
    computed value in use. Never used for a run's reported epsilon."""
    import hashlib
    import json
    import os
    import tempfile
    from pathlib import Path

    import opacus

    full = {"kind": kind, "opacus": opacus.__version__, **key}
    text = json.dumps(full, sort_keys=True, default=float)
    home = Path(os.environ.get("IMPACTFLOW_HOME") or Path.home() / ".impactflow")
    path = home / "cache" / "dp" / f"{kind}-{hashlib.sha256(text.encode()).hexdigest()[:24]}.json"
    how = CALIBRATION_COMPUTED
    try:
        stored = json.loads(path.read_text())
        if stored.get("key") == json.loads(text) and isinstance(stored.get("value"), float):
            if check(stored["value"]):
                return stored["value"], CALIBRATION_CACHED
            how = CALIBRATION_RECOMPUTED
    except (OSError, ValueError, AttributeError):
        pass
    value = float(compute(key))
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # named after its writer, as audits.atomic names them (it cannot be imported here):
        # `impactflow reconcile` removes one whose writer was killed
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            json.dump({"key": json.loads(text), "value": value}, fh)
        os.replace(tmp, path)
    except OSError:
        if tmp is not None:  # e.g. a full disk: no half-written file left behind
            Path(tmp).unlink(missing_ok=True)
    return value, how


def _epsilons(engine, privacy: PrivacySettings) -> dict[str, float]:
    """The configured accountant's epsilon and the RDP epsilon (extended orders), both computed
    here by Opacus's accountants from the run's own step history (noise, sample rate, steps)
    and delta -- never read from a cache: this is the epsilon the report, the ledger, the gates
    and the privacy audits use. Costs ~0.1-0.3 s (PRV) once per training."""
    history = [(float(n), float(q), int(k)) for n, q, k in engine.accountant.history]
    return {
        "epsilon": _history_epsilon(privacy.accountant, history, privacy.delta),
        "epsilon_rdp": _history_epsilon("rdp", history, privacy.delta, extended_orders=True),
    }


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
    readout = _RdpReadout()
    if privacy.enabled:
        engine, model, optimizer, criterion, loader, clipper, dp_notes = _make_private(
            model, optimizer, loader, criterion, privacy, settings.epochs
        )
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
            **_epsilons(engine, privacy),
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
