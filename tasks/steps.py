"""The pipeline's composite steps: plain functions, called inside the flow, each of which runs a
few tasks in order, so that ``flows/pipeline.py`` only composes. Each takes the run's
``RunConfig`` (``cfg``) and ``RunSpec`` (``spec``) rather than their pieces.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from impactflow.tasks.audit import audit_model
from impactflow.tasks.evidence import prepare_evidence, sign_run
from impactflow.tasks.ledger import reserve_budget
from impactflow.tasks.log import log_model_run, log_report, start_tracking
from impactflow.tasks.privacy import canaries_for, collect_privacy_attacks, submit_privacy_attacks
from impactflow.tasks.registry import alias_champions, register_model
from impactflow.tasks.report import model_record, provenance, write_report
from impactflow.tasks.spec import RunSpec
from impactflow.tasks.train import decide_threshold, train_all
from impactflow.tasks.watch import challenge_champion, previous_run_gates, promotion_tags, trend_plots


def open_run(cfg: Any, command: str | None) -> tuple[dict, dict, dict]:
    """The run's provenance and tags, and its MLflow parent run: ``(ctx, tags, provenance)``;
    ``ctx`` (plus ``run_dir``: where the run's files go) is what every tracking task takes."""
    tags = {
        "impactflow.family": cfg.model.family,
        "impactflow.preset": cfg.preset,
        "impactflow.dp": str(cfg.privacy.enabled).lower(),
    }
    prov = provenance(cfg.seed, command)
    if prov["git_commit"]:
        tags["mlflow.source.git.commit"] = prov["git_commit"]
    run_name = f"{cfg.preset}-{'dp-' if cfg.privacy.enabled else ''}{datetime.now(timezone.utc):%Y%m%d-%H%M%S}"
    out = Path(cfg.tracking.output_dir)
    ctx = start_tracking(cfg.model_dump(mode="json"), cfg.preset, cfg.experiment_name, str(out), run_name, tags)
    return {**ctx, "run_dir": str(out / "runs" / ctx["parent_run_id"])}, tags, prov


def reserve(cfg: Any, spec: RunSpec, data_info: dict, ctx: dict) -> dict:
    """Check the dataset's privacy budget and reserve this run's models in the ledger (it may
    refuse the run before any training)."""
    return reserve_budget(
        cfg.privacy.model_dump(),
        spec,
        list(cfg.model.baselines),
        data_info,
        ctx["parent_run_id"],
        str(cfg.tracking.output_dir),
        canaries_for(cfg.model_dump(mode="json")),
        cfg.privacy_audit.reference_models,
    )


def train(split, spec: RunSpec, cfg: Any) -> tuple[list, dict, list[float]]:
    """The privacy-audit trainings (LiRA references, the canary run; submitted first), the model
    and its baselines with their decision thresholds: ``(fitted, attacks, attack_epsilons)``,
    the audited model first."""
    config = cfg.model_dump(mode="json")
    attack_runs = submit_privacy_attacks(split, spec, config)
    same_rows = {  # what a DP model's training.dp.covers names
        "baselines": list(cfg.model.baselines),
        "reference_models": cfg.privacy_audit.reference_models,
        "canary_models": int(canaries_for(config) > 0),
    }
    decision = cfg.model.model_dump(mode="json", include={"threshold", "costs"})  # models/threshold.py
    fitted = [
        decide_threshold(f, split, spec, decision, cfg.privacy.enabled) for f in train_all(split, spec, cfg, same_rows)
    ]
    attacks = collect_privacy_attacks(attack_runs, fitted[0], split, spec)
    canary = [attack_runs["canary"].result()["epsilon"]] if attack_runs["canary"] is not None else []
    return fitted, attacks, canary + [f.result()["epsilon"] for f in attack_runs["references"]]


def audit_and_log(
    ctx: dict, model, split, spec: RunSpec, cfg: Any, attacks, tags: dict, children: list[str], drift: dict | None
) -> dict:
    """Audit one model (``drift``: the run's ``drift_check``, the same data for every model), log
    its MLflow child run (appended to ``children`` at once, so a later failure ends it too),
    compare a candidate with the current champion and register it; the model's report record."""
    audits = audit_model(model, split, spec, cfg.gates, attacks, {"drift": drift} if drift else None)
    child = log_model_run(ctx, model, audits, split.test, tags, str(Path(ctx["run_dir"]) / "models"))
    children.append(child)
    record = model_record(model, audits, child)
    if cfg.tracking.register_models and record["role"] == "candidate":  # baselines are references
        promotion = cfg.promotion.model_dump(mode="json")
        if cfg.promotion.compare_with_champion:
            record["promotion"] = challenge_champion(
                ctx, model, split, spec, audits, promotion, cfg.gates, drift["current"]["kinds"] if drift else None
            )
        else:
            record["promotion"] = {
                "decision": "not compared",
                "reasons": ["promotion.compare_with_champion is false"],
                "rows": [],
            }
        record["registry"] = register_model(ctx, model.name, child, audits, promotion_tags(record["promotion"]))
    return record


def publish(ctx: dict, cfg: Any, run: dict, data: dict, records: list[dict], prov: dict) -> tuple[dict, dict]:
    """Write the report, sign the run's evidence, log them, and only then move the champion
    aliases (when the run passed): ``(report, registry)``."""
    run_dir = ctx["run_dir"]
    run = {**run, "previous_run": previous_run_gates(ctx, cfg.preset)}  # the report's "Since the last run"
    integrity = prepare_evidence(ctx, run_dir)
    config = cfg.model_dump(mode="json")
    report = write_report(run, data, records, prov, config, str(Path(run_dir) / "reports"), integrity=integrity)
    trend_plots(ctx, cfg.preset, report["paths"]["json"])  # every gate over the last runs (history/)
    sign_run(ctx, run_dir, integrity)
    log_report(ctx, report["paths"], report["status"])
    registered = {
        r["name"]: {**r["registry"], "promotion": r.get("promotion") or {}} for r in records if r.get("registry")
    }
    return report, alias_champions(ctx, registered, report["status"])
