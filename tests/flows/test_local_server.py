"""The kept local Prefect server: start once, later processes use it, stop ends it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from impactflow.errors import ConfigError
from impactflow.flows import local_server

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect"))
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    return tmp_path / "prefect"


def test_nothing_recorded_means_no_kept_server(home):
    assert local_server.running_api_url() is None
    assert local_server.use_kept_server() is None and "PREFECT_API_URL" not in os.environ
    with pytest.raises(ConfigError, match="no kept Prefect server"):
        local_server.stop()


@pytest.mark.e2e  # starts a process
def test_a_dead_recorded_server_is_not_used(home):
    home.mkdir(parents=True)
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # a pid that has exited
    (home / local_server.STATE_NAME).write_text(json.dumps({"pid": proc.pid, "api_url": "http://127.0.0.1:9/api"}))
    assert local_server.running_api_url() is None


def test_an_explicit_api_url_wins(home, monkeypatch):
    monkeypatch.setenv("PREFECT_API_URL", "http://example.invalid/api")
    assert local_server.use_kept_server() is None
    assert os.environ["PREFECT_API_URL"] == "http://example.invalid/api"


@pytest.mark.e2e  # starts a process
def test_start_use_and_stop(home):
    port = _free_port()
    state = local_server.start(port)
    try:
        assert state["api_url"] == f"http://127.0.0.1:{port}/api" and not state["already_running"]
        assert local_server.running_api_url() == state["api_url"]
        assert local_server.start(port)["already_running"]  # a second start reuses it
        # a fresh process with no PREFECT_API_URL runs its flow on the kept server
        code = (
            "from impactflow.flows.local_server import use_kept_server\n"
            "import os; assert use_kept_server() == os.environ['PREFECT_API_URL']\n"
            "from prefect import flow\n"
            "@flow(name='kept-server-probe')\n"
            "def probe():\n    return 1\n"
            "probe()\n"
        )
        env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
        env["PYTHONPATH"] = str(ROOT)
        subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=300, cwd=ROOT)
        req = urllib.request.Request(
            f"{state['api_url']}/flow_runs/filter",
            data=b"{}",
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            runs = json.load(resp)
        assert [r["state_type"] for r in runs] == ["COMPLETED"]
        # so does `impactflow audit`, though it imports Prefect (tasks.audit_only) while it parses
        # its options: the kept server is set before (else a temporary server runs the flow)
        table = home / "t.csv"
        table.write_text("y,s,g\n" + "".join(f"{i % 2},{(i % 10) / 10},{'ab'[i % 3 == 0]}\n" for i in range(200)))
        audit = subprocess.run(
            [sys.executable, "-m", "impactflow.flows.cli", "audit", "--data", str(table), "--label", "y"]
            + ["--score", "s", "--sensitive", "g", "--output-dir", str(home / "out"), "-v"],
            env=env,
            cwd=home,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert audit.returncode in (0, 3), audit.stderr[-2000:]
        assert f"the kept local server at {state['api_url']}" in " ".join(audit.stdout.split())
        # (the runs would show on the kept server either way: a temporary one shares its database)
        assert "Starting temporary server" not in audit.stdout + audit.stderr
        with urllib.request.urlopen(req, timeout=30) as resp:
            runs = json.load(resp)
        assert sorted(r["state_type"] for r in runs) == ["COMPLETED", "COMPLETED"]
    finally:
        stopped = local_server.stop()
    assert stopped["pid"] == state["pid"]
    assert not (home / local_server.STATE_NAME).exists()
    assert local_server.running_api_url() is None
    assert not local_server._alive(state["pid"])
