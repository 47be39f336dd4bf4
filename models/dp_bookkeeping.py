"""Ghost clipping in ONE backward pass ("book-keeping", Bu et al. 2023, *Differentially Private
Optimization on Large Model at Small Cost*, ICML), for models made of ``nn.Linear``,
``nn.Embedding`` and ``nn.LayerNorm``.

Opacus's fast gradient clipping (``grad_sample_mode="ghost"``) runs two backward passes per
step: the first to compute per-example gradient norms from each layer's activations ``a`` and
output gradients ``g`` (the "ghost norm"), the second -- on the loss re-weighted by the clipping
factors ``c_i = min(1, C / (||grad_i|| + 1e-6))`` -- to get ``sum_i c_i grad_i``. For these
layers the second pass is unnecessary: the clipped sum is a product of tensors the first pass
already holds, e.g. ``W.grad = (c * g)^T a`` for a linear layer. This module keeps ``a`` and
``g`` (the book-keeping), asks autograd only for the gradients of the layer outputs (so the
first pass does not compute the unclipped parameter gradients at all), and writes
``p.grad = sum_i c_i grad_i`` directly. Per step that is one forward, one backward through the
activations, the norms, and one weight-gradient product per layer -- about what non-private
training costs.

Only the gradient computation is replaced. Everything else stays Opacus's: Poisson sampling
(``DPDataLoader``), noise calibration and accounting (``PrivacyEngine``), and noising and
scaling (``DPOptimizerFastGradientClipping``, which expects exactly this ``p.grad``). The
per-example norms and the clipped gradient equal Opacus's ghost clipping to float precision
(tests/privacy/test_bookkeeping_clipping.py compares them on MLP, Transformer and
matrix-factorisation models).

Models with any other parameterised layer (convolutions, GroupNorm, ...), a layer called twice in
one forward, or an embedding option that changes its gradient (``max_norm``, ``sparse``,
``scale_grad_by_freq``) are not supported: ``unsupported_reason`` says why, and training then
uses Opacus's own two-pass ghost clipping (recorded in the run's DP metadata, never silently).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, cast

import torch
import torch.nn as nn
import torch.nn.functional as F
from opacus.optimizers import DPOptimizerFastGradientClipping

SUPPORTED = (nn.Linear, nn.Embedding, nn.LayerNorm)
# Longest index sequence per example for which an embedding's norm uses the exact masked Gram
# form (memory B x L x L); longer sequences materialise the per-example row gradients instead.
EMBEDDING_GRAM_MAX_LEN = 128
# A linear layer applied to sequences materialises its per-example gradients (n x d_out x d_in)
# when they fit in this much memory, else uses the Gram form (n x T x T).
MATERIALISE_MAX_BYTES = 64 * 2**20


def unsupported_reason(model: nn.Module) -> str | None:
    """Why book-keeping clipping cannot train ``model`` (None when it can)."""
    covered: set[int] = set()
    for name, module in model.named_modules():
        own = [(pname, p) for pname, p in module.named_parameters(recurse=False) if p.requires_grad]
        if not own:
            continue
        if type(module) not in SUPPORTED:
            pname = f"{name}.{own[0][0]}" if name else own[0][0]
            return f"parameter {pname} belongs to a {type(module).__name__} (supported: Linear, Embedding, LayerNorm)"
        if isinstance(module, nn.Embedding) and (
            module.max_norm is not None or module.sparse or module.scale_grad_by_freq
        ):
            return f"embedding {name} uses max_norm, sparse or scale_grad_by_freq"
        if isinstance(module, nn.LayerNorm) and len(module.normalized_shape) != 1:
            return f"layer norm {name} normalises over {len(module.normalized_shape)} dimensions (supported: 1)"
        covered.update(id(p) for _, p in own)
    for name, p in model.named_parameters():
        if p.requires_grad and id(p) not in covered:
            return f"parameter {name} does not belong to a supported layer"
    return None


class _Record:
    __slots__ = ("module", "inp", "out", "inp_version", "out_version")

    def __init__(self, module: nn.Module, inp: torch.Tensor, out: torch.Tensor) -> None:
        self.module, self.inp, self.out = module, inp, out
        self.inp_version, self.out_version = inp._version, out._version


class BookkeepingClipper:
    """Forward hooks on every trainable layer of ``model``; ``backward(per_example_loss)`` then
    sets each parameter's ``.grad`` to the sum of clipped per-example gradients and returns the
    per-example gradient norms (before clipping)."""

    def __init__(self, model: nn.Module, max_grad_norm: float) -> None:
        reason = unsupported_reason(model)
        if reason:
            raise ValueError(f"book-keeping clipping cannot train this model: {reason}")
        self.model = model
        self.max_grad_norm = float(max_grad_norm)
        self._records: list[_Record] = []
        self._handles = []
        self._params = [p for p in model.parameters() if p.requires_grad]
        for module in model.modules():
            if type(module) in SUPPORTED and any(p.requires_grad for p in module.parameters(recurse=False)):
                self._handles.append(module.register_forward_hook(self._capture))

    @contextmanager
    def recording(self):
        """The training forward pass: run it inside this block. The parameters are switched to
        ``requires_grad=False`` for its duration, so autograd builds no parameter-gradient edges
        (the unclipped weight gradients are never computed) and each layer's output is made to
        require grad instead (``_capture``); ``backward`` gets the output gradients it needs.
        The flags are restored on leaving the block, whatever happens in it."""
        self._records = []
        for p in self._params:
            p.requires_grad_(False)
        try:
            yield self
        finally:
            for p in self._params:
                p.requires_grad_(True)

    def _capture(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        if not (module.training and torch.is_grad_enabled()):
            return
        if any(r.module is module for r in self._records):
            raise RuntimeError(
                f"book-keeping clipping: {type(module).__name__} was called twice in one forward pass "
                "(shared layers are not supported; set privacy.clipping: opacus)"
            )
        if not output.requires_grad:  # its parameters are frozen for the pass and its input
            output.requires_grad_(True)  # needs no gradient: make the output a leaf we differentiate
        self._records.append(_Record(module, inputs[0], output))

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []
        self._records = []

    def backward(self, per_example_loss: torch.Tensor) -> torch.Tensor:
        records, self._records = self._records, []
        if not all(p.requires_grad for p in self._params):
            # Opacus's optimizer noises only parameters that require grad: never step otherwise
            raise RuntimeError("book-keeping clipping: backward() must follow the recording() block")
        if per_example_loss.dim() != 1:
            raise ValueError("book-keeping clipping needs one loss per example (criterion reduction='none')")
        if not records:
            raise RuntimeError("book-keeping clipping: no trainable layer ran in the forward pass")
        for r in records:
            if r.inp._version != r.inp_version or r.out._version != r.out_version:
                raise RuntimeError(
                    f"book-keeping clipping: the input or output of a {type(r.module).__name__} was "
                    "modified in place after the layer ran; its gradient would be wrong"
                )
        n = per_example_loss.shape[0]
        if n == 0:
            # an empty Poisson batch: the sum of clipped gradients is zero; the optimizer still
            # adds the noise and the accountant still records the step (as Opacus does)
            for p in self._params:
                p.grad = torch.zeros_like(p)
            return per_example_loss.new_zeros(0)
        outs = [r.out for r in records]
        grads = torch.autograd.grad(per_example_loss.sum(), outs, allow_unused=True)
        parts = []
        for r, g in zip(records, grads):
            if g is None:
                g = torch.zeros_like(r.out)
            parts.append(_layer(r.module, r.inp.detach(), g.detach(), n))
        sq = torch.zeros(n, dtype=torch.float32, device=per_example_loss.device)
        for part in parts:
            sq = sq + part.sq_norm()
        norms = sq.clamp_min(0).sqrt()
        coef = (self.max_grad_norm / (norms + 1e-6)).clamp(max=1.0)
        for part in parts:
            part.write_clipped(coef)
        for p in self._params:  # a layer that did not run: its gradient is zero (and still noised)
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        return norms


# --------------------------------------------------------------------------- per-layer maths
# Each part holds one layer's activations `a` and output gradients `g` (per-example: sample i's
# loss depends only on row i), returns the per-example squared gradient norm of its parameters,
# and writes sum_i coef_i * grad_i into their .grad.


def _sq(x: torch.Tensor) -> torch.Tensor:
    """Row-wise squared L2 norms of a 2-D tensor (one kernel plus a length-n square)."""
    return torch.linalg.vector_norm(x, dim=1) ** 2


def _layer(module: nn.Module, a: torch.Tensor, g: torch.Tensor, n: int):
    if isinstance(module, nn.Linear):
        return _LinearPart(module, a, g, n)
    if isinstance(module, nn.Embedding):
        return _EmbeddingPart(module, a, g, n)
    return _LayerNormPart(cast(nn.LayerNorm, module), a, g, n)  # (SUPPORTED: the only other kind)


class _LinearPart:
    def __init__(self, module: nn.Linear, a: torch.Tensor, g: torch.Tensor, n: int) -> None:
        self.m = module
        self.a = a.reshape(n, -1, a.shape[-1])  # (n, T, d_in); T = 1 for tabular rows
        self.g = g.reshape(n, -1, g.shape[-1])  # (n, T, d_out)
        self.per_example: torch.Tensor | None = None
        self.w = module.weight.requires_grad
        self.b = module.bias is not None and module.bias.requires_grad

    def sq_norm(self) -> torch.Tensor:
        a, g = self.a, self.g
        T, d_in, d_out = a.shape[1], a.shape[2], g.shape[2]
        if T == 1:  # one row per example: grad_i = g_i a_i^T, so ||grad_i||^2 = ||g_i||^2 ||a_i||^2
            gg = _sq(g[:, 0])
            sq = gg * _sq(a[:, 0]) if self.w else torch.zeros_like(gg)
            return sq + gg if self.b else sq
        sq = torch.zeros(a.shape[0], dtype=torch.float32, device=a.device)
        if self.w:
            if a.shape[0] * d_in * d_out * a.element_size() <= MATERIALISE_MAX_BYTES:
                # per-example gradients (n, d_out, d_in): one product as large as the weight
                # gradient, reused for the clipped sum -- fewer operations than the Gram form
                self.per_example = torch.bmm(g.transpose(1, 2), a)
                sq = sq + _sq(self.per_example.reshape(self.per_example.shape[0], -1))
            else:  # too large to hold: ||grad_i||^2 = <a_i a_i^T, g_i g_i^T> (memory n x T x T)
                sq = sq + (torch.bmm(a, a.transpose(1, 2)) * torch.bmm(g, g.transpose(1, 2))).sum((1, 2))
        if self.b:
            self.gb = g.sum(1)
            sq = sq + _sq(self.gb)
        return sq

    def write_clipped(self, coef: torch.Tensor) -> None:
        m = self.m
        if self.a.shape[1] == 1:
            cg = self.g[:, 0] * coef[:, None]
            if self.w:
                m.weight.grad = cg.t() @ self.a[:, 0]
            if self.b:
                m.bias.grad = cg.sum(0)
            return
        if self.w:
            if self.per_example is not None:
                m.weight.grad = torch.einsum("n,noi->oi", coef, self.per_example)
            else:
                cg = (self.g * coef[:, None, None]).reshape(-1, self.g.shape[2])
                m.weight.grad = cg.t() @ self.a.reshape(-1, self.a.shape[2])
        if self.b:
            m.bias.grad = coef @ self.gb


class _EmbeddingPart:
    def __init__(self, module: nn.Embedding, ids: torch.Tensor, g: torch.Tensor, n: int) -> None:
        self.m = module
        self.ids = ids.reshape(n, -1)
        self.g = g.reshape(n, self.ids.shape[1], -1)
        if module.padding_idx is not None:  # autograd gives the padding row no gradient
            self.g = self.g * (self.ids != module.padding_idx).unsqueeze(-1).to(self.g.dtype)

    def sq_norm(self) -> torch.Tensor:
        return embedding_sq_norms(self.ids, self.g, self.m.num_embeddings)

    def write_clipped(self, coef: torch.Tensor) -> None:
        w = self.m.weight
        cg = (self.g * coef[:, None, None]).reshape(-1, self.g.shape[2])
        w.grad = torch.zeros_like(w).index_add_(0, self.ids.reshape(-1), cg.to(w.dtype))


def embedding_sq_norms(ids: torch.Tensor, g: torch.Tensor, num_embeddings: int) -> torch.Tensor:
    """Per-example squared Frobenius norms of an embedding table's gradient, exactly, from the
    indices ``ids`` (n, L) and output gradients ``g`` (n, L, d). The gradient of example i is
    G_i = sum_t e_{id_it} g_it^T, so ||G_i||^2 = sum_{t,t'} [id_it == id_it'] <g_it, g_it'>:
    ||g_i||^2 with one index per example (matrix factorisation), the masked Gram matrix for
    sequences up to ``EMBEDDING_GRAM_MAX_LEN``, and for longer ones the rows of each example
    that share an id summed, then squared. Opacus's ``compute_embedding_norm_sample`` computes
    the same with ``torch.unique(dim=0)`` (measured ~8 ms a call on 2 cores, most of a DP
    matrix-factorisation step); tested equal to it."""
    n, length = ids.shape
    if length == 1:
        return _sq(g[:, 0, :])
    if length <= EMBEDDING_GRAM_MAX_LEN:
        same = (ids.unsqueeze(2) == ids.unsqueeze(1)).to(g.dtype)
        return (same * torch.bmm(g, g.transpose(1, 2))).sum((1, 2))
    key = ids + torch.arange(n, device=ids.device).unsqueeze(1) * num_embeddings
    uniq, inverse = torch.unique(key.reshape(-1), return_inverse=True)
    rows = torch.zeros(len(uniq), g.shape[2], dtype=g.dtype, device=g.device)
    rows.index_add_(0, inverse, g.reshape(-1, g.shape[2]))
    owner = torch.div(uniq, num_embeddings, rounding_mode="floor")
    return torch.zeros(n, dtype=g.dtype, device=g.device).index_add_(0, owner, _sq(rows))


class _LayerNormPart:
    def __init__(self, module: nn.LayerNorm, a: torch.Tensor, g: torch.Tensor, n: int) -> None:
        self.m = module
        d = module.normalized_shape[0]
        xhat = F.layer_norm(a, module.normalized_shape, None, None, module.eps)
        self.gw = (xhat * g).reshape(n, -1, d).sum(1) if module.weight is not None else None
        self.gb = g.reshape(n, -1, d).sum(1) if module.bias is not None else None

    def sq_norm(self) -> torch.Tensor:
        sq: Any = 0
        if self.gw is not None and self.m.weight.requires_grad:
            sq = sq + _sq(self.gw)
        if self.gb is not None and self.m.bias.requires_grad:
            sq = sq + _sq(self.gb)
        return sq

    def write_clipped(self, coef: torch.Tensor) -> None:
        if self.gw is not None and self.m.weight.requires_grad:
            self.m.weight.grad = coef @ self.gw
        if self.gb is not None and self.m.bias.requires_grad:
            self.m.bias.grad = coef @ self.gb


class _FreshGradDPOptimizer(DPOptimizerFastGradientClipping):
    def accumulate(self):
        for p in self.params:
            if p.summed_grad is not None:
                p.summed_grad.add_(p.grad.data)
            else:
                p.summed_grad = p.grad.detach()


def with_fresh_grads(optimizer: DPOptimizerFastGradientClipping) -> _FreshGradDPOptimizer:
    """The same DP optimizer, except that it takes ``p.grad`` as the summed gradient without
    copying it. Opacus's ``DPOptimizerFastGradientClipping.accumulate`` deep-copies ``p.grad``
    into ``p.summed_grad`` (about 0.1 ms a parameter a step: on the tabular MLP as long as the
    whole Adam step) because there ``p.grad`` comes out of a backward pass that may accumulate
    into it; ``BookkeepingClipper`` writes a fresh tensor into every ``p.grad`` every step, so
    the copy protects nothing.

    Built through Opacus's public API only: the subclass is constructed like ``make_private``
    constructs its optimizer (same wrapped optimizer, noise multiplier, clipping bound,
    expected batch size, reduction, generator, secure mode), and the accountant's step hook is
    moved over with ``attach_step_hook``. All else -- noise, scaling, the accounting, the
    underlying Adam -- is Opacus's and torch's own code (tests/privacy/test_bookkeeping_clipping.py
    checks two steps against the unmodified optimizer)."""
    if type(optimizer) is not DPOptimizerFastGradientClipping:
        raise TypeError(f"expected Opacus's DPOptimizerFastGradientClipping, got {type(optimizer).__name__}")
    fresh = _FreshGradDPOptimizer(
        optimizer.original_optimizer,
        noise_multiplier=optimizer.noise_multiplier,
        max_grad_norm=optimizer.max_grad_norm,
        expected_batch_size=optimizer.expected_batch_size,
        loss_reduction=optimizer.loss_reduction,
        generator=optimizer.generator,
        secure_mode=optimizer.secure_mode,
    )
    if optimizer.step_hook is not None:
        fresh.attach_step_hook(optimizer.step_hook)
    return fresh
