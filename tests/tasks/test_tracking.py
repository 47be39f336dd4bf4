"""MLflow's fluent API is pointed at a run's store only for the block that needs it."""

from __future__ import annotations

import os

import pytest

from impactflow.tasks.tracking import using_tracking_uri


def test_using_tracking_uri_restores_an_absent_environment_variable(monkeypatch, tmp_path):
    import mlflow

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = f"sqlite:///{tmp_path / 'a.db'}"
    with using_tracking_uri(uri):
        assert mlflow.get_tracking_uri() == uri
        assert os.environ["MLFLOW_TRACKING_URI"] == uri  # what mlflow.set_tracking_uri does
    assert "MLFLOW_TRACKING_URI" not in os.environ
    assert mlflow.get_tracking_uri() != uri


def test_using_tracking_uri_restores_a_user_setting(monkeypatch, tmp_path):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking.example:5000")
    with using_tracking_uri(f"sqlite:///{tmp_path / 'b.db'}"):
        pass
    assert os.environ["MLFLOW_TRACKING_URI"] == "http://tracking.example:5000"


def test_dataset_schema_equals_mlflows_inference_on_small_frames():
    import numpy as np
    import pandas as pd
    from mlflow.types.utils import _infer_schema

    from impactflow.tasks.tracking import dataset_schema

    df = pd.DataFrame(
        {
            "text": pd.array(["a", None, "c"], dtype="string"),
            "full_text": pd.array(["x", "y", "z"], dtype="string"),
            "f": [1.0, np.nan, 2.0],
            "i": np.array([1, 2, 3], dtype=np.int64),
            "nullable_int": pd.array([1, None, 3], dtype="Int64"),
            "b": [True, False, True],
            "obj": ["p", "q", None],
            "when": pd.to_datetime(["2020-01-01", None, "2020-01-03"]),
        }
    )
    assert dataset_schema(df).to_dict() == _infer_schema(df).to_dict()
    assert dataset_schema(df).to_dict()[0] == {"type": "string", "name": "text", "required": False}


@pytest.mark.parametrize("contract", ["adult", "sms_spam", "jigsaw", "mnist", "synthetic_ratings"])
def test_dataset_schema_equals_mlflows_inference_on_shipped_data(contract):
    from mlflow.types.utils import _infer_schema

    from impactflow.tasks.data import load_data
    from impactflow.tasks.spec import RunSpec
    from impactflow.tasks.tracking import dataset_schema

    from mlflow.exceptions import MlflowException

    df, _ = load_data.fn(RunSpec(contract, "tabular"), None, 2000, 0)  # loading reads only the contract
    try:
        expected = _infer_schema(df)
    except MlflowException:  # what mlflow.data's PandasDataset.schema turns into None (MNIST pixels)
        expected = None
    got = dataset_schema(df)
    assert (got.to_dict() if got else None) == (expected.to_dict() if expected else None)


def test_warm_requirements_map_builds_the_map_mlflow_checks_requirements_against(monkeypatch):
    """The warm runner builds it before forking, so a run's log_model does not rebuild it."""
    from mlflow.utils import requirements_utils

    from impactflow.tasks.tracking import warm_requirements_map

    monkeypatch.setattr(requirements_utils, "_MODULES_TO_PACKAGES", None)
    warm_requirements_map()
    built = requirements_utils._MODULES_TO_PACKAGES
    assert built is not None and "torch" in built["torch"] and "mlflow" in built["mlflow"]


def test_keys_from_user_data_are_keys_mlflow_accepts(tmp_path):
    """Metric, param and tag keys carry group values and column names (any characters): each is
    logged (MLflow raised on '<', '*', '//' or '..' and the run ended in a traceback), under a
    key its validators accept, with the refused characters and path segments replaced."""
    from mlflow.utils.validation import _validate_metric_name, _validate_param_name, _validate_tag_name

    from impactflow.tasks import tracking

    names = [
        "calibration/<img src=x onerror=alert(1)>/brier_gap",
        "fairness/*",
        "a//b",
        "../etc/passwd",
        "fairness/sex/demographic_parity_difference",
    ]
    assert tracking.mlflow_key(names[0]) == "calibration/_img src_x onerror_alert_1__/brier_gap"
    assert [tracking.mlflow_key(n) for n in names[1:]] == [
        "fairness/_",
        "a/_/b",
        "_/etc/passwd",
        "fairness/sex/demographic_parity_difference",
    ]
    for n in names:
        for validate in (_validate_metric_name, _validate_param_name, _validate_tag_name):
            validate(tracking.mlflow_key(n))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    exp = tracking.ensure_experiment(uri, "keys", tmp_path)
    run = tracking.start_run(uri, exp, "keys", {})
    tracking.log_metrics(uri, run, {n: 0.5 for n in names})
    tracking.log_params(uri, run, {n: "v" for n in names})
    tracking.set_tags(uri, run, {n: "v" for n in names})
    data = tracking._client(uri).get_run(run).data
    assert set(data.metrics) == {tracking.mlflow_key(n) for n in names}
    assert {tracking.mlflow_key(n) for n in names} <= set(data.params) & set(data.tags)
