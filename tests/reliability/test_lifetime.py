"""Nothing a killed CLI started outlives it (flows/lifetime.py): the temporary Prefect server of
a SIGKILLed or SIGTERMed `impactflow run` is gone afterwards, and a SIGTERM ends the run KILLED."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from impactflow.flows import lifetime
from tests.conftest import ROOT

# every test here starts processes: outside the fast tier
pytestmark = [pytest.mark.e2e, pytest.mark.skipif(not lifetime.supported(), reason="needs Linux /proc")]


def _wait(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] == "Z"  # a zombie has ended
    except OSError:
        return True


def test_descendants_are_found_through_grandchildren_and_not_beyond():
    # one process that starts a grandchild: both are found, the test process itself is not.
    # Only this test's own tree is looked at and killed: the test process has other children
    # (the session's Prefect server), which must survive this test.
    proc = subprocess.Popen(
        [sys.executable, "-c", "import subprocess,sys,time; subprocess.Popen(['sleep','30']); time.sleep(30)"]
    )
    try:
        below = _wait(lambda: (d := lifetime.descendants(proc.pid)) and len(d) == 1 and d, 10, "the grandchild")
        found = lifetime.descendants(os.getpid())
        assert proc.pid in found
        assert os.getpid() not in found
        assert set(below) <= set(found)  # the grandchild `sleep`, found through its parent
        assert proc.pid not in below
    finally:
        for pid in lifetime.descendants(proc.pid):
            os.kill(pid, signal.SIGKILL)
        proc.kill()
        proc.wait()


def test_reap_spares_a_process_whose_pid_was_reused():
    proc = subprocess.Popen(["sleep", "30"])
    try:
        # the recorded start time is not this process's: it is another process under a reused pid
        assert lifetime.reap({proc.pid: "1"}, grace_s=0.1) == []
        assert proc.poll() is None
        start = lifetime.descendants(os.getpid())[proc.pid]
        assert lifetime.reap({proc.pid: start}, grace_s=5) == [proc.pid]
        assert proc.wait(timeout=10) == -signal.SIGTERM
    finally:
        if proc.poll() is None:
            proc.kill()


def test_guard_kills_what_a_sigkilled_parent_left_behind(tmp_path):
    """A parent that starts the guard and a long-lived child, then is SIGKILLed: the child (an
    orphan, reparented away) is ended by the guard within a few poll intervals."""
    pidfile = tmp_path / "child.pid"
    script = textwrap.dedent(f"""
        import subprocess, sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from impactflow.flows import lifetime
        lifetime.start_guard()
        child = subprocess.Popen(["sleep", "120"])
        open({str(pidfile)!r}, "w").write(str(child.pid))
        time.sleep(120)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script])
    child_pid = int(_wait(lambda: pidfile.exists() and pidfile.read_text(), 30, "the child's pid"))
    time.sleep(3 * lifetime.POLL_S)  # the guard has recorded it
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    assert not _gone(child_pid)
    _wait(lambda: _gone(child_pid), 15, f"orphan {child_pid} to be ended by the guard")


def _temporary_server(cli_pid: int) -> int | None:
    for pid in lifetime.descendants(cli_pid):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"prefect.server.api.server:create_app" in cmd:
            return pid
    return None


def _cli(tmp_path: Path) -> subprocess.Popen:
    """A real `impactflow run` with no PREFECT_API_URL: Prefect starts its temporary server."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "PREFECT_API_URL", "MLFLOW_TRACKING_URI"))
    }
    env.update(PYTHONPATH=str(ROOT), PREFECT_HOME=str(tmp_path / "prefect_home"), IMPACTFLOW_WARM="off")
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "impactflow.flows.cli",
            "run",
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
            "--set",
            f"tracking.output_dir={tmp_path / 'impactflow_runs'}",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killed_cli_leaves_no_temporary_prefect_server(tmp_path, sig):
    proc = _cli(tmp_path)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        server = _wait(lambda: proc.poll() is None and _temporary_server(proc.pid), 240, "Prefect's temporary server")
        # wait until training has begun (the MLflow runs exist) so the run has state to end
        _wait(lambda: proc.poll() is not None or "train " in "".join(lines), 240, "training to start")
        time.sleep(3)
        assert proc.poll() is None, "".join(lines)
        proc.send_signal(sig)
        proc.wait(timeout=120)
        reader.join(timeout=30)
        out = "".join(lines)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    _wait(lambda: _gone(server), 30, f"temporary Prefect server {server} to end")
    if sig == signal.SIGTERM:
        # unwound like Ctrl-C: one error line, exit 130, the MLflow runs ended KILLED
        assert proc.returncode == 130, out
        assert "terminated by SIGTERM" in out and "Traceback" not in out, out
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'impactflow_runs' / 'mlflow.db'}")
        runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
        assert runs and {r.info.status for r in runs} == {"KILLED"}, [(r.info.run_name, r.info.status) for r in runs]
