"""The epsilon a DP run reports is the accountant's, from the run's own step history.

Issue 20, defect 3: the accountant memo under ``$IMPACTFLOW_HOME/cache/dp`` was trusted, so a
planted file made a run report epsilon = 0.25 (true 0.996). Now the final epsilons are always
recomputed by Opacus, and a cached noise multiplier is used only after the accountant checked
it. Also: an empty Poisson batch is a step the accountant records (defect 6).
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch.nn as nn

from impactflow.models.dp import (
    CALIBRATION_CACHED,
    CALIBRATION_COMPUTED,
    CALIBRATION_RECOMPUTED,
    NOISE_SEARCH_TOLERANCE,
    RDP_ORDERS,
    _noise_for_target,
)
from impactflow.models.training import PrivacySettings, TrainSettings, train_torch

DELTA = 1e-3


def _data(n: int = 240):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, 4)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.float32)
    return X, y


def _train(privacy: PrivacySettings, n_train: int = 200, batch_size: int = 50, epochs: int = 2, model=None):
    import torch

    torch.manual_seed(0)
    X, y = _data(n_train + 40)
    model = model or nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1), nn.Flatten(0))
    return train_torch(
        model,
        X[:n_train],
        y[:n_train],
        X[n_train:],
        y[n_train:],
        make_criterion=lambda r: nn.BCEWithLogitsLoss(reduction=r),
        settings=TrainSettings(epochs=epochs, batch_size=batch_size, patience=100, seed=0),
        privacy=privacy,
    )


def _accountant(name: str, history, delta: float, **kw) -> float:
    from opacus.accountants import create_accountant

    acc = create_accountant(name)
    acc.history = [tuple(h) for h in history]
    return float(acc.get_epsilon(delta, **kw))


def _old_memo_path(home, kind: str, key: dict):
    """Where the old ``_accountant_memo`` looked for (and trusted) a value."""
    import opacus

    text = json.dumps({"kind": kind, "opacus": opacus.__version__, **key}, sort_keys=True, default=float)
    return home / "cache" / "dp" / f"{kind}-{hashlib.sha256(text.encode()).hexdigest()[:24]}.json", json.loads(text)


def _plant(home, kind: str, key: dict, value: float) -> None:
    path, full = _old_memo_path(home, kind, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"key": full, "value": value}))


@pytest.mark.parametrize("accountant", ["prv", "rdp"])
def test_planted_epsilon_for_the_exact_history_is_not_reported(tmp_path, monkeypatch, accountant):
    monkeypatch.setenv("IMPACTFLOW_HOME", str(tmp_path))
    privacy = PrivacySettings(enabled=True, noise_multiplier=1.1, delta=DELTA, accountant=accountant)
    # 200 rows, batch 50: Poisson rate 1/4, 4 steps an epoch, 2 epochs (no early stop)
    history = [[1.1, 0.25, 8]]
    for name, acc, orders in (("epsilon", accountant, "default"), ("epsilon_rdp", "rdp", "extended")):
        _plant(tmp_path, "epsilon", {"accountant": acc, "history": history, "orders": orders, "delta": DELTA}, 0.25)
    dp = _train(privacy).dp
    assert dp["steps"] == 8 and dp["sample_rate"] == 0.25 and dp["noise_multiplier"] == 1.1
    assert dp["epsilon"] == _accountant(accountant, history, DELTA)
    assert dp["epsilon_rdp"] == _accountant("rdp", history, DELTA, alphas=RDP_ORDERS)
    assert dp["epsilon"] > 1.0 and dp["epsilon_rdp"] > 1.0  # not the planted 0.25


def test_planted_noise_multiplier_is_checked_recomputed_and_overwritten(tmp_path, monkeypatch):
    from opacus.accountants.utils import get_noise_multiplier

    monkeypatch.setenv("IMPACTFLOW_HOME", str(tmp_path))
    privacy = PrivacySettings(enabled=True, target_epsilon=2.0, delta=DELTA, accountant="rdp")
    key = {"accountant": "rdp", "target_epsilon": 2.0, "target_delta": DELTA, "sample_rate": 0.25, "epochs": 2}
    true_sigma = get_noise_multiplier(
        target_epsilon=2.0, target_delta=DELTA, sample_rate=0.25, epochs=2, accountant="rdp"
    )
    path, _ = _old_memo_path(tmp_path, "noise_multiplier", key)
    for planted in (0.3, 40.0):  # too little noise (epsilon above the target), far too much
        _plant(tmp_path, "noise_multiplier", key, planted)
        dp = _train(privacy).dp
        assert dp["noise_calibration"] == CALIBRATION_RECOMPUTED
        assert dp["noise_multiplier"] == true_sigma
        assert json.loads(path.read_text())["value"] == true_sigma  # the entry was overwritten
        history = [[true_sigma, 0.25, 8]]
        assert dp["epsilon"] == _accountant("rdp", history, DELTA)
        assert 2.0 - NOISE_SEARCH_TOLERANCE <= dp["planned_epsilon"] <= 2.0
    # the rewritten entry passes the check and is used
    dp = _train(privacy).dp
    assert dp["noise_calibration"] == CALIBRATION_CACHED and dp["noise_multiplier"] == true_sigma


def test_first_run_computes_then_reuses_the_verified_noise(tmp_path, monkeypatch):
    monkeypatch.setenv("IMPACTFLOW_HOME", str(tmp_path))
    privacy = PrivacySettings(enabled=True, target_epsilon=3.0, delta=DELTA, accountant="prv")
    first = _train(privacy).dp
    second = _train(privacy).dp
    assert first["noise_calibration"] == CALIBRATION_COMPUTED
    assert second["noise_calibration"] == CALIBRATION_CACHED
    assert first["noise_multiplier"] == second["noise_multiplier"]
    history = [[first["noise_multiplier"], 0.25, 8]]
    assert first["epsilon"] == second["epsilon"] == _accountant("prv", history, DELTA)
    assert first["epsilon"] <= 3.0


@pytest.mark.parametrize("stored", ['{"key": 1, "value": 2.0}', "[1, 2]", '{"value": NaN}', "not json"])
def test_damaged_noise_entries_are_recomputed(tmp_path, monkeypatch, stored):
    monkeypatch.setenv("IMPACTFLOW_HOME", str(tmp_path))
    key = {"accountant": "rdp", "target_epsilon": 2.0, "target_delta": 1e-5, "sample_rate": 0.01, "epochs": 3}
    path, full = _old_memo_path(tmp_path, "noise_multiplier", key)
    path.parent.mkdir(parents=True)
    path.write_text(stored)
    noise, how, eps = _noise_for_target(key)
    assert how == CALIBRATION_COMPUTED
    assert 2.0 - NOISE_SEARCH_TOLERANCE <= eps <= 2.0
    # the same key with NaN or a negative value planted: recomputed after the check
    for bad in (float("nan"), -1.0):
        path.write_text(json.dumps({"key": full, "value": bad}))
        assert _noise_for_target(key)[:2] == (noise, CALIBRATION_RECOMPUTED)


@pytest.mark.parametrize(
    "grad_sample_mode,clipping", [("ghost", "bookkeeping"), ("ghost", "opacus"), ("hooks", "opacus")]
)
def test_empty_poisson_batches_are_accounted_steps(tmp_path, monkeypatch, grad_sample_mode, clipping):
    """20 rows, batch size 1: Poisson rate 1/20, so a batch is empty with probability
    (19/20)^20 = 0.36. Every drawn batch, empty or not, reaches the model and the optimizer,
    and the accountant counts epochs x 20 steps."""
    monkeypatch.setenv("IMPACTFLOW_HOME", str(tmp_path))
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1), nn.Flatten(0))
    sizes: list[int] = []
    model[0].register_forward_hook(lambda m, i, o: sizes.append(len(i[0])) if m.training else None)
    privacy = PrivacySettings(
        enabled=True, noise_multiplier=1.0, delta=DELTA, grad_sample_mode=grad_sample_mode, clipping=clipping
    )
    r = _train(privacy, n_train=20, batch_size=1, epochs=3, model=model)
    assert r.epochs_run == 3 and r.dp["sample_rate"] == 1 / 20
    assert len(sizes) == 3 * 20 == r.dp["steps"]  # batches drawn = accountant steps
    assert sizes.count(0) > 0, "the seeded run drew no empty batch: the test checks nothing"
    assert r.dp["epsilon"] == _accountant("prv", [[1.0, 1 / 20, 60]], DELTA)
    assert all(np.isfinite(h["train_loss"]) for h in r.history)


def test_canary_and_reference_runs_report_the_accountants_epsilon(tmp_path, monkeypatch):
    """The privacy audits' own trainings (whose epsilon feeds the canary gate and the ledger)
    go through the same recomputation: their epsilon is the accountant's for their history,
    and nothing is read from or written to the cache."""
    import math

    from impactflow.models import get_family
    from impactflow.models.data import split_frame
    from impactflow.models.privacy_attack import canary_run, train_reference_model
    from tests.models.family_examples import tabular_example

    monkeypatch.setenv("IMPACTFLOW_HOME", str(tmp_path))
    df, roles = tabular_example(n=200, seed=0)
    split = split_frame(df, target=roles.target, stratify_on=[], validation=0.2, test=0.3, seed=0)
    params = {"hidden_sizes": [8], "epochs": 1, "batch_size": 16, "patience": 100}
    privacy = PrivacySettings(enabled=True, noise_multiplier=1.0, delta=DELTA)
    fam = get_family("tabular")
    canary = canary_run(fam, params, split, roles, m=20, guess_fraction=0.25, seed=0, privacy=privacy)
    ref = train_reference_model(fam, params, split, roles, k=0, n_audit=10, seed=0, privacy=privacy)
    for n_train, eps in ((canary["n_train"], canary["epsilon"]), (ref["n_train"], ref["epsilon"])):
        batches = math.ceil(n_train / 16)  # one epoch of Poisson batches at rate 1 / batches
        assert eps == _accountant("prv", [[1.0, 1 / batches, batches]], DELTA)
    assert not (tmp_path / "cache").exists()
