"""The impactflow pipeline flow: composition only (every step is a task in ``tasks/``).

    config -> load -> validate (GX; stop on violation) -> split -> train model + baselines
      -> audits -> MLflow child runs (+ registry versions with gate tags) -> report -> signed
      manifest -> parent run -> champion alias (only when the run passed) -> Prefect artifact

The CLI, deployments and tests all call ``impactflow_pipeline`` (or ``run_pipeline``).
No ``from __future__ import annotations`` here: Prefect reads the annotations.
"""

from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

from prefect import flow

from impactflow.flows.config import RunConfig, check_references
from impactflow.tasks.audit import audit_model
from impactflow.tasks.data import load_data, split_data, validate_data
from impactflow.tasks.evidence import prepare_evidence, sign_run
from impactflow.tasks.ledger import anonymity, finalize_budget, log_budget, reserve_budget
from impactflow.tasks.privacy import canaries_for, collect_privacy_attacks, submit_privacy_attacks
from impactflow.tasks.log import fail_tracking, log_data, log_model_run, log_report, start_tracking, summary_artifact
from impactflow.tasks.registry import alias_champions, register_model
from impactflow.tasks.report import data_sheet, model_record, provenance, run_header, run_summary, write_report
from impactflow.tasks.train import decide_threshold, train_all


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@flow(name="impactflow-pipeline", log_prints=True, validate_parameters=False)
def impactflow_pipeline(config: dict, command: Optional[str] = None) -> dict:
    """Validate, train, audit, report and track one configured run; returns its summary."""
    cfg = RunConfig.model_validate(config)
    check_references(cfg)
    from impactflow.data_contracts import get_contract

    contract = get_contract(cfg.data.contract)
    started = _now()
    out = Path(cfg.tracking.output_dir)
    tags = {
        "impactflow.family": cfg.model.family,
        "impactflow.preset": cfg.preset,
        "impactflow.dp": str(cfg.privacy.enabled).lower(),
    }
    prov = provenance(cfg.seed, command)
    if prov["git_commit"]:
        tags["mlflow.source.git.commit"] = prov["git_commit"]
    run_name = f"{cfg.preset}-{'dp-' if cfg.privacy.enabled else ''}{datetime.now(timezone.utc):%Y%m%d-%H%M%S}"
    ctx = start_tracking(cfg.model_dump(mode="json"), cfg.preset, cfg.experiment_name, str(out), run_name, tags)
    run_dir = out / "runs" / ctx["parent_run_id"]
    children: list[str] = []
    try:
        paths = [str(p) for p in cfg.data.path] if cfg.data.path else None
        df, data_info = load_data(cfg.data.contract, paths, cfg.data.sample, cfg.seed)
        docs_dir = run_dir / "data_docs"
        reuse = str(out / "cache" / "validation") if cfg.data.reuse_validation else None
        exclude = cfg.data.exclude_sensitive_from_features

        # validate, always before anything is trained: a failed contract ends the run here
        validation = validate_data(df, cfg.data.contract, str(docs_dir), reuse)
        log_data(ctx, df, data_info, validation.to_dict(), str(docs_dir))
        validation.raise_if_failed()
        # privacy ledger: check the dataset's budget and reserve this run's epsilon (it may refuse
        # the run before any training)
        budget = reserve_budget(
            cfg.privacy.model_dump(),
            cfg.model.family,
            list(cfg.model.baselines),
            data_info,
            ctx["parent_run_id"],
            str(out),
            canaries_for(cfg.model_dump(mode="json")),
            cfg.privacy_audit.reference_models,
        )
        anon = anonymity(df, cfg.data.contract, cfg.privacy.min_k)
        split = split_data(df, cfg.data.contract, cfg.model.family, cfg.split.validation, cfg.split.test, cfg.seed)
        same_rows = {
            "baselines": list(cfg.model.baselines),
            "reference_models": cfg.privacy_audit.reference_models,
            "canary_models": int(canaries_for(cfg.model_dump(mode="json")) > 0),
        }  # for dp.covers
        attack_runs = submit_privacy_attacks(split, cfg.model_dump(mode="json"))  # LiRA references, canary run
        fitted = train_all(
            split,
            cfg.data.contract,
            cfg.model.family,
            cfg.model.params,
            cfg.train.model_dump(),
            cfg.privacy.model_dump(),
            list(cfg.model.baselines),
            exclude,
            cfg.seed,
            same_rows,
            dask=cfg.orchestration.task_runner == "dask",
        )
        decision = cfg.model.model_dump(mode="json", include={"threshold", "costs"})  # models/threshold.py
        fitted = [
            decide_threshold(f, split, cfg.data.contract, cfg.model.family, exclude, decision, cfg.privacy.enabled)
            for f in fitted
        ]
        attacks = collect_privacy_attacks(attack_runs, fitted[0], split, cfg.model_dump(mode="json"))
        audit_eps = ([attack_runs["canary"].result()["epsilon"]] if attack_runs["canary"] is not None else []) + [
            f.result()["epsilon"] for f in attack_runs["references"]
        ]
        privacy_budget = finalize_budget(budget, fitted[0].training.get("dp", {}), audit_eps)
        log_budget(ctx, privacy_budget, anon)
        records = []
        for model in fitted:
            audits = audit_model(
                model, split, cfg.data.contract, cfg.model.family, cfg.gates, attacks if model is fitted[0] else None
            )
            child = log_model_run(ctx, model, audits, split.test, tags, str(run_dir / "models"))
            children.append(child)
            record = model_record(model, audits, child)
            if cfg.tracking.register_models and record["role"] == "candidate":  # baselines are references
                record["registry"] = register_model(ctx, model.name, child, audits)
            records.append(record)
        data = data_sheet(df, contract, data_info, split, validation, exclude, privacy_budget, anon)
        run = run_header(ctx, cfg.preset, started, _now())
        integrity = prepare_evidence(ctx, str(run_dir))
        report = write_report(
            run, data, records, prov, cfg.model_dump(mode="json"), str(run_dir / "reports"), integrity=integrity
        )
        sign_run(ctx, str(run_dir), integrity)
        log_report(ctx, report["paths"], report["status"])
        # the very last step: the alias moves only once the evidence exists and the run passed
        registry = alias_champions(
            ctx, {r["name"]: r["registry"] for r in records if r.get("registry")}, report["status"]
        )
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
    """Entry point for the CLI and tests: run the flow on a validated config. The flow run is
    tagged with this process as its owner: ``impactflow reconcile`` marks it Crashed once the
    process is gone (tasks/reconcile.py)."""
    from prefect import tags

    from impactflow.tasks.reconcile import prefect_owner_tag

    with tags(prefect_owner_tag()):
        return with_task_runner(cfg)(cfg.model_dump(mode="json"), command=command)
