"""The privacy_audit config section: defaults, validation, and the DP default for canaries."""

from __future__ import annotations

import pytest

from impactflow.errors import ConfigError
from impactflow.flows.config import load_config
from impactflow.tasks.privacy import DP_DEFAULT_CANARIES, canaries_for


def test_defaults_cost_nothing_on_a_non_dp_run_and_canaries_on_a_dp_run():
    plain = load_config("tabular")
    assert plain.privacy_audit.reference_models == 0 and canaries_for(plain.model_dump(mode="json")) == 0
    dp = load_config("tabular-dp")
    assert canaries_for(dp.model_dump(mode="json")) == DP_DEFAULT_CANARIES
    off = load_config("tabular-dp", ["privacy_audit.canaries=0"])
    assert canaries_for(off.model_dump(mode="json")) == 0


def test_preset_turns_the_attacks_on():
    cfg = load_config("tabular-privacy-audit")
    assert cfg.privacy_audit.reference_models == 4 and cfg.privacy_audit.canaries == 500


@pytest.mark.parametrize(
    "override,needle",
    [
        ("privacy_audit.reference_modls=2", "privacy_audit.reference_modls: unknown key"),
        ("privacy_audit.reference_models=-1", "privacy_audit.reference_models"),
        ("privacy_audit.canary_guess_fraction=0.7", "privacy_audit.canary_guess_fraction"),
        ("gates.privacy_lira.max_lira_auc=2", "gates.privacy_lira.max_lira_auc: expected a value in [0, 1]"),
    ],
)
def test_bad_values_name_the_key(override, needle):
    with pytest.raises(ConfigError, match=needle.replace("[", r"\[").replace("]", r"\]")):
        load_config("tabular", [override])
