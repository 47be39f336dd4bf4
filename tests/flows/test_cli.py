"""The CLI as a user meets it: a real process, exit codes, no tracebacks for user mistakes."""

from __future__ import annotations

import gzip
import subprocess
import sys

import pytest

from impactflow.flows.cli import EXIT_ERROR, EXIT_USAGE


@pytest.mark.e2e  # starts a process
def test_help_is_light_and_lists_the_commands():
    code = (
        "import sys; from typer.testing import CliRunner; from impactflow.flows.cli import app;"
        "r = CliRunner().invoke(app, ['--help']); print(r.exit_code); print(r.output);"
        "print('HEAVY', sorted(m for m in ('torch','prefect','mlflow','great_expectations','opacus','pandas')"
        " if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout
    assert out.splitlines()[0] == "0"
    for command in ("run", "validate", "ui", "presets"):
        assert command in out
    assert "HEAVY []" in out


def test_usage_error_exits_2(cli):
    r = cli("run", "--no-such-flag")
    assert r.returncode == EXIT_USAGE


@pytest.mark.parametrize(
    "args, message",
    [
        (["--set", "train.epochz=1"], "train.epochz: unknown key"),
        (["--set", "model.family=quantum"], "unknown model family"),
        (["--set", "data.path=/no/such/adult.csv"], "data.path: file not found: /no/such/adult.csv"),
        (["--config", "nope"], "no such preset or file"),
        (["--set", "privacy.delta=-1"], "privacy.delta"),
    ],
)
def test_bad_config_fails_before_any_task(cli, tmp_path, args, message):
    r = cli("run", *args, uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert r.returncode == EXIT_ERROR, r.stderr
    assert message in r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    assert not (tmp_path / "mlflow.db").exists(), "a run was tracked although the config was invalid"


def _adult_frame(n=6000):
    from impactflow.data_contracts import get_contract, load_dataset

    df = load_dataset(get_contract("adult"))
    return df.groupby("race", sort=False).head(n // 5).reset_index(drop=True)


def _corrupt(kind, path):
    """Write one corrupted copy of Adult (headered CSV unless the corruption is the format)."""
    df = _adult_frame()
    if kind == "dropped column":
        df = df.drop(columns=["education"])
    elif kind == "wrong dtype":
        df["age"] = df["age"].astype(object)
        df.loc[3, "age"] = "forty"
    elif kind == "unseen category":
        df.loc[7, "workclass"] = "Space-agency"
    elif kind == "non-binary label":
        df.loc[11, "income"] = "maybe"
    elif kind == "empty file":
        path.write_text("")
        return path
    elif kind == "truncated gzip":
        data = gzip.compress(df.to_csv(index=False).encode())
        path = path.with_suffix(".csv.gz")
        path.write_bytes(data[: len(data) // 2])
        return path
    df.to_csv(path, index=False)
    return path


@pytest.mark.parametrize(
    "kind, expected",
    [
        ("dropped column", ["expect_table_columns_to_match_set", "education"]),
        ("wrong dtype", ["column 'age'", "'forty'"]),
        ("unseen category", ["column 'workclass'", "'Space-agency'", "1 of"]),
        ("non-binary label", ["column 'income'", "'maybe'"]),
        ("empty file", ["adult_bad.csv: no data rows"]),
        ("truncated gzip", ["truncated"]),
    ],
)
def test_corrupted_input_gives_clear_error_and_registers_nothing(cli, tmp_path, kind, expected):
    bad = _corrupt(kind, tmp_path / "adult_bad.csv")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    r = cli("run", "--set", f"data.path={bad}", "--set", f"tracking.output_dir={tmp_path / 'runs'}", uri=uri)
    out = r.stdout + r.stderr
    assert r.returncode == EXIT_ERROR, out
    for text in expected:
        assert text in out, f"{text!r} not in:\n{out}"
    assert "Traceback" not in out
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert runs, "the failed run should still be recorded (as FAILED)"
    assert all(run.info.status == "FAILED" for run in runs)
    assert not any(run.data.tags.get("impactflow.gates") == "passed" for run in runs)
    assert not any("mlflow.parentRunId" in run.data.tags for run in runs), "a model run was logged"


def test_ui_without_a_tracking_store_says_how_to_get_one(cli, tmp_path):
    r = cli("ui", "--output-dir", str(tmp_path / "nothing-here"))
    assert r.returncode == EXIT_ERROR
    assert "run `impactflow run` first or set MLFLOW_TRACKING_URI" in r.stderr
    assert "Traceback" not in r.stderr


def test_validate_command_accepts_the_shipped_data(cli):
    r = cli("validate")
    assert r.returncode == 0, r.stderr
    assert "48842 rows meet contract 'adult' (57 expectations)" in r.stdout
