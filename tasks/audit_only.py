"""Tasks of the audit-only flow: audit a scores/predictions table of a model not trained here."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NONE

from impactflow.tasks import progress, tracking

AUDIT_ONLY_THRESHOLDS_EXTRA = "calibration_by_group"
DISTINCT_DECISIONS = "fairness/distinct_decisions"


@task(name="load-predictions", cache_policy=NONE, retries=1, retry_delay_seconds=1)
def load_predictions(
    path: str,
    label: str,
    score: str | None,
    prediction: str | None,
    sensitive: list[str],
    keep_all: bool = False,
    score_kind: str = "probability",
) -> tuple[Any, dict]:
    """Read the table, check the named columns exist, hash the file. ``keep_all``: keep every
    column (a model scores the rows: ``score_with_model``), else only the named ones;
    ``score_kind="logit"``: the score column holds log-odds, mapped to probabilities here."""
    from impactflow.data_contracts.files import file_sha256
    from impactflow.data_contracts.predictions import read_table, require_columns, sensitive_as_text

    progress.stage("load predictions table")
    df = read_table(path)
    roles = list(dict.fromkeys([label, *(c for c in (score, prediction) if c), *sensitive]))
    require_columns(df, roles, path)
    if not keep_all:
        df = df[roles]  # other columns (ids, features) are neither audited nor copied anywhere
    if score and score_kind == "logit":
        from impactflow.audits.aggregates import expit

        try:
            logits = df[score].to_numpy(dtype=float)
        except (TypeError, ValueError):
            from impactflow.errors import DataError

            raise DataError(f"{path}: column {score!r}: not numeric log-odds") from None
        df = df.assign(**{score: expit(logits)})
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
def check_predictions(
    df,
    path: str,
    label: str,
    score: str | None,
    prediction: str | None,
    sensitive: list[str],
    positive_label: str | None,
    min_group_size: int,
    run_dir: str,
) -> tuple[Any, Any]:
    """Build the GX suite from the arguments, write it into the run folder, validate (Data Docs)."""
    from impactflow.data_contracts.predictions import label_values, predictions_contract, predictions_suite, write_suite
    from impactflow.data_contracts.validation import validate

    progress.stage("validate (Great Expectations)")
    label_set, positive = label_values(df, label, positive_label)
    name = f"audit-only-{Path(path).stem}"
    # every group present (at least one row); one below min_group_size is too small to judge in
    # the audits, it does not fail the table (group_settings)
    suite = predictions_suite(
        df,
        name=name,
        label=label,
        label_set=label_set,
        score=score,
        prediction=prediction,
        sensitive=sensitive,
        min_group_size=1,
    )
    suite_path = write_suite(suite, Path(run_dir) / "contract" / "expectations.json")
    contract = predictions_contract(
        name=name,
        label=label,
        positive_label=positive,
        sensitive=sensitive,
        min_group_size=1,
        suite_path=suite_path,
        source=path,
        columns=list(df.columns),
    )
    return validate(df, contract, Path(run_dir) / "data_docs"), positive


def present_groups_only(suite: dict, sensitive) -> dict:
    """The suite with each per-group minimum row count lowered to 1 (the group is present): in a
    real decision log a group below ``min_group_size`` is *too small to judge* (the audits report
    it and leave it out of the gate values, as ``impactflow run``'s audits do); it does not
    refuse the whole table."""
    out = []
    for e in suite["expectations"]:
        kw = e.get("kwargs") or {}
        cond = kw.get("row_condition")
        if (
            e.get("type") == "expect_table_row_count_to_be_between"
            and isinstance(cond, dict)
            and (cond.get("column") or {}).get("name") in set(sensitive)
        ):
            e = {**e, "kwargs": {**kw, "min_value": 1}}
            if "description" in e:
                e["description"] = str(e["description"]).rsplit(":", 1)[0] + ": present (at least 1 row)"
        out.append(e)
    return {**suite, "expectations": out}


MODEL_SCORE = "model_score"  # the column --model's scores are put in


@task(name="score-with-model", cache_policy=NONE)
def score_with_model(df, model_uri: str, tracking_uri: str, path: str) -> tuple[Any, float, str]:
    """``--model models:/NAME/VERSION`` (or ``runs:/…``): load the MLflow model impactflow logged
    (``impactflow.tasks.pyfunc.load_model``), score every row of the table, and return (the table with the
    scores in ``MODEL_SCORE``, the model's own decision threshold, its description). Binary models
    only: their pyfunc output has a ``score`` column."""
    from impactflow.errors import ConfigError, DataError
    from impactflow.tasks.pyfunc import load_model

    progress.stage("score with the model")
    with tracking.using_tracking_uri(tracking_uri):
        try:
            model = load_model(model_uri)
        except Exception as exc:  # noqa: BLE001 - MLflow raises many types for a bad URI
            raise ConfigError(
                f"--model {model_uri}: cannot be loaded ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0][:200] if str(exc) else 'no message'})"
            ) from None
    try:
        out = model.predict(df)
    except Exception as exc:  # noqa: BLE001 - a missing feature column, a wrong type
        raise DataError(
            f"{path}: the model {model_uri} cannot score this table ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:200] if str(exc) else 'no message'})"
        ) from None
    if "score" not in getattr(out, "columns", []):
        raise ConfigError(f"--model {model_uri}: not a binary model (its output has no 'score' column)")
    if MODEL_SCORE in df.columns:
        raise DataError(f"{path}: has a column {MODEL_SCORE!r}, the name --model gives its scores")
    predictor = getattr(model.unwrap_python_model(), "predictor", None)
    threshold = float(getattr(predictor, "threshold", 0.5))
    scored = df.assign(**{MODEL_SCORE: out["score"].to_numpy(dtype=float)})
    return scored, threshold, f"MLflow model {model_uri}"


@task(name="load-with-contract", cache_policy=NONE, retries=1, retry_delay_seconds=1)
def load_with_contract(
    contract_ref: str, path: str, score: str | None, prediction: str | None
) -> tuple[Any, Any, dict]:
    """``--contract``: read the decision log as the contract says (format, NA tokens, derived
    columns); returns (the whole frame, the contract, the data info)."""
    from impactflow.data_contracts import get_contract, load_dataset
    from impactflow.data_contracts.files import file_sha256
    from impactflow.data_contracts.predictions import require_columns

    progress.stage("load decision log (contract)")
    contract = get_contract(contract_ref)
    df = load_dataset(contract, [path])
    require_columns(df, [c for c in (contract.target, score, prediction) if c], path)
    sha = file_sha256(Path(path))
    from impactflow.tasks.data import contract_file

    info = {
        "contract": contract.name,
        "contract_file": contract_file(contract),
        "files": [{"path": str(path), "sha256": sha}],
        "dataset_sha256": sha,
        "n_rows": int(len(df)),
        "source": contract.source,
        "license": contract.license,
        "shipped": False,
    }
    return df, contract, info


@task(name="check-with-contract", cache_policy=NONE)
def check_with_contract(
    df,
    contract,
    path: str,
    label: str,
    score: str | None,
    prediction: str | None,
    sensitive: list[str],
    positive_label: str | None,
    run_dir: str,
) -> tuple[Any, Any]:
    """The contract's generated suite (+ its extras), every sensitive group only required to be
    present, plus the score range / prediction values of the predictions suite; validated on the
    whole frame the contract describes (Data Docs in the run folder)."""
    from dataclasses import replace

    from impactflow.data_contracts.predictions import label_values, predictions_suite, sensitive_as_text, write_suite
    from impactflow.data_contracts.validation import load_suite, validate

    progress.stage("validate (Great Expectations)")
    label_set, positive = label_values(df, label, positive_label)
    suite = present_groups_only(load_suite(contract), contract.sensitive)
    extra = predictions_suite(
        sensitive_as_text(df, sensitive),
        name=contract.name,
        label=label,
        label_set=label_set,
        score=score,
        prediction=prediction,
        sensitive=[],
        min_group_size=1,
    )
    have = {json.dumps(e, sort_keys=True, default=str) for e in suite["expectations"]}
    for e in extra["expectations"]:
        cols = {(e.get("kwargs") or {}).get("column")}
        if cols & {score, prediction} and json.dumps(e, sort_keys=True, default=str) not in have:
            suite["expectations"].append(e)
    suite_path = write_suite(suite, Path(run_dir) / "contract" / "expectations.json")
    relaxed = replace(contract, suite_path=suite_path, declarations=(), min_group_size=1)
    return validate(df, relaxed, Path(run_dir) / "data_docs"), positive


def group_settings(min_group_size: int, intersections: list | None) -> dict:
    """``--min-group-size`` and ``--intersections`` as settings of the fairness and
    calibration-by-group audits (``audit_predictions`` gives them to both; a ``--gate
    fairness.min_group_size=...`` still wins). Settings, not a gates section: they configure no gate."""
    out: dict = {"min_group_size": int(min_group_size)}
    if intersections is not None:
        out["intersections"] = [list(c) for c in intersections]
    return out


def parse_intersections(value: str | None, sensitive: list[str]) -> list[list[str]] | None:
    """``--intersections``: None (not given: every sensitive column combined, as before), ``none``
    (no intersection) or ``a+b;c+d`` / ``a,b;c,d`` (these combinations). ConfigError naming the
    column that is not one of ``--sensitive``."""
    from impactflow.errors import ConfigError

    if value is None:
        return None
    text = value.strip()
    if text.lower() in ("none", "no", ""):
        return []
    combos = []
    for part in text.split(";"):
        cols = [c.strip() for c in part.replace("+", ",").split(",") if c.strip()]
        if len(cols) < 2:
            raise ConfigError(
                f"--intersections {value!r}: {part.strip()!r} names fewer than two columns "
                "(give COL1,COL2[;COL3,COL4] or none)"
            )
        bad = [c for c in cols if c not in sensitive]
        if bad:
            raise ConfigError(
                f"--intersections {value!r}: {bad[0]!r} is not a --sensitive column ({', '.join(sensitive)})"
            )
        combos.append(cols)
    return combos


def read_intended_use(path: str | None) -> dict | None:
    """``--intended-use FILE``: a YAML (or JSON) mapping of the report's intended-use fields
    (``impactflow.audits.sections.USE_FIELDS``); ConfigError with the file and key otherwise."""
    if path is None:
        return None
    import yaml

    from impactflow.audits.sections import USE_FIELDS
    from impactflow.errors import ConfigError

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"--intended-use {path}: cannot be read ({exc.strerror or exc})") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigError(f"--intended-use {path}: not valid YAML{where}") from None
    if not isinstance(doc, dict) or not doc:
        raise ConfigError(f"--intended-use {path}: expected a mapping of {', '.join(USE_FIELDS)}")
    out: dict = {}
    for key, value in doc.items():
        if key not in USE_FIELDS:
            import difflib

            close = difflib.get_close_matches(str(key), USE_FIELDS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"--intended-use {path}: {key}: unknown key{hint}; known: {', '.join(USE_FIELDS)}")
        if isinstance(value, list):
            if not all(isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in value):
                raise ConfigError(f"--intended-use {path}: {key}: expected text or a list of texts")
            value = [str(v) for v in value]
        elif isinstance(value, (str, int, float)) and not isinstance(value, bool):
            value = str(value)
        elif value is not None:
            raise ConfigError(f"--intended-use {path}: {key}: expected text or a list of texts, got {value!r}")
        out[key] = value
    return out


@task(name="audit-predictions", cache_policy=NONE)
def audit_predictions(
    df,
    label: str,
    score: str | None,
    prediction: str | None,
    sensitive: list[str],
    positive: Any,
    threshold: float,
    thresholds: dict,
    favourable: Any = None,
    settings: dict | None = None,
) -> dict:
    """Fairness on the hard predictions; performance and calibration by group when scores are given.
    Every configured gate is accounted for as in a pipeline run (``impactflow.audits.gating``): an audit that
    raises, or a performance gate set without ``--score``, leaves its gates not measured. A model
    that gives everyone the same decision fails ``fairness/distinct_decisions`` (``decisions_gate``)."""
    from impactflow.audits import AUDIT_ONLY_THRESHOLDS as known
    from impactflow.audits.gating import audited
    from impactflow.audits.proxies import proxy_audit
    from impactflow.audits.slices import slice_audit

    progress.stage("audit predictions")
    inputs = audit_inputs(df, label, score, prediction, sensitive, positive, threshold, favourable)
    # what no gate asked: worst slices over the table's other columns and the sensitive ones, and
    # whether the other columns carry a sensitive attribute (they are the model's inputs, if logged)
    others = {
        name: (lambda name, fn: lambda section: audited(name, fn, inputs, section, known[name]))(name, fn)
        for name, fn in (("slices", slice_audit), ("proxies", proxy_audit))
    }
    return audit_set(inputs, decisions_gate(inputs), bool(score), thresholds, settings, others)


def audit_set(inputs, gate, scored: bool, thresholds: dict, settings: dict | None, others: dict) -> dict:
    """The audits of an audit-only run (in memory or streamed): fairness with the degenerate-model
    ``gate``, performance when ``scored`` (else a configured performance gate is not measured),
    calibration by group, then ``others`` (``{name: section -> AuditResult}``). ``settings``
    (``group_settings``) go to fairness and calibration by group; a ``--gate`` value wins."""
    from impactflow.audits import AUDIT_ONLY_THRESHOLDS as known, fairness_audit, performance_audit
    from impactflow.audits.calibration import calibration_group_audit
    from impactflow.audits.gating import audited, not_run

    settings = dict(settings or {})

    def with_settings(fn):
        return lambda inp, th: fn(inp, {**settings, **(th or {})})

    out = {
        "fairness": with_gate(
            audited("fairness", with_settings(fairness_audit), inputs, thresholds.get("fairness"), known["fairness"]),
            gate,
        )
    }
    if scored:
        out["performance"] = audited(
            "performance", performance_audit, inputs, thresholds.get("performance"), known["performance"]
        )
    elif "performance" in thresholds:
        out["performance"] = not_run(
            "performance",
            thresholds["performance"],
            known["performance"],
            "performance needs scores (--score): hard predictions were given",
        )
    out["calibration_by_group"] = audited(
        "calibration_by_group",
        with_settings(calibration_group_audit),
        inputs,
        thresholds.get("calibration_by_group"),
        known["calibration_by_group"],
    )
    for name, run in others.items():
        out[name] = run(thresholds.get(name))
    return out


def decisions_gate(inputs) -> Any:
    """The degenerate-model check of audit-only (always on, cannot be skipped): the hard
    decisions must take both values. A constant model (every score 0.1) or any model that gives
    every row the same decision makes every group's selection and error rates equal by
    construction, so all fairness gates pass while nothing was learned about the model: such a
    run fails instead. Value: the number of distinct decisions (1 or 2), threshold ``>= 2``."""
    import numpy as np

    from impactflow.audits import Gate
    from impactflow.audits.results import Status

    decisions = np.asarray(inputs.y_score, dtype=float) >= inputs.decision_threshold
    values = np.unique(decisions)
    if values.size >= 2:
        return Gate(DISTINCT_DECISIONS, Status.PASS, 2.0, 2.0, ">=")
    scores = np.unique(np.asarray(inputs.y_score, dtype=float))
    what = (
        f"every score is {scores[0]:g}"
        if scores.size == 1 and not inputs.extra.get("hard_predictions")
        else f"every row is predicted {int(values[0]) if values.size else '-'}"
    )
    return _degenerate(float(values.size), what)


def decisions_gate_counts(negative: int, positive: int, hard: bool) -> Any:
    """``decisions_gate`` from the numbers of rows decided 0 and 1 (a streamed decision log)."""
    from impactflow.audits import Gate
    from impactflow.audits.results import Status

    if negative and positive:
        return Gate(DISTINCT_DECISIONS, Status.PASS, 2.0, 2.0, ">=")
    values = [v for v, n in ((0, negative), (1, positive)) if n]
    return _degenerate(
        float(len(values)), f"every row is {'predicted' if hard else 'decided'} {values[0] if values else '-'}"
    )


def _degenerate(distinct: float, what: str) -> Any:
    from impactflow.audits import Gate
    from impactflow.audits.results import Status

    return Gate(
        DISTINCT_DECISIONS,
        Status.FAIL,
        distinct,
        2.0,
        ">=",
        f"degenerate model: {what}; one decision for everyone makes every group's rates equal "
        "by construction, so the fairness gates would pass without measuring anything",
    )


def with_gate(result, gate) -> Any:
    """``result`` with one more gate, its status recomputed (``overall_status``)."""
    from dataclasses import replace

    from impactflow.audits.results import overall_status

    gates = [*result.gates, gate]
    return replace(result, gates=gates, status=overall_status(gates))


def audit_inputs(df, label, score, prediction, sensitive, positive, threshold, favourable=None):
    from impactflow.audits import AuditInputs
    from impactflow.audits.fairness import favourable_extra
    from impactflow.data_contracts.predictions import binarize

    y_true = binarize(df[label], positive).to_numpy()
    if score:
        y_score, cut, hard = df[score].astype(float).to_numpy(), float(threshold), False
    else:  # hard predictions: 0/1 "scores" with the cut at 0.5 reproduce them exactly
        y_score, cut, hard = binarize(df[prediction], positive).astype(float).to_numpy(), 0.5, True
    others = [c for c in df.columns if c not in {label, score, prediction, *sensitive}]
    rows = df.reset_index(drop=True)
    return AuditInputs(
        y_true=y_true,
        y_score=y_score,
        sensitive=df[list(sensitive)],
        decision_threshold=cut,
        extra={
            "hard_predictions": hard,
            **favourable_extra(positive, favourable),
            "slice_frame": rows[[*others, *sensitive]],
            "proxy_frame": rows[others],
        },
    )


@task(name="log-audit-only", cache_policy=NONE, retries=2, retry_delay_seconds=2)
def log_audits(ctx: dict, model_name: str, audits: dict, run_dir: str) -> None:
    """Audit metrics on the parent run; the audit JSON into the run folder (evidence)."""
    metrics: dict[str, Any] = {}
    for result in audits.values():
        metrics.update(result.metrics)
    tracking.log_metrics(ctx["uri"], ctx["parent_run_id"], metrics)
    from impactflow.data_contracts.names import safe_name

    out = Path(run_dir) / "models" / safe_name(model_name, "--model-name")  # a folder of the run, never above it
    out.mkdir(parents=True, exist_ok=True)
    (out / "audits.json").write_text(json.dumps({k: v.to_dict() for k, v in audits.items()}, indent=2))


def model_record(
    model_name: str,
    audits: dict,
    run_id: str,
    *,
    score: str | None,
    prediction: str | None,
    threshold: float,
    positive: Any,
    threshold_given: bool = True,
    favourable: Any = None,
    scored_by: str | None = None,
    score_kind: str = "probability",
) -> dict:
    """The report's model entry for a model audited, not trained, here. A threshold is named only
    with scores: as given (``--threshold``) or as the default the audit applied; ``scored_by``: the
    MLflow model that scored the table here (``--model``), cut at its own threshold."""
    if scored_by:
        how = f"scores computed here by {scored_by} (column '{score}', decided at " + (
            f"threshold {threshold} (--threshold))" if threshold_given else f"its own threshold {threshold})"
        )
    elif score:
        kind = "log-odds mapped to probabilities by the logistic function, " if score_kind == "logit" else ""
        how = f"scores (column '{score}', {kind}decided at threshold {threshold}" + (
            ")" if threshold_given else ", the default: no --threshold was given)"
        )
    else:
        how = f"hard predictions as logged (column '{prediction}'; no score, no threshold)"
    return {
        "name": model_name,
        "role": "candidate",
        "family": "external",
        "description": "audit-only: a model not trained by impactflow, audited from its " + how,
        # only what was given or applied: no threshold for hard predictions
        "params": {
            k: v
            for k, v in {
                "score_column": score,
                "prediction_column": prediction,
                "decision_threshold": threshold if score else None,
                "decision_threshold_given": bool(threshold_given) if score else None,
                "positive_label": str(positive),
                "favourable_outcome": None if favourable is None else str(favourable),
                "scored_by": scored_by,
                "score_kind": score_kind if score_kind != "probability" else None,
            }.items()
            if v is not None
        },
        "training": {
            "device": "n/a (not trained here)",
            "epochs_run": None,
            "best_epoch": None,
            "wall_time_s": None,
            "n_parameters": None,
            "dp": {"enabled": False, "summary": "unknown: the model was not trained here (audit-only)"},
        },
        "audits": {k: v.to_dict() for k, v in audits.items()},
        "mlflow_run_id": run_id,
    }
