"""Skipping a gate on purpose (issue 20, defect 1): ``gates.<audit>.skip.<key>: <reason>``; null
never silently drops a gate that applies by default; the same rules for ``impactflow audit``."""

from __future__ import annotations

import pytest

from impactflow.errors import ConfigError
from impactflow.flows.audit_only import audit_thresholds
from impactflow.flows.config import load_config


def test_skip_with_a_reason_loads_and_wins_over_the_presets_value():
    cfg = load_config("tabular", ["gates.fairness.skip.four_fifths_ratio=groups too small in this pilot"])
    assert cfg.gates["fairness"]["skip"] == {"four_fifths_ratio": "groups too small in this pilot"}
    assert cfg.gates["fairness"]["four_fifths_ratio"] == 0.8  # still set by the preset: the skip wins


@pytest.mark.parametrize(
    "override, message",
    [
        # null on a key with a default would drop the default gate without a word (and crashed the audit)
        ("gates.fairness.four_fifths_ratio=null", "null would silently drop a gate that applies by default (0.8)"),
        ("gates.privacy.max_mia_auc=null", "gates.privacy.max_mia_auc: null would silently drop"),
        ("gates.fairness.ci_level=null", "gates.fairness.ci_level: null is not a value for this setting"),
        ("gates.fairness.skip.four_fifths_ratio=null", "give the reason for skipping this gate"),
        ("gates.fairness.skip.four_fifths_ratio=''", "give the reason for skipping this gate"),
        ("gates.fairness.skip.min_group_size=small", "gates.fairness.skip.min_group_size: not a gate of the fairness"),
        ("gates.fairness.skip.max_dp=x", "gates.fairness.skip.max_dp: not a gate"),
        ("gates.fairness.skip=all", "gates.fairness.skip: expected a mapping"),
    ],
)
def test_bad_skips_and_nulls_fail_naming_the_key(override, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_config("tabular", [override])


def test_null_is_allowed_where_no_default_gate_exists():
    cfg = load_config("tabular", ["gates.performance.max_ece=null", "gates.fairness.intersections=null"])
    assert cfg.gates["performance"]["max_ece"] is None


def test_audit_only_gates_follow_the_same_rules():
    assert audit_thresholds({"fairness": {"skip": {"four_fifths_ratio": "why"}}}) == {
        "fairness": {"skip": {"four_fifths_ratio": "why"}}
    }
    with pytest.raises(ConfigError, match="null would silently drop"):
        audit_thresholds({"fairness": {"max_demographic_parity_difference": None}})
    with pytest.raises(ConfigError, match="not a gate of the calibration_by_group"):
        audit_thresholds({"calibration_by_group": {"skip": {"min_group_size": "x"}}})


def test_a_skip_reason_is_text_as_written():
    cfg = load_config(
        "tabular",
        [
            "gates.fairness.skip.four_fifths_ratio=pilot: reviewed by hand, see #12",
            "gates.privacy.skip.max_mia_auc='quoted: reason'",
        ],
    )
    assert cfg.gates["fairness"]["skip"]["four_fifths_ratio"] == "pilot: reviewed by hand, see #12"
    assert cfg.gates["privacy"]["skip"]["max_mia_auc"] == "quoted: reason"
