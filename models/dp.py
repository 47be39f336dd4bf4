"""Differential privacy for the training loop (``impactflow.models.training``): one facade over
Opacus.

- ``make_private``: validate the model, search (or take) the noise multiplier, wrap model,
  optimizer and loader with Opacus's ``PrivacyEngine`` (Poisson sampling, ghost clipping by
  default, book-keeping clipping where the model allows: ``impactflow.models.dp_bookkeeping``);
  returns one ``PrivateTraining``. Raises (never falls back) if Opacus cannot.
- ``epsilons``: the configured accountant's and the RDP epsilon, computed from the run's own
  step history -- what the report, ledger, gates and audits use; never read from a file.
- ``RdpReadout``: the per-epoch RDP epsilon, cheaply.
- The noise search for a ``target_epsilon`` is memoised on disk (``_accountant_memo``), and a
  remembered noise multiplier is re-checked by the accountant before use
  (``_noise_for_target``).
Embedding norms for Opacus's ghost clipping are registered through its public
``register_norm_sampler``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from impactflow.errors import ConfigError

if TYPE_CHECKING:
    from impactflow.models.training import PrivacySettings

# Opacus's default orders stop at 63; small epsilons with small sampling rates need larger
# orders for a tight bound (otherwise "Optimal order is the largest alpha").
RDP_ORDERS = [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64)) + [80, 100, 128, 192, 256, 512, 1024]
DP_NEEDS_NOISE = "privacy.enabled is true: set privacy.target_epsilon or privacy.noise_multiplier"


@dataclass
class PrivateTraining:
    """What ``make_private`` hands the training loop: Opacus's engine (its accountant records
    every step), the model, optimizer, criterion and Poisson loader to train with, the
    book-keeping clipper (None where Opacus clips), and notes for the DP metadata (which
    clipping ran, how the noise multiplier was found, the planned epsilon)."""

    engine: Any
    model: Any
    optimizer: Any
    criterion: Any
    loader: Any
    clipper: Any
    notes: dict[str, Any]


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


def make_private(model, optimizer, loader, criterion, privacy: PrivacySettings, epochs: int) -> PrivateTraining:
    """Wrap model/optimizer/loader with Opacus. Raises (never falls back) if it cannot.

    Returns a ``PrivateTraining`` (engine, model, optimizer, criterion, loader, clipper, notes):
    with ghost mode and
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
    return PrivateTraining(engine, model, optimizer, criterion, loader, clipper, notes)


class RdpReadout:
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
    afterwards from its own step history (``epsilons``)."""
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


def epsilons(engine, privacy: PrivacySettings) -> dict[str, float]:
    """The configured accountant's epsilon and the RDP epsilon (extended orders), both computed
    here by Opacus's accountants from the run's own step history (noise, sample rate, steps)
    and delta -- never read from a cache: this is the epsilon the report, the ledger, the gates
    and the privacy audits use. Costs ~0.1-0.3 s (PRV) once per training."""
    history = [(float(n), float(q), int(k)) for n, q, k in engine.accountant.history]
    return {
        "epsilon": _history_epsilon(privacy.accountant, history, privacy.delta),
        "epsilon_rdp": _history_epsilon("rdp", history, privacy.delta, extended_orders=True),
    }
