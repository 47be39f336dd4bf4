"""Multi-process data-parallel training (DDP) as torchrun runs it: 2 CPU processes, gloo."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

TORCHRUN = Path(sys.executable).parent / "torchrun"


@pytest.mark.e2e  # starts a process
@pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun (ships with torch) not found beside the interpreter")
def test_two_process_gloo_ddp_keeps_replicas_identical_and_learns(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = subprocess.run(
        [
            str(TORCHRUN),
            "--nproc-per-node=2",
            f"--master-port={port}",
            "-m",
            "impactflow.models.distributed",
            "--sample",
            "8000",
            "--epochs",
            "6",
            "--cpu",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{i}.json").read_text()) for i in (0, 1)]
    assert {x["backend"] for x in ranks} == {"gloo"} and {x["world_size"] for x in ranks} == {2}
    # gradients are all-reduced: both replicas end with bit-identical parameters
    assert ranks[0]["param_digest"] == ranks[1]["param_digest"]
    # each rank trained on its own half of the 5,600 training rows (70% of 8,000)
    assert ranks[0]["n_train_shard"] == ranks[1]["n_train_shard"] == 2800
    assert ranks[0]["train_loss"] != ranks[1]["train_loss"]
    assert ranks[0]["train_loss"][-1] < 0.6 * ranks[0]["train_loss"][0]
    assert ranks[0]["val_accuracy"] > 0.80  # majority class is 0.76
