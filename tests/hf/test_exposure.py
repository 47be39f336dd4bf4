"""Exposure of planted secrets on the tiny model fine-tuned on the shipped SMS data (trains twice,
4 epochs each: marked e2e). Without DP, the secrets labelled spam and repeated 16 times are
memorised: they rank first among 1,000 never-trained candidates and the level's mean exposure is
above its 95% chance interval. With DP at ε = 1 every level's mean exposure stays within that
interval."""

from __future__ import annotations

import math

import pytest

from impactflow.models.memorisation import SecretSettings

pytestmark = pytest.mark.e2e

#: the same training budget with and without DP, so the DP run is held to the schedule that
#: memorises: 4 epochs already rank every 16-times secret first without DP (10 took 2.5 times as
#: long and showed the same: ranks 1 without DP, every level within chance at epsilon = 1)
EPOCHS = 4


def _fit(tiny_hf, privacy, params):
    from impactflow.data_contracts import get_contract, load_dataset
    from impactflow.models import get_family
    from impactflow.models.base import roles_for
    from impactflow.models.data import split_frame
    from impactflow.models.fit import fit_family_model

    contract = get_contract("sms_spam")
    family = get_family("hf")
    split = split_frame(
        load_dataset(contract), target=contract.target, stratify_on=[], validation=0.15, test=0.15, seed=0
    )
    return fit_family_model(
        family,
        {"path": str(tiny_hf), "max_len": 48, "epochs": EPOCHS, "patience": EPOCHS, **params},
        split,
        roles_for(contract, family.task, False),
        seed=0,
        device="cpu",
        privacy=privacy,
        secrets=SecretSettings(repeats=(1, 4, 16), per_repeat=4, candidates=1000),
    )


def test_without_dp_a_secret_repeated_16_times_is_memorised(tiny_hf):
    from impactflow.models.training import PrivacySettings

    fitted = _fit(tiny_hf, PrivacySettings(), {"lr": 0.002, "batch_size": 64})
    secrets = fitted.training["secrets"]
    sixteen = next(lv for lv in secrets["levels"] if lv["repeats"] == 16 and lv["label"] == "spam")
    assert secrets["candidates"] == 1000 and min(sixteen["ranks"]) == 1.0
    assert sixteen["exposure_max"] == pytest.approx(math.log2(1001))
    assert sixteen["exposure_mean"] > sixteen["chance_high"] and sixteen["above_chance"]
    assert (
        fitted.training["n_secret_rows"] == 2 * 4 * 21 and fitted.training["n_train"] == len(fitted.member_loss) + 168
    )


def test_under_dp_at_epsilon_1_exposure_falls_to_chance(tiny_hf):
    from impactflow.models.training import PrivacySettings

    privacy = PrivacySettings(enabled=True, target_epsilon=1.0, delta=1e-5, max_grad_norm=1.0)
    fitted = _fit(tiny_hf, privacy, {"lr": 0.005, "batch_size": 256})
    dp = fitted.training["dp"]
    assert 0.98 <= dp["epsilon"] <= 1.0
    for level in fitted.training["secrets"]["levels"]:
        assert level["chance_low"] <= level["exposure_mean"] <= level["chance_high"], level
        assert level["group_epsilon"] == pytest.approx(level["repeats"] * dp["epsilon"])
