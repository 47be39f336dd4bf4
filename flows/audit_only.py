"""The audit-only flow: audit an existing scores/predictions table (a model the team did not
train) and produce the same signed report, logged to MLflow as a parent run
(tag ``impactflow.flow=audit-only``).

    table -> columns exist -> contract (GX suite built from the arguments; stop on violation)
      -> fairness (+ performance and calibration by group when scores are given)
      -> MLflow metrics -> evidence cover -> report -> signed manifest -> MLflow artifacts

Composition only; every step is a task. No ``from __future__ import annotations`` here:
Prefect reads the annotations.
"""
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

from prefect import flow, runtime

from data_contracts.errors import ConfigError, ContractViolation
from data_contracts.files import check_input_file
from data_contracts.names import safe_name
from tasks.audit_only import audit_predictions, check_predictions, load_predictions, log_audits, model_record
from tasks.evidence import prepare_evidence, sign_run
from tasks.log import fail_tracking, log_data, log_report, start_tracking
from tasks.report import provenance, representation, write_report

AUDIT_ONLY_TAG = {"impactflow.flow": "audit-only"}
DEFAULT_EXPERIMENT = "impactflow-audit-only"
# the largest input table read (bytes); reading takes several times the file's size in memory
DEFAULT_MAX_INPUT_BYTES = 1 << 30


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def audit_thresholds(gates: Optional[dict]) -> dict:
    """``{audit: {key: value}}`` checked against the keys each audit accepts (ConfigError naming
    the key otherwise); ``{audit: {"skip": {key: reason}}}`` skips a gate on purpose, and null
    is refused for a key with a default (the same rules as ``gates`` in a run config)."""
    from audits import AUDIT_ONLY_THRESHOLDS as known, SKIP
    from audits.gating import section_problems

    out: dict[str, dict] = {}
    for audit, values in (gates or {}).items():
        if audit not in known:
            raise ConfigError(f"gate {audit!r}: unknown audit (known: {', '.join(known)})")
        for key, value in (values or {}).items():
            if key != SKIP and key not in known[audit]:
                raise ConfigError(f"gate {audit}.{key}: unknown key (known: {', '.join(known[audit])})")
            out.setdefault(audit, {})[key] = value
        problems = section_problems(audit, out.get(audit, {}), known[audit])
        if problems:
            raise ConfigError(problems[0])
    return out


@flow(name="impactflow-audit-only", log_prints=True, validate_parameters=False)
def audit_only_flow(data: str, label: str, sensitive: list, score: Optional[str] = None,
                    prediction: Optional[str] = None, positive_label: Optional[str] = None,
                    threshold: float = 0.5, experiment: str = DEFAULT_EXPERIMENT,
                    output_dir: str = "impactflow_runs", model_name: str = "external-model",
                    min_group_size: int = 30, gates: Optional[dict] = None,
                    command: Optional[str] = None, max_input_bytes: Optional[int] = DEFAULT_MAX_INPUT_BYTES) -> dict:
    """Contract-check, audit, report, sign and track one predictions table; returns its summary.
    ``model_name`` and ``experiment`` must be safe names (``data_contracts.names``): the model's
    name is a folder of the run; ``data`` must be a regular file of at most ``max_input_bytes``
    (None or 0: no limit)."""
    safe_name(model_name, "--model-name")
    safe_name(experiment, "--experiment")
    if (score is None) == (prediction is None):
        raise ConfigError("give exactly one of --score COL (probabilities) or --prediction COL (0/1 labels)")
    if score is not None and not 0.0 < float(threshold) < 1.0:
        raise ConfigError(f"--threshold {threshold}: must be strictly between 0 and 1")
    thresholds = audit_thresholds(gates)
    check_input_file(data, max_input_bytes)
    sensitive = [str(c) for c in sensitive]
    params = {"data": str(data), "label": label, "score": score, "prediction": prediction,
              "sensitive": sensitive, "positive_label": positive_label, "threshold": float(threshold),
              "model_name": model_name, "min_group_size": int(min_group_size), "gates": thresholds}
    started = _now()
    out = Path(output_dir)
    tags = {**AUDIT_ONLY_TAG, "impactflow.model": model_name}
    run_name = f"audit-only-{model_name}-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}"
    ctx = start_tracking(params, "audit-only", experiment, str(out), run_name, tags)
    run_dir = out / "runs" / ctx["parent_run_id"]
    try:
        df, info = load_predictions(str(data), label, score, prediction, sensitive)
        validation, positive = check_predictions(df, str(data), label, score, prediction, sensitive,
                                                 positive_label, int(min_group_size), str(run_dir))
        log_data(ctx, df, info, validation.to_dict(), str(run_dir / "data_docs"))
        if not validation.success:
            raise ContractViolation(contract=validation.contract, failures=validation.failures,
                                    total_expectations=validation.total_expectations,
                                    data_docs=validation.data_docs)
        audits = audit_predictions(df, label, score, prediction, sensitive, positive, float(threshold), thresholds)
        log_audits(ctx, model_name, audits, str(run_dir))
        record = model_record(model_name, audits, ctx["parent_run_id"], score=score, prediction=prediction,
                              threshold=float(threshold), positive=positive)
        from data_contracts.predictions import binarize

        labelled = df.assign(**{label: binarize(df[label], positive)})
        data_doc = {
            **info,
            "splits": {"train": 0, "validation": 0, "test": int(len(df))},
            "contract_result": validation.to_dict(),
            "representation": representation(labelled, label, 1, sensitive),
            "synthetic_groups": [],
            "missing": {k: int(v) for k, v in df.isna().sum().items() if v},
            "sensitive": sensitive,
            "excluded_features": [],
            "audit_only": True,
        }
        run = {"run_id": ctx["parent_run_id"], "flow_run_id": str(runtime.flow_run.id or "") or None,
               "preset": "audit-only", "started_at": started, "finished_at": _now(),
               "mlflow": {"tracking_uri": ctx["uri"], "experiment": ctx["experiment"],
                          "parent_run_id": ctx["parent_run_id"]}}
        integrity = prepare_evidence(ctx, str(run_dir))
        report = write_report(run, data_doc, [record], provenance(0, command), params,
                              str(run_dir / "reports"), integrity=integrity)
        signed = sign_run(ctx, str(run_dir), integrity)
        log_report(ctx, report["paths"], report["status"])
    except BaseException as exc:
        fail_tracking(ctx, [], exc)
        raise
    from tasks.tracking import public_uri, ui_url

    return {
        "status": report["status"],
        "mlflow_url": ui_url(ctx["uri"], ctx["experiment_id"], ctx["parent_run_id"]),
        "experiment": ctx["experiment"],
        "experiment_id": ctx["experiment_id"],
        "parent_run_id": ctx["parent_run_id"],
        "tracking_uri": public_uri(ctx["uri"]),  # shown and logged: never its credentials
        "run_dir": str(run_dir),
        "report": report["paths"],
        "gates": report["gates"],
        "incomplete": report["incomplete"],
        "manifest_sha256": signed["manifest_sha256"],
        "signer_key_id": signed["key_id"],
        "metrics": {k: v for a in audits.values() for k, v in a.metrics.items()},
    }


def run_audit_only(**kwargs: Any) -> dict:
    """Entry point for the CLI and tests."""
    return audit_only_flow(**kwargs)
