"""The recommender family: id mapping, cold start, the bias baseline, DP with ghost clipping."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from impactflow.models import get_family
from impactflow.models.base import targets
from impactflow.models.recommender import BiasBaseline, BiasedMF, ItemScorer
from tests.models.family_examples import recommender_example

FAMILY = get_family("recommender")


def test_unseen_ids_map_to_row_zero_and_predict_from_the_other_side():
    df, roles = recommender_example()
    pre = FAMILY.make_preprocessor(roles, FAMILY.make_config({}))
    pre.fit_transform(pd.DataFrame({"user_id": [5, 3], "item_id": [7, 2]}))
    X = pre.transform(pd.DataFrame({"user_id": [3, 5, 99], "item_id": [7, 42, 2]}))
    assert X.tolist() == [[1, 2], [2, 0], [0, 1]]  # sorted vocabularies, 0 = unseen
    model = BiasedMF(3, 3, 4, 1.0, 5.0)
    with torch.no_grad():
        model.user_bias.weight.fill_(0.5)
        model.user_factors.weight.fill_(1.0)
        model.item_factors.weight.fill_(1.0)
    out = model(torch.as_tensor(X)).tolist()
    assert out == pytest.approx([3.0 + 0.5 + 4.0, 3.0 + 0.5, 3.0])  # unseen: no factors, no bias


def test_bias_baseline_by_hand():
    X = pd.DataFrame({"u": [1, 1, 2], "i": [1, 2, 1]})
    y = np.array([5.0, 3.0, 4.0])
    est = BiasBaseline("u", "i", reg_user=0.0, reg_item=0.0, n_iter=1).fit(X, y)
    # mu = 4; b_i = mean(r - mu): item1 (1 + 0)/2 = 0.5, item2 -1; b_u = mean(r - mu - b_i): u1 (0.5 + 0)/2, u2 -0.5
    assert est.item_bias_.tolist() == [0.5, -1.0] and est.user_bias_.tolist() == [0.25, -0.5]
    pred = est.predict(pd.DataFrame({"u": [1, 3], "i": [1, 3]}))
    assert pred.tolist() == [4.75, 4.0]


def test_item_scorer_scores_every_catalog_item_once_per_user_set():
    calls = []

    class Predictor:
        def predict(self, frame):
            calls.append(len(frame))
            return frame["user_id"].to_numpy() * 10.0 + frame["item_id"].to_numpy()

    scorer = ItemScorer(Predictor(), "user_id", "item_id", np.array([1, 2, 3]), chunk_rows=6)
    m = scorer(np.array([1, 2, 3]))
    assert m.tolist() == [[11, 12, 13], [21, 22, 23], [31, 32, 33]]
    scorer(np.array([1, 2, 3]))
    assert calls == [6, 3]  # two chunks of users, and the second call is memoised


@pytest.mark.parametrize("variant", ["mf", "neumf"])
def test_dp_training_with_ghost_clipping(variant):
    from impactflow.models.training import PrivacySettings, TrainSettings, train_torch

    df, roles = recommender_example(n=256)
    config = FAMILY.make_config({"variant": variant, "n_factors": 4, "mlp_sizes": [8]})
    pre = FAMILY.make_preprocessor(roles, config)
    X = pre.fit_transform(df[list(roles.features)])
    y = targets(df, roles)
    result = train_torch(
        FAMILY.build_model(pre.spec(), config),
        X,
        y,
        X[:32],
        y[:32],
        make_criterion=FAMILY.make_criterion,
        settings=TrainSettings(epochs=2, batch_size=64, lr=0.01, patience=5, device="cpu"),
        privacy=PrivacySettings(enabled=True, noise_multiplier=1.0, delta=1e-3),
    )
    assert result.dp["enabled"] and result.dp["grad_sample_mode"] == "ghost" and result.dp["epsilon"] > 0
    assert np.isfinite(result.history[-1]["val_loss"])
