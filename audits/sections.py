"""The report's numbered sections (schema 2.0), built from the records ``build_report`` already has.

Sections (the order renderers follow):

 1 ``cover`` + ``integrity``      7 ``bias``
 2 ``executive_summary``          8 ``resources``
 3 ``intended_use``               9 ``oversight``
 4 ``datasheets``                10 ``discovery`` (what the gates did not cover)
 5 ``performance``               11 ``since_last_run`` (drift, champion vs challenger, metrics)
 6 ``privacy``                   12 ``risks``
                                 13 ``frameworks``
                                 14 ``provenance``

Each section holds a compact, reviewable summary with pointers (model name, audit key) to the full
audit results under ``models[].audits``; a section without evidence says ``not measured`` and why.
Pure: no torch/prefect/mlflow.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

NOT_STATED = "not stated by the run owner"

# Which audits are evidence for which section (by key prefix); the rest go to an appendix.
SECTION_AUDITS: dict[str, tuple[str, ...]] = {
    "performance": ("performance", "recommendation"),
    "privacy": ("privacy", "lira", "canary", "membership", "disclosure", "memorisation"),
    "bias": ("fairness", "group_robustness", "identity", "user_groups", "mitigation"),
    "resources": ("exposure",),
    "oversight": ("oversight",),
    "discovery": ("slices", "proxies", "attributions"),
    "since_last_run": ("drift",),
}
SINCE_INTRO = (
    "What changed since the last run: the training data against a reference (the current champion's "
    "training data, else the previous run of this preset), the new model against the current champion on "
    "this run's test rows, and every gated metric against the previous run."
)
DISCOVERY_INTRO = (
    "The gates answer the questions the configuration asked. This section looks for what nobody asked: "
    "slices of the test rows where a model errs most (tested, with the false-discovery rate controlled), "
    "features that carry a sensitive attribute (proxies), and features that drive the decisions differently "
    "for different groups. A finding here is a prompt to look, not a verdict: these audits gate nothing unless "
    "gates.slices.max_significant_slices or gates.proxies.max_proxy_auc is configured."
)
# The four social-impact areas the project reports on (plus performance and data as context).
AREAS: tuple[tuple[str, str, int], ...] = (
    ("Data quality and governance", "datasheets", 4),
    ("Predictive performance", "performance", 5),
    ("Data security and privacy", "privacy", 6),
    ("Algorithmic bias", "bias", 7),
    ("Concentration of technology and resources", "resources", 8),
    ("Employment and skills (human oversight)", "oversight", 9),
)
USE_FIELDS = (
    "purpose",
    "intended_users",
    "out_of_scope_uses",
    "affected_groups",
    "decision_type",
    "human_review",
    "affected_jobs",
    "training_needs",
)
INTEGRITY_FIELDS = ("signer_public_key", "signer_key_id", "evidence_manifest_sha256", "previous_report_sha256")
# audit-only (``impactflow audit``): decisions of a model not trained here; nothing about its training
AUDIT_ONLY_PRIVACY = "not audited: audit-only sees the logged decisions, not the model or its training data"
PRIVACY_KEY_METRICS = (
    "privacy/epsilon",
    "privacy/delta",
    "privacy/epsilon_lower_bound",
    "privacy/mia_auc",
    "privacy/mia_advantage",
    "privacy/mia_tpr_at_1pct_fpr",
    "privacy/mia_tpr_at_0.1pct_fpr",
)


def section_of(audit_key: str) -> str:
    for section, prefixes in SECTION_AUDITS.items():
        if str(audit_key).startswith(prefixes):
            return section
    return "other"


def _audit_refs(models: list[dict], section: str) -> list[dict]:
    """``{model, audit, status, n_gates, failed}`` for each audit of ``section``."""
    refs = []
    for m in models:
        for key, a in (m.get("audits") or {}).items():
            if isinstance(a, dict) and section_of(key) == section:
                gates = a.get("gates") or []
                refs.append(
                    {
                        "model": m.get("name"),
                        "audit": key,
                        "status": a.get("status"),
                        "n_gates": len(gates),
                        "failed": sum(g.get("status") == "fail" for g in gates),
                    }
                )
    return refs


def judged_gates(report: dict) -> list[dict]:
    """The gates that decide the run: the candidate models' (``baseline`` false); a run with only
    baselines is judged on them (as ``build_report`` decides ``summary.status``)."""
    gates = (report.get("summary") or {}).get("gates") or []
    return [g for g in gates if not g.get("baseline")] or list(gates)


def baseline_gates(report: dict) -> list[dict]:
    """The reference baselines' gates, when the run also has candidates (shown apart, never deciding)."""
    gates = (report.get("summary") or {}).get("gates") or []
    return [g for g in gates if g.get("baseline")] if any(not g.get("baseline") for g in gates) else []


def judged_models(report: dict) -> list[dict]:
    models = report.get("models") or []
    return [m for m in models if m.get("role", "candidate") != "baseline"] or list(models)


def gate_state(gates: list[dict]) -> str | None:
    """What a set of gates shows: ``fail`` (one failed), ``not-measured`` (none passed for real and
    some could not be measured), ``incomplete`` (some passed, some not measured), ``pass`` (at least
    one non-vacuous gate passed, none failed or unmeasured), ``vacuous`` (only gates that cannot
    fail passed), ``skipped`` (every gate skipped by the user), ``None`` (no gates)."""
    if not gates:
        return None
    statuses = [g.get("status") for g in gates]
    if "fail" in statuses:
        return "fail"
    real_pass = any(g.get("status") == "pass" and not g.get("vacuous") for g in gates)
    if any(s not in ("pass", "skipped") for s in statuses):  # not-measured (or anything unknown)
        return "incomplete" if real_pass else "not-measured"
    if real_pass:
        return "pass"
    return "vacuous" if "pass" in statuses else "skipped"


def gate_reasons(gates: list[dict], status: str) -> list[dict]:
    """``{model, gate, reason}`` of the gates with ``status`` (the reason is the gate's note)."""
    return [
        {"model": g.get("model"), "gate": g.get("name"), "reason": g.get("note") or "no reason recorded"}
        for g in gates
        if g.get("status") == status
    ]


def vacuous_label(g: dict) -> str:
    """How a gate that cannot fail is labelled wherever gates are listed: ``vacuous (cannot fail:
    <why>)``, the why taken from the gate's note (``impactflow.audits.results.checked_gate`` appends
    ``vacuous: <why>`` to it)."""
    note = str(g.get("note") or "")
    why = note.split("vacuous: ", 1)[1] if "vacuous: " in note else note
    return f"vacuous (cannot fail: {why or 'its threshold admits every value the metric can take'})"


def canonical_sha256(obj: Any) -> str:
    """SHA-256 of canonical JSON (sorted keys, no spaces, UTF-8): the config's fingerprint."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------- sections


def cover(run: dict, generated_at: str, config: dict) -> dict:
    return {
        "title": f"Social-impact and compliance report — {run.get('preset', '')}".rstrip(" —"),
        "run_id": run.get("run_id"),
        "date": generated_at,
        "preset": run.get("preset"),
        "description": config.get("description") or None,
    }


def integrity_doc(integrity: dict | None) -> dict | None:
    if integrity is None:
        return None
    return {k: (None if integrity.get(k) is None else str(integrity.get(k))) for k in INTEGRITY_FIELDS} | {
        k: v for k, v in integrity.items() if k not in INTEGRITY_FIELDS
    }


def intended_use(config: dict) -> dict:
    use = config.get("use") or {}
    out: dict[str, Any] = {}
    for key in USE_FIELDS:
        value = use.get(key)
        out[key] = value if value not in (None, "", []) else None
    out["not_stated"] = [k for k in USE_FIELDS if out[k] is None]
    return out


def datasheets(data: dict) -> list[dict]:
    sensitive = list(data.get("sensitive") or [])
    excluded = set(data.get("excluded_features") or [])
    synthetic = list(data.get("synthetic_groups") or [])
    handling = []
    audit_only = bool(data.get("audit_only"))
    for attr in sensitive:
        if audit_only:
            how = "a column of the decision log (whether the audited model used it is not known here)"
        else:
            how = "excluded from the model's features" if attr in excluded else "used as a model feature"
        handling.append(f"{attr}: audited for group fairness; {how}")
    for attr in synthetic:
        handling.append(f"{attr}: a made-up group assigned by the project (not a real attribute of people)")
    cr = data.get("contract_result") or {}
    return [
        {
            "name": data.get("contract"),
            "source": data.get("source"),
            "license": data.get("license"),
            "sha256": data.get("dataset_sha256"),
            "files": data.get("files") or [],
            "n_rows": data.get("n_rows"),
            "splits": data.get("splits") or {},
            "contract": {
                "success": cr.get("success"),
                "total_expectations": cr.get("total_expectations"),
                "failed": len(cr.get("failures") or []),
            },
            "representation": data.get("representation") or [],
            "missing": {k: v for k, v in (data.get("missing") or {}).items() if v},
            "sensitive_attributes": sensitive,
            "sensitive_handling": handling or ["no sensitive attributes declared by the contract"],
            "privacy_budget": data.get("privacy_budget"),
            "anonymity": data.get("anonymity"),
            "pii": (cr.get("statistics") or {}).get("pii"),
        }
    ]


def performance(models: list[dict], config: dict) -> dict:
    refs = _audit_refs(models, "performance")
    gates = config.get("gates") or {}
    fixed = {k: v for k, v in gates.items() if section_of(k) == "performance"}
    # each binary model's decision threshold and how it was set (models/threshold.py): fixed, the
    # default, or chosen from model.costs on the validation split (never the test split)
    decisions = [
        {"model": m.get("name"), **((m.get("training") or {}).get("decision") or {})}
        for m in models
        if (m.get("training") or {}).get("decision")
    ]
    return {
        "audits": refs,
        "thresholds_fixed_before_run": fixed,
        "status": "measured" if refs else "not measured: no performance audit ran",
        "ci_method": ci_method(models),
        "decision_thresholds": decisions,
    }


def ci_method(models: list[dict]) -> str:
    """Which performance metrics carry a 95% interval in this report, and for which models: exactly
    the ``<metric>_ci_low``/``_ci_high`` pairs the JSON holds (each audit's notes name the method)."""
    have: dict[str, list[str]] = {}
    for m in models:
        for key, a in (m.get("audits") or {}).items():
            if isinstance(a, dict) and section_of(key) == "performance":
                for name in a.get("metrics") or {}:
                    base = name[: -len("_ci_low")] if name.endswith("_ci_low") else None
                    if base and base + "_ci_high" in a["metrics"]:
                        have.setdefault(base, []).append(str(m.get("name")))
    if not have:
        return "no performance metric in this report has a confidence interval: all are point estimates"
    listed = "; ".join(f"{name} ({', '.join(dict.fromkeys(ms))})" for name, ms in have.items())
    return (
        f"95% intervals are reported for: {listed} (the method is named in each audit's notes); "
        "every other performance metric is a point estimate without an interval"
    )


def privacy(models: list[dict], data: dict) -> dict:
    rows = []
    for m in models:
        dp = (m.get("training") or {}).get("dp") or {}
        metrics: dict[str, Any] = {}
        for key, a in (m.get("audits") or {}).items():
            if isinstance(a, dict) and section_of(key) == "privacy":
                for name, value in (a.get("metrics") or {}).items():
                    if name in PRIVACY_KEY_METRICS or name.startswith(("privacy/lira_", "privacy/epsilon")):
                        metrics[name] = value
        rows.append(
            {
                "model": m.get("name"),
                "dp_enabled": bool(dp.get("enabled")),
                "epsilon": dp.get("epsilon") if dp.get("enabled") else None,
                "delta": dp.get("delta") if dp.get("enabled") else None,
                "accountant": dp.get("accountant"),
                "privacy_unit": dp.get("privacy_unit") if dp.get("enabled") else None,
                # what the (ε, δ) covers (weights, preprocessing, vocabulary, threshold, baselines): one
                # sentence from the training record; null when the model is not private or it is missing
                "covers": dp.get("covers") if dp.get("enabled") else None,
                "baseline": m.get("role") == "baseline",
                "epsilon_lower_bound": metrics.get("privacy/epsilon_lower_bound"),
                "metrics": metrics,
            }
        )
    budget = data.get("privacy_budget")
    secrets, method = memorisation_rows(models)
    if data.get("audit_only"):
        return {
            "models": rows,
            "audits": _audit_refs(models, "privacy"),
            "budget": budget,
            "budget_status": AUDIT_ONLY_PRIVACY,
            "epsilon_lower_bound_status": AUDIT_ONLY_PRIVACY,
        }
    return {
        "models": rows,
        "audits": _audit_refs(models, "privacy"),
        "budget": budget,
        "budget_status": "recorded" if budget else "not measured: no privacy-budget ledger for this dataset",
        "epsilon_lower_bound_status": "measured"
        if any(r["epsilon_lower_bound"] is not None for r in rows)
        else "not measured: no one-run canary audit (Steinke et al. 2023), the only certified ε lower bound, ran",
        "memorisation": secrets,
        "memorisation_status": "measured" if method else memorisation_gap(models),
        "memorisation_method": method,
    }


def memorisation_gap(models: list[dict]) -> str:
    """Why no memorisation table: the first candidate model's memorisation audit note (e.g. the
    model cannot tell the planted strings apart), or that no secrets were planted."""
    for m in models:
        a = (m.get("audits") or {}).get("memorisation")
        if isinstance(a, dict) and m.get("role") != "baseline" and a.get("notes"):
            return f"not measured: {m.get('name')}: {a['notes'][0]}"
    return "not measured: no secrets were planted in a model's training data (privacy_audit.secrets)"


def memorisation_rows(models: list[dict]) -> tuple[list[dict], str | None]:
    """Exposure of the planted secrets per model and number of repeats (the memorisation
    audit's ``details.levels``), and one sentence of method from the first such audit."""
    rows: list[dict] = []
    method = None
    for m in models:
        a = (m.get("audits") or {}).get("memorisation")
        details = (a.get("details") or {}) if isinstance(a, dict) else {}
        if not details.get("levels"):
            continue
        dp = (m.get("training") or {}).get("dp") or {}
        method = method or (
            f'secrets "{details["format"]}" (… = {details["secret"]}) planted in the training rows '
            f"({details['planted_rows']} rows, counted in section 8's train rows; "
            f"{details['labels']}), each ranked among {details['candidates']} never-trained candidates by "
            f"{details['score']}; exposure = log2(N+1) - log2(rank) bits, at most {details['max_exposure']:.2f}; "
            f"a model that memorised nothing averages {details['chance_mean']:.2f} bits (Carlini et al. 2019); "
            f"each of the {len(details['levels'])} levels is compared with its own 95% chance interval, so a model "
            f"that memorised nothing has at least one level above it in "
            f"{1 - 0.95 ** len(details['levels']):.0%} of runs"
        )
        for level in details["levels"]:
            rows.append(
                {
                    "model": m.get("name"),
                    "dp_enabled": bool(dp.get("enabled")),
                    "epsilon": dp.get("epsilon") if dp.get("enabled") else None,
                    "repeats": level["repeats"],
                    "label": level["label"],
                    "secrets": level["secrets"],
                    "exposure_mean": level["exposure_mean"],
                    "exposure_max": level["exposure_max"],
                    "chance_low": level["chance_low"],
                    "chance_high": level["chance_high"],
                    "group_epsilon": level.get("group_epsilon"),
                    "memorised": bool(level["above_chance"]),
                }
            )
    return rows, method


def _is_intersection(attribute: Any) -> bool:
    """fairness.py names an intersection ``sex_x_race``; other audits may use ``×`` or ``&``."""
    a = str(attribute or "")
    return "_x_" in a or "×" in a or " & " in a


def bias(models: list[dict], data: dict) -> dict:
    refs = _audit_refs(models, "bias")
    four_fifths = []
    intersectional = False
    mitigation = []
    for m in models:
        for key, a in (m.get("audits") or {}).items():
            if not isinstance(a, dict):
                continue
            for g in a.get("gates") or []:
                if "four_fifths" in str(g.get("name")):
                    four_fifths.append(
                        {
                            "model": m.get("name"),
                            "gate": g.get("name"),
                            "status": g.get("status"),
                            "value": g.get("value"),
                            "threshold": g.get("threshold"),
                            "note": g.get("note") or "",
                            "vacuous": bool(g.get("vacuous")),
                            "baseline": m.get("role") == "baseline",
                        }
                    )
            if section_of(key) == "bias":
                intersectional |= any(_is_intersection(r.get("attribute")) for r in a.get("by_group") or [])
            if key == "mitigation":
                met = a.get("metrics") or {}
                attr = (a.get("details") or {}).get("attribute")
                mitigation.append(
                    {
                        "model": m.get("name"),
                        "status": a.get("status"),
                        "attribute": attr,
                        "constraints": (a.get("details") or {}).get("constraints"),
                        "accuracy_before": met.get(f"mitigation/{attr}/before/accuracy"),
                        "accuracy_after": met.get(f"mitigation/{attr}/after/accuracy"),
                        "dp_difference_before": met.get(f"mitigation/{attr}/before/demographic_parity_difference"),
                        "dp_difference_after": met.get(f"mitigation/{attr}/after/demographic_parity_difference"),
                        "eo_difference_before": met.get(f"mitigation/{attr}/before/equalized_odds_difference"),
                        "eo_difference_after": met.get(f"mitigation/{attr}/after/equalized_odds_difference"),
                        "accuracy_cost": met.get("mitigation/accuracy_cost"),
                        "note": "; ".join(a.get("notes") or []) if not met else "",
                    }
                )
    gaps: list[dict[str, Any]] = []
    favourable: list[str] = []
    for m in models:
        a = (m.get("audits") or {}).get("fairness")
        if isinstance(a, dict):
            d = a.get("details") or {}
            gaps.extend(
                {"model": m.get("name"), "baseline": m.get("role") == "baseline", **g}
                for g in d.get("gaps") or []
                if isinstance(g, dict)
            )
            if d.get("favourable"):
                favourable.append(str(d["favourable"]))
    if not mitigation:
        mitigation_status = (
            "audit-only audits logged decisions: no mitigation comparison"
            if data.get("audit_only")
            else "the mitigation comparison (fairlearn post-processing) applies to binary decisions; none ran"
        )
    else:
        mitigation_status = (
            "measured"
            if any(r["accuracy_before"] is not None for r in mitigation)
            else "the mitigation audit could not be computed (see its notes)"
        )
    fav = "; ".join(dict.fromkeys(favourable)) or "a positive prediction (1)"
    return {
        "audits": refs,
        "four_fifths": four_fifths,
        "intersectional": intersectional,
        "mitigation": mitigation,
        "mitigation_status": mitigation_status,
        # the pair of groups behind every gap and the disadvantaged one (audits.fairness.gap_pairs)
        "gaps": gaps,
        "favourable": fav,
        "conventions": "fairlearn: difference = max − min across groups, ratio = min / max; "
        "four-fifths rule (29 CFR 1607.4(D)): each group's selection rate ≥ 0.8 × the highest; "
        f"the selection rate is the rate of the favourable decision ({fav}); TPR/FPR/FNR are "
        "with respect to the label's positive class",
    }


def resources(models: list[dict], config: dict) -> dict:
    from .resources import resources_section

    out = resources_section(models, config.get("resources") or {})
    exposure = []
    for m in models:
        a = (m.get("audits") or {}).get("exposure")
        if isinstance(a, dict):
            exposure.append(
                {
                    "model": m.get("name"),
                    "status": a.get("status"),
                    "metrics": {
                        k: v
                        for k, v in (a.get("metrics") or {}).items()
                        if "gini" in k or "hhi" in k or "top10pct" in k or "coverage" in k
                    },
                }
            )
    out["exposure"] = exposure
    out["exposure_status"] = (
        "measured (recommender exposure concentration)"
        if exposure
        else "not applicable: exposure concentration is a recommender measure"
    )
    return out


def _discovery_status(audit: dict) -> str:
    """``measured``, or why not (the audit's notes)."""
    if any(v is not None for v in (audit.get("metrics") or {}).values()):
        return "measured"
    status = str(audit.get("status") or "not-measured").replace("-", " ").capitalize()
    return f"{status}: {'; '.join(audit.get('notes') or []) or 'no reason recorded'}"


def discovery(models: list[dict]) -> dict:
    """Section 10: the slice, proxy and attribution audits of every model, summarised (their full
    results stay under ``models[].audits``)."""
    slices, proxies, scores, attributions = [], [], [], []
    features: dict[str, Any] = {}
    for m in models:
        audits = m.get("audits") or {}
        who = {"model": m.get("name"), "baseline": m.get("role") == "baseline"}
        a = audits.get("slices")
        if isinstance(a, dict):
            status = _discovery_status(a)
            # a measured audit has every key (a missing one is an error); one that was not has none
            d, met, th = (a["details"], a["metrics"], a["thresholds"]) if status == "measured" else ({}, {}, {})
            slices.append(
                {
                    **who,
                    "status": status,
                    "metric": None if not d else d["metric"],
                    "overall": None if not d else d["overall"],
                    "n_tested": None if not met else met["slices/n_tested"],
                    "n_significant": None if not met else met["slices/significant_raw"],
                    "n_findings": None if not met else met["slices/significant_slices"],
                    "fdr": None if not th else th["fdr"],
                    "min_slice_size": None if not th else th["min_slice_size"],
                    "findings": [] if not d else d["findings"],
                }
            )
        a = audits.get("proxies")
        if isinstance(a, dict):
            d = a.get("details") or {}
            attrs = {k: v for k, v in (d.get("attributes") or {}).items() if isinstance(v, dict)}
            if not features and attrs:  # the features are the same for every model of the run
                features = {
                    "rows": d.get("rows"),
                    "of": d.get("of"),
                    "sensitive_excluded": d.get("sensitive_excluded"),
                    "statements": d.get("statements") or [],
                    "attributes": [{"attribute": k, **v} for k, v in attrs.items()],
                }
            scores += [
                {**who, "attribute": k, "score_auc": v.get("score_auc")}
                for k, v in attrs.items()
                if v.get("score_auc") is not None
            ]
            proxies.append({**who, "status": _discovery_status(a)})
        a = audits.get("attributions")
        if isinstance(a, dict):
            status = _discovery_status(a)
            d = a["details"] if status == "measured" else {}
            attributions.append(
                {
                    **who,
                    "status": status,
                    "sample_size": None if not d else d["sample_size"],
                    "method": None if not d else d["method"],
                    "differences": [
                        {"attribute": attr, **row}
                        for attr, rows in (d["differences"] if d else {}).items()
                        for row in rows
                    ],
                }
            )
    return {
        "intro": DISCOVERY_INTRO,
        "audits": _audit_refs(models, "discovery"),
        "slices": slices,
        "proxies": {"models": proxies, **features, "score_auc": scores} if proxies else {"models": []},
        "attributions": attributions,
    }


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    """``{"a.b": value}`` of a nested config (lists kept whole; MLflow params use it too)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _outcome(decision: str | None, model_status: str | None, run_status: str | None) -> str:
    """What happens to the registry's ``champion`` alias (tasks/registry.py's rule, read from
    the report): it moves only to a model whose gates passed, in a run that passed, that the
    comparison with the current champion did not hold."""
    if decision == "hold":
        return "held: stays with the current champion (`impactflow promote --force --reason` overrides, recorded)"
    if model_status != "pass":
        return f"not the champion: its gates did not all pass ({model_status or 'unknown'})"
    if run_status != "pass":
        return f"not the champion: the run is {run_status or 'unknown'}"
    return "becomes the champion"


def since_last_run(
    models: list[dict],
    run: dict,
    config: dict | None = None,
    dataset_sha256: str | None = None,
    run_status: str | None = None,
) -> dict:
    """Section 11: the drift audit (one per run: the same data for every model, shown once), each
    candidate's comparison with the champion (``promotion``), and against the previous run of
    the preset (``run.previous_run``: None on the first run) whether its data file changed
    (dataset SHA-256), what changed in the configuration, and every gate's value."""
    config = config or {}
    judged = [m for m in models if m.get("role") != "baseline"] or models
    drift = next((m["audits"]["drift"] for m in judged if "drift" in (m.get("audits") or {})), None)
    if drift is not None:
        d = drift.get("details") or {}
        gated = [g for g in drift.get("gates") or [] if g.get("status") != "skipped"]
        status = str(drift.get("status"))
        if not gated and any(v is not None for v in (drift.get("metrics") or {}).values()):
            status = "measured (no drift gate configured)"
        drift = {
            "status": status,
            "reference": d.get("reference") or "",
            "notes": list(drift.get("notes") or []),
            "columns": list(d.get("columns") or []),
            "groups": list(d.get("groups") or []),
            "fdr": d.get("fdr"),
            "metrics": {k: v for k, v in (drift.get("metrics") or {}).items() if k.count("/") == 1},
            "gates": list(drift.get("gates") or []),
        }
    champion = [
        {
            "model": m.get("name"),
            **{k: m["promotion"].get(k) for k in ("decision", "reasons", "rows", "champion", "n_rows")},
            "outcome": _outcome(m["promotion"].get("decision"), m.get("status"), run_status),
        }
        for m in judged
        if m.get("promotion")
    ]
    previous = run.get("previous_run")
    config_changes = []
    if previous and isinstance(previous.get("config"), dict):
        before, now = flatten(previous["config"]), flatten(config)
        config_changes = [
            {"key": k, "previous": before.get(k), "current": now.get(k)}
            for k in sorted(set(before) | set(now))
            if before.get(k) != now.get(k) and not k.startswith(("use.", "tracking.output_dir"))
        ]
    metrics = []
    for m in judged:
        before = ((previous or {}).get("models") or {}).get(str(m.get("name"))) or {}
        for a in (m.get("audits") or {}).values():
            for g in a.get("gates") or []:
                old = before.get(g["name"]) or {}
                value, prev = g.get("value"), old.get("value")
                change = value - prev if isinstance(value, (int, float)) and isinstance(prev, (int, float)) else None
                metrics.append(
                    {
                        "model": m.get("name"),
                        "gate": g["name"],
                        "previous": prev,
                        "current": value,
                        "change": change,
                        "previous_status": old.get("status"),
                        "status": g.get("status"),
                    }
                )
    return {
        "intro": SINCE_INTRO,
        "previous_run": None if previous is None else {k: previous.get(k) for k in ("run_id", "started", "problem")},
        "data_changed": None
        if not (previous or {}).get("dataset_sha256")
        else (previous or {})["dataset_sha256"] != dataset_sha256,
        "config_changes": config_changes,
        "drift": drift,
        "champion": champion,
        "metrics": metrics,
    }


def oversight(models: list[dict], config: dict) -> dict:
    use = intended_use(config)
    rows = []
    for m in models:
        a = (m.get("audits") or {}).get("oversight")
        if not isinstance(a, dict):
            continue
        met = a.get("metrics") or {}
        rows.append(
            {
                "model": m.get("name"),
                "status": a.get("status"),
                "confidence_level": met.get("oversight/confidence_level"),
                "coverage": met.get("oversight/coverage"),
                "automated_accuracy": met.get("oversight/automated_accuracy"),
                "overall_accuracy": met.get("oversight/overall_accuracy"),
                "deferral_rate_gap": met.get("oversight/deferral_rate_gap"),
                "note": "" if met else "; ".join(a.get("notes") or []),
            }
        )
    return {
        "models": rows,
        "decision_type": use["decision_type"],
        "human_review": use["human_review"],
        "affected_jobs": use["affected_jobs"],
        "training_needs": use["training_needs"],
        "employment_effects": "not measured: the curve shows how much work the model could take over, "
        "not what happens to jobs when it does",
    }


def risks(report: dict) -> dict:
    items = []
    for g in (report.get("summary") or {}).get("gates") or []:
        if g.get("status") == "fail":
            items.append(
                f"{g.get('model')}: gate {g.get('name')} failed "
                f"(value {g.get('value')}, threshold {g.get('comparison')} {g.get('threshold')})"
            )
    data = report.get("data") or {}
    audit_only = bool(data.get("audit_only"))
    for m in report.get("models") or []:
        dp = (m.get("training") or {}).get("dp") or {}
        if audit_only:
            continue  # nothing was trained here: the privacy section says what was not audited
        if m.get("role", "candidate") != "baseline" and not dp.get("enabled"):
            items.append(
                f"{m.get('name')}: trained without differential privacy — membership-inference "
                "results are the only privacy evidence, and an attack shows a lower bound on leakage"
            )
    if data.get("synthetic_groups"):
        items.append(
            "groups "
            + ", ".join(map(str, data["synthetic_groups"]))
            + " are made up by the project: fairness results on them say nothing about real people"
        )
    use = report.get("intended_use") or {}
    if use.get("out_of_scope_uses"):
        items.extend(f"out of scope: {u}" for u in use["out_of_scope_uses"])
    limitations = [
        (
            "every figure is computed once, on one decision log as supplied; it is evidence about these "
            "decisions, not a guarantee about other data"
            if audit_only
            else "every figure is computed once, on one held-out split of one dataset; it is evidence about this "
            "data, not a guarantee about deployment"
        ),
        "confidence intervals cover sampling noise of the test split, not shifts in the population",
    ]
    return {"risks": items, "limitations": limitations, "not_measured": list(report.get("not_measured") or [])}


def provenance_extra(provenance: dict, config: dict, data: dict, run: dict, models: list[dict]) -> dict:
    return {
        **provenance,
        "config_sha256": canonical_sha256(config),
        "data_sha256": {
            "dataset": data.get("dataset_sha256"),
            "files": {f.get("path"): f.get("sha256") for f in data.get("files") or []},
        },
        "mlflow_run_ids": {
            "parent": (run.get("mlflow") or {}).get("parent_run_id") or run.get("run_id"),
            "models": {m.get("name"): m.get("mlflow_run_id") for m in models},
        },
    }


def executive_summary(report: dict) -> dict:
    """The four social-impact areas (and context) with a status each, plus counts of gates.

    An area's status follows the candidate model(s) only; the baselines' gate state is shown apart
    (``baseline_status``). ``fail``: a gate failed; ``not-measured``: the area's gates exist but none
    could be measured; ``incomplete``: some passed, some not measured; ``pass``: a gate that can
    fail passed and none failed or went unmeasured (a vacuous gate never makes an area pass);
    ``measured``/``estimated``: evidence without a deciding gate. The privacy area of a run whose
    candidates have no DP guarantee reads ``no-guarantee`` (the attack is a diagnostic) unless an
    attack gate failed."""
    summary = report.get("summary") or {}
    judged, reference = judged_gates(report), baseline_gates(report)
    models = judged_models(report)
    areas = []
    for title, key, number in AREAS:
        extra: dict[str, Any] = {}
        if key == "datasheets":
            ok = ((report.get("data") or {}).get("contract_result") or {}).get("success")
            status, evidence = ("pass" if ok else "fail"), "data contract (Great Expectations)"
        elif key == "resources":
            r = report.get("resources") or {}
            measured = any(m.get("energy_measured") for m in r.get("models") or [])
            status = "measured" if measured else ("estimated" if r.get("models") else "not-measured")
            evidence = "training compute, energy and CO2e" + ("" if measured else " (energy estimated)")
        else:
            area_gates = [g for g in judged if section_of(g.get("audit", "")) == key]
            state = gate_state(area_gates)
            has_metrics = any(
                (a.get("metrics") or {})
                for m in models
                for k, a in (m.get("audits") or {}).items()
                if isinstance(a, dict) and section_of(k) == key
            )
            if state in ("fail", "pass", "incomplete", "not-measured"):
                status = state
            else:  # no deciding gate (none, only vacuous ones, or all skipped)
                status = "measured" if has_metrics else "not-measured"
            refs = _audit_refs(models, key)
            evidence = ", ".join(sorted({r["audit"] for r in refs})) or "no audit"
            if key == "privacy" and (report.get("data") or {}).get("audit_only"):
                evidence = AUDIT_ONLY_PRIVACY
            elif key == "privacy" and not any(
                ((m.get("training") or {}).get("dp") or {}).get("enabled") for m in models
            ):
                evidence += (
                    "; no differential-privacy guarantee: the membership-inference attack is a "
                    "diagnostic (a lower bound on leakage), not evidence of privacy"
                )
                if status != "fail":
                    status = "no-guarantee"
            extra = {
                "not_measured_gates": gate_reasons(area_gates, "not-measured"),
                "skipped_gates": gate_reasons(area_gates, "skipped"),
                "vacuous_gates": [g.get("name") for g in area_gates if g.get("vacuous")],
                "baseline_status": gate_state([g for g in reference if section_of(g.get("audit", "")) == key]),
            }
        areas.append({"area": title, "section": number, "status": status, "evidence": evidence, **extra})
    incomplete = summary.get("incomplete")
    if incomplete is None:  # written by build_report; derived here for documents that predate it
        incomplete = gate_reasons(judged, "not-measured")
    return {
        "status": summary.get("status"),
        "areas": areas,
        "counts": summary.get("counts") or {},
        "incomplete": incomplete,
        "skipped": gate_reasons(judged, "skipped"),
        "legend": "pass/fail: against gates fixed before the run (a vacuous gate, one that cannot fail, never "
        "makes an area pass); incomplete: some gates could not be measured; not-measured: no gate "
        "or evidence could be measured; measured/estimated: evidence without a gate; no-guarantee: "
        "no differential privacy, the attacks are diagnostics; statuses follow the candidate "
        "model(s), a baseline's is shown beside them",
    }


def add_sections(report: dict, integrity: dict | None) -> dict:
    """The report with its numbered sections added (a new dict, keys in reading order)."""
    from .frameworks import framework_rows

    models = report.get("models") or []
    config = report.get("config") or {}
    data = report.get("data") or {}
    # the previous run's gates and config are read once, into section 11; the run header keeps its id
    previous = report["run"].get("previous_run")
    run = {k: v for k, v in report["run"].items() if k != "previous_run"}
    if previous is not None:
        run["previous_run_id"] = previous.get("run_id")
    out = {
        "schema_version": report["schema_version"],
        "generated_at": report["generated_at"],
        "run": run,
        "cover": cover(report["run"], report["generated_at"], config),
        "integrity": integrity_doc(integrity),
        "intended_use": intended_use(config),
        "datasheets": datasheets(data),
        "performance": performance(models, config),
        "privacy": privacy(models, data),
        "bias": bias(models, data),
        "resources": resources(models, config),
        "oversight": oversight(models, config),
        "discovery": discovery(models),
        "since_last_run": since_last_run(
            models, report["run"], config, data.get("dataset_sha256"), (report.get("summary") or {}).get("status")
        ),
    }
    out.update({k: v for k, v in report.items() if k not in out})
    out["risks"] = risks(out)
    out["executive_summary"] = executive_summary(out)
    out["frameworks"] = framework_rows(out)
    out["provenance"] = provenance_extra(report.get("provenance") or {}, config, data, report["run"], models)
    return {k: out[k] for k in (*READING_ORDER, *(k for k in out if k not in READING_ORDER))}


READING_ORDER = (
    "schema_version",
    "generated_at",
    "run",
    "cover",
    "integrity",
    "executive_summary",
    "intended_use",
    "datasheets",
    "performance",
    "privacy",
    "bias",
    "resources",
    "oversight",
    "discovery",
    "since_last_run",
    "risks",
    "frameworks",
    "provenance",
    "summary",
    "data",
    "models",
    "config",
    "not_measured",
)
