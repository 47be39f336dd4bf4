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

from impactflow.errors import ConfigError
from impactflow.data_contracts.files import check_input_file
from impactflow.data_contracts.names import safe_name
from impactflow.tasks.audit_only import (
    MODEL_SCORE,
    audit_predictions,
    check_predictions,
    check_with_contract,
    group_settings,
    load_predictions,
    load_with_contract,
    log_audits,
    model_record,
    score_with_model,
)
from impactflow.tasks.evidence import prepare_evidence, sign_run
from impactflow.tasks.log import fail_tracking, log_data, log_report, start_tracking
from impactflow.tasks.report import provenance, representation, write_report

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
    from impactflow.audits import AUDIT_ONLY_THRESHOLDS as known, SKIP
    from impactflow.audits.gating import section_problems

    out: dict[str, dict] = {}
    for audit, values in (gates or {}).items():
        if audit not in known:
            raise ConfigError(f"gate {audit!r}: unknown audit (known: {', '.join(known)})")
        for key, value in (values or {}).items():
            if key != SKIP and key not in known[audit]:
                raise ConfigError(f"gate {audit}.{key}: unknown key (known: {', '.join(known[audit])})")
            problem = None if key == SKIP else known[audit][key].problem(value)
            if problem:
                raise ConfigError(f"gate {audit}.{key}: {problem}")
            out.setdefault(audit, {})[key] = value
        problems = section_problems(audit, out.get(audit, {}), known[audit])
        if problems:
            raise ConfigError(problems[0])
    return out


AUDIT_ONLY_FLOW = "impactflow-audit-only"  # in tasks.reconcile.PIPELINE_FLOWS: a killed audit is reconciled


def contract_defaults(
    contract: Optional[str],
    label: Optional[str],
    sensitive: Optional[list],
    positive_label: Optional[str],
    favourable_outcome: Optional[str],
    min_group_size: Optional[int],
) -> dict:
    """The roles of an audit: the arguments, completed from ``--contract`` (its target, sensitive
    columns, positive label, favourable outcome and minimum group size) where not given."""
    c = None
    if contract is not None:
        from impactflow.data_contracts import get_contract

        c = get_contract(contract)
    out = {
        "label": label if label is not None else (c.target if c else None),
        "sensitive": list(sensitive) if sensitive else (list(c.sensitive) if c else []),
        "positive_label": positive_label if positive_label is not None else (c.positive_label if c else None),
        "favourable_outcome": favourable_outcome
        if favourable_outcome is not None
        else (c.favourable_outcome if c else None),
        "min_group_size": int(min_group_size) if min_group_size is not None else (c.min_group_size if c else 30),
    }
    if not out["label"]:
        raise ConfigError("--label: give the column with the true outcome (or --contract with a target)")
    if not out["sensitive"]:
        raise ConfigError("--sensitive: give at least one column (COL or COL1,COL2), or --contract with sensitive:")
    return out


def check_favourable(df, label: str, positive, favourable: Optional[str]) -> None:
    """``--favourable-outcome`` must be a value of the label column (compared as text)."""
    if favourable is None:
        return
    values = sorted({str(v).strip() for v in df[label].dropna().unique()} | {str(positive).strip()})
    if str(favourable).strip() not in values:
        raise ConfigError(
            f"--favourable-outcome {favourable!r}: not a value of column {label!r} "
            f"(values: {', '.join(map(repr, values[:6]))})"
        )


@flow(name=AUDIT_ONLY_FLOW, log_prints=True, validate_parameters=False)
def audit_only_flow(
    data: str,
    label: Optional[str] = None,
    sensitive: Optional[list] = None,
    score: Optional[str] = None,
    prediction: Optional[str] = None,
    positive_label: Optional[str] = None,
    threshold: Optional[float] = None,
    experiment: str = DEFAULT_EXPERIMENT,
    output_dir: str = "impactflow_runs",
    model_name: str = "external-model",
    min_group_size: Optional[int] = None,
    gates: Optional[dict] = None,
    command: Optional[str] = None,
    max_input_bytes: Optional[int] = DEFAULT_MAX_INPUT_BYTES,
    favourable_outcome: Optional[str] = None,
    intersections: Optional[list] = None,
    intended_use: Optional[dict] = None,
    contract: Optional[str] = None,
    model: Optional[str] = None,
) -> dict:
    """Contract-check, audit, report, sign and track one predictions table; returns its summary.
    ``model_name`` and ``experiment`` must be safe names (``impactflow.data_contracts.names``): the model's
    name is a folder of the run; ``data`` must be a regular file of at most ``max_input_bytes``
    (None or 0: no limit). ``threshold`` None: 0.5, reported as the default (not given).
    ``favourable_outcome``: the label value that is good for the person (selection-rate checks
    use its rate); ``intersections``: None = every sensitive column combined, [] = none, or a list
    of column lists; ``intended_use``: the report's intended-use fields
    (``impactflow.tasks.audit_only.read_intended_use``); ``contract``: a contract name or path through which
    the table is read (derived columns, generated suite) and which completes the roles; ``model``: an
    MLflow model URI (``models:/NAME/VERSION``) of a binary model impactflow logged, which scores
    the table here (instead of ``score``/``prediction``), cut at its own threshold unless
    ``threshold`` is given."""
    safe_name(model_name, "--model-name")
    safe_name(experiment, "--experiment")
    if sum(x is not None for x in (score, prediction, model)) != 1:
        raise ConfigError(
            "give exactly one of --score COL (probabilities), --prediction COL (0/1 labels) "
            "or --model models:/NAME/VERSION (scores the table here)"
        )
    threshold_given = threshold is not None
    threshold = 0.5 if threshold is None else float(threshold)
    if (score is not None or model is not None) and not 0.0 < threshold < 1.0:
        raise ConfigError(f"--threshold {threshold}: must be strictly between 0 and 1")
    if prediction is not None and threshold_given:
        raise ConfigError("--threshold applies to --score: hard predictions (--prediction) are audited as logged")
    roles = contract_defaults(contract, label, sensitive, positive_label, favourable_outcome, min_group_size)
    label, sensitive, positive_label = roles["label"], [str(c) for c in roles["sensitive"]], roles["positive_label"]
    favourable_outcome, min_group_size = roles["favourable_outcome"], roles["min_group_size"]
    if intersections is not None:
        bad = [c for combo in intersections for c in combo if c not in sensitive]
        if bad:
            raise ConfigError(f"--intersections: {bad[0]!r} is not a sensitive column ({', '.join(sensitive)})")
    thresholds = audit_thresholds(gates)
    settings = group_settings(int(min_group_size), intersections)
    check_input_file(data, max_input_bytes)
    params = {
        "data": str(data),
        "label": label,
        "score": score,
        "prediction": prediction,
        "model_uri": model,
        "sensitive": sensitive,
        "positive_label": positive_label,
        "threshold": threshold if score or (model and threshold_given) else None,
        "threshold_given": threshold_given if score or model else None,
        "favourable_outcome": favourable_outcome,
        "contract": contract,
        "intersections": intersections,
        "model_name": model_name,
        "min_group_size": int(min_group_size),
        "gates": thresholds,
    }
    if intended_use:
        params["use"] = dict(intended_use)
    started = _now()
    out = Path(output_dir)
    tags = {**AUDIT_ONLY_TAG, "impactflow.model": model_name}
    run_name = f"audit-only-{model_name}-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}"
    ctx = start_tracking(params, "audit-only", experiment, str(out), run_name, tags)
    run_dir = out / "runs" / ctx["parent_run_id"]
    try:
        scored_by = None
        if contract is not None:
            from impactflow.data_contracts.predictions import require_columns, sensitive_as_text

            full, contract_obj, info = load_with_contract(contract, str(data), score, prediction)
            require_columns(full, sensitive, str(data))
            validation, positive = check_with_contract(
                full, contract_obj, str(data), label, score, prediction, sensitive, positive_label, str(run_dir)
            )
            if model is not None and validation.success:  # the contract checks the rows the model reads
                full, own, scored_by = score_with_model(full, model, ctx["uri"], str(data))
                score, threshold = MODEL_SCORE, (threshold if threshold_given else own)
            role_cols = list(dict.fromkeys([label, *(c for c in (score, prediction) if c), *sensitive]))
            df = sensitive_as_text(full[role_cols], sensitive)
        else:
            df, info = load_predictions(str(data), label, score, prediction, sensitive, keep_all=model is not None)
            if model is not None:
                full, own, scored_by = score_with_model(df, model, ctx["uri"], str(data))
                score, threshold = MODEL_SCORE, (threshold if threshold_given else own)
                df = full[list(dict.fromkeys([label, score, *sensitive]))]
            validation, positive = check_predictions(
                df, str(data), label, score, prediction, sensitive, positive_label, int(min_group_size), str(run_dir)
            )
        check_favourable(df, label, positive, favourable_outcome)
        log_data(ctx, df, info, validation.to_dict(), str(run_dir / "data_docs"))
        validation.raise_if_failed()
        audits = audit_predictions(
            df, label, score, prediction, sensitive, positive, threshold, thresholds, favourable_outcome, settings
        )
        log_audits(ctx, model_name, audits, str(run_dir))
        record = model_record(
            model_name,
            audits,
            ctx["parent_run_id"],
            score=score,
            prediction=prediction,
            threshold=threshold,
            positive=positive,
            threshold_given=threshold_given,
            favourable=favourable_outcome,
            scored_by=scored_by,
        )
        from impactflow.data_contracts.predictions import binarize

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
            "favourable_outcome": None if favourable_outcome is None else str(favourable_outcome),
        }
        run = {
            "run_id": ctx["parent_run_id"],
            "flow_run_id": str(runtime.flow_run.id or "") or None,
            "preset": "audit-only",
            "started_at": started,
            "finished_at": _now(),
            "mlflow": {
                "tracking_uri": ctx["uri"],
                "experiment": ctx["experiment"],
                "parent_run_id": ctx["parent_run_id"],
            },
        }
        integrity = prepare_evidence(ctx, str(run_dir))
        report = write_report(
            run, data_doc, [record], provenance(0, command), params, str(run_dir / "reports"), integrity=integrity
        )
        signed = sign_run(ctx, str(run_dir), integrity)
        log_report(ctx, report["paths"], report["status"])
    except BaseException as exc:
        fail_tracking(ctx, [], exc)
        raise
    from impactflow.tasks.tracking import public_uri, ui_url

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
