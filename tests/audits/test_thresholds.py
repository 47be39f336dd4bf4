"""Each audit declares its own typed keys (audits/thresholds.py); the config loaders check values
by the declared kind, never by the key's name."""

from __future__ import annotations

import re

import pytest

from impactflow.audits import AUDIT_THRESHOLDS
from impactflow.audits.thresholds import Threshold, as_spec, at_least, at_most, defaults, gate_table, setting
from impactflow.errors import ConfigError
from impactflow.flows.config import load_config


@pytest.mark.parametrize(
    ("threshold", "value", "problem"),
    [
        (at_most("x"), 0.0, None),
        (at_most("x"), 1, None),
        (at_most("x"), 1.01, "expected a value in [0, 1], got 1.01"),
        (at_most("x"), True, "expected a number, got True"),
        (at_most("x"), "0.1", "expected a number, got '0.1'"),
        (at_most("x"), float("nan"), "expected a number, got nan"),
        (at_most("rmse", kind="number"), 7.5, None),  # an RMSE is unbounded
        (setting(0.05, "open_fraction"), 0.5, None),
        (setting(0.05, "open_fraction"), 1, "expected a value in (0, 1), got 1"),
        (setting(0.05, "open_fraction"), 0.0, "expected a value in (0, 1), got 0.0"),
        (setting(30, "count"), 30.0, None),
        (setting(30, "count"), 0, "expected a positive integer, got 0"),
        (setting(30, "count"), 2.5, "expected a positive integer, got 2.5"),
        (setting(1000, "whole"), 0, None),
        (setting(1000, "whole"), -1, "expected a whole number >= 0, got -1"),
        (setting(None, "columns"), [["sex", "race"]], None),
        (setting(None, "columns"), ["sex"], "expected a list of column lists, e.g. [[sex, race]]"),
        (setting("a", "choice", ("a", "b")), "b", None),
        (setting("a", "choice", ("a", "b")), "c", "expected one of a, b, got 'c'"),
        (setting(None, "column"), "sex", None),
        (setting(None, "column"), 3, "expected a column name, got 3"),
        (setting(None, "any"), object, None),
        (setting(0.5, "fraction"), None, None),  # null is judged by gating.section_problems
    ],
)
def test_a_value_is_checked_by_its_declared_kind(threshold, value, problem):
    assert threshold.problem(value) == problem


def test_tables_give_defaults_gates_and_the_metric_table():
    spec = {
        "min_accuracy": at_least("accuracy", metric="eval/accuracy"),
        "max_gap": at_most("gap", 0.1),
        "min_group_size": setting(30, "count"),
    }
    assert defaults(spec) == {"min_accuracy": None, "max_gap": 0.1, "min_group_size": 30}
    assert gate_table(spec) == {"min_accuracy": ("eval/accuracy", ">=")}  # only gates that name a metric
    assert as_spec({"min_count": None, "max_x": at_most("x")}) == {
        "min_count": Threshold(None, "any"),  # a plugin's plain default: an unchecked setting
        "max_x": at_most("x"),
    }


def test_the_audit_modules_own_their_defaults():
    """audits/__init__.py collects the modules' tables; the defaults are the ones each declares."""
    from impactflow.audits.fairness import FAIRNESS_DEFAULTS
    from impactflow.audits.privacy import PRIVACY_DEFAULTS

    assert defaults(AUDIT_THRESHOLDS["fairness"]) == FAIRNESS_DEFAULTS
    assert FAIRNESS_DEFAULTS["n_boot"] == 1000 and PRIVACY_DEFAULTS == {"max_mia_auc": 0.6}


@pytest.mark.parametrize(
    ("override", "message"),
    [
        # keys whose names say nothing of their kind, unchecked before the audits declared them
        ("gates.recommendation.k=ten", "gates.recommendation.k: expected a number, got 'ten'"),
        ("gates.recommendation.seed=-3", "gates.recommendation.seed: expected a whole number >= 0, got -3"),
        ("gates.mitigation.constraints=parity", "gates.mitigation.constraints: expected one of demographic_parity"),
        ("gates.identity.power=x", "gates.identity.power: expected a number, got 'x'"),
        ("gates.fairness.ci_level=95", "gates.fairness.ci_level: expected a value in [0, 1], got 95"),
        ("gates.fairness.n_boot=2.5", "gates.fairness.n_boot: expected a whole number >= 0, got 2.5"),
        # the discovery audits' settings (issue 23's bad input): an FDR outside (0, 1), a sample of 0
        ("gates.slices.fdr=1.5", "gates.slices.fdr: expected a value in (0, 1), got 1.5"),
        ("gates.slices.fdr=0", "gates.slices.fdr: expected a value in (0, 1), got 0"),
        ("gates.proxies.sample_size=0", "gates.proxies.sample_size: expected a positive integer, got 0"),
        ("gates.attributions.sample_size=0", "gates.attributions.sample_size: expected a positive integer, got 0"),
        ("gates.slices.min_slice_size=0", "gates.slices.min_slice_size: expected a positive integer, got 0"),
    ],
)
def test_the_run_config_refuses_a_value_of_the_wrong_kind(override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config("tabular", [override])


def test_the_run_config_keeps_values_of_the_right_kind():
    cfg = load_config("tabular", ["gates.fairness.n_boot=0", "gates.mitigation.constraints=equalized_odds"])
    assert cfg.gates["fairness"]["n_boot"] == 0 and cfg.gates["mitigation"]["constraints"] == "equalized_odds"


def test_audit_only_gates_are_checked_by_kind_too():
    from impactflow.flows.audit_only import audit_thresholds

    with pytest.raises(ConfigError, match=re.escape("gate fairness.min_group_size: expected a positive integer")):
        audit_thresholds({"fairness": {"min_group_size": 0}})
    assert audit_thresholds({"fairness": {"min_group_size": 5}}) == {"fairness": {"min_group_size": 5}}
