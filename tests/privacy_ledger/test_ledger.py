"""The privacy-budget ledger: composition, persistence across processes, refusal before
training, and no lost update when processes reserve at the same time (SQLite and PostgreSQL)."""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from impactflow.tasks.ledger_store import COMPOSITION, BudgetExceeded, Ledger, compose, ledger_url, planned_models

ROOT = Path(__file__).resolve().parents[2]
SHA = "ab" * 32
OTHER = "cd" * 32


def _dp(eps, delta=1e-5, model="mlp-dp"):
    return {"model": model, "private": True, "epsilon": eps, "delta": delta, "accountant": "prv"}


def test_compose_is_basic_composition_with_infinity_for_non_private_models():
    entries = [{"private": True, "epsilon": 0.5, "delta": 1e-5}, {"private": True, "epsilon": 1.25, "delta": 2e-5}]
    got = compose(entries)
    assert got["epsilon"] == 1.75 and got["delta"] == pytest.approx(3e-5, rel=1e-12)  # Dwork & Roth Thm 3.16
    assert got["n_private"] == 2 and got["n_non_private"] == 0 and got["composition"] == COMPOSITION
    got = compose([*entries, {"private": False, "epsilon": None, "delta": None}])
    assert math.isinf(got["epsilon"]) and got["epsilon_private"] == 1.75 and got["n_non_private"] == 1
    assert math.isinf(compose([{"private": True, "epsilon": None, "delta": 1e-5}])["epsilon"])  # unknown != 0
    assert compose([{"private": True, "epsilon": 0.1, "delta": 0}] * 10)["epsilon"] == 1.0  # fsum: 10 x 0.1 == 1.0


def test_planned_models_and_noise_multiplier_budget_refusal():
    priv = {"enabled": True, "target_epsilon": 2.0, "delta": 1e-5, "accountant": "prv", "budget_epsilon": 5.0}
    models = planned_models(priv, "mlp", ["logreg"])
    assert models[0] == _dp(2.0) and models[1] == {"model": "baseline-logreg", "private": False}
    # the privacy audit's canary model and LiRA reference models are trained on the same data
    audit = planned_models(priv, "mlp", [], canaries=500, reference_models=2)
    assert [m["model"] for m in audit] == [
        "mlp-dp",
        "mlp-dp-canary-audit",
        "mlp-dp-lira-reference-1",
        "mlp-dp-lira-reference-2",
    ]
    assert all(m["private"] and m["epsilon"] == 2.0 for m in audit)
    plain = planned_models({**priv, "enabled": False}, "mlp", [], canaries=0, reference_models=1)
    assert plain == [{"model": "mlp", "private": False}, {"model": "mlp-lira-reference-1", "private": False}]
    from impactflow.errors import ConfigError

    with pytest.raises(ConfigError, match="budget_epsilon needs privacy.target_epsilon"):
        planned_models({**priv, "target_epsilon": None, "noise_multiplier": 1.0}, "mlp", [])


def test_ledger_url_precedence(tmp_path, monkeypatch):
    monkeypatch.delenv("IMPACTFLOW_LEDGER_URL", raising=False)
    assert ledger_url(tmp_path) == f"sqlite:///{tmp_path.resolve() / 'privacy_ledger.db'}"
    monkeypatch.setenv("IMPACTFLOW_LEDGER_URL", "sqlite:///env.db")
    assert ledger_url(tmp_path) == "sqlite:///env.db"
    assert ledger_url(tmp_path, "sqlite:///cli.db") == "sqlite:///cli.db"


@pytest.mark.e2e  # starts a process
def test_reserve_finalize_refuse_and_survive_a_restart(tmp_path):
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    led = Ledger(url)
    (a,) = led.reserve(SHA, "adult", "run1", [_dp(2.0)], budget_epsilon=5.0)
    assert led.summary(SHA)["epsilon"] == 2.0 and led.summary(SHA)["reserved"] == 1  # planned counts
    led.finalize(a, 1.5)  # the accountant spent less than planned (early stopping)
    led.reserve(SHA, "adult", "run2", [_dp(3.0)], budget_epsilon=5.0)
    led.reserve(OTHER, "sms_spam", "run3", [_dp(4.0)], budget_epsilon=5.0)  # budgets are per dataset
    with pytest.raises(BudgetExceeded) as err:
        led.reserve(SHA, "adult", "run4", [_dp(1.0)], budget_epsilon=5.0)  # 1.5 + 3 + 1 > 5
    msg = str(err.value)
    assert SHA[:12] in msg and "spent epsilon=4.5" in msg and "needs epsilon=1" in msg and "budget epsilon=5" in msg
    led.close()
    # a new process (a restart) reads the same totals from the file
    code = (
        "from impactflow.tasks.ledger_store import Ledger; import sys; s = Ledger(sys.argv[1]).summary(sys.argv[2]); "
        "print(s['entries'], s['epsilon'], s['remaining_epsilon'])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, url, SHA],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert out.stdout.split() == ["2", "4.5", "0.5"]  # the refused run left nothing behind


def test_non_private_models_count_as_infinity_against_a_budget(tmp_path):
    led = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    led.reserve(SHA, "adult", "run1", [{"model": "mlp", "private": False}])  # no budget: recorded
    s = led.summary(SHA)
    assert math.isinf(s["epsilon"]) and s["n_non_private"] == 1
    with pytest.raises(BudgetExceeded, match="1 non-private model"):
        led.reserve(SHA, "adult", "run2", [_dp(1.0)], budget_epsilon=100.0)


def test_delta_budget(tmp_path):
    led = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    led.reserve(SHA, "adult", "r1", [_dp(1.0, delta=1e-5)], budget_delta=1.5e-5)
    with pytest.raises(BudgetExceeded, match="budget delta=1.5e-05"):
        led.reserve(SHA, "adult", "r2", [_dp(1.0, delta=1e-5)], budget_delta=1.5e-5)


def _slow_compose(entries):
    """compose() that takes 0.2 s: widens the read-check-insert window so that, without the
    per-dataset lock, every process would read the same total (the lost update this test guards)."""
    time.sleep(0.2)
    return compose(entries)


def _reserve_one(url: str, start_at: float, queue) -> None:
    import impactflow.tasks.ledger_store as ledger_store

    ledger_store.compose = _slow_compose
    led = Ledger(url)
    while time.time() < start_at:  # all processes hit the ledger at the same moment
        time.sleep(0.001)
    try:
        led.reserve(SHA, "adult", f"run-{os.getpid()}", [_dp(1.0)], budget_epsilon=5.0)
        queue.put("ok")
    except BudgetExceeded:
        queue.put("refused")
    finally:
        led.close()


def _race(url: str, n: int = 8) -> list[str]:
    Ledger(url).close()  # the table exists before the race (creation races are covered by _ensure_schema)
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    start_at = time.time() + 5  # spawned children need a few seconds to import on a busy machine
    procs = [ctx.Process(target=_reserve_one, args=(url, start_at, queue)) for _ in range(n)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    return sorted(queue.get(timeout=5) for _ in procs)


@pytest.mark.e2e  # starts a process
def test_concurrent_reservations_sqlite_no_lost_update(tmp_path):
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    results = _race(url)
    assert results == ["ok"] * 5 + ["refused"] * 3
    s = Ledger(url).summary(SHA)
    assert s["entries"] == 5 and s["epsilon"] == 5.0


@pytest.fixture
def pg_url():
    psycopg2 = pytest.importorskip("psycopg2")
    try:
        admin = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres", connect_timeout=3)
    except psycopg2.OperationalError:
        pytest.skip("no PostgreSQL at 127.0.0.1:5432")
    admin.autocommit = True
    name = f"impactflow_ledger_test_{uuid.uuid4().hex[:8]}"
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
    try:
        yield f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}"
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


@pytest.mark.e2e  # starts a process
def test_concurrent_reservations_postgresql_no_lost_update(pg_url):
    results = _race(pg_url)
    assert results == ["ok"] * 5 + ["refused"] * 3
    led = Ledger(pg_url)
    s = led.summary(SHA)
    led.close()
    assert s["entries"] == 5 and s["epsilon"] == 5.0


@pytest.mark.e2e  # starts a process
def test_budget_cli_lists_a_seeded_ledger(tmp_path):
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    led = Ledger(url)
    (a,) = led.reserve(SHA, "adult", "run-one", [_dp(2.0)], budget_epsilon=5.0)
    led.finalize(a, 1.75)
    led.reserve(SHA, "adult", "run-two", [_dp(1.0)], budget_epsilon=5.0)
    led.reserve(OTHER, "sms_spam", "run-three", [{"model": "tfidf", "private": False}])
    led.close()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    env.pop("IMPACTFLOW_LEDGER_URL", None)
    out = subprocess.run(
        [sys.executable, "-m", "impactflow.flows.cli", "budget", "--ledger", url, "--dataset", SHA[:6]],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert f"dataset {SHA[:12]} (adult)" in out.stdout and "2 run(s)" in out.stdout
    assert "1.75" in out.stdout and "reserved" in out.stdout
    assert "spent ε=2.75" in out.stdout and "budget ε=5" in out.stdout and "remaining ε=2.25" in out.stdout
    assert OTHER[:12] not in out.stdout  # filtered by prefix
    out = subprocess.run(
        [sys.executable, "-m", "impactflow.flows.cli", "budget", "--ledger", url, "--dataset", OTHER[:6]],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert "∞ (not private)" in out.stdout and "spent ε=∞" in out.stdout
    out = subprocess.run(
        [sys.executable, "-m", "impactflow.flows.cli", "budget"], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert out.returncode == 1 and "no privacy ledger at impactflow_runs/privacy_ledger.db" in out.stderr
