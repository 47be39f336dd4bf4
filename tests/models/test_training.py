"""The training loop: early stopping, determinism, DP wrapping and its refusals."""

from __future__ import annotations

import numpy as np
import pytest

from impactflow.errors import ConfigError
from impactflow.models import get_family
from impactflow.models.training import PrivacySettings, TrainSettings, train_torch


def _data(n=1200, d=8, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    y = (X[:, 0] + 0.3 * rng.normal(size=n) > 0).astype(np.float32)
    return X[: n - 300], y[: n - 300], X[n - 300 :], y[n - 300 :]


def _train(privacy=PrivacySettings(), epochs=4, seed=0, model=None):
    from impactflow.models.base import seed_everything

    fam = get_family("tabular")
    Xtr, ytr, Xva, yva = _data()
    seed_everything(seed)  # weights are initialised before train_torch seeds its own RNG use
    model = model or fam.build_model({"n_features": Xtr.shape[1]}, fam.make_config({"hidden_sizes": [16]}))
    return train_torch(
        model,
        Xtr,
        ytr,
        Xva,
        yva,
        make_criterion=fam.make_criterion,
        settings=TrainSettings(epochs=epochs, batch_size=64, lr=5e-3, seed=seed),
        privacy=privacy,
    )


def test_training_is_deterministic_for_a_seed():
    a, b = _train(seed=3), _train(seed=3)
    assert [h["val_loss"] for h in a.history] == [h["val_loss"] for h in b.history]


def test_training_learns_and_keeps_best_epoch():
    r = _train(epochs=6)
    losses = [h["val_loss"] for h in r.history]
    assert losses[-1] < 0.5  # separable data: far below log(2) = 0.693
    assert r.best_epoch == int(np.argmin(losses)) + 1
    assert r.dp == {"enabled": False}


def test_dp_training_reports_epsilon_within_target():
    r = _train(PrivacySettings(enabled=True, target_epsilon=2.0, delta=1e-4), epochs=3)
    assert r.dp["enabled"] is True
    assert 0 < r.dp["epsilon"] <= 2.0 + 1e-6
    assert r.dp["epsilon_rdp"] > 0 and r.dp["noise_multiplier"] > 0
    assert r.dp["steps"] > 0
    # the per-epoch read-out is the RDP bound; after the last epoch it equals the final RDP epsilon
    assert r.history[-1]["epsilon_rdp"] == pytest.approx(r.dp["epsilon_rdp"], rel=1e-9)
    assert [h["epsilon_rdp"] for h in r.history] == sorted(h["epsilon_rdp"] for h in r.history)
    # the returned model is the plain module (Opacus wrapper removed), so it can be logged
    assert type(r.model).__name__ == "MLP"


def test_dp_refuses_a_model_opacus_cannot_handle():
    import torch.nn as nn

    bad = nn.Sequential(nn.Linear(8, 4), nn.BatchNorm1d(4), nn.Linear(4, 1), nn.Flatten(0))
    with pytest.raises(ConfigError, match="not DP-compatible"):
        _train(PrivacySettings(enabled=True, noise_multiplier=1.0, delta=1e-4), model=bad)


def test_dp_refuses_a_delta_not_below_one_over_n():
    with pytest.raises(ConfigError, match=r"privacy.delta=0.01 must be smaller than 1/n_train"):
        _train(PrivacySettings(enabled=True, noise_multiplier=1.0, delta=0.01))


def test_dp_without_noise_setting_is_refused():
    with pytest.raises(ConfigError, match="target_epsilon or privacy.noise_multiplier"):
        _train(PrivacySettings(enabled=True, delta=1e-4))


def test_cpu_threads_policy(monkeypatch):
    import os

    import torch

    from impactflow.models.training import cpu_threads

    assert cpu_threads(3) == 3  # an explicit setting wins
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert cpu_threads(None) == 1  # small machines: one thread (measured faster, see docstring)
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    assert cpu_threads(None) == torch.get_num_threads()


def test_rdp_readout_equals_opacus_rdp_accountant():
    """The cached per-step RDP curve scaled by steps gives the accountant's own value, also for a
    history with two (noise, rate) settings; and the known Opacus value (sigma=1.5, q=0.04,
    2250 steps, delta=1e-5 -> 7.3291 with Opacus's default orders; ours adds orders, so <=)."""
    from opacus.accountants import RDPAccountant

    from impactflow.models.dp import RDP_ORDERS, RdpReadout

    readout = RdpReadout()
    for history in ([(1.5, 0.04, 2250)], [(1.1, 0.03, 40), (0.9, 0.05, 7)]):
        acc = RDPAccountant()
        acc.history = list(history)
        assert readout.epsilon(history, 1e-5) == pytest.approx(acc.get_epsilon(1e-5, alphas=RDP_ORDERS), rel=1e-12)
    known = RDPAccountant()
    known.history = [(1.5, 0.04, 2250)]
    assert known.get_epsilon(1e-5) == pytest.approx(7.3291, abs=1e-3)
    assert readout.epsilon([(1.5, 0.04, 2250)], 1e-5) <= 7.3291 + 1e-3


def test_batched_loader_yields_the_same_batches_as_a_tensor_dataset():
    """One index operation per batch gives exactly what per-row fetch + default_collate gave."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from impactflow.models.training import _loader

    X = np.arange(50, dtype=np.float32).reshape(25, 2)
    y = np.arange(25, dtype=np.int64)
    fast = list(_loader(X, y, batch_size=7, shuffle=True, seed=4))
    ref = list(
        DataLoader(
            TensorDataset(torch.as_tensor(X), torch.as_tensor(y)),
            batch_size=7,
            shuffle=True,
            generator=torch.Generator().manual_seed(4),
        )
    )
    assert len(fast) == len(ref) == 4
    for (xa, ya), (xb, yb) in zip(fast, ref):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


@pytest.mark.parametrize("shape", [(7,), (7, 1), (5, 6), (4, 3, 2), (3, 200)])
def test_fast_embedding_norms_equal_opacus(shape):
    """The ghost-clipping embedding norms (one index per example, and sequences with repeated
    indices) equal Opacus's own computation."""
    import torch
    import torch.nn as nn
    from opacus.grad_sample.embedding_norm_sample import compute_embedding_norm_sample

    from impactflow.models.dp import _embedding_norm_sample

    gen = torch.Generator().manual_seed(0)
    layer = nn.Embedding(4, 3)  # 4 ids: sequences repeat ids
    ids = torch.randint(0, 4, shape, generator=gen)
    backprops = torch.randn(*shape, 3, generator=gen, dtype=torch.float64)
    ours = _embedding_norm_sample(layer, [ids], backprops)[layer.weight]
    ref = compute_embedding_norm_sample(layer, [ids], backprops)[layer.weight]
    assert ours.shape == ref.shape == (shape[0],)
    assert torch.allclose(ours, ref, rtol=1e-12, atol=1e-12)
