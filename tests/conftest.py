"""Shared fixtures: one real Prefect server for the whole session (the test harness), MLflow
on a SQLite file per test, and a runner for the real ``impactflow`` CLI process."""

from __future__ import annotations

import contextlib
import multiprocessing.process
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATASETS = ROOT.parent / "shared" / "datasets"

for key, value in {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "GX_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "MLFLOW_LOGGING_LEVEL": "ERROR",
}.items():
    os.environ.setdefault(key, value)
# signing keys of test runs (audits/evidence.py) go to a throwaway home, never ~/.impactflow
os.environ.setdefault("IMPACTFLOW_HOME", tempfile.mkdtemp(prefix="impactflow-home-"))


#: fixtures that start a server or a process: a test that uses one, directly or through another
#: fixture, is an e2e test whether or not its module says so, so the unit tier
#: (-m "not e2e and not topology") never starts one
PROCESS_FIXTURES = {"prefect_api", "cli"}


SLOW_MARKERS = ("e2e", "topology")
#: short system commands that libraries run once and cache (platform's ``uname -p``, ctypes'
#: ``ldconfig``/``gcc`` library search, git for provenance): allowed, since which test runs
#: first, and so pays for the probe, depends on the order; any other program is refused
PROBES = {"uname", "ldconfig", "gcc", "cc", "ld", "git", "lscpu", "nvidia-smi"}
_POPEN = subprocess.Popen
UNMARKED_PROCESS = (
    "{test} starts a process ({what}) but is not marked e2e: the unit tier "
    '(-m "not e2e and not topology") must start none; mark it @pytest.mark.e2e'
)


def _slow(item) -> bool:
    return any(item.get_closest_marker(m) is not None for m in SLOW_MARKERS)


@contextlib.contextmanager
def _no_process(item):
    """While an unmarked test sets up and runs, starting a process fails it, naming the test:
    the unit tier stays free of processes because a test that starts one must say so."""
    if _slow(item):
        yield
        return

    def refuse(what):
        def start(*args, **kwargs):
            if what == "subprocess":
                command = args[0] if args else kwargs.get("args")
                program = command.split()[0] if isinstance(command, str) else os.fspath(list(command)[0])
                if os.path.basename(program) in PROBES:
                    return _POPEN(*args, **kwargs)
                what_shown = command
            else:
                what_shown = what
            raise RuntimeError(UNMARKED_PROCESS.format(test=item.nodeid, what=what_shown))

        return start

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(subprocess, "Popen", refuse("subprocess"))
        mp.setattr(os, "fork", refuse("os.fork"))
        mp.setattr(os, "posix_spawn", refuse("os.posix_spawn"))
        mp.setattr(multiprocessing.process.BaseProcess, "start", refuse("multiprocessing"))
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    with _no_process(item):
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    with _no_process(item):
        yield


@pytest.hookimpl(tryfirst=True)  # before -m deselects: a marker added later would not count
def pytest_collection_modifyitems(config, items):
    for item in items:
        # (``any(item.iter_markers(...) for ...)`` was always true: a generator is truthy, so
        # until 2026-12-04 no test was marked here and the unit tier started CLI processes)
        if PROCESS_FIXTURES & set(getattr(item, "fixturenames", ())) and not _slow(item):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def prefect_api(tmp_path_factory):
    """A real (temporary) Prefect server for every flow run of the session; yields its API URL."""
    os.environ["PREFECT_HOME"] = str(tmp_path_factory.mktemp("prefect_home"))
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield PREFECT_API_URL.value()


@pytest.fixture
def mlflow_uri(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


@pytest.fixture
def cli(prefect_api, tmp_path):
    """Run the installed ``impactflow`` CLI as a real process against the session's server."""

    def run(
        *args: str,
        uri: str | None = None,
        cwd: Path | None = None,
        installed: Path | None = None,
        pythonpath: str | None = None,
    ) -> subprocess.CompletedProcess:
        """``installed``: a folder impactflow was pip-installed into (``pip install --target``):
        its ``bin/impactflow`` runs, importing the project from that folder only (``pythonpath``:
        the whole PYTHONPATH to use instead, e.g. with other packages in front)."""
        # the CLI sees only the tracking store this call names: a URI left in the test process's
        # environment must not leak into it (`impactflow ui` would start a real server on it)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST") and k != "MLFLOW_TRACKING_URI"}
        env["PREFECT_API_URL"] = prefect_api
        if uri:
            env["MLFLOW_TRACKING_URI"] = uri
        command = [sys.executable, "-m", "impactflow.flows.cli"]
        if installed is not None:
            env["PYTHONPATH"] = pythonpath or str(installed)
            command = [str(installed / "bin" / "impactflow")]
        return subprocess.run(
            [*command, *args],
            cwd=cwd or tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )

    return run
