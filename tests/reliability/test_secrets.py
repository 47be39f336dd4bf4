"""Issue 28, defect 3: secrets stay out of what is printed, logged and visible to other users.

- `impactflow audit` (and `run`) print the tracking URI without its password, and the MLflow UI
  link carries no user:password;
- `impactflow ui` hands the store URI to MLflow in ``MLFLOW_BACKEND_STORE_URI``, never on the
  command line (``ps`` shows every local user the command line);
- a file that fails to parse (here: credentials files given as data, contract or spec) is never
  quoted in the error (which becomes the MLflow tag ``impactflow.error`` and the Prefect log);
- ``mlflow.db`` and ``privacy_ledger.db`` are created 0600; a signing key or ledger readable by
  others gets one ``warning:`` line.
"""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

import pytest

SECRET = "PLANTEDSECRET42"
PG_URI = f"postgresql+psycopg2://impactflow:{SECRET}@db.example:5432/mlflow"


@pytest.fixture
def creds(tmp_path) -> dict[str, Path]:
    """Credentials files in the formats a mistaken path would hit, each reached by a symlink."""
    files = {
        "aws": f"[default]\naws_access_key_id = AKIA{SECRET}\naws_secret_access_key = {SECRET}\n",
        "pgpass": f"db.example:5432:prod:admin:{SECRET}\n",
        "csv": f"user,{SECRET}\nadmin,{SECRET}\nroot,{SECRET}\n",
        "yaml": f"token: {SECRET}\n{SECRET} [ broken\n",
    }
    out = {}
    for name, text in files.items():
        real = tmp_path / f".{name}-credentials"
        real.write_text(text)
        (tmp_path / f"{name}.link").symlink_to(real)
        out[name] = tmp_path / f"{name}.link"
    return out


# --------------------------------------------------------------------------- printed URIs


def test_summary_prints_the_tracking_uri_without_its_password():
    """`audit` returned the raw URI in its summary and the CLI printed it (`run` redacted it)."""
    from rich.console import Console

    from impactflow.flows.cli import _print_summary

    buf = io.StringIO()
    summary = {
        "gates": [],
        "models": {},
        "status": "pass",
        "incomplete": [],
        "parent_run_id": "r1",
        "experiment": "e",
        "tracking_uri": PG_URI,
        "mlflow_url": "http://127.0.0.1:5000/#/x",
        "report": {"html": "r.html", "json": "r.json"},
    }
    _print_summary(Console(file=buf, width=200), summary)
    out = buf.getvalue()
    assert SECRET not in out
    assert "(postgresql+psycopg2://***@db.example:5432/mlflow)" in out


def test_ui_link_never_carries_user_and_password():
    from impactflow.tasks.tracking import ui_url

    assert (
        ui_url(f"https://user:{SECRET}@mlflow.example:443/", "3", "abc")
        == "https://mlflow.example:443/#/experiments/3/runs/abc"
    )
    assert ui_url(PG_URI, "3", "abc") == "http://127.0.0.1:5000/#/experiments/3/runs/abc"


def test_ui_passes_the_store_uri_in_the_environment_not_on_the_command_line(monkeypatch):
    from typer.testing import CliRunner

    import impactflow.flows.cli as cli

    seen = {}

    def fake_exec(path, argv, env=None):
        seen.update(argv=list(argv), env=dict(env or os.environ))
        raise SystemExit(0)

    monkeypatch.setattr(cli.os, "execv", lambda path, argv: fake_exec(path, argv))
    monkeypatch.setattr(cli.os, "execve", fake_exec)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", PG_URI)
    # the store is not reachable from a test (db.example): its check and tagging are not the subject
    import impactflow.tasks.tracking as tracking

    monkeypatch.setattr(tracking, "preflight", lambda uri: None)
    monkeypatch.setattr(tracking, "mark_training_experiments", lambda uri: 0)
    result = CliRunner().invoke(cli.app, ["ui", "--port", "5999"])
    assert result.exit_code == 0, result.output
    assert not any(SECRET in a for a in seen["argv"]) and "--backend-store-uri" not in seen["argv"]
    assert seen["argv"][-8:] == ["mlflow", "ui", "--host", "127.0.0.1", "--port", "5999", "--workers", "1"]
    assert seen["env"]["MLFLOW_BACKEND_STORE_URI"] == PG_URI  # the env var of --backend-store-uri
    assert SECRET not in result.output


# --------------------------------------------------------------------------- parse errors


@pytest.mark.parametrize(
    "contract, kind",
    [
        ("adult", "csv"),
        ("adult", "aws"),
        ("jigsaw", "csv"),
        ("jigsaw", "aws"),
        ("sms_spam", "pgpass"),
        ("mnist", "csv"),
        ("synthetic_ratings", "aws"),
        ("synthetic_ratings", "yaml"),
    ],
)
def test_a_file_that_fails_to_load_is_not_quoted(creds, contract, kind):
    import impactflow.data_contracts as dc
    from impactflow.errors import ImpactflowError

    with pytest.raises(ImpactflowError) as err:
        dc.load_dataset(dc.get_contract(contract), [creds[kind]])
    message = str(err.value)
    assert SECRET not in message and "aws_" not in message and "[default]" not in message
    assert str(creds[kind]) in message  # still names the file


def test_a_contract_file_that_fails_to_parse_is_not_quoted(creds):
    import impactflow.data_contracts as dc
    from impactflow.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        dc.contract_from_yaml(creds["yaml"])
    assert SECRET not in str(err.value) and str(err.value).endswith("could not find expected ':' at line 3, column 1")


def test_predictions_table_errors_quote_no_header(creds):
    """`impactflow audit --data` on a credentials file: the missing columns are named, the
    table's header (its first line) is not; a near miss of a requested name is suggested."""
    from impactflow.errors import DataError
    from impactflow.data_contracts.predictions import read_table, require_columns

    df = read_table(creds["csv"])
    with pytest.raises(DataError) as err:
        require_columns(df, ["label", "score"], creds["csv"])
    assert SECRET not in str(err.value)
    assert str(err.value).endswith("missing column(s) 'label', 'score' (the table has 2 column(s))")
    with pytest.raises(DataError) as err:
        require_columns(df, ["usr"], creds["csv"])
    assert "did you mean 'user'?" in str(err.value)


def test_parse_reason_keeps_counts_and_drops_quoted_content():
    import yaml

    from impactflow.data_contracts.files import parse_reason

    assert (
        parse_reason(ValueError(f'Unable to parse string "{SECRET}" at position 0'))
        == "Unable to parse string '…' at position 0"
    )
    assert (
        parse_reason(ValueError("Error tokenizing data. C error: Expected 15 fields in line 3, saw 16"))
        == "Error tokenizing data. C error: Expected 15 fields in line 3, saw 16"
    )
    with pytest.raises(yaml.YAMLError) as err:
        yaml.safe_load(f"a: 1\n{SECRET} [\n")
    reason = parse_reason(err.value)
    assert SECRET not in reason and "line 3" in reason
    assert parse_reason(ValueError("x" * 500)) == "ValueError"


def test_files_with_different_columns_are_named_by_position(tmp_path):
    from impactflow.errors import DataError
    from impactflow.data_contracts.files import concat_frames
    import pandas as pd

    a, b = pd.DataFrame({"x": [1], "y": [2]}), pd.DataFrame({"x": [1], SECRET: [2]})
    with pytest.raises(DataError) as err:
        concat_frames([a, b], [tmp_path / "a.csv", tmp_path / "b.csv"])
    assert SECRET not in str(err.value) and "first difference: column 2" in str(err.value)


# --------------------------------------------------------------------------- file modes


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_stores_are_created_private(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("IMPACTFLOW_LEDGER_URL", raising=False)
    old = os.umask(0o022)  # the usual umask, which made both 0644
    try:
        from impactflow.tasks.ledger_store import Ledger, ledger_url
        from impactflow.tasks.tracking import tracking_uri

        uri = tracking_uri(tmp_path / "runs")
        ledger = Ledger(ledger_url(tmp_path / "runs"))
        assert ledger.entries() == []  # a usable (empty) ledger
        ledger.close()
    finally:
        os.umask(old)
    assert uri == f"sqlite:///{(tmp_path / 'runs' / 'mlflow.db').resolve()}"
    assert _mode(tmp_path / "runs" / "mlflow.db") == 0o600
    assert _mode(tmp_path / "runs" / "privacy_ledger.db") == 0o600


def test_a_ledger_readable_by_others_gets_one_warning(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("IMPACTFLOW_LEDGER_URL", raising=False)
    from impactflow.tasks.ledger_store import Ledger, ledger_url

    Ledger(ledger_url(tmp_path)).close()
    assert capsys.readouterr().err == ""
    os.chmod(tmp_path / "privacy_ledger.db", 0o644)
    Ledger(ledger_url(tmp_path)).close()
    Ledger(ledger_url(tmp_path)).close()
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"warning: privacy ledger {tmp_path / 'privacy_ledger.db'} is readable by other users "
        f"(mode 0644); run: chmod 600 {tmp_path / 'privacy_ledger.db'}"
    ]


def test_a_signing_key_readable_by_others_gets_a_warning(tmp_path, capsys):
    from impactflow.audits import evidence as ev

    key = tmp_path / "keys" / "ed25519.pem"
    ev.ensure_signing_key(key)
    assert _mode(key) == 0o600 and "warning:" not in capsys.readouterr().err
    os.chmod(key, 0o640)
    ev.load_or_create_signing_key(key)
    err = capsys.readouterr().err
    assert err.startswith(f"warning: signing key {key} is readable by other users (mode 0640)")
