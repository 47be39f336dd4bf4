"""The impactflow pipeline flow: composition only (every step is a task in ``tasks/``).

    config -> load -> validate (GX; stop on violation) -> split -> train model + baselines
      -> drift against the reference -> audits -> MLflow child runs -> champion vs challenger
      (+ registry versions with gate and promotion tags) -> report (+ trend plots) -> signed
      manifest -> parent run -> champion alias (only when the run passed and the candidate was
      not held) -> Prefect artifact

The CLI, deployments and tests all call ``impactflow_pipeline`` (or ``run_pipeline``).
No ``from __future__ import annotations`` here: Prefect reads the annotations.
"""

from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

from prefect import flow

from impactflow.flows.config import RunConfig, check_references
from impactflow.tasks.data import load_data, split_data, validate_data
from impactflow.tasks.ledger import anonymity, finalize_budget, log_budget
from impactflow.tasks.log import fail_tracking, log_data, summary_artifact
from impactflow.tasks.reconcile import tag_flow_run_owner
from impactflow.tasks.report import data_sheet, run_header, run_summary
from impactflow.tasks.spec import RunSpec
from impactflow.tasks.steps import audit_and_log, open_run, publish, reserve, train
from impactflow.tasks.watch import drift_check


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@flow(name="impactflow-pipeline", log_prints=True, validate_parameters=False)
def impactflow_pipeline(config: dict, command: Optional[str] = None) -> dict:
    """Validate, train, audit, report and track one configured run; returns its summary."""
    tag_flow_run_owner()  # first: `impactflow reconcile` crashes this flow run if this process dies
    cfg = RunConfig.model_validate(config)
    check_references(cfg)
    spec, started = RunSpec.of(cfg), _now()
    ctx, tags, prov = open_run(cfg, command)
    children: list[str] = []  # the MLflow child runs, ended by fail_tracking if the run fails
    try:
        paths = [str(p) for p in cfg.data.path] if cfg.data.path else None
        df, data_info = load_data(spec, paths, cfg.data.sample, cfg.seed)
        # validate, always before anything is trained: a failed contract ends the run here
        docs = str(Path(ctx["run_dir"]) / "data_docs")
        reuse = str(Path(cfg.tracking.output_dir) / "cache" / "validation") if cfg.data.reuse_validation else None
        validation = validate_data(df, spec, docs, reuse)
        log_data(ctx, df, data_info, validation.to_dict(), docs)
        validation.raise_if_failed()
        budget = reserve(cfg, spec, data_info, ctx)  # the privacy ledger may refuse the run here
        anon = anonymity(df, spec, cfg.privacy.min_k)
        split = split_data(df, spec, cfg.split.validation, cfg.split.test, cfg.seed)
        fitted, attacks, attack_epsilons = train(split, spec, cfg)
        privacy_budget = finalize_budget(budget, fitted[0].training.get("dp", {}), attack_epsilons)
        log_budget(ctx, privacy_budget, anon)
        drift = drift_check(ctx, split, spec, cfg.gates, cfg.preset, fitted[0].name, cfg.privacy.enabled)
        records = [
            audit_and_log(ctx, m, split, spec, cfg, attacks if m is fitted[0] else None, tags, children, drift)
            for m in fitted
        ]
        data = data_sheet(df, spec, data_info, split, validation, privacy_budget, anon)
        report, registry = publish(ctx, cfg, run_header(ctx, cfg.preset, started, _now()), data, records, prov)
    except BaseException as exc:
        fail_tracking(ctx, children, exc)
        raise
    summary = run_summary(ctx, cfg.preset, children, report, records, registry)
    summary_artifact(summary)
    return summary


def with_task_runner(cfg: RunConfig):
    """The pipeline flow with the task runner the config asks for."""
    if cfg.orchestration.task_runner != "dask":
        return impactflow_pipeline
    from prefect_dask import DaskTaskRunner

    if cfg.orchestration.dask_address:
        runner = DaskTaskRunner(address=cfg.orchestration.dask_address)
    else:
        runner = DaskTaskRunner(
            cluster_kwargs={
                "n_workers": cfg.orchestration.dask_workers,
                "threads_per_worker": 1,
                "processes": True,
                "dashboard_address": None,
            }
        )
    return impactflow_pipeline.with_options(task_runner=runner)


def run_pipeline(cfg: RunConfig, command: Optional[str] = None) -> dict[str, Any]:
    """Entry point for the CLI and tests: run the flow on a validated config. (The flow's first
    call tags its flow run with this process as the owner: ``impactflow reconcile`` marks it
    Crashed once the process is gone, tasks/reconcile.py.)"""
    return with_task_runner(cfg)(cfg.model_dump(mode="json"), command=command)
