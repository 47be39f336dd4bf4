"""Bad text input through the real CLI process: a clear error, exit 1, no traceback, nothing registered."""

from __future__ import annotations

import pytest

EXIT_ERROR = 1


@pytest.mark.parametrize(
    "content, expected",
    [
        (b"", ["no data rows"]),
        (
            b"ham\thello there\nspam\tWIN cash\nmaybe\tsee you\n" * 10,
            ["Data contract 'sms_spam' failed", "column 'label'", "'maybe'"],
        ),
    ],
)
def test_bad_sms_file_gives_a_clear_error_and_registers_nothing(cli, tmp_path, content, expected):
    bad = tmp_path / "sms_bad.txt"
    bad.write_bytes(content)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    r = cli(
        "run",
        "--config",
        "text",
        "--set",
        f"data.path={bad}",
        "--set",
        f"tracking.output_dir={tmp_path / 'runs'}",
        uri=uri,
    )
    out = r.stdout + r.stderr
    assert r.returncode == EXIT_ERROR, out
    assert "Traceback" not in out
    for text in expected:
        assert text in out, f"{text!r} not in:\n{out}"
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert all(run.info.status == "FAILED" for run in runs)
    assert not any("mlflow.parentRunId" in run.data.tags for run in runs), "a model run was logged"
    assert not client.search_registered_models(), "a model was registered"
