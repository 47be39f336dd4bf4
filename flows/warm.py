"""A warm runner: ``impactflow run`` (and ``audit``, ``validate``) without paying the imports each time.

A default ``impactflow run`` spends about a third of its wall time before the flow starts or
inside its first tasks importing torch (and ``torch._dynamo``, which the first optimizer pulls
in), Great Expectations, MLflow's SQL store, Opacus, fairlearn, scikit-learn and matplotlib.
``impactflow server start --warm`` starts one more background process, the *warm runner*, that
imports all of that once and then waits on a Unix socket. ``impactflow run`` finds it, hands it
its arguments, environment, working directory and its own stdin/stdout/stderr (file descriptors
over the socket), and the warm runner ``fork()``s a child that runs the command exactly as the
CLI would, with everything already imported. The CLI process stays as the run's front: it
forwards Ctrl-C / SIGTERM / SIGHUP to the child's process group, and exits with the child's exit
status. If the CLI is killed (even with SIGKILL) its end of the socket closes and the child kills
its own process group at once, so a killed CLI leaves no run behind, as without the warm runner
(``impactflow reconcile`` then marks the interrupted run failed, as before).

The warm runner is opt-in, and refuses (the CLI then runs the command itself, cold, and says
why) whenever forking it could differ from a fresh process:

* the project's code or installed packages changed since it started (a fingerprint of the
  package files' sizes and mtimes and of site-packages' mtime);
* another Python executable;
* an environment variable that a library reads at import time differs: ``PREFECT_*`` (Prefect
  captures its settings and logging when imported), ``MLFLOW_*`` (its logging level; the
  per-call tracking URI and credentials are exempt), ``GX_*``, ``IMPACTFLOW_*``, thread-count,
  CUDA and ``PYTHON*`` variables. ``impactflow run --verbose`` changes Prefect's logging
  settings, so verbose runs are cold.

``impactflow server start --warm`` replaces a running warm runner that would refuse the
caller's runs. ``IMPACTFLOW_WARM=off`` makes one run cold on purpose. Only the commands that
import the heavy libraries, ``impactflow run``, ``audit`` and ``validate``, are delegated
(``impactflow.flows.cli.WARM_COMMANDS``).
Linux/POSIX only (``fork`` and fd passing); nothing here imports a heavy library at module
import (the CLI's client side must stay instant).
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import signal
import socket
import struct
import sys
import sysconfig
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

from impactflow.flows.local_server import _alive, _terminate, prefect_home, read_json

ROOT = Path(__file__).resolve().parent.parent
#: the project's packages: folders of the source tree (ROOT / name), imported as impactflow.<name>
PACKAGES = ("flows", "tasks", "models", "audits", "data_contracts")
STATE_NAME = "impactflow-warm.json"
SOCKET_NAME = "impactflow-warm.sock"
# third-party modules the pipeline imports inside functions (the packages' module-level imports
# come with importing the packages themselves); a missing optional one is skipped
PRELOAD = (
    "numpy",
    "pandas",
    "scipy.stats",
    "yaml",
    "jinja2",
    "jsonschema",
    "sqlalchemy",
    "requests",
    "torch",
    "torch.nn",
    "torch.utils.data",
    "torch._dynamo",
    "opacus",
    "opacus.validators",
    "opacus.accountants",
    "opacus.accountants.analysis",
    "opacus.grad_sample.grad_sample_module_fast_gradient_clipping",
    "sklearn",
    "sklearn.base",
    "sklearn.compose",
    "sklearn.ensemble",
    "sklearn.feature_extraction.text",
    "sklearn.impute",
    "sklearn.linear_model",
    "sklearn.metrics",
    "sklearn.model_selection",
    "sklearn.pipeline",
    "sklearn.preprocessing",
    "fairlearn.metrics",
    "fairlearn.postprocessing",
    "great_expectations",
    "great_expectations.data_context.types.base",
    "mlflow",
    "mlflow.entities",
    "mlflow.models",
    "mlflow.pyfunc",
    "mlflow.pytorch",
    "mlflow.sklearn",
    "mlflow.store.tracking.sqlalchemy_store",
    "mlflow.store.model_registry.sqlalchemy_store",
    "mlflow.types.utils",
    "alembic",
    "prefect",
    "prefect.flow_engine",
    "prefect.task_engine",
    "prefect.artifacts",
    "prefect.client.orchestration",
    "prefect.settings",
    "rich.console",
    "rich.progress",
    "rich.table",
    "cryptography.hazmat.primitives.asymmetric.ed25519",
    "git",
)
# environment variables read at import time by the preloaded libraries (see the module doc)
_IMPORT_PREFIXES = (
    "PREFECT_",
    "MLFLOW_",
    "GX_",
    "IMPACTFLOW_",
    "OMP_",
    "MKL_",
    "OPENBLAS_",
    "CUDA_",
    "TORCH",
    "PYTORCH_",
    "PYTHON",
    "MPL",
)
_PER_CALL = frozenset(
    {
        "MLFLOW_TRACKING_URI",
        "MLFLOW_TRACKING_USERNAME",
        "MLFLOW_TRACKING_PASSWORD",
        "MLFLOW_TRACKING_TOKEN",
        "MLFLOW_REGISTRY_URI",
        "MLFLOW_EXPERIMENT_NAME",
        "MLFLOW_RUN_ID",
        "PYTHONUNBUFFERED",
        "IMPACTFLOW_WARM",
    }
)
_HEADER = struct.Struct("!I")
IN_CHILD = False  # True in a run forked from the warm runner


# --------------------------------------------------------------------------- shared


def state_file() -> Path:
    return prefect_home() / STATE_NAME


def socket_path() -> Path:
    """Next to the state file; in the temp dir when that path is too long for AF_UNIX (108 bytes)."""
    path = prefect_home() / SOCKET_NAME
    if len(os.fsencode(str(path))) < 100:
        return path
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"impactflow-warm-{os.getuid()}-{digest}.sock"


def read_state() -> Optional[dict]:
    return read_json(state_file())


def code_fingerprint() -> str:
    """Sizes and mtimes of the project's package files, site-packages' mtime and the interpreter:
    what decides whether the warm runner's imported modules are the ones a fresh process gets."""
    h = hashlib.sha256(f"{sys.executable}\n{sys.version}\n".encode())
    for pkg in PACKAGES:
        for dirpath, dirnames, filenames in os.walk(ROOT / pkg):
            dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
            for name in sorted(filenames):
                if name.endswith(".pyc"):
                    continue
                st = os.stat(os.path.join(dirpath, name))
                h.update(f"{dirpath}/{name}:{st.st_mtime_ns}:{st.st_size}\n".encode())
    for lib in sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}):
        try:
            h.update(f"{lib}:{os.stat(lib).st_mtime_ns}\n".encode())
        except OSError:
            pass
    return h.hexdigest()


def import_environment(env: dict) -> dict:
    """The part of an environment the preloaded libraries read when imported."""
    return {k: v for k, v in env.items() if k.startswith(_IMPORT_PREFIXES) and k not in _PER_CALL}


def environment_digest(environment: dict) -> str:
    """A digest of an import-time environment, for the state file (which must not hold the
    values: ``PREFECT_API_KEY`` is one of them)."""
    return hashlib.sha256(json.dumps(environment, sort_keys=True).encode()).hexdigest()


def refusal(request: dict, fingerprint: str, environment: dict) -> Optional[str]:
    """Why the warm runner (started with ``fingerprint`` and ``environment``) must not serve
    ``request``; None when it may."""
    if request.get("executable") != sys.executable:
        return f"it runs {sys.executable}, this command {request.get('executable')}"
    if request.get("fingerprint") != fingerprint:
        return "the project's code or installed packages changed since it started"
    theirs = import_environment(request.get("env") or {})
    for key in sorted(set(theirs) | set(environment)):
        if theirs.get(key) != environment.get(key):
            return f"environment variable {key} differs from when it started"
    return None


def _send_json(sock: socket.socket, obj: dict) -> None:
    sock.sendall(json.dumps(obj).encode() + b"\n")


# --------------------------------------------------------------------------- client (the CLI)


def _note(message: str) -> None:
    sys.stderr.write(f"{message}\n")
    sys.stderr.flush()


def delegate(argv: list[str]) -> Optional[int]:
    """Run ``argv`` in the warm runner if one is recorded and may serve it; return its exit
    status, or None to run the command in this process (with a note saying why, if one is
    recorded but refused or unreachable)."""
    state = read_state()
    if not state:
        return None
    path = state.get("socket", "")
    if not _is_runner(int(state.get("pid") or 0)):
        _note(
            f"warm runner recorded in {state_file()} is not running; running cold "
            "(`impactflow server start --warm` starts a new one)"
        )
        return None
    request = {
        "argv": list(argv),
        "env": dict(os.environ),
        "cwd": os.getcwd(),
        "executable": sys.executable,
        "fingerprint": code_fingerprint(),
    }
    payload = json.dumps(request).encode()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
        socket.send_fds(sock, [_HEADER.pack(len(payload)) + payload], [0, 1, 2])
        replies = sock.makefile("rb")
        first = replies.readline()
    except OSError as exc:
        sock.close()
        _note(f"warm runner at {path} does not answer ({exc.strerror or exc}); running cold")
        return None
    reply = json.loads(first) if first else {"refused": "it closed the connection"}
    if "refused" in reply:
        sock.close()
        _note(f"warm runner not used: {reply['refused']}; running cold (`impactflow server start --warm` replaces it)")
        return None
    return _follow(sock, replies, int(reply["pid"]))


def _follow(sock: socket.socket, replies, pid: int) -> int:
    """Forward signals to the child's process group until it reports its exit status."""
    forwarded: list[int] = []

    def forward(signum, _frame):
        forwarded.append(signum)
        try:
            os.killpg(pid, signum)
        except ProcessLookupError:
            pass

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, forward)
    try:
        line = replies.readline()
    finally:
        sock.close()
    if line:
        return int(json.loads(line)["exit"])
    # the child ended without reporting: killed by a signal we forwarded, or from outside
    if forwarded and forwarded[-1] != signal.SIGINT:
        signal.signal(forwarded[-1], signal.SIG_DFL)
        os.kill(os.getpid(), forwarded[-1])  # end as a cold CLI would have: by that signal
    _note(f"error: the warm runner's child (pid {pid}) ended without an exit status")
    return 1


# --------------------------------------------------------------------------- start / stop


def _is_runner(pid: int) -> bool:
    """``pid`` is alive and (where /proc tells) runs flows.warm: a recycled pid is not ours."""
    if pid <= 1 or not _alive(pid):
        return False
    try:
        return b"impactflow.flows.warm" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return not Path("/proc/self").exists()


def running() -> Optional[dict]:
    """The warm runner's state if its process is alive and its socket exists."""
    state = read_state()
    if state and _is_runner(int(state.get("pid") or 0)) and Path(state.get("socket", "")).exists():
        return state
    return None


def start(entry: str, timeout_s: float = 180.0) -> dict:
    """Start the warm runner detached with this process's environment; wait until it listens.
    ``entry`` (``"module:attribute"``) names the Typer app each forked child runs with the
    client's arguments (the CLI passes its own): this module never imports the CLI, so the CLI
    depends on it and not the other way round. A running one that would refuse this
    environment's runs (code, packages or import-time environment changed) is replaced."""
    import subprocess

    from impactflow.errors import ConfigError

    state = running()
    replaced = state is not None
    if state:
        if (state.get("python"), state.get("fingerprint"), state.get("environment_sha256")) == (
            sys.executable,
            code_fingerprint(),
            environment_digest(import_environment(dict(os.environ))),
        ):
            return {**state, "already_running": True, "replaced": False}
        stop()  # it would refuse this environment's runs: replace it
    home = prefect_home()
    home.mkdir(parents=True, exist_ok=True)
    state_file().unlink(missing_ok=True)
    log = home / "impactflow-warm.log"
    path = socket_path()
    # -P: no working directory on sys.path (a child chdirs into the user's folder)
    cmd = [sys.executable, "-P", "-m", "impactflow.flows.warm", str(path), entry]
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=dict(os.environ),
            cwd=str(home),
            start_new_session=True,
        )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace").splitlines()[-5:]
            raise ConfigError(f"the warm runner exited with code {proc.returncode}; see {log}: " + " | ".join(tail))
        state = read_state()
        if state and state.get("pid") == proc.pid:
            return {**state, "log": str(log), "already_running": False, "replaced": replaced}
        time.sleep(0.2)
    _terminate(proc.pid)
    raise ConfigError(f"the warm runner did not start within {timeout_s:.0f} s; see {log}")


def stop() -> Optional[dict]:
    """Stop the warm runner (runs it already forked finish on their own); None if none."""
    state = read_state()
    if not state:
        return None
    pid = int(state.get("pid") or 0)
    if _is_runner(pid):
        _terminate(pid)  # its group only: forked runs have groups of their own
    state_file().unlink(missing_ok=True)
    if state.get("socket"):
        Path(state["socket"]).unlink(missing_ok=True)
    return state


# --------------------------------------------------------------------------- the warm runner


def preload() -> list[str]:
    """Import the project's packages and the heavy libraries; return what could not be imported."""
    import importlib
    import logging
    import pkgutil

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    missing = []
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    for pkg in PACKAGES:
        module = importlib.import_module(f"impactflow.{pkg}")
        for info in pkgutil.walk_packages(module.__path__, prefix=f"impactflow.{pkg}."):
            try:
                importlib.import_module(info.name)
            except ImportError:  # an optional extra (prefect_dask) that is not installed
                missing.append(info.name)
    # matplotlib's font and mathtext caches: filled once here, inherited by every child
    from impactflow.audits import plots

    plots.warm_up()
    # MLflow's module -> package map, built once here so every run inherits it (see
    # tasks.tracking.warm_requirements_map). The code fingerprint (installed packages included)
    # guards it: a changed install makes runs cold.
    from impactflow.tasks.tracking import warm_requirements_map

    warm_requirements_map()
    # opacus.utils.module_utils calls logging.basicConfig() when imported: a cold run without DP
    # never imports it, so its root handler would make a warm run print GX's INFO lines
    for handler in root.handlers:
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
    return missing


def _recv_request(conn: socket.socket) -> tuple[dict, list[int]]:
    data, fds, _flags, _addr = socket.recv_fds(conn, 1 << 16, 3)
    try:
        if len(data) < _HEADER.size:
            raise ValueError("short request")
        (size,) = _HEADER.unpack_from(data)
        body = bytearray(data[_HEADER.size :])
        while len(body) < size:
            more = conn.recv(size - len(body))
            if not more:
                raise ValueError("truncated request")
            body += more
        return json.loads(bytes(body)), list(fds)
    except BaseException:
        for fd in fds:  # the client's descriptors must not leak into the runner
            os.close(fd)
        raise


def _reopen_stdio() -> None:
    """sys.stdin/stdout/stderr over the client's descriptors (now fds 0-2), buffered as a fresh
    interpreter would buffer them (line-buffered on a terminal and always for stderr)."""
    import locale

    encoding = os.environ.get("PYTHONIOENCODING", "").split(":")[0] or locale.getpreferredencoding(False)
    for fd, name, mode in ((0, "stdin", "r"), (1, "stdout", "w"), (2, "stderr", "w")):
        stream = open(
            fd,
            mode,
            encoding=encoding,
            closefd=False,  # noqa: SIM115 (lives as sys.std*)
            errors="backslashreplace" if fd == 2 else "strict",
            buffering=1 if fd == 2 or (mode == "w" and os.isatty(fd)) else -1,
        )
        setattr(sys, name, stream)
        setattr(sys, f"__{name}__", stream)


#: the Typer app forked children run (``serve``'s ``entry``, resolved once while preloading)
_APP = None


def _entry_app(entry: str):
    """``"module:attribute"`` -> that attribute (the CLI's Typer app)."""
    import importlib

    module, _, attr = entry.partition(":")
    return getattr(importlib.import_module(module), attr)


def _run_cli(argv: list[str], app) -> int:
    """Run the Typer ``app`` on ``argv`` as a fresh ``impactflow`` process would; its exit status."""
    import traceback

    try:
        app(args=argv[1:], prog_name="impactflow")
        return 0
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            return int(exc.code or 0)
        print(exc.code, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BaseException:  # noqa: BLE001 (what a fresh interpreter would print)
        traceback.print_exc()
        return 1


def finalize() -> None:
    """What a fresh interpreter does on exit (CPython's ``Py_FinalizeEx``), for a forked child
    that then leaves with ``os._exit``: ``threading._shutdown()`` (the threading-atexit callbacks,
    which tell ``ThreadPoolExecutor`` workers to stop once their queue is done, then a join of
    every non-daemon thread), then the atexit handlers (Prefect flushes its logs and events
    there), then stdio. (Joining the non-daemon threads without those callbacks first, as this
    did until 2026-12-05, waited forever on an executor's idle workers: a run that logged
    artifacts through an MLflow tracking server, whose artifact repository keeps a thread pool,
    finished its work and then hung.) ``threading._shutdown`` is CPython's own exit step, stable
    since 3.x; tests/flows/test_warm_runner.py runs this on a process with such threads."""
    import atexit
    import threading

    threading._shutdown()  # type: ignore[attr-defined]
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass


def _child(conn: socket.socket, request: dict, fds: list[int], added: dict) -> int:
    """In the forked child: become the client's command and run it; return its exit status."""
    import threading

    global IN_CHILD
    IN_CHILD = True
    os.setpgid(0, 0)  # its own group: the client forwards signals to it, the watchdog kills it
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.environ.clear()
    os.environ.update(request["env"])
    for key, value in added.items():
        os.environ.setdefault(key, value)
    os.chdir(request["cwd"])
    sys.argv = list(request["argv"])
    _reopen_stdio()
    done = threading.Event()

    def watchdog() -> None:  # the client's end closed before we finished: it was killed
        try:
            conn.recv(1)
        except OSError:
            pass
        if not done.is_set():
            os.killpg(0, signal.SIGKILL)

    watcher = threading.Thread(target=watchdog, name="impactflow-warm-watchdog", daemon=True)
    watcher.start()
    _send_json(conn, {"pid": os.getpid()})
    code = _run_cli(sys.argv, _APP)
    finalize()
    done.set()
    try:
        _send_json(conn, {"exit": code})
    except OSError:
        pass
    return code


def _peer_uid(conn: socket.socket) -> Optional[int]:
    """The connecting process's uid (Linux ``SO_PEERCRED``); None where the platform lacks it."""
    if not hasattr(socket, "SO_PEERCRED"):
        return None
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1]


def _reap() -> None:
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def serve(path: Path, entry: str) -> None:
    """Preload, listen on ``path``, record the state, fork a child per request running the app
    ``entry`` names (see ``start``); until SIGTERM."""
    global _APP
    started = time.perf_counter()
    before = dict(os.environ)
    environment = import_environment(before)  # what it was started with, before any import
    missing = preload()
    _APP = _entry_app(entry)
    # Move everything imported so far out of the cyclic garbage collector's sight (the usual
    # pre-fork server practice): a run's collections then skip the ~830,000 preloaded objects
    # (time in the collector during a default run 1.8 s -> 1.0 s: benchmarks/gc_freeze.py), and the
    # collector no longer writes to the pages holding them, so fewer of those pages are copied
    # into each run (reference counting still writes to the objects a run touches).
    gc.collect()
    gc.freeze()
    loaded_s = time.perf_counter() - started
    # variables the imports set for themselves (torch: TORCHINDUCTOR_CACHE_DIR): a fresh process
    # gets them from its own imports, so a child gets them too, unless the client sets its own
    added = {k: v for k, v in os.environ.items() if k not in before}
    fingerprint = code_fingerprint()
    path.unlink(missing_ok=True)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    umask = os.umask(0o177)  # created 0600: only this user may hand it commands
    try:
        server.bind(str(path))
    finally:
        os.umask(umask)
    server.listen(16)
    server.settimeout(1.0)

    def stop(_signum, _frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    state = {
        "pid": os.getpid(),
        "socket": str(path),
        "python": sys.executable,
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "preload_s": round(loaded_s, 2),
        "not_preloaded": missing,
        "gc_frozen_objects": gc.get_freeze_count(),
        "fingerprint": fingerprint,
        "environment_sha256": environment_digest(environment),
    }
    tmp = state_file().with_suffix(".json.tmp")
    tmp.write_text(json.dumps(state, indent=2), encoding="utf-8")
    os.replace(tmp, state_file())
    print(f"warm runner pid {os.getpid()} ready on {path} after {loaded_s:.1f} s of imports", flush=True)
    try:
        while True:
            _reap()
            try:
                conn, _addr = server.accept()
            except socket.timeout:
                continue
            if _peer_uid(conn) not in (os.getuid(), None):  # belt and braces with the 0600 socket
                conn.close()
                continue
            conn.settimeout(10.0)  # a client that connects and sends nothing must not block the rest
            try:
                request, fds = _recv_request(conn)
                conn.settimeout(None)
            except (OSError, ValueError) as exc:
                print(f"bad request: {exc}", flush=True)
                conn.close()
                continue
            reason = refusal(request, fingerprint, environment)
            if reason is not None:
                for fd in fds:
                    os.close(fd)
                try:
                    _send_json(conn, {"refused": reason})
                except OSError:
                    pass
                conn.close()
                continue
            pid = os.fork()
            if pid == 0:  # the child never returns into this loop
                code = 1
                try:
                    server.close()
                    code = _child(conn, request, fds, added)
                except BaseException:  # noqa: BLE001 (set-up failed: say so, on the client's stderr)
                    import traceback

                    traceback.print_exc()
                finally:
                    os._exit(code)
            for fd in fds:
                os.close(fd)
            conn.close()
            print(f"run pid {pid}: {' '.join(request['argv'][1:])[:200]}", flush=True)
    finally:
        server.close()
        path.unlink(missing_ok=True)
        state = read_state()
        if state and state.get("pid") == os.getpid():
            state_file().unlink(missing_ok=True)


def main() -> None:
    if len(sys.argv) != 3:
        raise SystemExit("usage: python -m impactflow.flows.warm SOCKET MODULE:APP")
    serve(Path(sys.argv[1]), sys.argv[2])


if __name__ == "__main__":  # `python -m impactflow.flows.warm`: serve from the package module, whose IN_CHILD
    from impactflow.flows.warm import main as _main  # the CLI reads (this file also runs as __main__)

    _main()
