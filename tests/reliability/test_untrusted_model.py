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


@pytest.mark.e2e  # starts two Python processes
def test_a_model_logged_under_the_old_package_layout_is_one_clear_error(tmp_path):
    """Before the one import package, the logged wrapper was pickled as ``tasks.pyfunc.X``: such a
    model names what it refers to and what to do, instead of a ModuleNotFoundError traceback.
    Both steps run in fresh processes outside the checkout (in it, the folder ``tasks`` is
    importable by its bare name, as it never is in an installed copy)."""
    import os
    import subprocess
    import sys

    old = tmp_path / "old_layout"
    (old / "tasks").mkdir(parents=True)
    (old / "tasks" / "__init__.py").write_text("")
    (old / "tasks" / "pyfunc.py").write_text(
        "import mlflow.pyfunc\n"
        "class ImpactflowPyfunc(mlflow.pyfunc.PythonModel):\n"
        "    def predict(self, context, model_input, params=None):\n"
        "        return model_input\n"
    )
    path = tmp_path / "impactflow_runs" / "old"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    save = (
        "import sys, mlflow.pyfunc; "
        "from tasks.pyfunc import ImpactflowPyfunc; "  # old layout on purpose
        "mlflow.pyfunc.save_model(sys.argv[1], python_model=ImpactflowPyfunc(), pip_requirements=[])"
    )
    subprocess.run(
        [sys.executable, "-c", save, str(path)],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(old)},
        check=True,
        capture_output=True,
        timeout=300,
    )
    load = (
        "import sys; from impactflow.errors import DataError; "
        "from impactflow.tasks.pyfunc import load_model\n"
        "try:\n    load_model(sys.argv[1], trusted_dirs=[sys.argv[2]])\nexcept DataError as e:\n    print(e)"
    )
    out = subprocess.run(
        [sys.executable, "-c", load, str(path), str(tmp_path / "impactflow_runs")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert (
        f"{path}: this model was logged by an impactflow version before the one import package (it refers "
        "to module 'tasks', now impactflow.tasks)"
    ) in out.stdout, out.stdout + out.stderr
