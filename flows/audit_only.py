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
from impactflow.tasks.stream_audit import check_streamed, stream_pass
from impactflow.tasks.log import fail_tracking, log_data, log_report, start_tracking
from impactflow.tasks.reconcile import tag_flow_run_owner
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
    check_favourable_values(list(df[label].dropna().unique()), label, positive, favourable)


def check_favourable_values(observed: list, label: str, positive, favourable: Optional[str]) -> None:
    """``check_favourable`` from the label's values (a streamed audit counts them)."""
    if favourable is None:
        return
    values = sorted({str(v).strip() for v in observed if v is not None} | {str(positive).strip()})
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
    query: Optional[str] = None,
    table: Optional[str] = None,
    engine: str = "auto",
    dask_address: Optional[str] = None,
    score_kind: str = "probability",
    max_levels: int = 1_000,
    max_cells: int = 4_096,
    sample_rows: int = 100_000,
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
    ``threshold`` is given.

    ``engine``: ``memory`` reads the table into pandas (one file of at most ``max_input_bytes``;
    slices and proxies over its other columns, ``--model``, ``--contract``); ``stream`` aggregates
    it in bounded chunks (a big file, a glob, a folder of Parquet files, or a PostgreSQL ``query``
    / ``table``), ``dask`` does the same on a Dask cluster (``dask_address``); ``auto`` streams what
    memory cannot take (``choose_engine``). ``score_kind``: ``logit`` maps log-odds scores through
    the logistic function; ``max_levels``/``max_cells``: the most values a group column and
    combinations of them may have (streamed); ``sample_rows``: the seeded sample the GX suite
    checks in a streamed audit."""
    tag_flow_run_owner()  # first: `impactflow reconcile` crashes this flow run if this process dies
    safe_name(model_name, "--model-name")
    safe_name(experiment, "--experiment")
    if sum(x is not None for x in (score, prediction, model)) != 1:
        raise ConfigError(
            "give exactly one of --score COL (probabilities), --prediction COL (0/1 labels) "
            "or --model models:/NAME/VERSION (scores the table here)"
        )
    if score_kind != "probability" and score is None:
        raise ConfigError(f"--score-kind {score_kind}: applies to --score (a column of scores)")
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
    engine = choose_engine(engine, data, query, table, max_input_bytes, contract, model, score_kind)
    if engine == "memory":
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
    if engine != "memory" or score_kind != "probability":
        params.update(engine=engine, score_kind=score_kind)
    if engine != "memory":
        from impactflow.data_contracts.sources import is_query, public_url

        params.update(
            data=public_url(str(data)) if is_query(str(data)) else str(data),
            query=query,
            table=table,
            dask_address=dask_address,
            max_levels=int(max_levels),
            max_cells=int(max_cells),
            sample_rows=int(sample_rows),
        )
    if intended_use:
        params["use"] = dict(intended_use)
    started = _now()
    out = Path(output_dir)
    tags = {**AUDIT_ONLY_TAG, "impactflow.model": model_name}
    run_name = f"audit-only-{model_name}-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}"
    streamed = None
    if engine != "memory":  # the pass over the data writes nothing: before the MLflow run opens
        streamed = stream_pass(
            data, query, table, label, score, prediction, sensitive, positive_label, threshold,
            score_kind, max_levels, max_cells, sample_rows, engine, dask_address,
        )  # fmt: skip
    ctx = start_tracking(params, "audit-only", experiment, str(out), run_name, tags)
    run_dir = out / "runs" / ctx["parent_run_id"]
    try:
        scored_by = None
        if streamed is not None:
            validation, positive = check_streamed(
                streamed, label, score, prediction, sensitive, positive_label, str(run_dir)
            )
            agg = streamed["aggregates"]
            check_favourable_values(list(agg.label_values), label, positive, favourable_outcome)
            log_data(ctx, streamed["sample"], streamed["info"], validation.to_dict(), str(run_dir / "data_docs"))
            validation.raise_if_failed()
            from impactflow.audits.fairness import favourable_extra
            from impactflow.tasks.stream_audit import audit_aggregates

            audits = audit_aggregates(
                agg, sensitive, threshold, thresholds, favourable_extra(positive, favourable_outcome), settings
            )
            from impactflow.audits.aggregates import representation as streamed_representation

            table_doc = {
                "n_rows": int(agg.rows),
                "representation": streamed_representation(agg),
                "missing": {k: int(v) for k, v in agg.nulls.items() if v},
            }
            info = streamed["info"]
        else:
            if contract is not None:
                from impactflow.data_contracts.predictions import require_columns, sensitive_as_text

                full, contract_obj, info = load_with_contract(contract, str(data), score, prediction)
                require_columns(full, sensitive, str(data))
                if score_kind == "logit":
                    from impactflow.audits.aggregates import expit

                    full = full.assign(**{score: expit(full[score].to_numpy(dtype=float))})
                validation, positive = check_with_contract(
                    full, contract_obj, str(data), label, score, prediction, sensitive, positive_label, str(run_dir)
                )
                if model is not None and validation.success:  # the contract checks the rows the model reads
                    full, own, scored_by = score_with_model(full, model, ctx["uri"], str(data))
                    score, threshold = MODEL_SCORE, (threshold if threshold_given else own)
                role_cols = list(dict.fromkeys([label, *(c for c in (score, prediction) if c), *sensitive]))
                df = sensitive_as_text(full[role_cols], sensitive)
            else:
                df, info = load_predictions(
                    str(data), label, score, prediction, sensitive, keep_all=model is not None, score_kind=score_kind
                )
                if model is not None:
                    full, own, scored_by = score_with_model(df, model, ctx["uri"], str(data))
                    score, threshold = MODEL_SCORE, (threshold if threshold_given else own)
                    df = full[list(dict.fromkeys([label, score, *sensitive]))]
                validation, positive = check_predictions(
                    df,
                    str(data),
                    label,
                    score,
                    prediction,
                    sensitive,
                    positive_label,
                    int(min_group_size),
                    str(run_dir),
                )
            check_favourable(df, label, positive, favourable_outcome)
            log_data(ctx, df, info, validation.to_dict(), str(run_dir / "data_docs"))
            validation.raise_if_failed()
            audits = audit_predictions(
                df, label, score, prediction, sensitive, positive, threshold, thresholds, favourable_outcome, settings
            )
            from impactflow.data_contracts.predictions import binarize

            labelled = df.assign(**{label: binarize(df[label], positive)})
            table_doc = {
                "n_rows": int(len(df)),
                "representation": representation(labelled, label, 1, sensitive),
                "missing": {k: int(v) for k, v in df.isna().sum().items() if v},
            }
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
            score_kind=score_kind,
        )
        data_doc = {
            **info,
            "splits": {"train": 0, "validation": 0, "test": table_doc["n_rows"]},
            "contract_result": validation.to_dict(),
            "representation": table_doc["representation"],
            "synthetic_groups": [],
            "missing": table_doc["missing"],
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


def choose_engine(
    engine: str,
    data: str,
    query: Optional[str],
    table: Optional[str],
    max_input_bytes: Optional[int],
    contract: Optional[str],
    model: Optional[str],
    score_kind: str,
) -> str:
    """``memory``, ``stream`` or ``dask``. ``auto`` streams a database query, a glob, a folder and a
    file larger than ``max_input_bytes``, and reads any other file into memory. ``--contract``
    and ``--model`` need the table in memory (a contract's derived columns, a model's features)."""
    from impactflow.data_contracts.sources import _GLOB, is_query

    engines = ("auto", "memory", "stream", "dask")
    if engine not in engines:
        raise ConfigError(f"--engine {engine!r}: one of {', '.join(engines)}")
    if score_kind not in ("probability", "logit"):
        raise ConfigError(f"--score-kind {score_kind!r}: probability or logit")
    text = str(data)
    many = is_query(text) or bool(_GLOB.search(text)) or Path(text).is_dir()
    if engine == "auto":
        big = bool(max_input_bytes) and Path(text).is_file() and Path(text).stat().st_size > int(max_input_bytes)
        engine = "stream" if many or big else "memory"
    if engine == "memory" and many:
        raise ConfigError(
            f"--engine memory reads one file; --data {text if not is_query(text) else 'postgresql://…'} "
            "is streamed (--engine stream or dask)"
        )
    if engine == "memory" and (query is not None or table is not None):
        raise ConfigError("--query/--table read a database: give --data postgresql://USER@HOST/DB")
    if engine != "memory":
        for option, value in (("--contract", contract), ("--model", model)):
            if value is not None:
                raise ConfigError(
                    f"{option} reads the table into memory (derived columns, a model's features): not with a "
                    f"streamed audit (--engine {engine}); give --score or --prediction"
                )
    return engine


def run_audit_only(**kwargs: Any) -> dict:
    """Entry point for the CLI and tests."""
    return audit_only_flow(**kwargs)
