"""Start/stop the production topology as native processes on loopback: PostgreSQL databases,
``prefect server`` (asyncpg), ``mlflow server`` (psycopg2, job execution off), a process worker.
The same commands as docker/compose.yaml, so the compose file describes what is tested here."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

PG_HOST, PG_PORT, PG_USER = "127.0.0.1", 5432, os.environ.get("IMPACTFLOW_PG_USER", "postgres")
BIN = Path(sys.executable).parent


def postgres_reachable() -> str | None:
    """None when PostgreSQL answers, else the reason it does not."""
    try:
        import psycopg2
    except ImportError:
        return "psycopg2 is not installed (pip install -e '.[dev]')"
    try:
        psycopg2.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="postgres", connect_timeout=3).close()
    except Exception as exc:  # noqa: BLE001 - any connection failure means "skip"
        return f"no PostgreSQL at {PG_HOST}:{PG_PORT} as {PG_USER}: {str(exc).strip().splitlines()[0]}"
    return None


def _admin(sql: str) -> None:
    import psycopg2

    conn = psycopg2.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="postgres")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(sql)
    conn.close()


@contextmanager
def database(name: str):
    """A fresh database, dropped afterwards (Prefect and MLflow each get their own: both use
    Alembic's alembic_version table)."""
    _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    _admin(f'CREATE DATABASE "{name}"')
    try:
        yield f"{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: process exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} not up after {timeout:.0f} s:\n{log.read_text()[-3000:]}")


@contextmanager
def process(cmd: list[str], env: dict[str, str], log: Path, cwd: Path, grace: float = 20):
    """A child process in its own session, its output in ``log``; at the end SIGTERM to its
    group, then SIGKILL after ``grace`` seconds."""
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def base_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "PREFECT_", "MLFLOW_"))}
    env.update(
        {
            "PREFECT_HOME": str(home / "prefect_home"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "DO_NOT_TRACK": "true",
            "GX_ANALYTICS_ENABLED": "false",
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        }
    )
    return env


@contextmanager
def prefect_server(db: str, home: Path):
    port = free_port()
    env = {
        **base_env(home),
        "PREFECT_SERVER_DATABASE_CONNECTION_URL": f"postgresql+asyncpg://{db}",
        "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
    }
    log = home / "prefect-server.log"
    cmd = [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port), "--no-ui"]
    with process(cmd, env, log, home) as proc:
        wait_http(f"http://127.0.0.1:{port}/api/health", 180, proc, log)
        yield f"http://127.0.0.1:{port}/api"


@contextmanager
def mlflow_server(db: str, home: Path):
    port = free_port()
    artifacts = home / "mlartifacts"
    artifacts.mkdir(exist_ok=True)
    env = {**base_env(home), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    log = home / "mlflow-server.log"
    cmd = [
        str(BIN / "mlflow"),
        "server",
        "--backend-store-uri",
        f"postgresql+psycopg2://{db}",
        "--artifacts-destination",
        str(artifacts),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    with process(cmd, env, log, home) as proc:
        wait_http(f"http://127.0.0.1:{port}/health", 180, proc, log)
        yield f"http://127.0.0.1:{port}", artifacts
