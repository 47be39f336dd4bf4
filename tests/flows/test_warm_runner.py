"""The warm runner (flows/warm.py): `impactflow run` forked from a process with the libraries
already imported, with the CLI as its front (exit status, signals, a killed CLI kills the run),
and a cold run, with the reason said, whenever the fork could differ from a fresh process."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from impactflow.flows import warm
from impactflow.flows.cli import WARM_ENTRY
from tests.conftest import start_warm_runner, stop_warm_runner

FAST = [
    "-c",
    "text",
    "--set",
    "data.sample=800",
    "--set",
    "model.params.epochs=1",
    "--set",
    "model.baselines=[]",
    "--set",
    "gates.identity.counterfactual_sample=50",
    "--set",
    "privacy_audit.canaries=0",
]
SLOW = [
    "-c",
    "text",
    "--set",
    "data.sample=1500",
    "--set",
    "model.baselines=[]",
    "--set",
    "model.params.epochs=500",
    "--set",
    "model.params.patience=1000",
]


# --------------------------------------------------------------------------- unit


def _request(**over):
    req = {
        "executable": sys.executable,
        "fingerprint": "abc",
        "env": {"PREFECT_API_URL": "http://x/api", "PATH": "/bin", "MLFLOW_TRACKING_URI": "sqlite:///a.db"},
    }
    return {**req, **over}


def test_refusal_names_what_differs_and_ignores_per_call_variables():
    started_with = warm.import_environment(
        {"PREFECT_API_URL": "http://x/api", "PATH": "/usr/bin", "MLFLOW_TRACKING_URI": "sqlite:///b.db"}
    )
    assert started_with == {"PREFECT_API_URL": "http://x/api"}  # PATH and the tracking URI are per call
    assert warm.refusal(_request(), "abc", started_with) is None
    env = {**_request()["env"], "PREFECT_LOGGING_LEVEL": "DEBUG"}
    assert (
        warm.refusal(_request(env=env), "abc", started_with)
        == "environment variable PREFECT_LOGGING_LEVEL differs from when it started"
    )
    env = {**_request()["env"], "OMP_NUM_THREADS": "1"}
    assert "OMP_NUM_THREADS" in warm.refusal(_request(env=env), "abc", started_with)
    env = {k: v for k, v in _request()["env"].items() if k != "PREFECT_API_URL"}  # unset counts too
    assert "PREFECT_API_URL" in warm.refusal(_request(env=env), "abc", started_with)
    assert "code or installed packages changed" in warm.refusal(_request(fingerprint="def"), "abc", started_with)
    assert "/other/python" in warm.refusal(_request(executable="/other/python"), "abc", started_with)


def test_fingerprint_follows_the_package_files(tmp_path, monkeypatch):
    for pkg in warm.PACKAGES:
        (tmp_path / pkg / "__pycache__").mkdir(parents=True)
        (tmp_path / pkg / "__init__.py").write_text("")
    monkeypatch.setattr(warm, "ROOT", tmp_path)
    first = warm.code_fingerprint()
    assert warm.code_fingerprint() == first
    (tmp_path / "tasks" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"compiled")  # not the code
    assert warm.code_fingerprint() == first
    (tmp_path / "audits" / "templates").mkdir()
    (tmp_path / "audits" / "templates" / "report.html").write_text("<p>")  # package data counts
    second = warm.code_fingerprint()
    assert second != first
    os.utime(tmp_path / "models" / "__init__.py", ns=(1, 1))  # an edit that keeps the size
    assert warm.code_fingerprint() != second


@pytest.mark.e2e  # starts a process
def test_no_recorded_runner_means_a_cold_run(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path))
    assert warm.delegate(["impactflow", "run"]) is None
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # a pid that has exited
    warm.state_file().write_text(json.dumps({"pid": proc.pid, "socket": str(tmp_path / "none.sock")}))
    assert warm.delegate(["impactflow", "run"]) is None
    assert "is not running; running cold" in capsys.readouterr().err
    assert warm.running() is None


@pytest.mark.e2e  # starts a process
def test_a_recycled_pid_is_neither_used_nor_killed(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path))
    other = subprocess.Popen(["sleep", "60"], start_new_session=True)  # alive, but not a warm runner
    try:
        sock = tmp_path / "runner.sock"
        sock.touch()
        warm.state_file().write_text(json.dumps({"pid": other.pid, "socket": str(sock)}))
        assert warm.running() is None
        assert warm.delegate(["impactflow", "run"]) is None
        assert "is not running; running cold" in capsys.readouterr().err
        assert warm.stop()["pid"] == other.pid  # forgets the state ...
        assert other.poll() is None and not warm.state_file().exists()  # ... and kills nobody
    finally:
        other.kill()
        other.wait()


def test_start_keeps_a_current_runner_and_replaces_a_stale_one(tmp_path, monkeypatch):
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path))
    current = {
        "pid": 1,
        "socket": "s",
        "python": sys.executable,
        "fingerprint": warm.code_fingerprint(),
        "environment_sha256": warm.environment_digest(warm.import_environment(dict(os.environ))),
    }
    stopped = []
    monkeypatch.setattr(warm, "stop", lambda: stopped.append(True))

    class Started(Exception):
        pass

    def popen(*a, **k):
        raise Started

    monkeypatch.setattr(subprocess, "Popen", popen)
    monkeypatch.setattr(warm, "running", lambda: current)
    assert warm.start(WARM_ENTRY)["already_running"] and not stopped
    monkeypatch.setattr(warm, "running", lambda: {**current, "fingerprint": "older code"})
    with pytest.raises(Started):
        warm.start(WARM_ENTRY)
    assert stopped == [True]
    stopped.clear()
    monkeypatch.setenv("PREFECT_LOGGING_LEVEL", "DEBUG")  # an import-time variable changed
    monkeypatch.setattr(warm, "running", lambda: current)
    with pytest.raises(Started):
        warm.start(WARM_ENTRY)
    assert stopped == [True]


def test_a_long_prefect_home_puts_the_socket_in_the_temp_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / ("x" * 120)))
    path = warm.socket_path()
    assert len(str(path)) < 100 and path.name.startswith("impactflow-warm-")
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path))
    assert warm.socket_path() == tmp_path / warm.SOCKET_NAME


FINALIZE = """
import atexit, concurrent.futures, os, sys, threading, time
from impactflow.flows import warm
pool = concurrent.futures.ThreadPoolExecutor(2)  # kept alive: its workers wait, idle, for work
pool.submit(time.sleep, 0.01).result()
def late():
    time.sleep(0.3)
    print("thread joined", flush=True)
threading.Thread(target=late).start()  # non-daemon: a fresh interpreter waits for it
atexit.register(lambda: print("atexit ran", flush=True))
warm.finalize()
print("finalized", flush=True)
os._exit(0)
"""


@pytest.mark.e2e  # starts a process
def test_a_forked_run_ends_as_a_fresh_interpreter_does_even_with_an_idle_thread_pool():
    """A forked child leaves with ``os._exit`` after ``warm.finalize``: the non-daemon thread is
    joined, the atexit handler runs after it, and the idle workers of a live ThreadPoolExecutor
    (what MLflow's artifact repository keeps for a tracking server) do not hang the exit, which
    they did while the child joined non-daemon threads without threading's exit callbacks."""
    done = subprocess.run([sys.executable, "-c", FINALIZE], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["thread joined", "atexit ran", "finalized"]


# --------------------------------------------------------------------------- real processes


@pytest.fixture(scope="module")
def runner(prefect_api, tmp_path_factory):
    """A warm runner on the session's Prefect server; yields the environment its clients use."""
    home = tmp_path_factory.mktemp("warm_home")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST") and k != "MLFLOW_TRACKING_URI"}
    env.update(PREFECT_HOME=str(home), PREFECT_API_URL=prefect_api)
    state = start_warm_runner(env)
    try:
        assert not state["already_running"] and state["not_preloaded"] == []
        assert state["gc_frozen_objects"] > 100_000  # the preloaded heap is out of the GC's sight
        assert start_warm_runner(env)["pid"] == state["pid"]  # the same environment: kept, not restarted
        recorded = json.loads((home / warm.STATE_NAME).read_text())
        assert recorded["fingerprint"] == warm.code_fingerprint()
        assert prefect_api not in json.dumps(recorded)  # a digest of the environment, never its values
        yield {"env": env, "state": state, "log": Path(state["log"])}
    finally:  # never leave a runner behind, even when a check above failed
        stopped = stop_warm_runner(env)
    assert stopped["pid"] == state["pid"]
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and _exists(state["pid"]):
        time.sleep(0.2)
    assert not _exists(state["pid"])
    assert not Path(state["socket"]).exists() and not (home / warm.STATE_NAME).exists()


def _exists(pid: int) -> bool:
    """Running or not yet reaped by its parent (a zombie counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _cli(runner, cwd, *args, **popen):
    return subprocess.Popen(
        [sys.executable, "-m", "impactflow.flows.cli", "run", *args], cwd=cwd, env=runner["env"], text=True, **popen
    )


def _forked_runs(runner) -> int:
    return runner["log"].read_text().count("run pid ")


def test_a_run_forks_from_the_warm_runner(runner, tmp_path):
    proc = _cli(runner, tmp_path, *FAST, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode in (0, 3), err[-3000:]
    child = re.search(r"warm runner: run process (\d+)", out)
    assert child and int(child.group(1)) != proc.pid, out[:2000]
    assert "warm runner not used" not in err and "Traceback" not in err
    report = re.search(r"Report:\s+\S+\.html\s+(\S+impact_report\.json)", out)
    doc = json.loads(Path(report.group(1)).read_text())
    assert doc["run"]["preset"] == "text"
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'impactflow_runs' / 'mlflow.db'}")
    assert client.get_run(doc["run"]["run_id"]).info.status == "FINISHED"

    # the same command cold, in its own folder: the fork computes exactly what a fresh process does
    cold_dir = tmp_path / "cold"
    cold_dir.mkdir()
    cold = subprocess.run(
        [sys.executable, "-m", "impactflow.flows.cli", "run", *FAST],
        cwd=cold_dir,
        env={**runner["env"], "IMPACTFLOW_WARM": "off"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert cold.returncode == proc.returncode and "warm runner" not in cold.stdout + cold.stderr
    cold_doc = json.loads(
        next((cold_dir / "impactflow_runs" / "runs").glob("*/reports/impact_report.json")).read_text()
    )
    metrics = {m["name"]: {a: r["metrics"] for a, r in m["audits"].items()} for m in doc["models"]}
    assert metrics == {m["name"]: {a: r["metrics"] for a, r in m["audits"].items()} for m in cold_doc["models"]}
    assert metrics["transformer"]["performance"]["eval/accuracy"] > 0


def test_an_audit_forks_from_the_warm_runner_too(runner, tmp_path):
    from impactflow.data_contracts import get_contract, load_dataset

    df = load_dataset(get_contract("adult")).head(2000)
    table = df[["income", "sex"]].assign(pred=df["income"])  # a perfect "model" (parity gates may still fail)
    table.to_csv(tmp_path / "preds.csv", index=False)
    before = _forked_runs(runner)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "impactflow.flows.cli",
            "audit",
            "--data",
            str(tmp_path / "preds.csv"),
            "--label",
            "income",
            "--prediction",
            "pred",
            "--sensitive",
            "sex",
            "--positive-label",
            ">50K",
            "--output-dir",
            str(tmp_path / "runs"),
        ],
        cwd=tmp_path,
        env=runner["env"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode in (0, 3), proc.stdout[-2000:] + proc.stderr[-2000:]  # 3: a gate failed
    assert "warm runner: run process" in proc.stdout and "report verify" in proc.stdout
    assert _forked_runs(runner) == before + 1


def test_validate_forks_from_the_warm_runner(runner, tmp_path):
    before = _forked_runs(runner)
    proc = subprocess.run(
        [sys.executable, "-m", "impactflow.flows.cli", "validate", "-c", "tabular"],
        cwd=tmp_path,
        env=runner["env"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0 and "48842 rows meet contract 'adult'" in proc.stdout, proc.stdout + proc.stderr
    assert _forked_runs(runner) == before + 1


def test_the_childs_exit_status_is_the_clis(runner, tmp_path):
    before = _forked_runs(runner)
    proc = _cli(runner, tmp_path, "-c", "no-such-preset", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1 and "no-such-preset" in err and "Traceback" not in err
    assert _forked_runs(runner) == before + 1  # it was the warm runner's child that failed


def test_a_different_import_time_environment_runs_cold_and_says_why(runner, tmp_path):
    before = _forked_runs(runner)
    env = {**runner["env"], "PREFECT_LOGGING_LEVEL": "DEBUG"}
    proc = subprocess.run(
        [sys.executable, "-m", "impactflow.flows.cli", "run", "-c", "no-such-preset"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "warm runner not used: environment variable PREFECT_LOGGING_LEVEL differs" in proc.stderr
    assert proc.returncode == 1 and "no-such-preset" in proc.stderr  # the cold run's own answer
    assert _forked_runs(runner) == before
    off = {**runner["env"], "IMPACTFLOW_WARM": "off"}  # a deliberate cold run: no note
    proc = subprocess.run(
        [sys.executable, "-m", "impactflow.flows.cli", "run", "-c", "no-such-preset"],
        cwd=tmp_path,
        env=off,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1 and "warm runner" not in proc.stderr and _forked_runs(runner) == before


def _started_child(proc) -> int:
    for line in proc.stdout:  # the first line the child prints names it
        m = re.search(r"warm runner: run process (\d+)", line)
        if m:
            return int(m.group(1))
    raise AssertionError("the run never said it was forked")


def _wait_gone(pid: int, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _exists(pid):
            return True
        time.sleep(0.2)
    return False


def test_a_killed_cli_kills_its_run(runner, tmp_path):
    proc = _cli(runner, tmp_path, *SLOW, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        child = _started_child(proc)
        time.sleep(2)
        assert _exists(child)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        assert _wait_gone(child), "the child outlived its killed CLI"
    finally:
        if proc.poll() is None:
            proc.kill()


def test_ctrl_c_reaches_the_run(runner, tmp_path):
    # stderr kept in a file: a clean-clone CI run once saw exit 1 here (not reproduced since,
    # with or without a CPU hog); the next one says why
    err = tmp_path / "stderr.txt"
    with err.open("w") as stderr:
        proc = _cli(runner, tmp_path, *SLOW, stdout=subprocess.PIPE, stderr=stderr)
    try:
        child = _started_child(proc)
        time.sleep(2)
        proc.send_signal(signal.SIGINT)  # forwarded to the child's process group
        proc.communicate(timeout=120)  # (drains stdout: a full pipe must not hold the child)
        assert proc.returncode == 130, err.read_text()[-3000:]
        assert _wait_gone(child)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_silent_or_broken_client_does_not_block_the_runner(runner, tmp_path):
    import socket as so

    silent = so.socket(so.AF_UNIX, so.SOCK_STREAM)
    silent.connect(runner["state"]["socket"])  # connects, sends nothing
    broken = so.socket(so.AF_UNIX, so.SOCK_STREAM)
    broken.connect(runner["state"]["socket"])
    so.send_fds(broken, [b"\x00\x00\x10\x00{"], [0, 1, 2])  # says 4096 bytes, sends 1, hangs up
    broken.close()
    try:
        before = _forked_runs(runner)
        proc = subprocess.run(
            [sys.executable, "-m", "impactflow.flows.cli", "run", "-c", "no-such-preset"],
            cwd=tmp_path,
            env=runner["env"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 1 and "no-such-preset" in proc.stderr
        assert _forked_runs(runner) == before + 1  # served by the warm runner, after the other two
        assert "bad request" in runner["log"].read_text()
    finally:
        silent.close()


def test_the_cli_fixture_forks_from_the_session_warm_runner_unless_asked_for_a_cold_process(cli, impactflow_process):
    """The suite's ``cli`` fixture (tests/conftest.py) forks ``validate`` (like ``run`` and
    ``audit``) from its warm runner, and runs a cold process when a test asks for one."""
    log = Path(impactflow_process.state["log"])
    before = log.read_text().count("run pid ")
    forked = cli("validate", "-c", "tabular")
    assert forked.returncode == 0, forked.stderr[-2000:]
    assert log.read_text().count("run pid ") == before + 1
    cold = cli("validate", "-c", "tabular", cold=True)
    assert cold.returncode == 0, cold.stderr[-2000:]
    assert "warm runner" not in cold.stdout + cold.stderr
    assert log.read_text().count("run pid ") == before + 1
