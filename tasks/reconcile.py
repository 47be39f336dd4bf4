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

Beyond MLflow's runs (issue 28, "crash leftovers"), ``reconcile_all`` (``impactflow reconcile``)
and ``reconcile_at_start`` (the start of every pipeline run) also:

- end a RUNNING child run whose parent run is no longer RUNNING (a task attempt that failed
  and was retried left it open: e.g. a full disk while logging a model);
- set the Prefect flow run (and its open task runs) of a dead owner to ``Crashed``, through
  Prefect's public client (``set_flow_run_state(..., force=True)``). The owner is read from the
  flow run's ``impactflow.owner=<host>/<pid>/<start>`` tag (``prefect_owner_tag``, set by
  ``tag_flow_run_owner``, the first call of both flows) or, failing that, from the MLflow parent run that records
  the flow run's id (``impactflow.prefect_flow_run_id``). Only when a Prefect API is reachable;
- remove temporary files of atomic writes whose writer process is gone (``impactflow.audits.atomic``);
- list privacy-budget reservations whose owner is gone (stale), and release one only when its
  run provably released nothing (see ``stale_reservations``).
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any

HOST_TAG, PID_TAG, PID_START_TAG = "impactflow.host", "impactflow.pid", "impactflow.pid_start"
FLOW_RUN_TAG = "impactflow.prefect_flow_run_id"  # the Prefect flow run of an MLflow parent run
PREFECT_OWNER_PREFIX = "impactflow.owner="  # a Prefect flow run tag: impactflow.owner=<host>/<pid>/<start>
RECONCILED_TAG = "impactflow.reconciled"
DEFAULT_STALE_AFTER_S = 24 * 3600.0
PIPELINE_FLOWS = ("impactflow-pipeline", "impactflow-audit-only")  # flows/audit_only.AUDIT_ONLY_FLOW


def _process_start(pid: int) -> str | None:
    """Start time of ``pid`` in clock ticks since boot (Linux /proc), to tell a reused pid apart."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return fields[19]  # field 22 of stat(5), counted after "pid (comm)"
    except (OSError, IndexError):
        return None


def owner_tags() -> dict[str, str]:
    """Tags naming the process that owns a run (and, inside a flow, its Prefect flow run)."""
    pid = os.getpid()
    tags = {HOST_TAG: socket.gethostname(), PID_TAG: str(pid), PID_START_TAG: _process_start(pid) or ""}
    flow_run_id = _current_flow_run_id()
    if flow_run_id:
        tags[FLOW_RUN_TAG] = flow_run_id
    return tags


def _current_flow_run_id() -> str | None:
    try:
        from prefect import runtime

        return str(runtime.flow_run.id or "") or None
    except Exception:  # no Prefect context: not inside a flow
        return None


def prefect_owner_tag() -> str:
    """The Prefect tag naming this process as a flow run's owner (``impactflow.owner=h/pid/start``)."""
    t = owner_tags()
    return f"{PREFECT_OWNER_PREFIX}{t[HOST_TAG]}/{t[PID_TAG]}/{t[PID_START_TAG]}"


def tag_flow_run_owner() -> None:
    """Tag the current Prefect flow run (none: nothing to do) with ``prefect_owner_tag``: one
    API call. Only the flow run is tagged, not through Prefect's ``tags`` context: a tag there
    goes on every task run too, and Prefect acquires and releases tag concurrency slots (two
    API round trips) around each task run that has a tag (measured: ~5 s of a 40 s run)."""
    from prefect import runtime
    from prefect.client.orchestration import get_client

    flow_run_id = runtime.flow_run.id
    if not flow_run_id:
        return
    current = list(runtime.flow_run.tags or [])
    mine = prefect_owner_tag()
    if mine in current:  # already tagged by this process
        return
    kept = [t for t in current if not t.startswith(PREFECT_OWNER_PREFIX)]
    with get_client(sync_client=True) as client:
        client.update_flow_run(flow_run_id, tags=[*kept, mine])


def owner_from_prefect_tags(tags: list[str] | None) -> dict[str, str] | None:
    """The owner tags (as ``owner_tags`` gives them) read back from a flow run's tags."""
    for tag in tags or []:
        if tag.startswith(PREFECT_OWNER_PREFIX):
            parts = tag[len(PREFECT_OWNER_PREFIX) :].rsplit("/", 2)
            if len(parts) == 3:
                return {HOST_TAG: parts[0], PID_TAG: parts[1], PID_START_TAG: parts[2]}
    return None


def owner_alive(tags: dict[str, str], start_ms: int | None, *, stale_after_s: float, now: float | None = None) -> bool:
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


def reconcile(
    uri: str, experiment_ids: list[str] | None = None, stale_after_s: float = DEFAULT_STALE_AFTER_S
) -> list[dict[str, Any]]:
    """Mark KILLED every RUNNING impactflow parent run whose owner is gone (and its RUNNING
    children). Returns one ``{"run_id", "reason"}`` per run marked."""
    from mlflow import MlflowClient
    from mlflow.entities import ViewType

    client = MlflowClient(tracking_uri=uri)
    if experiment_ids is None:
        experiment_ids = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ACTIVE_ONLY)]
    if not experiment_ids:
        return []
    running = client.search_runs(experiment_ids, filter_string="attributes.status = 'RUNNING'", max_results=5000)
    done: list[dict[str, Any]] = []
    killed: set[str] = set()
    for run in running:
        tags = run.data.tags
        if PID_TAG not in tags or owner_alive(tags, run.info.start_time, stale_after_s=stale_after_s):
            continue
        reason = (
            f"owner process {tags.get(PID_TAG)} on {tags.get(HOST_TAG)} is gone; "
            f"marked KILLED by reconcile at {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}"
        )
        client.set_tag(run.info.run_id, RECONCILED_TAG, reason)
        client.set_terminated(run.info.run_id, status="KILLED")
        killed.add(run.info.run_id)
        done.append({"run_id": run.info.run_id, "reason": reason})
    from mlflow.exceptions import MlflowException

    parents: dict[str, str] = {}  # parent run id -> its status
    for run in running:
        parent = run.data.tags.get("mlflow.parentRunId")
        if not parent or run.info.run_id in killed:
            continue
        if parent in killed:
            reason = f"parent run {parent} was reconciled as KILLED"
        else:
            # a child whose parent ended: a task attempt that failed (and was retried, e.g. on a
            # full disk) before it could end its run. Only impactflow's own child runs.
            if not any(k.startswith("impactflow.") for k in run.data.tags):
                continue
            if parent not in parents:
                try:
                    parents[parent] = client.get_run(parent).info.status
                except MlflowException:
                    parents[parent] = "missing"
            if parents[parent] == "RUNNING":
                continue
            reason = f"parent run {parent} is {parents[parent]}: this child run was left RUNNING by a failed attempt"
        client.set_tag(run.info.run_id, RECONCILED_TAG, reason)
        client.set_terminated(run.info.run_id, status="KILLED")
        done.append({"run_id": run.info.run_id, "reason": reason})
    return done


# --------------------------------------------------------------------------- Prefect flow runs


def _open_state_types():
    from prefect.client.schemas.objects import StateType

    return [StateType.RUNNING, StateType.PENDING, StateType.CANCELLING]


def _owner_of_flow_run(flow_run, mlflow_client, experiment_ids: list[str]) -> tuple[dict | None, int | None]:
    """The owner tags of a flow run and when it started (ms): from its Prefect tag, else from
    the MLflow parent run that records its id."""
    owner = owner_from_prefect_tags(flow_run.tags)
    start = flow_run.start_time or flow_run.created
    start_ms = int(start.timestamp() * 1000) if start is not None else None
    if owner is None and mlflow_client is not None and experiment_ids:
        runs = mlflow_client.search_runs(
            experiment_ids, filter_string=f"tags.`{FLOW_RUN_TAG}` = '{flow_run.id}'", max_results=1
        )
        if runs and PID_TAG in runs[0].data.tags:
            owner = dict(runs[0].data.tags)
    return owner, start_ms


def reconcile_flow_runs(
    uri: str | None = None,
    experiment_ids: list[str] | None = None,
    stale_after_s: float = DEFAULT_STALE_AFTER_S,
    exclude: tuple[str, ...] = (),
) -> list[dict[str, Any]]:
    """Set every open (RUNNING, PENDING, CANCELLING) impactflow pipeline flow run whose owner is
    gone to ``Crashed``, with its open task runs, through the Prefect API this process is
    configured for. A flow run whose owner is unknown is left alone (it may be a deployment's,
    run by a worker). Returns one ``{"flow_run_id", "reason", "task_runs"}`` per flow run."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterId,
        FlowRunFilterState,
        FlowRunFilterStateType,
        TaskRunFilter,
        TaskRunFilterState,
        TaskRunFilterStateType,
    )
    from prefect.states import Crashed

    mlflow_client = None
    if uri is not None:
        from mlflow import MlflowClient
        from mlflow.entities import ViewType

        mlflow_client = MlflowClient(tracking_uri=uri)
        if experiment_ids is None:
            experiment_ids = [e.experiment_id for e in mlflow_client.search_experiments(view_type=ViewType.ACTIVE_ONLY)]
    done: list[dict[str, Any]] = []
    open_types = _open_state_types()
    with get_client(sync_client=True) as client:
        flow_runs, page = [], 200  # the API's largest page
        while True:
            batch = client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=list(PIPELINE_FLOWS))),
                flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=open_types))),
                limit=page,
                offset=len(flow_runs),
            )
            flow_runs += batch
            if len(batch) < page:
                break
        for fr in flow_runs:
            if str(fr.id) in exclude:
                continue
            owner, start_ms = _owner_of_flow_run(fr, mlflow_client, experiment_ids or [])
            if owner is None or owner_alive(owner, start_ms, stale_after_s=stale_after_s):
                continue
            reason = (
                f"owner process {owner.get(PID_TAG)} on {owner.get(HOST_TAG)} is gone; "
                f"marked Crashed by impactflow reconcile at {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}"
            )
            tasks = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[fr.id])),
                task_run_filter=TaskRunFilter(state=TaskRunFilterState(type=TaskRunFilterStateType(any_=open_types))),
            )
            for tr in tasks:
                client.set_task_run_state(tr.id, Crashed(message=reason), force=True)
            client.set_flow_run_state(fr.id, Crashed(message=reason), force=True)
            done.append({"flow_run_id": str(fr.id), "reason": reason, "task_runs": len(tasks)})
    return done


def prefect_configured() -> bool:
    """Whether this process has a Prefect API to ask (``PREFECT_API_URL``), without starting
    Prefect's temporary server (10-20 s) only to reconcile."""
    if os.environ.get("PREFECT_API_URL"):
        return True
    try:
        from prefect.settings import PREFECT_API_URL

        return bool(PREFECT_API_URL.value())
    except Exception:
        return False


# --------------------------------------------------------------------------- temporary files


def temp_roots(output_dir: str | Path) -> list[Path]:
    """Where impactflow's atomic writes put temporary files: the runs folder (reports, manifests,
    the validation cache) and ``$IMPACTFLOW_HOME`` (signing key, DP noise memo)."""
    home = Path(os.environ.get("IMPACTFLOW_HOME") or Path.home() / ".impactflow")
    return [Path(output_dir), home]


def remove_temp_files(output_dir: str | Path) -> list[Path]:
    """Remove the temporary files of atomic writes whose writer process is gone."""
    from impactflow.audits.atomic import remove_orphans

    removed: list[Path] = []
    for root in temp_roots(output_dir):
        removed += remove_orphans(root)
    return removed


# --------------------------------------------------------------------------- privacy-budget reservations


def stale_reservations(ledger_url: str, uri: str | None, *, release: bool = True) -> list[dict[str, Any]]:
    """Privacy-budget reservations (ledger entries still ``reserved``) whose owner process is gone.

    Choice (issue 28): a privacy loss cannot be undone once a model trained on the data was
    released, and a killed run may have logged one. So a stale reservation keeps counting, at its
    planned epsilon, and is shown as stale (``impactflow budget``, ``impactflow reconcile``).
    It is released (status ``released``, no longer counted) only when its run provably released
    nothing derived from the training: its MLflow parent run is in this tracking store, ended
    (KILLED or FAILED, not RUNNING) and has no child run. A child run is opened before anything
    of a trained model is logged (``log_model_run``), and the report, the canary and the LiRA
    results are written only after the child runs. Returns one dict per stale entry:
    ``entry_id, run_id, model, epsilon, owner, released, reason``."""
    from impactflow.tasks.ledger_store import Ledger

    ledger = Ledger(ledger_url)
    try:
        stale = ledger.stale_entries()
        if not stale:
            return []
        client = None
        if uri is not None:
            from mlflow import MlflowClient

            client = MlflowClient(tracking_uri=uri)
        verdicts: dict[str, str | None] = {}
        out = []
        for e in stale:
            run_id = str(e["run_id"])
            if run_id not in verdicts:
                verdicts[run_id] = (
                    _released_nothing(client, run_id) if client is not None else "no tracking store to check its run"
                )
            why_not = verdicts[run_id]
            released = release and why_not is None
            reason = (
                "released: its run ended without logging any model (nothing trained left the process)"
                if released
                else f"kept, counted at its planned epsilon: {why_not}"
            )
            if released:
                ledger.release(e["id"], reason)
            out.append(
                {
                    "entry_id": e["id"],
                    "run_id": run_id,
                    "model": e["model"],
                    "epsilon": e["epsilon"],
                    "dataset_sha256": e["dataset_sha256"],
                    "owner": e.get("owner"),
                    "released": released,
                    "reason": reason,
                }
            )
        return out
    finally:
        ledger.close()


def _released_nothing(client, run_id: str) -> str | None:
    """None when the MLflow parent run ``run_id`` provably released nothing; else why not."""
    from mlflow.exceptions import MlflowException

    try:
        run = client.get_run(run_id)
    except MlflowException:
        return "its run is not in this tracking store"
    if run.info.status not in BAD_RUN_STATUSES:
        return f"its run is {run.info.status}"
    children = client.search_runs(
        [run.info.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{run_id}'", max_results=1
    )
    if children:
        return "its run logged a model run (it may have released a trained model)"
    return None


BAD_RUN_STATUSES = ("KILLED", "FAILED")


def mark_versions(uri: str) -> list[dict[str, Any]]:
    """Tag each registered model version whose run (the child run that logged it, or its parent
    run) is KILLED or FAILED with ``impactflow.run_status=<status>`` (the parent's status first),
    and remove the ``champion`` alias from it. Returns one ``{"name", "version", "run_status",
    "run_id", "alias_removed"}`` per version changed (a version already marked is left alone)."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from impactflow.tasks.registry import CHAMPION, RUN_STATUS_TAG, version_runs

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
            bad = [
                (run_id, status_of(run_id))
                for _, run_id in reversed(version_runs(client, mv))
                if status_of(run_id) in BAD_RUN_STATUSES
            ]
            if not bad:
                continue
            run_id, status = bad[0]
            removed = champion == str(mv.version)
            if removed:
                client.delete_registered_model_alias(rm.name, CHAMPION)
            if (mv.tags or {}).get(RUN_STATUS_TAG) == status and not removed:
                continue
            client.set_model_version_tag(rm.name, str(mv.version), RUN_STATUS_TAG, status)
            done.append(
                {
                    "name": rm.name,
                    "version": str(mv.version),
                    "run_status": status,
                    "run_id": run_id,
                    "alias_removed": removed,
                }
            )
    return done


# --------------------------------------------------------------------------- everything at once


def _ledger_url_if_any(output_dir: str | Path) -> str | None:
    """The ledger to look at: ``$IMPACTFLOW_LEDGER_URL``, else the runs folder's file if present
    (reconcile never creates a ledger)."""
    from impactflow.tasks.ledger_store import LEDGER_ENV, LEDGER_FILE, ledger_url

    if os.environ.get(LEDGER_ENV) or (Path(output_dir) / LEDGER_FILE).is_file():
        return ledger_url(output_dir)
    return None


def reconcile_all(
    uri: str,
    output_dir: str | Path,
    experiment_ids: list[str] | None = None,
    stale_after_s: float = DEFAULT_STALE_AFTER_S,
    prefect: bool | None = None,
    exclude_flow_runs: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Everything a killed or failed run can leave behind, in order: MLflow runs, Prefect flow
    runs (when ``prefect`` is true; None: when a Prefect API is configured), registry versions,
    temporary files, privacy-budget reservations. Returns ``{"runs", "flow_runs", "prefect",
    "versions", "temp_files", "reservations"}`` (``prefect``: None when Prefect was not asked,
    else an error text or "ok")."""
    runs = reconcile(uri, experiment_ids, stale_after_s=stale_after_s)
    flow_runs: list[dict[str, Any]] = []
    prefect_note: str | None = None
    if prefect is None:
        prefect = prefect_configured()
    if prefect:
        try:
            flow_runs = reconcile_flow_runs(uri, experiment_ids, stale_after_s, exclude=exclude_flow_runs)
            prefect_note = "ok"
        except Exception as exc:  # Prefect unreachable: MLflow, files and ledger still reconciled
            prefect_note = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
    versions = mark_versions(uri)
    temps = remove_temp_files(output_dir)
    url = _ledger_url_if_any(output_dir)
    reservations = stale_reservations(url, uri) if url else []
    return {
        "runs": runs,
        "flow_runs": flow_runs,
        "prefect": prefect_note,
        "versions": versions,
        "temp_files": [str(p) for p in temps],
        "reservations": reservations,
    }


def reconcile_at_start(uri: str, experiment_id: str, output_dir: str | Path) -> dict[str, Any]:
    """What every pipeline run does before it opens its parent run: ``reconcile_all`` for its
    experiment, with the Prefect API the flow runs on (its own flow run excluded)."""
    own = _current_flow_run_id()
    return reconcile_all(
        uri, output_dir, [experiment_id], prefect=own is not None or None, exclude_flow_runs=(own,) if own else ()
    )


def summary_lines(result: dict[str, Any]) -> list[str]:
    """``impactflow reconcile``'s output, one line per thing changed or flagged, then counts."""
    lines = [f"{m['run_id']}: KILLED ({m['reason']})" for m in result["runs"]]
    lines.append(f"{len(result['runs'])} run(s) reconciled")
    if result["prefect"] is None:
        lines.append(
            "Prefect: not checked (no PREFECT_API_URL and no kept server; "
            "the next `impactflow run` checks its flow runs)"
        )
    elif result["prefect"] != "ok":
        lines.append(f"Prefect: not reachable ({result['prefect']}); flow runs not checked")
    else:
        lines += [f"flow run {f['flow_run_id']}: Crashed ({f['reason']})" for f in result["flow_runs"]]
        lines.append(f"{len(result['flow_runs'])} Prefect flow run(s) marked Crashed")
    for v in result["versions"]:
        alias = "; champion alias removed" if v["alias_removed"] else ""
        lines.append(f"{v['name']} version {v['version']}: run {v['run_id']} {v['run_status']}{alias}")
    lines.append(f"{len(result['versions'])} model version(s) marked")
    lines += [f"removed {p} (its writer is gone)" for p in result["temp_files"]]
    lines.append(f"{len(result['temp_files'])} orphan temporary file(s) removed")
    for r in result["reservations"]:
        eps = "unknown" if r["epsilon"] is None else f"{r['epsilon']:.4g}"
        lines.append(
            f"stale privacy-budget reservation {r['entry_id']} (dataset {str(r['dataset_sha256'])[:12]}, "
            f"run {r['run_id']}, {r['model']}, epsilon {eps}): owner gone; {r['reason']}"
        )
    lines.append(
        f"{len(result['reservations'])} stale privacy-budget reservation(s), "
        f"{sum(r['released'] for r in result['reservations'])} released"
    )
    return lines
