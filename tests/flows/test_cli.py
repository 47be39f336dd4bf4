"""The CLI as a user meets it: a real process, exit codes, no tracebacks for user mistakes."""

from __future__ import annotations

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


# Corrupted input files (dropped column, wrong dtype, unseen category, label outside the set,
# empty file, truncated gzip) are cases of the bad-input corpus (tests/reliability/corpus.py),
# refused in-process with the same checks: exit code, message, no traceback, nothing
# registered, the MLflow run FAILED; two of them run as real processes there.


def test_ui_without_a_tracking_store_says_how_to_get_one(cli, tmp_path):
    r = cli("ui", "--output-dir", str(tmp_path / "nothing-here"))
    assert r.returncode == EXIT_ERROR
    assert "run `impactflow run` first or set MLFLOW_TRACKING_URI" in r.stderr
    assert "Traceback" not in r.stderr


def test_validate_command_accepts_the_shipped_data(cli):
    r = cli("validate")
    assert r.returncode == 0, r.stderr
    assert "48842 rows meet contract 'adult' (57 expectations)" in r.stdout
