"""Every family, checked the same way (parametrised over FAMILIES)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from data_contracts.errors import ConfigError
from models import FAMILIES, get_family


def _tiny_frame(n=64, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "num_a": rng.normal(size=n),
        "num_b": rng.integers(0, 10, size=n).astype(float),
        "cat": rng.choice(["x", "y", "z"], size=n),
    })


@pytest.fixture(params=sorted(FAMILIES))
def family(request):
    return get_family(request.param)


def test_forward_shape(family):
    import torch

    model = family.build_model(7, family.make_config({}))
    out = model(torch.zeros(5, 7))
    assert out.shape == (5,)


def test_loss_goes_down_on_a_tiny_batch(family):
    import torch

    torch.manual_seed(0)
    model = family.build_model(4, family.make_config({"dropout": 0.0}))
    x = torch.randn(32, 4)
    y = (x[:, 0] > 0).float()
    crit = family.make_criterion("mean")
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = float(crit(model(x), y))
    for _ in range(50):
        opt.zero_grad()
        loss = crit(model(x), y)
        loss.backward()
        opt.step()
    assert float(loss) < 0.5 * first


def test_opacus_accepts_the_model(family):
    from opacus.validators import ModuleValidator

    model = family.build_model(6, family.make_config({}))
    assert ModuleValidator.validate(model, strict=False) == []


def test_preprocessing_is_deterministic_and_fit_on_given_rows_only(family):
    df = _tiny_frame()
    a = family.make_preprocessor(["cat"], ["num_a", "num_b"]).fit(df.iloc[:40])
    b = family.make_preprocessor(["cat"], ["num_a", "num_b"]).fit(df.iloc[:40])
    np.testing.assert_array_equal(a.transform(df), b.transform(df))
    # standardisation uses training rows only: mean of the fitted rows is 0, not of all rows
    Xa = a.transform(df.iloc[:40])
    assert abs(Xa[:, 0].mean()) < 1e-9
    # an unseen category at predict time encodes as all zeros (the contract rejects it earlier)
    unseen = pd.DataFrame({"num_a": [0.0], "num_b": [1.0], "cat": ["never-seen"]})
    assert a.transform(unseen)[0, 2:].sum() == 0


def test_unknown_hyperparameter_is_named(family):
    with pytest.raises(ConfigError, match="model.params.hiden_sizes: unknown hyperparameter"):
        family.make_config({"hiden_sizes": [3]})


def test_bad_hyperparameter_value_is_reported(family):
    with pytest.raises(ConfigError, match="dropout"):
        family.make_config({"dropout": 1.5})


def test_unknown_family_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown model family"):
        get_family("quantum")
