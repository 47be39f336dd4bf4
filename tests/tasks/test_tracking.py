"""MLflow's fluent API is pointed at a run's store only for the block that needs it."""
from __future__ import annotations

import os

from tasks.tracking import using_tracking_uri


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
