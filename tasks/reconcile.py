"""Reconcile MLflow runs left RUNNING by a pipeline process that died (SIGKILL, OOM, power).

A killed process cannot mark its own run: ``fail_tracking`` never runs. So every parent run is
tagged with its owner (host, pid, process start time); at the start of every pipeline run (and
with ``impactflow reconcile``) a RUNNING run whose owner is gone is marked KILLED, with a tag
saying why. "Gone" means: on this host, no process with that pid and start time; on another
host we cannot look, so only a run older than ``stale_after_s`` (default 24 h) is reconciled.
Child runs of a reconciled parent that are still RUNNING are marked KILLED with it.

``mark_versions`` (``impactflow reconcile``) then tags every registered model version whose
child or parent run ended KILLED or FAILED with ``impactflow.run_status`` (shown by
``impactflow models``; ``promote`` refuses such a version anyway) and takes the ``champion``
alias off such a version: nothing approved stands on a run that did not finish.
"""
from __future__ import annotations

import os
import socket
import time
from typing import Any

HOST_TAG, PID_TAG, PID_START_TAG = "impactflow.host", "impactflow.pid", "impactflow.pid_start"
RECONCILED_TAG = "impactflow.reconciled"
DEFAULT_STALE_AFTER_S = 24 * 3600.0


def _process_start(pid: int) -> str | None:
    """Start time of ``pid`` in clock ticks since boot (Linux /proc), to tell a reused pid apart."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return fields[19]  # field 22 of stat(5), counted after "pid (comm)"
    except (OSError, IndexError):
        return None


def owner_tags() -> dict[str, str]:
    """Tags naming the process that owns a run."""
    pid = os.getpid()
    return {HOST_TAG: socket.gethostname(), PID_TAG: str(pid), PID_START_TAG: _process_start(pid) or ""}


def owner_alive(tags: dict[str, str], start_ms: int | None, *, stale_after_s: float,
                now: float | None = None) -> bool:
    """Whether the run's owner may still be running (True when we cannot tell otherwise)."""
    now = time.time() if now is None else now
    if tags.get(HOST_TAG) != socket.gethostname():
        return start_ms is None or now - start_ms / 1000 < stale_after_s
    try:
        pid = int(tags.get(PID_TAG, ""))
    except ValueError:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    started = tags.get(PID_START_TAG)
    return not started or _process_start(pid) in (None, started)


def reconcile(uri: str, experiment_ids: list[str] | None = None,
              stale_after_s: float = DEFAULT_STALE_AFTER_S) -> list[dict[str, Any]]:
    """Mark KILLED every RUNNING impactflow parent run whose owner is gone (and its RUNNING
    children). Returns one ``{"run_id", "reason"}`` per run marked."""
    from mlflow import MlflowClient
    from mlflow.entities import ViewType

    client = MlflowClient(tracking_uri=uri)
    if experiment_ids is None:
        experiment_ids = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ACTIVE_ONLY)]
    if not experiment_ids:
        return []
    running = client.search_runs(experiment_ids, filter_string="attributes.status = 'RUNNING'",
                                 max_results=5000)
    done: list[dict[str, Any]] = []
    killed: set[str] = set()
    for run in running:
        tags = run.data.tags
        if PID_TAG not in tags or owner_alive(tags, run.info.start_time, stale_after_s=stale_after_s):
            continue
        reason = (f"owner process {tags.get(PID_TAG)} on {tags.get(HOST_TAG)} is gone; "
                  f"marked KILLED by reconcile at {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}")
        client.set_tag(run.info.run_id, RECONCILED_TAG, reason)
        client.set_terminated(run.info.run_id, status="KILLED")
        killed.add(run.info.run_id)
        done.append({"run_id": run.info.run_id, "reason": reason})
    for run in running:
        parent = run.data.tags.get("mlflow.parentRunId")
        if parent in killed:
            reason = f"parent run {parent} was reconciled as KILLED"
            client.set_tag(run.info.run_id, RECONCILED_TAG, reason)
            client.set_terminated(run.info.run_id, status="KILLED")
            done.append({"run_id": run.info.run_id, "reason": reason})
    return done


BAD_RUN_STATUSES = ("KILLED", "FAILED")


def mark_versions(uri: str) -> list[dict[str, Any]]:
    """Tag each registered model version whose run (the child run that logged it, or its parent
    run) is KILLED or FAILED with ``impactflow.run_status=<status>`` (the parent's status first),
    and remove the ``champion`` alias from it. Returns one ``{"name", "version", "run_status",
    "run_id", "alias_removed"}`` per version changed (a version already marked is left alone)."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from tasks.registry import CHAMPION, RUN_STATUS_TAG, version_runs

    client = MlflowClient(tracking_uri=uri)
    statuses: dict[str, str] = {}

    def status_of(run_id: str) -> str:
        if run_id not in statuses:
            try:
                statuses[run_id] = client.get_run(run_id).info.status
            except MlflowException:
                statuses[run_id] = "missing"
        return statuses[run_id]

    done: list[dict[str, Any]] = []
    for rm in client.search_registered_models():
        champion = str((rm.aliases or {}).get(CHAMPION, ""))
        for mv in client.search_model_versions(f"name = '{rm.name}'"):
            bad = [(run_id, status_of(run_id)) for _, run_id in reversed(version_runs(client, mv))
                   if status_of(run_id) in BAD_RUN_STATUSES]
            if not bad:
                continue
            run_id, status = bad[0]
            removed = champion == str(mv.version)
            if removed:
                client.delete_registered_model_alias(rm.name, CHAMPION)
            if (mv.tags or {}).get(RUN_STATUS_TAG) == status and not removed:
                continue
            client.set_model_version_tag(rm.name, str(mv.version), RUN_STATUS_TAG, status)
            done.append({"name": rm.name, "version": str(mv.version), "run_status": status, "run_id": run_id,
                         "alias_removed": removed})
    return done
