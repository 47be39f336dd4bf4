"""Config loading: every mistake fails before any task runs, naming the key or path."""

from __future__ import annotations

import pytest

from impactflow.errors import ConfigError
from impactflow.flows.config import apply_overrides, list_presets, load_config


def test_default_preset_loads_and_is_tabular():
    cfg = load_config(None)
    assert cfg.preset == "tabular"
    assert cfg.model.family == "tabular"
    assert cfg.data.contract == "adult"
    assert cfg.experiment_name == "impactflow-tabular"
    assert "tabular" in list_presets()


def test_overrides_are_parsed_as_yaml_scalars():
    cfg = load_config(
        "tabular",
        [
            "model.params.epochs=2",
            "privacy.enabled=true",
            "privacy.target_epsilon=1",
            "model.baselines=[logreg, hist_gb]",
        ],
    )
    assert cfg.model.params["epochs"] == 2
    assert cfg.privacy.enabled is True and cfg.privacy.target_epsilon == 1.0
    assert cfg.model.baselines == ["logreg", "hist_gb"]


@pytest.mark.parametrize(
    "override, message",
    [
        (["train.epochz=1"], "train.epochz: unknown key"),
        (["privacy.delta=abc"], "privacy.delta: Input should be a valid number"),
        (["privacy.target_epsilon=-1"], "privacy.target_epsilon: Input should be greater than 0"),
        (["model.family=quantum"], "model.family='quantum': unknown model family"),
        (["data.contract=nope"], "data.contract='nope': unknown contract"),
        (["data.path=/no/such/file.csv"], "data.path: file not found: /no/such/file.csv"),
        (["model.params.hiden=3"], "model.params.hiden: unknown hyperparameter"),
        (["model.baselines=[svm]"], "unknown baseline 'svm'"),
        (["privacy.enabled=true"], "privacy.enabled needs privacy.target_epsilon or privacy.noise_multiplier"),
        (["nokey"], "expected key=value"),
        # a key earlier versions accepted: what happened to it, not "unknown key"
        (
            ["data.validate_while_training=false"],
            "data.validate_while_training: removed: the contract is always validated before training starts; "
            "delete this key",
        ),
    ],
)
def test_bad_config_names_the_problem(override, message):
    with pytest.raises(ConfigError) as err:
        load_config("tabular", override)
    assert message in str(err.value)


def test_unknown_preset_lists_known_ones():
    with pytest.raises(ConfigError, match=r"no such preset or file \(presets: .*tabular"):
        load_config("nonexistent-preset")


def test_yaml_file_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_config(str(bad))
    listy = tmp_path / "list.yaml"
    listy.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(str(listy))
    with pytest.raises(ConfigError, match="file not found"):
        load_config(str(tmp_path / "missing.yaml"))


def test_yaml_alias_bomb_is_refused(tmp_path):
    lines = ['a: &a ["x","x","x","x","x","x","x","x","x"]']
    for i in range(1, 9):
        prev, cur = chr(ord("a") + i - 1), chr(ord("a") + i)
        lines.append(f"{cur}: &{cur} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]")
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match="expands to more than 100000 values"):
        load_config(str(bomb))


def test_set_cannot_descend_into_a_scalar():
    with pytest.raises(ConfigError, match="seed is not a section"):
        apply_overrides({"seed": 1}, ["seed.x=2"])
