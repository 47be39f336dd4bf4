"""A disk that fills up in the middle of a real ``impactflow run`` (issue 28, "Done when").

Two ways to fill it, each with a real process and no monkeypatching:

- ``tmpfs``: the runs folder on a 6 MiB tmpfs, mounted in a private user + mount namespace
  (``unshare --user --map-root-user --mount``, no root needed where unprivileged user namespaces
  are enabled; skipped where they are not). A run writes about 10 MiB there (Data Docs pages,
  their logged copy, the model, the report): writes fail with ENOSPC partway.
- ``rlimit``: the run as a child process under ``RLIMIT_FSIZE`` = 2 MiB (SIGXFSZ ignored), so a
  write past 2 MiB in any file fails with EFBIG (the Data Docs' largest image is 2.5 MiB).

The tracking database stays off the full disk (``MLFLOW_TRACKING_URI``), as a server's would:
what the run recorded is read afterwards. Either way the command ends with exactly one
``error:`` line and no traceback, nothing is approved, and after ``impactflow reconcile``
nothing is left RUNNING (MLflow runs, retried child runs, the Prefect flow run).
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.reliability.test_kill_stages import ARGS as PASSING_RUN

pytestmark = pytest.mark.e2e

# the kill-stage tests' small passing run, validating every time (no reused contract result)
ARGS = [*PASSING_RUN, "--set", "data.reuse_validation=false"]
TMPFS_SIZE = "6m"
FSIZE_LIMIT = 2 * 1024 * 1024


def _unshare_tmpfs_works(tmp: Path) -> bool:
    """Whether this machine lets us mount a tmpfs in a private user + mount namespace."""
    exe = shutil.which("unshare")
    if exe is None or not sys.platform.startswith("linux"):
        return False
    probe = tmp / "probe"
    probe.mkdir()
    r = subprocess.run(
        [
            exe,
            "--user",
            "--map-root-user",
            "--mount",
            "sh",
            "-c",
            'mount -t tmpfs -o size=1m tmpfs "$1" && touch "$1/x"',
            "sh",
            str(probe),
        ],
        capture_output=True,
        timeout=30,
    )
    return r.returncode == 0 and not (probe / "x").exists()  # written on the tmpfs, gone with it


def _limit_file_size() -> None:  # preexec_fn of the rlimit child
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of death by signal
    resource.setrlimit(resource.RLIMIT_FSIZE, (FSIZE_LIMIT, FSIZE_LIMIT))


@pytest.mark.parametrize("disk", ["tmpfs", "rlimit"])
def test_a_disk_full_mid_run_is_one_error_line_and_leaves_nothing_running(prefect_api, tmp_path, disk):
    from mlflow import MlflowClient
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import StateType

    db = tmp_path / "mlflow.db"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PYTEST") and k not in ("MLFLOW_TRACKING_URI", "IMPACTFLOW_LEDGER_URL")
    }
    env.update(PREFECT_API_URL=prefect_api, PYTHONPATH=str(ROOT), MLFLOW_TRACKING_URI=f"sqlite:///{db}")
    disk_dir = tmp_path / "disk"
    disk_dir.mkdir()
    out = disk_dir / "impactflow_runs"
    cli = [sys.executable, "-m", "impactflow.flows.cli", "run", *ARGS, "--set", f"tracking.output_dir={out}"]
    if disk == "tmpfs":
        if not _unshare_tmpfs_works(tmp_path):
            pytest.skip("no unprivileged user+mount namespace here: the rlimit case covers a full disk")
        cmd = [
            "unshare",
            "--user",
            "--map-root-user",
            "--mount",
            "sh",
            "-c",
            f'mount -t tmpfs -o size={TMPFS_SIZE} tmpfs "$1" && shift && exec "$@"',
            "sh",
            str(disk_dir),
            *cli,
        ]
        run = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    else:
        run = subprocess.run(
            cli, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900, preexec_fn=_limit_file_size
        )
    text = run.stdout + run.stderr
    errors = [line for line in text.splitlines() if line.startswith("error:")]
    assert run.returncode == 1, text[-4000:]
    assert "Traceback" not in text, text[-4000:]
    assert len(errors) == 1, text[-4000:]
    assert any(w in errors[0] for w in ("No space left on device", "File too large", "disk is full")), errors[0]

    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    assert [rm.name for rm in client.search_registered_models() if rm.aliases] == []  # nothing approved
    (exp,) = [e for e in client.search_experiments() if e.name != "Default"]
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1 and parents[0].info.status == "FAILED", [(r.info.run_id, r.info.status) for r in runs]

    # the operator frees space (here: the tmpfs is gone with its namespace), then reconciles
    rec = subprocess.run(
        [sys.executable, "-m", "impactflow.flows.cli", "reconcile", "--output-dir", str(tmp_path / "elsewhere")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert rec.returncode == 0, rec.stderr[-3000:]
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        assert con.execute("SELECT run_uuid FROM runs WHERE status = 'RUNNING'").fetchall() == []
    flow_run_id = parents[0].data.tags.get("impactflow.prefect_flow_run_id")
    assert flow_run_id, parents[0].data.tags
    with get_client(sync_client=True) as pc:
        state = pc.read_flow_run(flow_run_id).state.type
    assert state not in (StateType.RUNNING, StateType.PENDING), state
    if disk == "rlimit":  # the folder is still there: no temporary file of the failed writes
        assert [p for p in out.rglob("*.tmp")] == []
