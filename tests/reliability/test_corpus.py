"""Every malformed input of the corpus (tests/reliability/corpus.py) is refused the same way:
a short message naming the problem, the right non-zero exit, no traceback, no model
registered, no report written, and any MLflow run it opened marked FAILED.

Most cases run the CLI in-process (Typer's runner; an unhandled exception would show as
``result.exception`` that is not ``SystemExit``); two run as real processes to prove that
stderr carries no traceback. ``pytest --collect-only -q tests/reliability/test_corpus.py``
lists the cases.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest

from tests.reliability.corpus import CASES, Bases

FAMILIES = {"tabular", "text", "image", "recommender", "config"}


@pytest.fixture(scope="session")
def bases() -> Bases:
    return Bases()


@pytest.fixture
def in_process_cli(prefect_api, tmp_path, monkeypatch):
    """``impactflow`` in this process, in ``tmp_path``, with the embedded tracking store under
    ``impactflow_runs/`` there; the environment the CLI sets up is restored afterwards."""
    from typer.testing import CliRunner

    from impactflow.flows.cli import app

    saved = dict(os.environ)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)

    def run(*args: str):
        return CliRunner().invoke(app, ["run", *args])

    yield run
    os.environ.clear()
    os.environ.update(saved)


def test_the_corpus_covers_every_family_and_at_least_40_cases():
    counts = Counter(c.family for c in CASES)
    assert len(CASES) >= 40, len(CASES)
    assert set(counts) == FAMILIES and min(counts.values()) >= 5, counts
    assert len({c.name for c in CASES}) == len(CASES), "case names must be unique"
    print("\n".join(f"{c.family:12s} {c.name}" for c in CASES))


def _assert_nothing_complete(tmp: Path, reaches_flow: bool) -> None:
    assert not list(tmp.rglob("impact_report.*")), "a report was written for a refused input"
    assert not list(tmp.rglob("*.tmp")), "a temporary file was left behind"
    db = tmp / "impactflow_runs" / "mlflow.db"
    if not reaches_flow:
        assert not db.exists(), "a run was tracked although the config was refused"
        return
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    assert client.search_registered_models() == [], "a model was registered"
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert runs, "the refused run should be recorded, as FAILED"
    assert {r.info.status for r in runs} == {"FAILED"}
    assert not any("mlflow.parentRunId" in r.data.tags for r in runs), "a model run was logged"
    assert all(r.data.tags.get("impactflow.error") for r in runs), "the FAILED run does not say why"


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_refused_cleanly(case, bases, in_process_cli, tmp_path):
    args = case.build(tmp_path, bases)
    result = in_process_cli(*args)
    out = result.output
    assert result.exit_code == case.exit_code, out
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"unhandled {type(result.exception).__name__}: {result.exception}"
    )
    assert "Traceback" not in out
    for text in case.expect:
        assert text in out, f"{text!r} not in:\n{out}"
    _assert_nothing_complete(tmp_path, case.reaches_flow)


@pytest.mark.parametrize("name", ["tabular-non-utf8", "config-python-object-tag"])
def test_real_process_prints_no_traceback(name, bases, cli, tmp_path):
    case = next(c for c in CASES if c.name == name)
    r = cli("run", *case.build(tmp_path, bases), cold=True)  # a fresh interpreter's own entry point
    assert r.returncode == case.exit_code, r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    for text in case.expect:
        assert text in r.stderr, r.stderr
    _assert_nothing_complete(tmp_path, case.reaches_flow)
