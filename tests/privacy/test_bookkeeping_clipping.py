"""Book-keeping ghost clipping (models/dp_bookkeeping.py) against hand values and against
Opacus's own two-backward ghost clipping, which it replaces in DP training."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn as nn

from impactflow.models.dp_bookkeeping import BookkeepingClipper, unsupported_reason, with_fresh_grads


def _opacus_ghost(model, x, y, criterion, max_grad_norm):
    """Per-example norms and sum_i c_i grad_i as Opacus computes them (sum reduction)."""
    from opacus.grad_sample.grad_sample_module_fast_gradient_clipping import GradSampleModuleFastGradientClipping

    m = copy.deepcopy(model)
    gsm = GradSampleModuleFastGradientClipping(
        m, max_grad_norm=max_grad_norm, use_ghost_clipping=True, loss_reduction="sum"
    )
    per_example = criterion(gsm(x), y)
    per_example.sum().backward(retain_graph=True)
    coef = gsm.get_clipping_coef()
    norms = gsm.per_sample_gradient_norms.clone()
    for p in m.parameters():
        p.grad = None
    gsm.disable_hooks()
    (coef * per_example).sum().backward()
    grads = {n: p.grad.clone() for n, p in m.named_parameters() if p.requires_grad}
    gsm.cleanup()
    return norms, grads


def _bookkeeping(model, x, y, criterion, max_grad_norm):
    m = copy.deepcopy(model)
    clipper = BookkeepingClipper(m, max_grad_norm)
    with clipper.recording():
        per_example = criterion(m(x), y)
    norms = clipper.backward(per_example)
    return norms, {n: p.grad.clone() for n, p in m.named_parameters() if p.requires_grad}


def _cases():
    from impactflow.models.recommender import BiasedMF
    from impactflow.models.text import TransformerClassifier

    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 1), nn.Flatten(0))
    text = TransformerClassifier(vocab_size=40, max_len=12, d_model=16, n_heads=2, n_layers=2, d_ff=24, dropout=0.0)
    ids = torch.randint(2, 40, (9, 12), generator=g)
    for i, length in enumerate([12, 3, 7, 1, 12, 5, 9, 2, 6]):  # padded texts of varied lengths
        ids[i, length:] = 0
    ids[0, :4] = 5  # a repeated token: the embedding norm's cross terms matter
    mf = BiasedMF(n_users=12, n_items=15, n_factors=4, rating_min=1.0, rating_max=5.0)
    pairs = torch.stack([torch.randint(0, 12, (40,), generator=g), torch.randint(0, 15, (40,), generator=g)], 1)
    pairs[:5, 0] = 3  # one user rated several items
    seq = nn.Sequential(nn.LayerNorm(6), nn.Linear(6, 5), nn.GELU(), nn.LayerNorm(5), nn.Linear(5, 1))
    bce = nn.BCEWithLogitsLoss(reduction="none")
    return {
        "mlp": (mlp, torch.randn(32, 10, generator=g), torch.randint(0, 2, (32,), generator=g).float(), bce),
        "transformer": (text, ids, torch.randint(0, 2, (9,), generator=g).float(), bce),
        "matrix factorisation": (mf, pairs, torch.rand(40, generator=g) * 4 + 1, nn.MSELoss(reduction="none")),
        # (batch, tokens, features) through LayerNorm and Linear; per-example loss over tokens
        "layernorm sequence": (
            seq,
            torch.randn(7, 4, 6, generator=g),
            torch.randn(7, 4, 1, generator=g),
            lambda out, y: ((out - y) ** 2).sum(dim=(1, 2)),
        ),
    }


@pytest.mark.parametrize("name", ["mlp", "transformer", "matrix factorisation", "layernorm sequence"])
@pytest.mark.parametrize("max_grad_norm", [1e-3, 0.5, 1e3])  # all clipped / mixed / none clipped
@pytest.mark.parametrize("materialise", [True, False])  # sequence layers: per-example grads / Gram form
def test_equals_opacus_ghost_clipping(name, max_grad_norm, materialise, monkeypatch):
    from impactflow.models import dp_bookkeeping

    monkeypatch.setattr(dp_bookkeeping, "MATERIALISE_MAX_BYTES", 2**40 if materialise else 0)
    model, x, y, criterion = _cases()[name]
    model.train()
    ref_norms, ref = _opacus_ghost(model, x, y, criterion, max_grad_norm)
    norms, ours = _bookkeeping(model, x, y, criterion, max_grad_norm)
    assert torch.allclose(norms, ref_norms, rtol=1e-5, atol=1e-7)
    assert ours.keys() == ref.keys()
    for k in ref:
        scale = ref[k].abs().max().item() + 1e-12
        assert (ours[k] - ref[k]).abs().max().item() <= 1e-5 * scale, k


def test_hand_computed_linear_layer():
    # y = w . a (no bias), loss_i = output_i, so grad_i = a_i: norms 5 and 0.5.
    layer = nn.Linear(2, 1, bias=False)
    a = torch.tensor([[3.0, 4.0], [0.3, 0.4]])
    clipper = BookkeepingClipper(layer, max_grad_norm=1.0)
    with clipper.recording():
        out = layer(a).squeeze(1)
    norms = clipper.backward(out)
    assert norms.tolist() == pytest.approx([5.0, 0.5])
    # c = [1 / (5 + 1e-6), 1]: clipped sum = (3, 4) / 5 + (0.3, 0.4)
    assert layer.weight.grad.squeeze(0).tolist() == pytest.approx([0.9, 1.2], abs=1e-6)


def test_embedding_padding_row_gets_no_gradient():
    emb = nn.Embedding(5, 2, padding_idx=0)
    model = nn.Sequential(emb, nn.Flatten(1), nn.Linear(4, 1))
    ids = torch.tensor([[0, 3], [2, 0]])
    clipper = BookkeepingClipper(model, max_grad_norm=1e6)
    with clipper.recording():
        loss = model(ids).squeeze(1)
    clipper.backward(loss)
    ref = copy.deepcopy(model)
    for p in ref.parameters():
        p.grad = None
    ref(ids).sum().backward()  # nothing clipped at C = 1e6: the plain gradient
    assert torch.equal(emb.weight.grad[0], torch.zeros(2))
    assert torch.allclose(emb.weight.grad, ref[0].weight.grad, atol=1e-6)


def test_unsupported_models_are_named():
    conv = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(8, 1))
    assert "Conv2d" in unsupported_reason(conv)
    assert "max_norm" in unsupported_reason(nn.Embedding(4, 2, max_norm=1.0))

    class Bare(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(2, 1)
            self.scale = nn.Parameter(torch.ones(1))

    assert "scale" in unsupported_reason(Bare())
    assert unsupported_reason(nn.Sequential(nn.Linear(2, 2), nn.LayerNorm(2), nn.Linear(2, 1))) is None
    with pytest.raises(ValueError, match="Conv2d"):
        BookkeepingClipper(conv, 1.0)


def test_a_layer_called_twice_is_refused():
    lin = nn.Linear(3, 3)
    clipper = BookkeepingClipper(lin, 1.0)
    with pytest.raises(RuntimeError, match="called twice"):
        with clipper.recording():
            lin(lin(torch.randn(2, 3)))
    assert all(p.requires_grad for p in lin.parameters())  # restored after the failure


def test_in_place_change_after_the_layer_is_refused():
    model = nn.Sequential(nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 2))
    clipper = BookkeepingClipper(model, 1.0)
    with clipper.recording():
        out = model(torch.randn(2, 3))
        out.mul_(2)  # the recorded output is no longer what the layer produced
    with pytest.raises(RuntimeError, match="in place"):
        clipper.backward(out.sum(1))


def test_a_layer_that_did_not_run_gets_a_zero_gradient():
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.used, self.unused = nn.Linear(3, 1), nn.Linear(3, 1)

        def forward(self, x):
            return self.used(x).squeeze(1)

    model = Branchy()
    clipper = BookkeepingClipper(model, 1.0)
    with clipper.recording():
        loss = model(torch.randn(4, 3))
    clipper.backward(loss)
    assert torch.equal(model.unused.weight.grad, torch.zeros(1, 3)) and model.used.weight.grad.abs().sum() > 0


def test_backward_outside_recording_is_refused():
    lin = nn.Linear(3, 1)
    clipper = BookkeepingClipper(lin, 1.0)
    with clipper.recording():
        out = lin(torch.randn(2, 3)).squeeze(1)
        with pytest.raises(RuntimeError, match="recording"):
            clipper.backward(out)


def test_optimizer_step_equals_opacus():
    """A whole DP step -- book-keeping clipping + Opacus's optimizer without the gradient copy --
    leaves the same parameters as Opacus's own ghost-clipping step with the same noise."""
    from opacus.optimizers import DPOptimizerFastGradientClipping

    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 1), nn.Flatten(0))
    x, y = torch.randn(20, 6), torch.randint(0, 2, (20,)).float()
    crit = nn.BCEWithLogitsLoss(reduction="none")

    def optimizer(m):
        return DPOptimizerFastGradientClipping(
            torch.optim.Adam(m.parameters(), lr=0.1),
            noise_multiplier=0.7,
            max_grad_norm=0.5,
            expected_batch_size=20,
            generator=torch.Generator().manual_seed(7),
        )

    ref_model = copy.deepcopy(model)
    _, grads = _opacus_ghost(ref_model, x, y, crit, 0.5)
    ref_opt = optimizer(ref_model)
    for n, p in ref_model.named_parameters():
        p.grad = grads[n]
    ref_opt.step()

    ours = copy.deepcopy(model)
    opt = with_fresh_grads(optimizer(ours))
    clipper = BookkeepingClipper(ours, 0.5)
    for _ in range(2):  # twice: the second step must not see the first's summed gradient
        opt.zero_grad(set_to_none=True)
        with clipper.recording():
            loss = crit(ours(x), y)
        clipper.backward(loss)
        opt.step()
        if _ == 0:
            for a, b in zip(ours.parameters(), ref_model.parameters()):
                assert torch.allclose(a, b, atol=1e-6)
            _, grads = _opacus_ghost(ref_model, x, y, crit, 0.5)
            ref_opt.zero_grad(set_to_none=True)
            for n, p in ref_model.named_parameters():
                p.grad = grads[n]
            ref_opt.step()
    for a, b in zip(ours.parameters(), ref_model.parameters()):
        assert torch.allclose(a, b, atol=1e-5)
    with pytest.raises(TypeError):
        with_fresh_grads(torch.optim.SGD(model.parameters(), lr=0.1))


def _train_dp(model, X, y, clipping):
    from impactflow.models.training import PrivacySettings, TrainSettings, train_torch

    def crit(reduction):
        return nn.BCEWithLogitsLoss(reduction=reduction)

    return train_torch(
        model,
        X[:200],
        y[:200],
        X[200:],
        y[200:],
        make_criterion=crit,
        settings=TrainSettings(epochs=2, batch_size=50, seed=0),
        privacy=PrivacySettings(enabled=True, noise_multiplier=1.0, delta=1e-3, clipping=clipping),
    )


def test_training_records_which_clipping_ran():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(260, 4)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.float32)
    mlp = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1), nn.Flatten(0))
    r = _train_dp(copy.deepcopy(mlp), X, y, "bookkeeping")
    assert r.dp["clipping"] == "bookkeeping" and "clipping_note" not in r.dp
    assert all(p.requires_grad for p in r.model.parameters())
    assert not r.model._forward_hooks and not any(m._forward_hooks for m in r.model.modules())
    r = _train_dp(copy.deepcopy(mlp), X, y, "opacus")
    assert r.dp["clipping"] == "opacus" and "clipping_note" not in r.dp

    conv = nn.Sequential(nn.Unflatten(1, (1, 4)), nn.Conv1d(1, 2, 1), nn.Flatten(), nn.Linear(8, 1), nn.Flatten(0))
    r = _train_dp(conv, X, y, "bookkeeping")  # not supported: Opacus's ghost clipping, said so
    assert r.dp["clipping"] == "opacus" and "Conv1d" in r.dp["clipping_note"]


def test_accountant_memo_equals_opacus_and_is_reused(tmp_path, monkeypatch):
    from opacus.accountants.utils import get_noise_multiplier

    from impactflow.models import dp

    monkeypatch.setenv("IMPACTFLOW_HOME", str(tmp_path))
    key = {"accountant": "rdp", "target_epsilon": 2.0, "target_delta": 1e-5, "sample_rate": 0.01, "epochs": 3}
    ok = lambda v: True  # noqa: E731
    value, how = dp._accountant_memo("noise_multiplier", key, dp._get_noise_multiplier, ok)
    assert how == dp.CALIBRATION_COMPUTED
    assert value == get_noise_multiplier(
        target_epsilon=2.0, target_delta=1e-5, sample_rate=0.01, epochs=3, accountant="rdp"
    )

    def fail(_key):
        raise AssertionError("recomputed although cached")

    assert dp._accountant_memo("noise_multiplier", key, fail, ok) == (value, dp.CALIBRATION_CACHED)
    # a cached value the check rejects is recomputed and rewritten
    assert dp._accountant_memo("noise_multiplier", key, lambda k: 1.25, lambda v: v == 1.25) == (
        1.25,
        dp.CALIBRATION_RECOMPUTED,
    )
    assert dp._accountant_memo("noise_multiplier", key, fail, ok) == (1.25, dp.CALIBRATION_CACHED)
    # another key is not served from this entry
    other = {**key, "epochs": 4}
    assert dp._accountant_memo("noise_multiplier", other, lambda k: 1.5, ok) == (1.5, "computed")
    # a damaged or mismatching file is recomputed and rewritten, never trusted
    files = sorted((tmp_path / "cache" / "dp").glob("noise_multiplier-*.json"))
    assert len(files) == 2
    for f in files:
        f.write_text('{"key": {"kind": "noise_multiplier"}, "value": 99.0}')
    assert dp._accountant_memo("noise_multiplier", key, lambda k: 3.25, ok) == (3.25, "computed")
    assert dp._accountant_memo("noise_multiplier", key, fail, ok) == (3.25, dp.CALIBRATION_CACHED)


def test_epsilons_equal_the_accountants_and_never_touch_the_cache(tmp_path, monkeypatch):
    from opacus.accountants import PRVAccountant, RDPAccountant

    from impactflow.models import dp
    from impactflow.models.training import PrivacySettings

    monkeypatch.setenv("IMPACTFLOW_HOME", str(tmp_path))

    class Engine:  # what dp.epsilons reads of a PrivacyEngine
        accountant = PRVAccountant()

    Engine.accountant.history = [(1.1, 0.02, 150)]
    priv = PrivacySettings(enabled=True, noise_multiplier=1.1, delta=1e-5)
    got = dp.epsilons(Engine, priv)
    rdp = RDPAccountant()
    rdp.history = [(1.1, 0.02, 150)]
    assert got["epsilon"] == Engine.accountant.get_epsilon(1e-5)
    assert got["epsilon_rdp"] == rdp.get_epsilon(1e-5, alphas=dp.RDP_ORDERS)
    assert not (tmp_path / "cache").exists()  # nothing remembered, nothing read


def test_accountant_memo_survives_a_failed_write(tmp_path, monkeypatch):
    import os

    from impactflow.models import dp

    monkeypatch.setenv("IMPACTFLOW_HOME", str(tmp_path))

    def full_disk(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full_disk)
    # the computed value is used, and no temporary file is left behind
    assert dp._accountant_memo("noise_multiplier", {"a": 1}, lambda k: 2.5, lambda v: True) == (2.5, "computed")
    assert list((tmp_path / "cache" / "dp").iterdir()) == []
