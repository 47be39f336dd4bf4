"""docker/compose.yaml describes the topology that tests/topology runs as native processes.
No Docker engine runs here, so the file is parsed and its wiring checked instead."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from impactflow.flows.deployments import WORK_POOL

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())
SERVICES = COMPOSE["services"]


def _env(service: str) -> dict[str, str]:
    return {k: str(v) for k, v in (SERVICES[service].get("environment") or {}).items()}


def test_services_and_ports():
    assert {"postgres", "prefect-server", "mlflow", "worker"} <= set(SERVICES)
    assert "127.0.0.1:4200:4200" in SERVICES["prefect-server"]["ports"]
    assert "127.0.0.1:5000:5000" in SERVICES["mlflow"]["ports"]


def test_prefect_server_runs_on_its_own_postgres_database():
    url = _env("prefect-server")["PREFECT_SERVER_DATABASE_CONNECTION_URL"]
    assert url.startswith("postgresql+asyncpg://") and url.endswith("@postgres:5432/prefect")
    assert SERVICES["prefect-server"]["command"][:2] == ["server", "start"]
    assert SERVICES["prefect-server"]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_mlflow_server_matches_the_native_topology():
    cmd = SERVICES["mlflow"]["command"]
    assert cmd[0] == "server"
    backend = cmd[cmd.index("--backend-store-uri") + 1]
    assert backend.startswith("postgresql+psycopg2://") and backend.endswith("@postgres:5432/mlflow")
    assert "--artifacts-destination" in cmd
    assert _env("mlflow")["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    # separate databases: both use Alembic's alembic_version table
    init = (ROOT / "docker" / "postgres-init.sql").read_text().lower()
    assert "create database prefect" in init and "create database mlflow" in init


@pytest.mark.parametrize("service", ["worker", "impactflow"])
def test_clients_point_at_both_servers(service):
    env = _env(service)
    assert env["PREFECT_API_URL"] == "http://prefect-server:4200/api"
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"


def test_worker_serves_the_pool_the_deployments_use():
    cmd = SERVICES["worker"]["command"]
    assert cmd[:2] == ["worker", "start"]
    assert cmd[cmd.index("--pool") + 1] == WORK_POOL
    assert cmd[cmd.index("--type") + 1] == "process"
    deployments = yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]
    assert {d["work_pool"]["name"] for d in deployments} == {WORK_POOL}
    assert all(d["schedules"][0]["cron"] for d in deployments)


def test_dask_workers_join_the_scheduler_and_read_the_logs_where_the_cli_does():
    """--engine dask: every worker opens its units' files itself, at the CLI's paths."""
    scheduler, worker = SERVICES["dask-scheduler"], SERVICES["dask-worker"]
    assert scheduler["command"][:3] == ["scheduler", "--port", "8786"]
    assert worker["command"][:2] == ["worker", "tcp://dask-scheduler:8786"]
    assert {scheduler["entrypoint"][0], worker["entrypoint"][0]} == {"dask"}
    assert scheduler["profiles"] == worker["profiles"] == ["dask"]  # not started by a plain `up`
    assert (
        "decision-logs:/data:ro" in worker["volumes"] and "decision-logs:/data:ro" in SERVICES["impactflow"]["volumes"]
    )


def test_native_test_uses_the_same_server_commands():
    """tests/topology/servers.py starts the same programs with the same drivers."""
    src = (ROOT / "tests" / "topology" / "servers.py").read_text()
    for needle in (
        '"server", "start"',
        "postgresql+asyncpg://",
        "postgresql+psycopg2://",
        '"--artifacts-destination"',
        '"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"',
    ):
        assert needle in src


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "Dockerfile.cuda"])
def test_images_carry_the_deployments_file(dockerfile):
    """`impactflow deploy` in a container reads prefect.yaml from the copied checkout."""
    text = (ROOT / "docker" / dockerfile).read_text()
    assert "COPY . /opt/impactflow" in text
    assert "IMPACTFLOW_PREFECT_YAML=/opt/impactflow/prefect.yaml" in text
    ignored = (ROOT / "docker" / f"{dockerfile}.dockerignore").read_text().split()
    assert "prefect.yaml" not in ignored and "**/prefect.yaml" not in ignored


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "Dockerfile.cuda"])
def test_images_install_the_hf_extra_from_pyproject(dockerfile):
    """The hf family runs in the images: their requirements line reads the `hf` extra, which exists."""
    import tomllib

    text = (ROOT / "docker" / dockerfile).read_text()
    assert "d['dependencies'] + d['optional-dependencies']['hf']" in text
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["hf"]
    assert any(r.startswith("transformers") for r in extra) and any(r.startswith("peft") for r in extra)
