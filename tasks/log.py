"""Tracking tasks: MLflow parent/child runs, the report, and the Prefect summary artifact.

Retries on these only (I/O). Log first, then gates decide: a model that fails an audit
still has its full record in MLflow, tagged ``impactflow.gates=failed``.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NONE

from impactflow.tasks import progress, retry_io_only, tracking

GATES_TAG = "impactflow.gates"


@task(name="start-tracking", cache_policy=NONE, retries=2, retry_delay_seconds=2, retry_condition_fn=retry_io_only)
def start_tracking(config: dict, preset: str, experiment: str, output_dir: str, run_name: str, tags: dict) -> dict:
    """Create (or reuse) the experiment and open the parent run of this pipeline run."""
    from impactflow.tasks.reconcile import owner_tags, reconcile_at_start

    out = Path(output_dir)
    uri = tracking.tracking_uri(out)
    tracking.preflight(uri)  # unreachable server: a clear error before anything is trained
    exp_id = tracking.ensure_experiment(uri, experiment, out)
    # what killed/failed runs left: RUNNING runs and flow runs, versions, temp files, reservations
    reconcile_at_start(uri, exp_id, out)
    parent = tracking.start_run(uri, exp_id, run_name, {**tags, "impactflow.preset": preset, **owner_tags()})
    with _failed_if_raises(uri, parent):  # a retried attempt must not leave its run RUNNING
        tracking.log_params(uri, parent, config)
    return {
        "uri": uri,
        "experiment_id": exp_id,
        "experiment": experiment,
        "parent_run_id": parent,
        "min_cell_size": (config.get("disclosure") or {}).get("min_cell_size", 10),
    }


@task(name="log-data", cache_policy=NONE, retries=2, retry_delay_seconds=2)
def log_data(ctx: dict, df, data_info: dict, validation: dict, docs_dir: str | None) -> None:
    """Dataset as a run input (our SHA-256 as digest), contract result and Data Docs."""
    uri, run = ctx["uri"], ctx["parent_run_id"]
    source = data_info["files"][0]["path"] if data_info["files"] else "unknown"
    tracking.log_dataset(
        uri, run, df, name=data_info["contract"], source=source, sha256=data_info["dataset_sha256"], context="pipeline"
    )
    tracking.set_tags(
        uri,
        run,
        {
            "impactflow.dataset_sha256": data_info["dataset_sha256"],
            "impactflow.contract": data_info["contract"],
            "impactflow.contract_passed": str(validation["success"]).lower(),
        },
    )
    tracking.log_metrics(
        uri,
        run,
        {
            "data/n_rows": data_info["n_rows"],
            "data/contract_failed_expectations": len(validation["failures"]),
            "data/contract_total_expectations": validation["total_expectations"],
        },
    )
    if docs_dir and Path(docs_dir).is_dir():
        tracking.log_artifacts(uri, run, Path(docs_dir), "data_docs")


@task(name="log-model-run", cache_policy=NONE, retries=2, retry_delay_seconds=2)
def log_model_run(ctx: dict, fitted, audits: dict, test_frame, tags: dict, work_dir: str) -> str:
    """One child run per model: params, metrics, history, model (pyfunc), audit JSON, tags."""
    from impactflow.tasks.registry import gate_tags

    uri = ctx["uri"]
    run_tags = {
        **tags,
        "impactflow.model": fitted.name,
        "impactflow.kind": fitted.kind,
        GATES_TAG: gate_tags(audits)[GATES_TAG],  # passed / failed / incomplete: one rule
        "impactflow.dp": str(bool(fitted.training["dp"].get("enabled"))).lower(),
    }
    child = tracking.start_run(uri, ctx["experiment_id"], fitted.name, run_tags, ctx["parent_run_id"])
    with _failed_if_raises(uri, child):  # a retried attempt must not leave its child run RUNNING
        return _log_model_run(ctx, child, fitted, audits, test_frame, work_dir)


@contextlib.contextmanager
def _failed_if_raises(uri: str, run_id: str):
    """End ``run_id`` FAILED (KILLED when interrupted) if the block raises (a failed attempt of a retried task opened it:
    the retry opens another run); best effort, the block's error is re-raised unchanged."""
    try:
        yield
    except BaseException as exc:
        try:  # an interrupt (Ctrl-C, SIGTERM) ends it KILLED, as fail_tracking does
            tracking.end_run(uri, run_id, "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")
        except Exception:  # pragma: no cover - tracking unreachable: reconcile ends it later
            pass
        raise


def _log_model_run(ctx: dict, child: str, fitted, audits: dict, test_frame, work_dir: str) -> str:
    uri = ctx["uri"]
    progress.stage(f"log {fitted.name} to MLflow")
    tracking.log_params(
        uri,
        child,
        {
            "model": fitted.params,
            "training": {k: v for k, v in fitted.training.items() if k != "dp"},
            "dp": fitted.training["dp"],
        },
    )
    # the model before the metrics: they are then linked to its LoggedModel in the same write
    # (see tracking.log_model)
    features = fitted.predictor.features
    from impactflow.audits.disclosure import synthetic_example  # no raw rows beside the model

    model_id = tracking.log_model(uri, child, fitted.predictor, synthetic_example(test_frame[features]))
    metrics: dict[str, Any] = {}
    for result in audits.values():
        metrics.update(result.metrics)
    dp = fitted.training["dp"]
    if dp.get("enabled"):
        metrics["privacy/epsilon_rdp"] = dp.get("epsilon_rdp")
    metrics["train/wall_time_s"] = fitted.training["wall_time_s"]
    tracking.log_metrics(uri, child, metrics, model_id=model_id)
    # per-epoch history (steps 1..n) stays on the run only: MLflow links only step-0 metrics
    tracking.log_history(uri, child, fitted.history)
    out = Path(work_dir) / fitted.name
    out.mkdir(parents=True, exist_ok=True)
    audit_json = out / "audits.json"
    from impactflow.audits.disclosure import DEFAULT_MIN_CELL_SIZE, suppress_small_cells

    shown = suppress_small_cells(
        {k: v.to_dict() for k, v in audits.items()}, ctx.get("min_cell_size", DEFAULT_MIN_CELL_SIZE)
    )
    audit_json.write_text(json.dumps(shown, indent=2))
    tracking.log_artifacts(uri, child, audit_json, "audits")
    tracking.end_run(uri, child, "FINISHED")
    return child


@task(name="log-report", cache_policy=NONE, retries=2, retry_delay_seconds=2)
def log_report(ctx: dict, paths: dict, status: str) -> None:
    """Report files under ``reports/`` of the parent run; gate status as tag; run FINISHED."""
    uri, run = ctx["uri"], ctx["parent_run_id"]
    for p in paths.values():
        tracking.log_artifacts(uri, run, Path(p), "reports")
    tracking.set_tags(uri, run, {GATES_TAG: {"pass": "passed", "fail": "failed"}.get(status, status)})
    tracking.end_run(uri, run, "FINISHED")


def fail_tracking(ctx: dict | None, child_runs: list[str], error: BaseException) -> None:
    """Mark the parent and any open child runs FAILED, or KILLED when the run was interrupted
    (Ctrl-C, or SIGTERM/SIGHUP turned into an interrupt by flows/lifetime.py); best effort, never
    masks ``error``."""
    if not ctx:
        return
    uri = ctx["uri"]
    from prefect.exceptions import TerminationSignal  # Prefect's SIGTERM bridge inside a flow run

    status = "KILLED" if isinstance(error, (KeyboardInterrupt, TerminationSignal)) else "FAILED"
    try:
        tracking.set_tags(
            uri,
            ctx["parent_run_id"],
            {
                "impactflow.error": f"{type(error).__name__}: {str(error).splitlines()[0][:400] if str(error) else ''}",
                GATES_TAG: "failed",
            },
        )
        for run in [*child_runs, ctx["parent_run_id"]]:
            tracking.end_run(uri, run, status)
    except Exception:  # pragma: no cover - tracking unreachable: the original error matters more
        pass


@task(name="summary-artifact", cache_policy=NONE)
def summary_artifact(summary: dict) -> None:
    """Markdown summary of the run, with a link to the MLflow run, as a Prefect artifact."""
    from prefect.artifacts import create_markdown_artifact

    lines = [
        f"# impactflow run: **{summary['status'].upper()}**",
        "",
        f"- preset: `{summary['preset']}`",
        f"- MLflow run: [{summary['parent_run_id']}]({summary['mlflow_url']}) (experiment `{summary['experiment']}`)",
        f"- report: `{summary['report']['html']}`",
        "",
        "| model | gate | value | threshold | status |",
        "|---|---|---|---|---|",
    ]
    for g in summary["gates"]:
        value = "—" if g["value"] is None else f"{g['value']:.4g}"
        thr = "—" if g["threshold"] is None else f"{g['comparison']} {g['threshold']:.4g}"
        model = f"{g['model']} (baseline)" if g.get("baseline") else g["model"]
        lines.append(f"| {model} | {g['name']} | {value} | {thr} | {g['status']} |")
    create_markdown_artifact(markdown="\n".join(lines), key="impactflow-summary", description="impactflow gate summary")
