"""A copied or moved runs folder (issue 28, defect 6): MLflow records absolute artifact paths,
so a copy kept writing into the original folder, and a moved one broke verification and model
loading. A run into a copy is refused before anything is written; reading a moved store names
the missing path."""

from __future__ import annotations

import shutil

import pytest

from impactflow.errors import ConfigError, DataError
from impactflow.tasks import tracking


def _store(folder):
    folder.mkdir()
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    exp = tracking.ensure_experiment(uri, "exp", folder)
    run = tracking._client(uri).create_run(exp).info.run_id
    tracking._client(uri).log_text(run, "hello", "reports/a.txt")
    return uri, run


def test_a_copied_runs_folder_is_refused_before_writing_into_the_original(tmp_path):
    uri, _ = _store(tmp_path / "runs")
    assert tracking.ensure_experiment(uri, "exp", tmp_path / "runs")  # its own folder: fine
    shutil.copytree(tmp_path / "runs", tmp_path / "copy")
    with pytest.raises(ConfigError) as err:
        tracking.ensure_experiment(f"sqlite:///{tmp_path / 'copy' / 'mlflow.db'}", "exp", tmp_path / "copy")
    msg = str(err.value)
    assert f"the runs folder {(tmp_path / 'copy').resolve()} was moved or copied" in msg
    assert f"keeps artifacts in {(tmp_path / 'runs' / 'mlartifacts').resolve()}" in msg
    assert "tracking.output_dir" in msg and "\n" not in msg


def test_a_moved_runs_folder_names_the_missing_artifact_path(tmp_path):
    from impactflow.tasks.evidence import download_run_artifacts

    uri, run = _store(tmp_path / "runs")
    assert (download_run_artifacts(uri, run, tmp_path / "dl") / "reports" / "a.txt").read_text() == "hello"
    shutil.move(tmp_path / "runs", tmp_path / "moved")
    with pytest.raises(DataError) as err:
        download_run_artifacts(f"sqlite:///{tmp_path / 'moved' / 'mlflow.db'}", run, tmp_path / "dl2")
    assert f"its artifacts were recorded at {(tmp_path / 'runs' / 'mlartifacts').resolve()}" in str(err.value)
    assert "was the runs folder moved?" in str(err.value)


def test_other_stores_and_schemes_are_not_flagged(tmp_path):
    assert tracking.moved_store(None, tmp_path) is None
    assert tracking.moved_store("s3://bucket/x", tmp_path) is None
    assert tracking.moved_store((tmp_path / "mlartifacts").as_uri(), tmp_path) is None
    assert tracking.missing_artifacts("mlflow-artifacts:/1/abc/artifacts") is None
    assert tracking.missing_artifacts(tmp_path.as_uri()) is None


def test_one_store_for_several_runs_folders_is_not_a_move(tmp_path):
    """MLFLOW_TRACKING_URI names one SQLite file outside the runs folders and each run sends its
    files to another tracking.output_dir: the experiment's artifacts stay in the first folder,
    which is fine while that folder exists; gone, it is one clear line."""
    db = tmp_path / "store" / "mlflow.db"
    first = tmp_path / "first" / "mlartifacts"
    first.mkdir(parents=True)
    assert tracking.sqlite_path(f"sqlite:///{db}") == db
    assert tracking.sqlite_path("postgresql://u@h/db") is None
    assert tracking.moved_store(first.as_uri(), tmp_path / "second", db) is None
    shutil.rmtree(first)
    problem = tracking.moved_store(first.as_uri(), tmp_path / "second", db)
    assert problem and f"the experiment's artifact folder {first.resolve()} no longer exists" in problem
    # the store inside the runs folder (the embedded default), copied elsewhere: refused as before
    copied = tmp_path / "copy"
    problem = tracking.moved_store((tmp_path / "orig" / "mlartifacts").as_uri(), copied, copied / "mlflow.db")
    assert problem and "was moved or copied" in problem
