"""Shared fixtures: one real Prefect server for the whole session (the test harness), MLflow
on a SQLite file per test, and a runner for the real ``impactflow`` CLI process."""

from __future__ import annotations

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
PROCESS_FIXTURES = {"prefect_api", "cli", "impactflow_process"}


SLOW_MARKERS = ("e2e", "topology")
#: short system commands that libraries run once and cache (platform's ``uname -p``, ctypes'
#: ``ldconfig``/``gcc`` library search, git for provenance): allowed, since which test runs
#: first, and so pays for the probe, depends on the order; any other program is refused
PROBES = {"uname", "ldconfig", "gcc", "cc", "ld", "git", "lscpu", "nvidia-smi"}
UNMARKED_PROCESS = (
    "{test} starts a process ({what}) but is not marked e2e: the unit tier "
    '(-m "not e2e and not topology") must start none; mark it @pytest.mark.e2e'
)


def _slow(item) -> bool:
    return any(item.get_closest_marker(m) is not None for m in SLOW_MARKERS)


#: the unmarked test now setting up or running (None: a marked one, or between tests)
_UNMARKED: list[str | None] = [None]
_PROCESS_EVENTS = {"subprocess.Popen", "os.fork", "os.forkpty", "os.system", "os.exec", "os.spawn", "os.posix_spawn"}


def _refuse_processes_in_unmarked_tests(event: str, args: tuple) -> None:
    """A ``sys.addaudithook`` hook (Python's own process-start events, no patched functions, so
    it cannot clash with a test's ``monkeypatch`` of ``subprocess.Popen``): while an unmarked
    test sets up or runs, starting a process fails it, naming the test, except the system
    probes of ``PROBES``."""
    test = _UNMARKED[0]
    if test is None or event not in _PROCESS_EVENTS:
        return
    shown: object = event
    if event == "subprocess.Popen":
        executable, command = args[0], args[1]
        program = executable or (command.split()[0] if isinstance(command, (str, bytes)) else list(command)[0])
        if os.path.basename(os.fsdecode(program)) in PROBES:
            return
        shown = command
    elif event == "os.posix_spawn" and os.path.basename(os.fsdecode(args[0])) in PROBES:
        return  # subprocess's own spawn of an allowed probe
    raise RuntimeError(UNMARKED_PROCESS.format(test=test, what=shown))


sys.addaudithook(_refuse_processes_in_unmarked_tests)


def _watched(item):
    """Wrap one phase of ``item`` (a new-style hook wrapper's body): while an unmarked test is in
    it, the audit hook above refuses processes."""
    _UNMARKED[0] = None if _slow(item) else item.nodeid
    try:
        return (yield)
    finally:
        _UNMARKED[0] = None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    return (yield from _watched(item))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    return (yield from _watched(item))


#: session fixtures that cost minutes (a real pipeline run of every family): pytest-xdist's
#: ``--dist loadfile`` keeps a file on one worker, so all the tests that use one of these live
#: in ONE file, or each worker that gets one of them builds it again (measured: ``real_reports``
#: was built on both workers, 165 s each). (``--dist loadgroup`` with ``xdist_group`` marks
#: would group files, but with pytest 9.2 and pytest-xdist 3.8 it silently distributes test by
#: test: xdist renames ``item._nodeid``, which pytest 9.2 no longer reads.)
SHARED_SESSION_FIXTURES = ("real_reports",)
SHARED_FIXTURE_SPLIT = "the tests that use the session fixture {name!r} are in {files}: keep them in one file"


@pytest.hookimpl(tryfirst=True)  # before -m deselects: a marker added later would not count
def pytest_collection_modifyitems(config, items):
    for item in items:
        # (``any(item.iter_markers(...) for ...)`` was always true: a generator is truthy, so
        # until 2026-12-04 no test was marked here and the unit tier started CLI processes)
        if PROCESS_FIXTURES & set(getattr(item, "fixturenames", ())) and not _slow(item):
            item.add_marker(pytest.mark.e2e)
    for name in SHARED_SESSION_FIXTURES:
        files = sorted({item.nodeid.split("::")[0] for item in items if name in getattr(item, "fixturenames", ())})
        if len(files) > 1:
            raise pytest.UsageError(SHARED_FIXTURE_SPLIT.format(name=name, files=", ".join(files)))
    # Files with topology tests first, then files with e2e tests, then the unit files: pytest-xdist
    # (--dist loadfile) hands files out in this order as workers free up, so the long files start
    # early and the many short unit files fill the end, instead of one worker running the last
    # long file alone (measured: the two workers' busy times differed by ~50 s in collection order).
    # A stable sort: a file's tests keep their order and stay together.
    rank: dict[str, int] = {}
    for item in items:
        path = item.nodeid.split("::")[0]
        weight = 0 if item.get_closest_marker("topology") else 1 if item.get_closest_marker("e2e") else 2
        rank[path] = min(rank.get(path, 2), weight)
    items.sort(key=lambda item: rank[item.nodeid.split("::")[0]])


@pytest.fixture(scope="session")
def prefect_api(tmp_path_factory):
    """A real (temporary) Prefect server for every flow run of the session; yields its API URL."""
    os.environ["PREFECT_HOME"] = str(tmp_path_factory.mktemp("prefect_home"))
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield PREFECT_API_URL.value()


def sms_texts() -> list[str]:
    """The shipped SMS Spam Collection's messages (what the tiny model's vocabulary is learnt from)."""
    from impactflow.data_contracts import get_contract, load_dataset

    contract = get_contract("sms_spam")
    return load_dataset(contract)[dict(contract.roles_extra)["text"]].astype(str).tolist()


@pytest.fixture(scope="session")
def tiny_hf(tmp_path_factory):
    """A tiny Hugging Face model directory built from a config, no weights from the network: a
    2-layer BERT (hidden 128) with a WordPiece vocabulary of 8,000 entries learnt from the
    shipped SMS texts, saved with save_pretrained (``impactflow.models.hf.build_tiny``)."""
    from impactflow.models.hf import build_tiny

    return build_tiny(tmp_path_factory.mktemp("tiny-bert"), sms_texts())


@pytest.fixture
def mlflow_uri(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


#: variables that this process's own imports and in-process runs set: torch's inductor cache
#: folder (torch._dynamo's import), PYTHONHASHSEED (models/base.seed_everything), MLflow's
#: download progress bar (tasks/evidence.py) and what dask's Nanny writes into its parent's
#: environment before it spawns a worker (``distributed.nanny.pre-spawn-environ``: one thread per
#: BLAS library, glibc's trim threshold). A CLI process sets its own; handed down, they would make
#: it differ from a user's fresh process, and from the warm runner's environment (so its runs
#: would be cold). Their values when this module was imported are handed down instead.
SET_BY_THIS_PROCESS = {
    k: os.environ.get(k)
    for k in (
        "TORCHINDUCTOR_CACHE_DIR",
        "PYTHONHASHSEED",
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR",
        "OMP_NUM_THREADS",
        "MKL_NUM_THREADS",
        "OPENBLAS_NUM_THREADS",
        "MALLOC_TRIM_THRESHOLD_",
    )
}


def cli_environment(prefect_api: str, home: Path) -> dict[str, str]:
    """The environment of a CLI process: this process's, less pytest's variables, any tracking
    URI (the CLI sees only the store a call names: a URI left in the test process's environment
    must not leak into it, or `impactflow ui` would start a real server on it) and what
    ``SET_BY_THIS_PROCESS`` names, with the session's Prefect server and ``home`` as PREFECT_HOME."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST") and k != "MLFLOW_TRACKING_URI"}
    for key, value in SET_BY_THIS_PROCESS.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    env.update(PREFECT_API_URL=prefect_api, PREFECT_HOME=str(home))
    return env


def start_warm_runner(env: dict[str, str]) -> dict:
    """A warm runner (flows/warm.py) started under ``env`` plus the CLI's quiet defaults, as
    ``impactflow server start --warm`` starts it; returns ``warm.start``'s state."""
    from unittest import mock

    from impactflow.flows import warm
    from impactflow.flows.cli import WARM_ENTRY, _quiet_environment

    with mock.patch.dict(os.environ, env, clear=True):
        _quiet_environment(False)
        return warm.start(WARM_ENTRY)


def stop_warm_runner(env: dict[str, str]) -> dict | None:
    """Stop the warm runner recorded in ``env``'s PREFECT_HOME; its state, or None if none."""
    from unittest import mock

    from impactflow.flows import warm

    with mock.patch.dict(os.environ, env, clear=True):
        return warm.stop()


class ImpactflowProcess:
    """Runs the ``impactflow`` CLI as a real process against the session's Prefect server.

    ``run``, ``audit`` and ``validate`` are forked from the session's warm runner
    (``flows/warm.py``, what ``impactflow server start --warm`` starts): a real process with its
    own exit status, stdout and stderr, without the ~7 s of imports a cold one pays. The warm
    runner is a product path of its own (tests/flows/test_warm_runner.py shows that a fork
    computes what a cold process does). A call runs cold (``IMPACTFLOW_WARM=off``, so the CLI
    prints no note about it) when it asks to (``cold=True``: the tests of a user's first, fresh
    process), when it runs an installed copy, when it is verbose or asks for help, or when its
    import-time environment or the project's code differ from the warm runner's (a test that
    set such a variable)."""

    def __init__(self, prefect_api: str, home: Path):
        from unittest import mock

        from impactflow.flows.cli import _quiet_environment

        self.prefect_api, self.home = prefect_api, home
        with mock.patch.dict(os.environ, {}, clear=True):
            _quiet_environment(False)
            #: the defaults the CLI sets before importing anything (each client does so before it
            #: hands the runner its environment; an in-process CLI test may have left them here)
            self.quiet = dict(os.environ)
        env = cli_environment(prefect_api, home)
        self.environment = self.import_environment(env)
        self.state = start_warm_runner(env)

    def import_environment(self, env: dict[str, str]) -> dict[str, str]:
        """What a client with ``env`` compares with the warm runner's (flows/warm.refusal)."""
        from impactflow.flows import warm

        return warm.import_environment({**self.quiet, **env})

    def stop(self) -> None:
        stop_warm_runner(cli_environment(self.prefect_api, self.home))

    def warm(self, args: tuple[str, ...], env: dict[str, str]) -> bool:
        from impactflow.flows import warm
        from impactflow.flows.cli import WARM_COMMANDS

        return (
            bool(args)
            and args[0] in WARM_COMMANDS
            and not {"-v", "--verbose", "-h", "--help"} & set(args[1:])
            and self.import_environment(env) == self.environment
            and warm.code_fingerprint() == self.state["fingerprint"]
        )

    def __call__(
        self,
        *args: str,
        cwd: Path,
        uri: str | None = None,
        installed: Path | None = None,
        pythonpath: str | None = None,
        cold: bool = False,
    ) -> subprocess.CompletedProcess:
        """``installed``: a folder impactflow was pip-installed into (``pip install --target``):
        its ``bin/impactflow`` runs, importing the project from that folder only (``pythonpath``:
        the whole PYTHONPATH to use instead, e.g. with other packages in front)."""
        env = cli_environment(self.prefect_api, self.home)
        if uri:
            env["MLFLOW_TRACKING_URI"] = uri
        command = [sys.executable, "-m", "impactflow.flows.cli"]
        if installed is not None:
            env["PYTHONPATH"] = pythonpath or str(installed)
            command = [str(installed / "bin" / "impactflow")]
        if cold or installed is not None or not self.warm(args, env):
            env["IMPACTFLOW_WARM"] = "off"
        return subprocess.run([*command, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="session")
def impactflow_process(prefect_api, tmp_path_factory):
    """The session's ``ImpactflowProcess`` (its warm runner stopped at the end)."""
    runner = ImpactflowProcess(prefect_api, tmp_path_factory.mktemp("cli_prefect_home"))
    yield runner
    runner.stop()


@pytest.fixture
def cli(impactflow_process, tmp_path):
    """Run the ``impactflow`` CLI as a real process (``ImpactflowProcess``), in ``tmp_path``
    unless ``cwd`` says otherwise."""

    def run(*args: str, cwd: Path | None = None, **kwargs) -> subprocess.CompletedProcess:
        return impactflow_process(*args, cwd=cwd or tmp_path, **kwargs)

    return run
