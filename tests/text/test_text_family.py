"""Text family specifics: vocabulary from the fitted rows only, tokenizer, DP compatibility."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from impactflow.models import get_family
from impactflow.models.base import Roles
from impactflow.models.text import PAD_ID, UNK_ID, tokenize

ROLES = Roles(
    target="label",
    task="binary",
    features=("message",),
    positive_label="spam",
    labels=("ham", "spam"),
    extra={"text": "message"},
)


def test_tokenizer_words_punctuation_and_digit_shapes():
    assert tokenize("Call 08001234567 NOW! Don't") == ["call", "<d11>", "now", "!", "don't"]


def test_vocabulary_comes_from_the_fitted_rows_only():
    fam = get_family("text")
    pre = fam.make_preprocessor(ROLES, fam.make_config({"min_freq": 1, "max_len": 6}))
    pre.fit(pd.DataFrame({"message": ["free prize", "free cash"]}))
    assert pre.vocab == {"<pad>": 0, "<unk>": 1, "free": 2, "cash": 3, "prize": 4}  # count desc, then a-z
    X = pre.transform(pd.DataFrame({"message": ["free lunch", ""]}))
    np.testing.assert_array_equal(X, [[2, UNK_ID, PAD_ID, 0, 0, 0], [UNK_ID, 0, 0, 0, 0, 0]])


def test_padding_does_not_change_the_logit():
    fam = get_family("text")
    torch.manual_seed(0)
    model = fam.build_model({"vocab_size": 10, "max_len": 8}, fam.make_config({})).eval()
    a = torch.tensor([[3, 4, 5, 0, 0, 0, 0, 0]])
    b = torch.tensor([[3, 4, 5, 0, 0, 0, 0, 0], [6, 7, 8, 9, 2, 3, 4, 5]])
    assert torch.allclose(model(a)[0], model(b)[0], atol=1e-6)


def test_one_dp_step_runs_under_ghost_clipping():
    """Opacus fast gradient clipping accepts the model (contiguous position ids, one lookup per table)."""
    from impactflow.models.training import PrivacySettings, TrainSettings, train_torch

    fam = get_family("text")
    cfg = fam.make_config({"epochs": 1})
    rng = np.random.default_rng(0)
    X = rng.integers(1, 20, size=(64, 8)).astype(np.int64)
    y = (X[:, 0] > 10).astype(np.float32)
    res = train_torch(
        fam.build_model({"vocab_size": 20, "max_len": 8}, cfg),
        X,
        y,
        X[:16],
        y[:16],
        make_criterion=fam.make_criterion,
        settings=TrainSettings(epochs=1, batch_size=16, patience=1),
        privacy=PrivacySettings(enabled=True, noise_multiplier=1.0, delta=1e-3),
    )
    assert res.dp["enabled"] and res.dp["epsilon"] > 0 and res.dp["grad_sample_mode"] == "ghost"
