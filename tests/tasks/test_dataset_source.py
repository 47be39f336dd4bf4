"""Issue 26: a run printed MLflow's "The specified dataset source can be interpreted in multiple
ways: LocalArtifactDatasetSource, LocalArtifactDatasetSource" UserWarning on stderr (MLflow 3
registers its local source class twice, so resolving any local path string warns). The dataset
input is now logged with a source object built by ``impactflow.tasks.tracking.local_dataset_source``: no
warning, and the run records the same source type and JSON MLflow itself would."""

from __future__ import annotations

import json
import warnings

import pandas as pd

from impactflow.tasks import tracking


def test_logging_a_dataset_warns_nothing_and_records_a_local_source(tmp_path):
    from mlflow import MlflowClient
    from mlflow.data.dataset_source_registry import get_dataset_source_from_json

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = client.create_experiment("e", artifact_location=str(tmp_path / "artifacts"))
    run = client.create_run(exp).info.run_id
    data_file = tmp_path / "adult.data.gz"
    df = pd.DataFrame({"age": [25, 40, 61], "sex": pd.array(["F", "M", None], dtype="string")})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tracking.log_dataset(uri, run, df, name="adult", source=str(data_file), sha256="a" * 64, context="pipeline")
    mlflow_warnings = [w for w in caught if "mlflow" in w.filename.replace("\\", "/")]
    assert mlflow_warnings == [], [str(w.message) for w in mlflow_warnings]

    (logged,) = client.get_run(run).inputs.dataset_inputs
    ds = logged.dataset
    assert (ds.name, ds.digest, ds.source_type) == ("adult", "a" * 36, "local")
    assert json.loads(ds.source) == {"uri": str(data_file)}
    # MLflow reads it back as its own local source, as if it had resolved the path itself
    back = get_dataset_source_from_json(ds.source, ds.source_type)
    assert back.to_dict() == {"uri": str(data_file)} and type(back).__name__ == "LocalArtifactDatasetSource"
