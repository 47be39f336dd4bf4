"""A new user's first hour (issue 26, CLI): a busy UI port is one error line and exit 1, the UI
starts one worker and no job runner on the training-runs view, presets that need the user's
data say so (and the run refuses before any task), early stopping is named in the progress
line, gate names are never broken, and the last line explains the exit code."""

from __future__ import annotations

import io
import socket

import pytest
from typer.testing import CliRunner

from impactflow.flows import cli
from impactflow.flows.cli import app


def test_ui_on_a_busy_port_is_one_error_line_naming_the_port(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = CliRunner().invoke(app, ["ui", "--port", str(port)])
    assert result.exit_code == 1, result.output
    assert f"port {port} on 127.0.0.1 is already in use" in result.output
    assert "--port" in result.output and "MLflow UI on" not in result.output


def test_ui_starts_one_worker_without_the_job_runner(monkeypatch):
    monkeypatch.delenv("IMPACTFLOW_UI_WORKERS", raising=False)
    monkeypatch.delenv("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", raising=False)
    cmd, env = cli.ui_command("sqlite:////x/mlflow.db", "127.0.0.1", 5001)
    assert cmd[cmd.index("--workers") + 1] == "1"
    assert env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    assert "sqlite:////x/mlflow.db" not in cmd  # the URI travels in the environment
    monkeypatch.setenv("IMPACTFLOW_UI_WORKERS", "3")
    assert cli.ui_command("sqlite:////x/mlflow.db", "127.0.0.1", 5001)[0][-1] == "3"


def test_experiments_are_tagged_for_the_training_runs_view(tmp_path):
    from mlflow import MlflowClient

    from impactflow.tasks.tracking import TRAINING_KIND, ensure_experiment, mark_training_experiments

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    exp = ensure_experiment(uri, "new", tmp_path)
    client = MlflowClient(uri)
    assert client.get_experiment(exp).tags[TRAINING_KIND[0]] == "custom_model_development"
    old = client.create_experiment("made-by-an-older-version")
    assert TRAINING_KIND[0] not in client.get_experiment(old).tags
    assert mark_training_experiments(uri) == 2  # the old one and MLflow's Default experiment
    assert client.get_experiment(old).tags[TRAINING_KIND[0]] == "custom_model_development"
    assert mark_training_experiments(uri) == 0


def test_presets_that_need_the_users_data_are_marked():
    result = CliRunner().invoke(app, ["presets"])
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line for line in result.output.splitlines() if line.strip()}
    for name in ("movielens", "recommender-dp"):
        assert "[needs your data: --set data.path=PATH]" in lines[name]
    for name in ("tabular", "text", "recommender", "image"):
        assert "needs your data" not in lines[name] and "needs your model" not in lines[name]
    for name in ("hf-text", "hf-text-dp", "hf-toxicity"):  # the hf family: a local model directory of the user's
        assert "[needs your model: --set model.params.path=DIR]" in lines[name]


def test_a_run_without_its_data_is_refused_before_any_task(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["run", "-c", "recommender-dp"])
    assert result.exit_code == 1
    assert "data.path: required: the contract 'movielens' ships no data" in result.output
    assert "--set data.path=PATH" in result.output
    assert "load data" not in result.output and not (tmp_path / "impactflow_runs").exists()


def test_progress_line_names_early_stopping():
    from rich.console import Console

    console = Console(file=io.StringIO(), width=200, force_terminal=False)
    with cli.RichReporter(console) as rep:
        rep.epoch("mlp", {"epoch": 8, "epochs": 20, "val_loss": 0.31, "best_epoch": 6, "stopped_early": 0.0})
        info = rep.progress.tasks[0].fields["info"]
        assert "stopped early" not in info
        rep.epoch("mlp", {"epoch": 9, "epochs": 20, "val_loss": 0.32, "best_epoch": 6, "stopped_early": 1.0})
        info = rep.progress.tasks[0].fields["info"]
    assert info.startswith("stopped early at epoch 9 (best 6)")


def test_training_reports_the_early_stop_to_the_progress_hook():
    import numpy as np
    import torch.nn as nn

    from impactflow.models.training import TrainSettings, train_torch

    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 3)).astype("float32")
    y = rng.integers(0, 2, size=64).astype("float32")  # noise: validation loss stops improving
    rows = []
    y = y.reshape(-1, 1)
    train_torch(
        nn.Linear(3, 1),
        X,
        y,
        X[:16],
        y[:16],
        make_criterion=lambda r: nn.BCEWithLogitsLoss(reduction=r),
        settings=TrainSettings(epochs=200, patience=2, batch_size=16, lr=0.5),
        on_epoch=rows.append,
    )
    last = rows[-1]
    assert last["stopped_early"] == 1.0 and last["epoch"] < 200
    assert last["epoch"] - last["best_epoch"] == 2  # patience 2: two epochs without a better loss
    assert all(r["stopped_early"] == 0.0 for r in rows[:-1])


GATES = [
    {
        "model": "mlp",
        "name": "fairness/intersection/sex x race/demographic_parity_difference",
        "value": 0.1234,
        "threshold": 0.1,
        "comparison": "<=",
        "status": "fail",
    },
    {
        "model": "logreg",
        "baseline": True,
        "name": "performance/accuracy",
        "value": 0.85,
        "threshold": 0.8,
        "comparison": ">=",
        "status": "pass",
    },
]


@pytest.mark.parametrize("terminal,width", [(False, 200), (True, 80), (True, 99)])
def test_gates_are_a_plain_list_when_piped_or_narrow(terminal, width):
    from rich.console import Console

    out = io.StringIO()
    cli._print_gates(Console(file=out, width=width, force_terminal=terminal, color_system=None), GATES)
    text = out.getvalue()
    assert "│" not in text and "┃" not in text
    lines = [line for line in text.splitlines() if "fairness/" in line]
    assert len(lines) == 1 and GATES[0]["name"] in lines[0]  # one line, the name whole
    assert "0.1234" in lines[0] and "<= 0.1" in lines[0] and "fail" in lines[0]


def test_a_computed_threshold_is_shown_to_six_significant_digits():
    gate = {**GATES[0], "name": "privacy/epsilon_lower_bound", "threshold": 0.9983528951770002, "value": 0.0}
    (row,) = cli.gate_rows([gate])
    assert row[3] == "<= 0.998353"
    assert cli.gate_rows([GATES[0]])[0][3] == "<= 0.1"


def test_gates_are_a_table_on_a_wide_terminal_and_names_stay_whole():
    from rich.console import Console

    out = io.StringIO()
    cli._print_gates(Console(file=out, width=160, force_terminal=True, color_system=None), GATES)
    text = out.getvalue()
    assert "│" in text or "┃" in text
    assert GATES[0]["name"] in text and "logreg (baseline)" in text


@pytest.mark.parametrize(
    "status,expected",
    [
        ("pass", "exit 0: completed, every gate was measured and passed"),
        ("fail", "exit 3: completed, a gate failed — see the report"),
        ("incomplete", "exit 3: completed, but a gate could not be measured (incomplete) — see the report"),
    ],
)
def test_the_last_line_explains_the_exit_code(status, expected):
    assert cli.exit_line({"status": status}) == expected
