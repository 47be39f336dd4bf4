"""Every family, checked the same way (parametrised over FAMILIES)."""

from __future__ import annotations

import numpy as np
import pytest

from impactflow.errors import ConfigError
from impactflow.models import FAMILIES, get_family
from impactflow.models.base import targets
from tests.models.family_examples import EXAMPLES, example_params


@pytest.fixture(params=sorted(FAMILIES))
def family(request):
    return get_family(request.param)


def _fitted(family, seed=0):
    df, roles = EXAMPLES[family.name](seed=seed)
    config = family.make_config(example_params(family.name))
    pre = family.make_preprocessor(roles, config)
    X = pre.fit_transform(df[list(roles.features)])
    return df, roles, config, pre, X


def test_every_family_has_an_example():
    assert set(EXAMPLES) == set(FAMILIES)


def test_forward_shape(family):
    import torch

    df, roles, config, pre, X = _fitted(family)
    out = family.build_model(pre.spec(), config)(torch.as_tensor(X[:5]))
    expected = (5, len(roles.labels)) if family.task == "multiclass" else (5,)
    assert tuple(out.shape) == expected


def test_loss_goes_down_on_a_tiny_batch(family):
    import torch

    torch.manual_seed(0)
    df, roles, config, pre, X = _fitted(family)
    model = family.build_model(pre.spec(), config)
    x, y = torch.as_tensor(X[:32]), torch.as_tensor(targets(df.iloc[:32], roles))
    crit = family.make_criterion("mean")
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    with torch.no_grad():
        first = float(crit(model(x), y))
    for _ in range(60):
        opt.zero_grad()
        loss = crit(model(x), y)
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.5 * first


def test_opacus_accepts_the_model(family):
    from opacus.validators import ModuleValidator

    _, _, config, pre, _ = _fitted(family)
    assert ModuleValidator.validate(family.build_model(pre.spec(), config), strict=False) == []


def test_preprocessing_is_deterministic(family):
    df, roles, config, pre_a, Xa = _fitted(family)
    _, _, _, pre_b, Xb = _fitted(family)
    np.testing.assert_array_equal(Xa, Xb)
    np.testing.assert_array_equal(pre_a.transform(df[list(roles.features)]), Xa)


def test_tabular_preprocessor_fits_on_given_rows_only():
    df, roles = EXAMPLES["tabular"]()
    fam = get_family("tabular")
    pre = fam.make_preprocessor(roles, fam.make_config({}))
    Xa = pre.fit_transform(df.iloc[:40][list(roles.features)])
    assert abs(Xa[:, 0].mean()) < 1e-6  # standardised with the fitted rows' mean
    unseen = df.iloc[:1].copy()
    unseen["cat"] = "never-seen"
    assert pre.transform(unseen[list(roles.features)])[0, 2:].sum() == 0  # unknown -> all zeros


def test_unknown_hyperparameter_is_named(family):
    with pytest.raises(ConfigError, match="model.params.hiden_sizes: unknown hyperparameter"):
        family.make_config({"hiden_sizes": [3]})


def test_bad_hyperparameter_value_is_reported(family):
    with pytest.raises(ConfigError, match="epochs"):
        family.make_config(example_params(family.name, epochs=0))


def test_unknown_family_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown model family"):
        get_family("quantum")
