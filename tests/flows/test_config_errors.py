"""--set mistakes are one line naming the key, the value and what was expected (issue 21, item 7);
unknown keys get a "did you mean"; a family that cannot read the contract's target is refused
before any task."""

from __future__ import annotations

import pytest

from impactflow.errors import ConfigError
from impactflow.flows.config import BAD_OVERRIDE, apply_overrides, load_config


@pytest.mark.parametrize(
    "override, message",
    [
        ("model.params.epochs=abc", "model.params.epochs: 'abc' is not a whole number (family 'tabular', default 20)"),
        ("model.params.epochs=2.5", "model.params.epochs: 2.5 is not a whole number (family 'tabular', default 20)"),
        ("model.params.epochs=true", "model.params.epochs: True is not a whole number"),
        ("model.params.lr=fast", "model.params.lr: 'fast' is not a number (family 'tabular', default 0.001)"),
        ("model.params.hidden_sizes=[a, 3]", "model.params.hidden_sizes: ['a', 3] is not a list of whole numbers"),
        ("model.params.epochs=null", "model.params.epochs: None is not a whole number"),
    ],
)
def test_a_value_of_the_wrong_type_names_key_value_and_type(override, message):
    with pytest.raises(ConfigError) as exc:
        load_config("tabular", [override])
    text = str(exc.value)
    assert text.startswith(message) and "\n" not in text and "not supported between" not in text


def test_values_of_the_right_type_pass():
    cfg = load_config("tabular", ["model.params.epochs=2", "model.params.lr=1", "model.params.hidden_sizes=[8, 4]"])
    assert {k: cfg.model.params[k] for k in ("epochs", "lr", "hidden_sizes")} == {
        "epochs": 2,
        "lr": 1,
        "hidden_sizes": [8, 4],
    }


@pytest.mark.parametrize(
    "override, message",
    [
        (
            "model.params.epoch=3",
            "model.params.epoch: unknown hyperparameter for family 'tabular' (did you mean 'epochs'?)",
        ),
        ("model.parms.epochs=2", "model.parms: unknown key (did you mean 'params'?)"),
        ("data.contrct=adult", "data.contrct: unknown key (did you mean 'contract'?)"),
        ("modle.family=tabular", "modle: unknown key (did you mean 'model'?)"),
        ("train.devce=cpu", "train.devce: unknown key (did you mean 'device'?)"),
        # a family hyperparameter put under another section
        ("train.epochs=1", "train.epochs: unknown key (did you mean 'model.params.epochs'?)"),
        ("zzzz=1", "zzzz: unknown key"),
    ],
)
def test_unknown_keys_get_did_you_mean(override, message):
    with pytest.raises(ConfigError) as exc:
        load_config("tabular", [override])
    assert message in str(exc.value)
    if "did you mean" not in message:
        assert "did you mean" not in str(exc.value)


def test_the_malformed_set_example_is_a_real_key():
    with pytest.raises(ConfigError) as exc:
        apply_overrides({}, ["epochs"])
    assert str(exc.value) == BAD_OVERRIDE.format(item="epochs")
    example = str(exc.value).rsplit("e.g. ", 1)[1]
    assert load_config("tabular", [example]).model.params["epochs"] == 1


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            ["model.family=recommender", "model.params={}", "model.baselines=[]"],
            "model.family='recommender': predicts a numeric rating, but the target 'income' of contract 'adult' is a "
            "category (labels: <=50K, >50K)",
        ),
        (
            ["model.family=tabular", "model.params={}", "data.contract=synthetic_ratings"],
            "model.family='tabular': a binary classifier, but the target",
        ),
    ],
)
def test_a_family_that_cannot_read_the_target_is_refused_before_any_task(overrides, message):
    with pytest.raises(ConfigError) as exc:
        load_config("tabular", overrides)
    assert str(exc.value).startswith(message)


def test_dp_without_a_declared_range_is_refused_before_any_task(tmp_path, monkeypatch):
    """Under DP every numeric input needs min and max in the contract: said at load, naming the key."""
    (tmp_path / "d.csv").write_text(
        "x,g,y\n" + "\n".join(f"{i},{'a' if i % 2 else 'b'},{'p' if i % 3 else 'q'}" for i in range(20)) + "\n"
    )
    (tmp_path / "contract.yaml").write_text(
        "name: toy\nread: {format: csv}\ncolumns:\n  x: integer\n  g: {type: category, values: [a, b]}\n"
        "  y: {type: category, values: [p, q]}\ntarget: y\npositive_label: p\nsensitive: [g]\nmin_group_size: 1\n"
    )
    monkeypatch.chdir(tmp_path)
    base = ["data.contract=contract.yaml", "data.path=d.csv", "model.baselines=[]", "gates.fairness.intersections=null"]
    assert load_config("tabular", base)  # without DP the range is optional
    with pytest.raises(ConfigError) as exc:
        load_config("tabular", [*base, "privacy.enabled=true", "privacy.target_epsilon=3"])
    assert str(exc.value) == (
        "under DP, column 'x' needs a declared finite range (min_value < max_value) in contract "
        "'toy' (add min and max under columns.x for it to contract.yaml): preprocessing fitted "
        "on training rows would be released outside the privacy claim"
    )


@pytest.mark.parametrize(
    "override, message",
    [
        ("promotion.max_regression=-0.01", "a tolerance is a finite number >= 0, got -0.01"),
        (
            "promotion.max_regression={default: 0.01, eval/accuracy: -1}",
            "a tolerance is a finite number >= 0, got -1.0",
        ),
        ("promotion.alpha=0.7", "promotion.alpha"),
        ("promotion.bootstrap=10", "promotion.bootstrap"),
        ("gates.drift.fdr=1.5", "gates.drift.fdr"),
        ("gates.drift.max_drifted_columns=-1", "gates.drift.max_drifted_columns"),
    ],
)
def test_promotion_and_drift_settings_are_checked(override, message):
    with pytest.raises(ConfigError) as exc:
        load_config("tabular", [override])
    assert message in str(exc.value)


def test_promotion_tolerances_by_gate_are_accepted():
    cfg = load_config("tabular", ["promotion.max_regression={default: 0.01, eval/accuracy: 0.02}"])
    assert cfg.promotion.max_regression == {"default": 0.01, "eval/accuracy": 0.02}
    assert cfg.promotion.compare_with_champion and cfg.promotion.alpha == 0.05
