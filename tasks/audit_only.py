"""Tasks of the audit-only flow: audit a scores/predictions table of a model not trained here."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NONE

from tasks import progress, tracking

AUDIT_ONLY_THRESHOLDS_EXTRA = "calibration_by_group"
DISTINCT_DECISIONS = "fairness/distinct_decisions"


@task(name="load-predictions", cache_policy=NONE, retries=1, retry_delay_seconds=1)
def load_predictions(path: str, label: str, score: str | None, prediction: str | None,
                     sensitive: list[str]) -> tuple[Any, dict]:
    """Read the table, check the named columns exist, hash the file."""
    from data_contracts.files import file_sha256
    from data_contracts.predictions import read_table, require_columns, sensitive_as_text

    progress.stage("load predictions table")
    df = read_table(path)
    roles = list(dict.fromkeys([label, *(c for c in (score, prediction) if c), *sensitive]))
    require_columns(df, roles, path)
    df = df[roles]  # other columns (ids, features) are neither audited nor copied anywhere
    sha = file_sha256(Path(path))
    info = {
        "contract": f"audit-only:{Path(path).name}",
        "files": [{"path": str(path), "sha256": sha}],
        "dataset_sha256": sha,
        "n_rows": int(len(df)),
        "source": str(path),
        "license": "unknown (table supplied by the user)",
        "shipped": False,
    }
    return sensitive_as_text(df, sensitive), info


@task(name="check-predictions", cache_policy=NONE)
def check_predictions(df, path: str, label: str, score: str | None, prediction: str | None,
                      sensitive: list[str], positive_label: str | None, min_group_size: int,
                      run_dir: str) -> tuple[Any, Any]:
    """Build the GX suite from the arguments, write it into the run folder, validate (Data Docs)."""
    from data_contracts.predictions import label_values, predictions_contract, predictions_suite, write_suite
    from data_contracts.validation import validate

    progress.stage("validate (Great Expectations)")
    label_set, positive = label_values(df, label, positive_label)
    name = f"audit-only-{Path(path).stem}"
    suite = predictions_suite(df, name=name, label=label, label_set=label_set, score=score,
                              prediction=prediction, sensitive=sensitive, min_group_size=min_group_size)
    suite_path = write_suite(suite, Path(run_dir) / "contract" / "expectations.json")
    contract = predictions_contract(name=name, label=label, positive_label=positive, sensitive=sensitive,
                                    min_group_size=min_group_size, suite_path=suite_path, source=path,
                                    columns=list(df.columns))
    return validate(df, contract, Path(run_dir) / "data_docs"), positive


@task(name="audit-predictions", cache_policy=NONE)
def audit_predictions(df, label: str, score: str | None, prediction: str | None, sensitive: list[str],
                      positive: Any, threshold: float, thresholds: dict) -> dict:
    """Fairness on the hard predictions; performance and calibration by group when scores are given.
    Every configured gate is accounted for as in a pipeline run (``audits.gating``): an audit that
    raises, or a performance gate set without ``--score``, leaves its gates not measured. A model
    that gives everyone the same decision fails ``fairness/distinct_decisions`` (``decisions_gate``)."""
    from audits import AUDIT_ONLY_THRESHOLDS as known, fairness_audit, performance_audit
    from audits.calibration import calibration_group_audit
    from audits.gating import audited, not_run

    progress.stage("audit predictions")
    inputs = audit_inputs(df, label, score, prediction, sensitive, positive, threshold)
    out = {"fairness": with_gate(audited("fairness", fairness_audit, inputs, thresholds.get("fairness"),
                                         known["fairness"]), decisions_gate(inputs))}
    if score:
        out["performance"] = audited("performance", performance_audit, inputs, thresholds.get("performance"),
                                     known["performance"])
    elif "performance" in thresholds:
        out["performance"] = not_run("performance", thresholds["performance"], known["performance"],
                                     "performance needs scores (--score): hard predictions were given")
    out["calibration_by_group"] = audited("calibration_by_group", calibration_group_audit, inputs,
                                          thresholds.get("calibration_by_group"), known["calibration_by_group"])
    return out


def decisions_gate(inputs) -> Any:
    """The degenerate-model check of audit-only (always on, cannot be skipped): the hard
    decisions must take both values. A constant model (every score 0.1) or any model that gives
    every row the same decision makes every group's selection and error rates equal by
    construction, so all fairness gates pass while nothing was learned about the model: such a
    run fails instead. Value: the number of distinct decisions (1 or 2), threshold ``>= 2``."""
    import numpy as np

    from audits import Gate
    from audits.results import Status

    decisions = np.asarray(inputs.y_score, dtype=float) >= inputs.decision_threshold
    values = np.unique(decisions)
    if values.size >= 2:
        return Gate(DISTINCT_DECISIONS, Status.PASS, 2.0, 2.0, ">=")
    scores = np.unique(np.asarray(inputs.y_score, dtype=float))
    what = (f"every score is {scores[0]:g}" if scores.size == 1 and not inputs.extra.get("hard_predictions")
            else f"every row is predicted {int(values[0]) if values.size else '-'}")
    return Gate(DISTINCT_DECISIONS, Status.FAIL, float(values.size), 2.0, ">=",
                f"degenerate model: {what}; one decision for everyone makes every group's rates equal "
                "by construction, so the fairness gates would pass without measuring anything")


def with_gate(result, gate) -> Any:
    """``result`` with one more gate, its status recomputed (``overall_status``)."""
    from dataclasses import replace

    from audits.results import overall_status

    gates = [*result.gates, gate]
    return replace(result, gates=gates, status=overall_status(gates))


def audit_inputs(df, label, score, prediction, sensitive, positive, threshold):
    from audits import AuditInputs
    from data_contracts.predictions import binarize

    y_true = binarize(df[label], positive).to_numpy()
    if score:
        y_score, cut, hard = df[score].astype(float).to_numpy(), float(threshold), False
    else:  # hard predictions: 0/1 "scores" with the cut at 0.5 reproduce them exactly
        y_score, cut, hard = binarize(df[prediction], positive).astype(float).to_numpy(), 0.5, True
    return AuditInputs(y_true=y_true, y_score=y_score, sensitive=df[list(sensitive)],
                       decision_threshold=cut, extra={"hard_predictions": hard})


@task(name="log-audit-only", cache_policy=NONE, retries=2, retry_delay_seconds=2)
def log_audits(ctx: dict, model_name: str, audits: dict, run_dir: str) -> None:
    """Audit metrics on the parent run; the audit JSON into the run folder (evidence)."""
    metrics: dict[str, Any] = {}
    for result in audits.values():
        metrics.update(result.metrics)
    tracking.log_metrics(ctx["uri"], ctx["parent_run_id"], metrics)
    from data_contracts.names import safe_name

    out = Path(run_dir) / "models" / safe_name(model_name, "--model-name")  # a folder of the run, never above it
    out.mkdir(parents=True, exist_ok=True)
    (out / "audits.json").write_text(json.dumps({k: v.to_dict() for k, v in audits.items()}, indent=2))


def model_record(model_name: str, audits: dict, run_id: str, *, score: str | None, prediction: str | None,
                 threshold: float, positive: Any) -> dict:
    """The report's model entry for a model audited, not trained, here."""
    return {
        "name": model_name,
        "role": "candidate",
        "family": "external",
        "description": ("audit-only: a model not trained by impactflow, audited from its "
                        + (f"scores (column '{score}', threshold {threshold})" if score
                           else f"hard predictions (column '{prediction}')")),
        "params": {"score_column": score, "prediction_column": prediction,
                   "decision_threshold": threshold if score else None, "positive_label": str(positive)},
        "training": {"device": "n/a (not trained here)", "epochs_run": None, "best_epoch": None,
                     "wall_time_s": None, "n_parameters": None, "dp": {"enabled": False}},
        "audits": {k: v.to_dict() for k, v in audits.items()},
        "mlflow_run_id": run_id,
    }
