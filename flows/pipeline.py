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

from prefect import flow, runtime

from impactflow.data_contracts.errors import ContractViolation
from impactflow.flows.config import RunConfig, check_references
from impactflow.tasks.audit import audit_model
from impactflow.models.training import stop_training_when
from impactflow.tasks.data import await_validation, load_data, split_data, start_validation
from impactflow.tasks.evidence import prepare_evidence, sign_run
from impactflow.tasks.ledger import anonymity, finalize_budget, log_budget, reserve_budget
from impactflow.tasks.privacy import canaries_for, collect_privacy_attacks, submit_privacy_attacks
from impactflow.tasks.log import fail_tracking, log_data, log_model_run, log_report, start_tracking, summary_artifact
from impactflow.tasks.registry import alias_champions, register_model
from impactflow.tasks.report import model_record, provenance, representation, write_report
from impactflow.tasks.train import decide_threshold, train_baseline, train_model


def validation_beside_training(cfg: RunConfig) -> Optional[str]:
    """None when the contract can be validated in a separate process while the models train
    (``data.validate_while_training``, the default); otherwise why it is validated first.

    Beside training, the run still keeps nothing trained before the contract passed: training
    stops at its next batch once the contract has failed, and the verdict is taken before the
    privacy ledger's reservation, MLflow logging, registration and the report. It is not done
    where it could change what the run does: with a dataset privacy budget the ledger must be
    able to refuse the run before any training; the Dask task runner trains on other processes
    that the stop cannot reach; and ``fork`` is needed (Linux)."""
    from impactflow.tasks.forked import available

    if not cfg.data.validate_while_training:
        return "data.validate_while_training is false"
    if cfg.privacy.budget_epsilon is not None or cfg.privacy.budget_delta is not None:
        return "a privacy budget is set: the ledger may refuse the run before training"
    if cfg.orchestration.task_runner == "dask":
        return "the Dask task runner trains in other processes"
    if not available():
        return "no fork() on this platform"
    return None


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
    tags = {"impactflow.family": cfg.model.family, "impactflow.preset": cfg.preset,
            "impactflow.dp": str(cfg.privacy.enabled).lower()}
    prov = provenance(cfg.seed, command)
    if prov["git_commit"]:
        tags["mlflow.source.git.commit"] = prov["git_commit"]
    run_name = f"{cfg.preset}-{'dp-' if cfg.privacy.enabled else ''}{datetime.now(timezone.utc):%Y%m%d-%H%M%S}"
    ctx = start_tracking(cfg.model_dump(mode="json"), cfg.preset, cfg.experiment_name, str(out), run_name, tags)
    run_dir = out / "runs" / ctx["parent_run_id"]
    children: list[str] = []
    pending = None
    try:
        paths = [str(p) for p in cfg.data.path] if cfg.data.path else None
        df, data_info = load_data(cfg.data.contract, paths, cfg.data.sample, cfg.seed)
        docs_dir = run_dir / "data_docs"
        reuse = str(out / "cache" / "validation") if cfg.data.reuse_validation else None
        exclude = cfg.data.exclude_sensitive_from_features

        def train_all():
            """split, then the privacy audit's trainings, the model and its baselines."""
            split = split_data(df, cfg.data.contract, cfg.model.family, cfg.split.validation, cfg.split.test, cfg.seed)
            same_rows = {"baselines": list(cfg.model.baselines), "reference_models": cfg.privacy_audit.reference_models,
                         "canary_models": int(canaries_for(cfg.model_dump(mode="json")) > 0)}  # for dp.covers
            calls = [(train_model, (split, cfg.data.contract, cfg.model.family, cfg.model.params,
                                     cfg.train.model_dump(), cfg.privacy.model_dump(), exclude, cfg.seed, same_rows))]
            calls += [(train_baseline, (split, cfg.data.contract, cfg.model.family, b, exclude, cfg.seed))
                      for b in cfg.model.baselines]
            attack_runs = submit_privacy_attacks(split, cfg.model_dump(mode="json"))  # LiRA references, canary run
            if cfg.orchestration.task_runner == "dask":  # independent work fans out on the cluster
                fitted = [f.result() for f in [t.submit(*args) for t, args in calls]]
            else:
                fitted = [t(*args) for t, args in calls]
            return split, attack_runs, fitted

        # the contract is validated in a separate process while the models train, unless that
        # could change what the run does (see validation_beside_training); nothing trained is
        # kept, logged, registered or reported before the contract passed
        pending = start_validation(df, cfg.data.contract, str(docs_dir), reuse,
                                   concurrent=validation_beside_training(cfg) is None)
        trained: Any = None
        if pending.concurrent:
            try:
                with stop_training_when(pending.stop_reason):
                    trained = train_all()
            except Exception as exc:  # the contract's verdict comes first (below), then this
                trained = exc
        validation = await_validation(pending)  # (or, not beside training: the validation itself)
        log_data(ctx, df, data_info, validation.to_dict(), str(docs_dir))
        if not validation.success:
            raise ContractViolation(contract=validation.contract, failures=validation.failures,
                                    total_expectations=validation.total_expectations,
                                    data_docs=validation.data_docs) from (trained if isinstance(trained, Exception)
                                                                          else None)
        if isinstance(trained, Exception):
            raise trained
        # privacy ledger: check the dataset's budget and reserve this run's epsilon (before
        # training when a budget could refuse the run: validation_beside_training)
        budget = reserve_budget(cfg.privacy.model_dump(), cfg.model.family, list(cfg.model.baselines),
                                data_info, ctx["parent_run_id"], str(out),
                                canaries_for(cfg.model_dump(mode="json")), cfg.privacy_audit.reference_models)
        anon = anonymity(df, cfg.data.contract, cfg.privacy.min_k)
        split, attack_runs, fitted = trained if trained is not None else train_all()
        decision = cfg.model.model_dump(mode="json", include={"threshold", "costs"})  # models/threshold.py
        fitted = [decide_threshold(f, split, cfg.data.contract, cfg.model.family, exclude, decision,
                                   cfg.privacy.enabled) for f in fitted]
        attacks = collect_privacy_attacks(attack_runs, fitted[0], split, cfg.model_dump(mode="json"))
        audit_eps = ([attack_runs["canary"].result()["epsilon"]] if attack_runs["canary"] is not None else []) \
            + [f.result()["epsilon"] for f in attack_runs["references"]]
        privacy_budget = finalize_budget(budget, fitted[0].training.get("dp", {}), audit_eps)
        log_budget(ctx, privacy_budget, anon)
        records = []
        for model in fitted:
            audits = audit_model(model, split, cfg.data.contract, cfg.model.family, cfg.gates,
                                 attacks if model is fitted[0] else None)
            child = log_model_run(ctx, model, audits, split.test, tags, str(run_dir / "models"))
            children.append(child)
            record = model_record(model, audits, child)
            if cfg.tracking.register_models and record["role"] == "candidate":  # baselines are references
                record["registry"] = register_model(ctx, model.name, child, audits)
            records.append(record)
        data = {
            **data_info,
            "splits": split.sizes(),
            "contract_result": validation.to_dict(),
            "representation": representation(df, contract.target, contract.positive_label,
                                              [*contract.sensitive, *contract.groups]),
            "synthetic_groups": list(contract.synthetic_groups),
            "missing": {k: int(v) for k, v in df.isna().sum().items() if v},
            "sensitive": list(contract.sensitive),
            "excluded_features": sorted({contract.weight, *contract.exclude_from_features} - {None}
                                        | (set(contract.sensitive) if exclude else set())),
            "privacy_budget": privacy_budget,
            "anonymity": anon,
        }
        run = {"run_id": ctx["parent_run_id"], "flow_run_id": str(runtime.flow_run.id or "") or None,
               "preset": cfg.preset, "started_at": started, "finished_at": _now(),
               "mlflow": {"tracking_uri": ctx["uri"], "experiment": ctx["experiment"],
                          "parent_run_id": ctx["parent_run_id"]}}
        integrity = prepare_evidence(ctx, str(run_dir))
        report = write_report(run, data, records, prov, cfg.model_dump(mode="json"), str(run_dir / "reports"),
                              integrity=integrity)
        sign_run(ctx, str(run_dir), integrity)
        log_report(ctx, report["paths"], report["status"])
        # the very last step: the alias moves only once the evidence exists and the run passed
        registry = alias_champions(ctx, {r["name"]: r["registry"] for r in records if r.get("registry")},
                                   report["status"])
    except BaseException as exc:
        if pending is not None:
            pending.cancel()  # (a no-op once its result is in)
        fail_tracking(ctx, children, exc)
        raise
    from impactflow.tasks.tracking import public_uri, ui_url

    summary = {
        "status": report["status"],
        "preset": cfg.preset,
        "experiment": ctx["experiment"],
        "experiment_id": ctx["experiment_id"],
        "parent_run_id": ctx["parent_run_id"],
        "child_run_ids": children,
        "tracking_uri": public_uri(ctx["uri"]),  # shown and logged: never its credentials
        "mlflow_url": public_uri(ui_url(ctx["uri"], ctx["experiment_id"], ctx["parent_run_id"])),
        "report": report["paths"],
        "gates": report["gates"],
        "incomplete": report["incomplete"],
        "models": {r["name"]: {"mlflow_run_id": r["mlflow_run_id"],
                                "metrics": {k: v for a in r["audits"].values() for k, v in a["metrics"].items()},
                                "dp": r["training"]["dp"], "registry": registry.get(r["name"])} for r in records},
    }
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
        runner = DaskTaskRunner(cluster_kwargs={"n_workers": cfg.orchestration.dask_workers,
                                                "threads_per_worker": 1, "processes": True,
                                                "dashboard_address": None})
    return impactflow_pipeline.with_options(task_runner=runner)


def run_pipeline(cfg: RunConfig, command: Optional[str] = None) -> dict[str, Any]:
    """Entry point for the CLI and tests: run the flow on a validated config. The flow run is
    tagged with this process as its owner: ``impactflow reconcile`` marks it Crashed once the
    process is gone (tasks/reconcile.py)."""
    from prefect import tags

    from impactflow.tasks.reconcile import prefect_owner_tag

    with tags(prefect_owner_tag()):
        return with_task_runner(cfg)(cfg.model_dump(mode="json"), command=command)
