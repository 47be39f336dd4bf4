"""Arguments of the audit-only flow that fail before anything runs."""

from __future__ import annotations

import pytest

from impactflow.errors import ConfigError, DataError
from impactflow.flows.audit_only import audit_only_flow, audit_thresholds


def test_audit_thresholds_accept_known_keys_and_name_unknown_ones():
    assert audit_thresholds(
        {"fairness": {"max_demographic_parity_difference": 0.05}, "calibration_by_group": {"max_ece_gap": 0.1}}
    ) == {"fairness": {"max_demographic_parity_difference": 0.05}, "calibration_by_group": {"max_ece_gap": 0.1}}
    with pytest.raises(ConfigError, match="gate fairness.max_dp: unknown key"):
        audit_thresholds({"fairness": {"max_dp": 0.1}})
    with pytest.raises(ConfigError, match="gate 'privacy': unknown audit"):
        audit_thresholds({"privacy": {"max_mia_auc": 0.6}})


@pytest.mark.parametrize(
    "kwargs,error,message",
    [
        ({"score": None, "prediction": None}, ConfigError, "exactly one of --score"),
        ({"score": "s", "prediction": "p"}, ConfigError, "exactly one of --score"),
        ({"score": "s", "threshold": 1.5}, ConfigError, "--threshold 1.5"),
        ({"score": "s", "data": "/no/such.csv"}, DataError, "/no/such.csv: file not found"),
    ],
)
def test_bad_arguments_fail_before_tracking(kwargs, error, message, tmp_path):
    args = {
        "data": str(tmp_path / "x.csv"),
        "label": "y",
        "sensitive": ["g"],
        "output_dir": str(tmp_path / "runs"),
        **kwargs,
    }
    (tmp_path / "x.csv").write_text("y,g,s\n1,a,0.5\n")
    with pytest.raises(error, match=message):
        audit_only_flow.fn(**args)
    assert not (tmp_path / "runs").exists()
