"""Scheduled runs that watch over time: the drift reference, data drift between runs, the champion
versus challenger comparison, and the previous run a report says "since" of.

- **Reference** (``find_reference``): the training-data summary of the current champion's run
  (``drift/summary.json``, stored with every run: counts only, ``audits/drift.py``); where the
  model has no champion, that of the previous finished run of the same preset. A reference run
  whose summary is missing or unreadable is a problem (the drift audit is then not measured:
  fail closed), not "no reference".
- **Drift** (``drift_check``): this run's training split summarised on the reference's bins and
  compared (``audits.drift.drift_audit``); the result is the ``drift`` audit of every model of the
  run (the same data), so ``gates.drift.*`` gate the run like any other audit.
- **Champion versus challenger** (``challenge_champion``): before the ``champion`` alias moves,
  the current champion is loaded from the registry and re-scored on this run's test rows, and
  both are compared on every gated metric (``audits.champion.compare_models``). The decision and
  its evidence go into the report (section 11) and the new version's registry tags.

Everything here reads MLflow; the statistics live in ``audits/`` (pure).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
from prefect import task
from prefect.cache_policies import NONE

from impactflow.tasks import progress, tracking
from impactflow.tasks.spec import RunSpec
from impactflow.task_kind import TaskKind

from impactflow.tasks.registry import (
    OVERRIDE_AT_TAG,
    OVERRIDE_BY_TAG,
    OVERRIDE_REASON_TAG,
    PARENT_TAG,
    PROMOTION_REASON_TAG,
    PROMOTION_TAG,
    registered_name,
)

SUMMARY_ARTIFACT = "drift/summary.json"  # under the run folder and the parent run's artifacts
COMPARED_WITH_TAG = "impactflow.promotion.compared_with"  # the champion version compared with
PRESET_TAG = "impactflow.preset"


# --------------------------------------------------------------------------- the data summarised


def drift_frame(split: Any, spec: RunSpec, private: bool = False) -> tuple[Any, dict[str, str], str | None, list[str]]:
    """The training rows as the drift audit sees them: the family's row features (tabular: its
    scalar columns; text: identity terms, frequent words, length; image: class and pixel
    statistics; recommender: activity and popularity) plus the sensitive columns and the label.
    ``private`` (a DP run): the held-out test rows instead, so that nothing fitted on training
    rows is released outside the model's (epsilon, delta) claim; a random split of the same data,
    they drift as the training rows do. Returns ``(frame, kinds, label_kind, sensitive)``."""
    import pandas as pd

    from impactflow.audits.drift import column_kinds
    from impactflow.models.base import scalar_row_features

    roles, family = spec.audit_roles, spec.family
    train = (split.test if private else split.train).reset_index(drop=True)
    as_test = SimpleNamespace(train=split.train, validation=split.validation, test=train)
    rows = (family.row_features or scalar_row_features)(as_test, roles).reset_index(drop=True)
    extra = [c for c in [*roles.groups, roles.target] if c in train.columns and c not in rows.columns]
    frame = pd.concat([rows, train[extra]], axis=1)
    label_kind = _label_kind(spec)
    kinds = column_kinds(frame, list(frame.columns))
    # the contract's declared kinds, not the data's: a column's kind must not flip between runs
    kinds.update({c: "categorical" for c in roles.categorical if c in frame.columns})
    kinds.update({c: "numeric" for c in roles.numeric if c in frame.columns})
    if roles.target in frame.columns:  # the label is always summarised: a class list or numbers
        kinds[roles.target] = "numeric" if family.task == TaskKind.RATING else "categorical"
    sensitive = [g for g in roles.groups if g in frame.columns]
    for g in sensitive:
        kinds.setdefault(g, "categorical")
    return frame, kinds, label_kind, sensitive


def _label_kind(spec: RunSpec) -> str | None:
    """The label's kind for the per-group base rates: a binary label's positive rate, a rating's
    mean; a multiclass label has none (its class shares are a categorical column's)."""
    return {TaskKind.BINARY: "binary", TaskKind.RATING: "rating"}.get(spec.family.task)


def _summary_label(spec: RunSpec) -> str | None:
    """The label a summary records (None for a multiclass label: no base rate per group)."""
    return spec.audit_roles.target if _label_kind(spec) else None


def summarize_split(
    split: Any, spec: RunSpec, thresholds: dict, reference: dict | None = None, private: bool = False
) -> dict:
    """``audits.drift.summarize`` of the training split (on the reference's bins when given)."""
    return summarize_rows(drift_frame(split, spec, private), spec, thresholds, reference)


def summarize_rows(rows: tuple, spec: RunSpec, thresholds: dict, reference: dict | None = None) -> dict:
    """``audits.drift.summarize`` of ``drift_frame``'s rows (on the reference's bins when given)."""
    from impactflow.audits.drift import DRIFT_DEFAULTS, summarize

    t = {**DRIFT_DEFAULTS, **{k: v for k, v in (thresholds or {}).items() if v is not None}}
    frame, kinds, label_kind, sensitive = rows
    return summarize(
        frame,
        kinds,
        sensitive,
        _summary_label(spec),
        label_kind,
        positive=spec.audit_roles.positive_label if label_kind == "binary" else None,
        bins=int(t["bins"]),
        min_group_size=int(t["min_group_size"]),
        reference=reference,
    )


def contract_differences(reference: dict, kinds: dict[str, str], spec: RunSpec) -> list[str]:
    """What differs between a reference summary's schema and this run's, on the contract's own
    columns (features, sensitive attributes, label) only: derived row features (a text run's
    frequent words) may differ from run to run without the schema having changed."""
    from impactflow.audits.drift import schema_differences

    roles = spec.audit_roles
    declared = {*roles.features, *roles.groups, roles.target}
    ref = {**reference, "kinds": {c: k for c, k in (reference.get("kinds") or {}).items() if c in declared}}
    current = {c: k for c, k in kinds.items() if c in declared}
    return schema_differences(ref, current, _summary_label(spec), list(roles.groups))


# --------------------------------------------------------------------------- the reference run


def champion_version(client: Any, name: str) -> Any | None:
    """The registry version the ``champion`` alias points at, or None (no model, no alias)."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, "champion")
    except MlflowException:
        return None


def finished_parent_runs(
    client: Any, experiment_id: str, preset: str | None = None, exclude: str | None = None, limit: int = 1
) -> list:
    """The experiment's latest ``limit`` FINISHED parent runs (of ``preset`` when given; not
    ``exclude``), newest first. Child runs carry the preset tag too (a run with many baselines or
    reference models has dozens), so the search pages on until it has found ``limit`` parents."""
    where = "attributes.status = 'FINISHED'" + (f" AND tags.`{PRESET_TAG}` = '{preset}'" if preset else "")
    out: list = []
    token = None
    while len(out) < limit:
        page = client.search_runs(
            [experiment_id],
            filter_string=where,
            order_by=["attributes.start_time DESC"],
            max_results=100,
            page_token=token,
        )
        out += [r for r in page if "mlflow.parentRunId" not in r.data.tags and r.info.run_id != exclude]
        token = page.token
        if not token:
            break
    return out[:limit]


def previous_run(client: Any, experiment_id: str, preset: str, exclude_run_id: str) -> Any | None:
    """The latest FINISHED parent run of the experiment with the same preset (not this one)."""
    runs = finished_parent_runs(client, experiment_id, preset, exclude_run_id)
    return runs[0] if runs else None


def read_summary(client: Any, run_id: str) -> tuple[dict | None, str | None]:
    """``(summary, problem)`` of a run's ``drift/summary.json``."""
    from mlflow.exceptions import MlflowException

    with tempfile.TemporaryDirectory(prefix="impactflow-drift-") as tmp:
        try:
            local = client.download_artifacts(run_id, SUMMARY_ARTIFACT, tmp)
            return json.loads(Path(local).read_text(encoding="utf-8")), None
        except (MlflowException, OSError):
            return None, f"the reference run {run_id} has no readable {SUMMARY_ARTIFACT} artifact"
        except ValueError as exc:
            return None, f"the reference run {run_id}'s {SUMMARY_ARTIFACT} is not valid JSON ({exc})"


def find_reference(ctx: dict, preset: str, model_name: str) -> dict:
    """The reference of this run: ``{"source": "champion" | "previous run" | None, "run_id",
    "label", "summary", "problem"}``. ``source`` None: the first run (nothing to compare with)."""
    client = tracking._client(ctx["uri"])
    mv = champion_version(client, registered_name(ctx["experiment"], model_name))
    if mv is not None and (mv.tags or {}).get(PARENT_TAG):
        run_id = mv.tags[PARENT_TAG]
        label = f"the training data of the current champion ({mv.name} version {mv.version}, run {run_id})"
        source = "champion"
    else:
        run = previous_run(client, ctx["experiment_id"], preset, ctx["parent_run_id"])
        if run is None:
            return {"source": None, "run_id": None, "label": "", "summary": None, "problem": None}
        run_id = run.info.run_id
        label = f"the training data of the previous run of preset {preset} (run {run_id}; no champion yet)"
        source = "previous run"
    summary, problem = read_summary(client, run_id)
    if summary is not None and summary.get("rows") == "test":  # a DP run summarised its held-out rows
        label = label.replace("the training data of", "the held-out test rows of", 1)
    return {"source": source, "run_id": run_id, "label": label, "summary": summary, "problem": problem}


@task(name="drift-check", cache_policy=NONE, retries=2, retry_delay_seconds=2)
def drift_check(
    ctx: dict, split: Any, spec: RunSpec, gates: dict, preset: str, model_name: str, private: bool = False
) -> dict:
    """Summarise this run's training data (a DP run: its held-out test rows; written to the run
    folder: signed and logged with the run), find the reference and compare: the ``drift``
    audit's input ``{"reference", "current", "label", "reason", "problem", "run_id", "source"}``
    (``AuditInputs.extra["drift"]``)."""
    progress.stage("drift")
    thresholds = gates.get("drift") or {}
    rows = drift_frame(split, spec, private)  # the row features once, for both summaries
    own = {**summarize_rows(rows, spec, thresholds), "rows": "test" if private else "train"}
    out = Path(ctx["run_dir"]) / SUMMARY_ARTIFACT
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(own, indent=1, sort_keys=True, allow_nan=False), encoding="utf-8")
    ref = find_reference(ctx, preset, model_name)
    info = {k: ref[k] for k in ("source", "run_id", "label", "problem")}
    if ref["source"] is None:
        return {
            **info,
            "reference": None,
            "current": own,
            "reason": "first run: no champion and no earlier run of this preset to compare with",
        }
    if ref["summary"] is None:
        return {**info, "reference": None, "current": own, "reason": ""}
    differences = contract_differences(ref["summary"], own.get("kinds", {}), spec)
    if differences:
        return {
            **info,
            "reference": None,
            "current": own,
            "reason": "",
            "problem": "the reference's schema differs: " + "; ".join(differences),
        }
    current = summarize_rows(rows, spec, thresholds, reference=ref["summary"])
    return {**info, "reference": ref["summary"], "current": current, "reason": ""}


# --------------------------------------------------------------------------- champion vs challenger


def _outputs(frame: Any, task: TaskKind, labels: list[str]) -> Any:
    """``audits.champion.Outputs`` of a pyfunc prediction frame (``models.fit.predict_frame``)."""
    from impactflow.audits.champion import Outputs

    if task == TaskKind.BINARY:
        return Outputs(label=frame["label"].to_numpy().astype(int), score=frame["score"].to_numpy(dtype=float))
    if task == TaskKind.MULTICLASS:
        probs = frame[[f"prob_{c}" for c in labels]].to_numpy(dtype=float)
        return Outputs(label=probs.argmax(axis=1), probs=probs)
    return Outputs(rating=frame["rating"].to_numpy(dtype=float))


def gated(audits: dict) -> list[dict]:
    """The measured gates of one model's audits (pass or fail, with a value): what the
    challenger must not be significantly worse on."""
    from impactflow.audits.results import checked_gate

    out = []
    for a in audits.values():
        for g in a.gates:
            g = checked_gate(g)
            if g.status.value in ("pass", "fail") and g.threshold is not None:
                out.append({"name": g.name, "comparison": g.comparison, "threshold": g.threshold, "value": g.value})
    return out


def _decision(decision: str, reason: str, **extra: Any) -> dict:
    return {"decision": decision, "reasons": [reason] if reason else [], "rows": [], **extra}


@task(name="challenge-champion", cache_policy=NONE, retries=2, retry_delay_seconds=2)
def challenge_champion(
    ctx: dict,
    fitted: Any,
    split: Any,
    spec: RunSpec,
    audits: dict,
    promotion: dict,
    gates: dict,
    kinds: dict[str, str] | None = None,
) -> dict:
    """Compare this run's model (the challenger) with the registry's current ``champion`` of the
    same name on this run's test rows: ``{"decision": "promote" | "hold" | "first", "reasons",
    "rows", "champion": {name, version, run_id}}``. The champion's training-data schema must
    match this run's (else "hold", saying what differs: a changed schema is promoted only by
    ``impactflow promote --force --reason``); a champion that cannot be loaded or scored holds
    too (fail closed). ``kinds``: this run's column kinds as the drift check summarised them
    (``drift_frame``'s, recomputed when not given)."""
    from impactflow.audits.champion import compare_models
    from impactflow.audits.fairness import FAIRNESS_DEFAULTS, favourable_extra
    from impactflow.models.base import targets
    from impactflow.tasks.pyfunc import load_model

    progress.stage(f"champion vs {fitted.name}")
    client = tracking._client(ctx["uri"])
    name = registered_name(ctx["experiment"], fitted.name)
    mv = champion_version(client, name)
    if mv is None:
        return _decision(
            "first",
            f"no champion of {name} yet: nothing to compare with (the first version to pass its gates becomes champion)",
        )
    who: dict[str, Any] = {
        "name": name,
        "version": str(mv.version),
        "run_id": (mv.tags or {}).get(PARENT_TAG) or mv.run_id,
    }
    if (mv.tags or {}).get(PROMOTION_TAG) == "forced":  # a champion by `impactflow promote --force`
        who["override"] = {
            k: mv.tags.get(t)
            for k, t in (("reason", OVERRIDE_REASON_TAG), ("by", OVERRIDE_BY_TAG), ("at", OVERRIDE_AT_TAG))
        }
    roles = spec.audit_roles
    ref_run = (mv.tags or {}).get(PARENT_TAG)
    summary, problem = read_summary(client, ref_run) if ref_run else (None, f"version {mv.version} names no parent run")
    if summary is None:
        return _decision(
            "hold", f"the champion ({name} version {mv.version}) cannot be compared: {problem}", champion=who
        )
    if kinds is None:
        _, kinds, _, _ = drift_frame(split, spec)
    differences = contract_differences(summary, kinds, spec)
    if differences:
        return _decision(
            "hold",
            f"the champion ({name} version {mv.version}) was trained on a different schema: {'; '.join(differences)}; "
            "not compared (promote by hand with `impactflow promote --force --reason ...`)",
            champion=who,
        )
    test = split.test.reset_index(drop=True)
    try:
        with tracking.using_tracking_uri(ctx["uri"]):
            champion_frame = load_model(f"models:/{name}/{mv.version}").predict(test)
    except Exception as exc:  # noqa: BLE001 - any failure to re-score holds the promotion (fail closed)
        first = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        return _decision(
            "hold",
            f"the champion ({name} version {mv.version}) could not be re-scored on this run's test rows: {first}",
            champion=who,
        )
    labels = [str(c) for c in roles.labels]
    champion = _outputs(champion_frame, spec.family.task, labels)
    challenger = _outputs(fitted.predictor.predict_frame(test), spec.family.task, labels)
    groups = {g: test[g].to_numpy(dtype=object) for g in roles.groups if g in test.columns}
    fav = favourable_extra(spec.contract.positive_label, spec.contract.favourable_outcome)
    try:
        result = compare_models(
            str(spec.family.task),
            np.asarray(targets(test, roles)),
            champion,
            challenger,
            groups,
            gated(audits),
            max_regression=promotion.get("max_regression", 0.0),
            alpha=float(promotion.get("alpha", 0.05)),
            n_boot=int(promotion.get("bootstrap", 1000)),
            seed=int(promotion.get("seed", 0)),
            min_group_size=int(
                (gates.get("fairness") or {}).get("min_group_size") or FAIRNESS_DEFAULTS["min_group_size"]
            ),
            favourable=int(fav.get("favourable_prediction", 1)),
        )
    except ValueError as exc:  # an input the comparison cannot use: hold, saying why (fail closed)
        return _decision(
            "hold", f"the champion ({name} version {mv.version}) could not be compared: {exc}", champion=who
        )
    return {**result, "champion": who, "n_rows": len(test)}


def promotion_tags(comparison: dict) -> dict[str, str]:
    """Registry tags of a version's promotion decision and what it was compared with."""
    tags = {PROMOTION_TAG: comparison["decision"]}
    if comparison.get("reasons"):
        tags[PROMOTION_REASON_TAG] = " ".join(comparison["reasons"])[:4500]
    if comparison.get("champion"):
        tags[COMPARED_WITH_TAG] = f"{comparison['champion']['name']} version {comparison['champion']['version']}"
    return tags


# --------------------------------------------------------------------------- the previous run


def report_gates(report: dict) -> dict[str, dict[str, dict]]:
    """``{model: {gate: {"value", "status", "threshold", "comparison"}}}`` of a report document."""
    out: dict[str, dict[str, dict]] = {}
    for m in report.get("models") or []:
        gates = out.setdefault(str(m.get("name")), {})
        for a in (m.get("audits") or {}).values():
            for g in a.get("gates") or []:
                gates[g["name"]] = {k: g.get(k) for k in ("value", "status", "threshold", "comparison")}
    return out


@task(name="previous-run", cache_policy=NONE, retries=2, retry_delay_seconds=2)
def previous_run_gates(ctx: dict, preset: str) -> dict | None:
    """The previous finished run of this preset, for the report's "Since the last run":
    ``{"run_id", "started", "models": report_gates(...)}``; None on the first run. A previous run
    whose report cannot be read gives ``{"run_id", "problem"}`` (said in the report, not hidden)."""
    from impactflow.errors import ImpactflowError
    from impactflow.tasks.evidence import download_report

    client = tracking._client(ctx["uri"])
    run = previous_run(client, ctx["experiment_id"], preset, ctx["parent_run_id"])
    if run is None:
        return None
    with tempfile.TemporaryDirectory(prefix="impactflow-previous-") as tmp:
        try:
            report = download_report(ctx["uri"], run.info.run_id, Path(tmp))
        except ImpactflowError as exc:
            return {"run_id": run.info.run_id, "problem": str(exc)}
    started = (report.get("run") or {}).get("started_at")
    return {
        "run_id": run.info.run_id,
        "started": started,
        "models": report_gates(report),
        "dataset_sha256": (report.get("data") or {}).get("dataset_sha256"),
        "config": report.get("config") or {},
    }


# --------------------------------------------------------------------------- trends


def recent_reports(
    uri: str, experiment_id: str, last: int, preset: str | None = None, exclude: str | None = None
) -> list[dict]:
    """The report documents of the experiment's last ``last`` finished parent runs (of ``preset``
    when given), oldest first; a run without a readable report is left out."""
    from impactflow.errors import ImpactflowError
    from impactflow.tasks.evidence import download_report

    runs = finished_parent_runs(tracking._client(uri), experiment_id, preset, exclude, last)
    out = []
    with tempfile.TemporaryDirectory(prefix="impactflow-history-") as tmp:
        for i, run in enumerate(reversed(runs)):
            try:
                out.append(download_report(uri, run.info.run_id, Path(tmp) / str(i)))
            except ImpactflowError:
                continue
    return out


HISTORY_RUNS = 10  # runs a report's trend plots cover (this one and the previous ones)


@task(name="trend-plots", cache_policy=NONE, retries=2, retry_delay_seconds=2)
def trend_plots(ctx: dict, preset: str, report_json: str) -> list[str]:
    """Every gated metric over this run and the previous ``HISTORY_RUNS - 1`` runs of the preset,
    one PNG per gate plus ``history.json``, under the run folder's ``history/`` (signed and logged
    with the run: the MLflow artifact of the trend)."""
    import re

    from impactflow.audits.history import history_rows, trend_png

    reports = recent_reports(ctx["uri"], ctx["experiment_id"], HISTORY_RUNS - 1, preset, exclude=ctx["parent_run_id"])
    reports.append(json.loads(Path(report_json).read_text(encoding="utf-8")))
    rows = history_rows(reports)
    out = Path(ctx["run_dir"]) / "history"
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for row in rows:
        path = out / (re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{row['model']}__{row['gate'].replace('/', '__')}") + ".png")
        path.write_bytes(trend_png(row))
        written.append(str(path))
    (out / "history.json").write_text(json.dumps(rows, indent=1, allow_nan=False), encoding="utf-8")
    return written
