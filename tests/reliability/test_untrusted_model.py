"""Loading a pickled (pyfunc) model from outside the runs folder warns that pickle can run code."""
from __future__ import annotations

import warnings

import mlflow.pyfunc
import pandas as pd
import pytest

from impactflow.tasks.pyfunc import UntrustedModelWarning, load_model


class Echo(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return model_input


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    path = root / "impactflow_runs" / "m"
    mlflow.pyfunc.save_model(str(path), python_model=Echo(), pip_requirements=[])
    return root, path


def test_model_outside_trusted_folders_warns(saved, tmp_path):
    root, path = saved
    with pytest.warns(UntrustedModelWarning, match="pickle") as caught:
        model = load_model(str(path), trusted_dirs=[tmp_path])  # trusted: somewhere else
    assert str(path) in str(caught[0].message)
    frame = pd.DataFrame({"x": [1, 2]})
    assert model.predict(frame).equals(frame)  # still loads: a warning, not a refusal


def test_model_inside_trusted_folder_and_file_uri_do_not_warn(saved):
    root, path = saved
    with warnings.catch_warnings():
        warnings.simplefilter("error", UntrustedModelWarning)
        load_model(str(path), trusted_dirs=[root / "impactflow_runs"])
        load_model(path.as_uri(), trusted_dirs=[root])
    with pytest.warns(UntrustedModelWarning):
        load_model(path.as_uri(), trusted_dirs=[root / "elsewhere"])
