"""Render the report document (``audits/report.py``) to Markdown and to one self-contained HTML
file, and write all three atomically.

Both templates read the same view (``build_view``), computed here from the JSON document only,
so a report can be re-rendered later from its ``impact_report.json``. Templates render with
jinja2 ``StrictUndefined``, and keys every document of that shape has (the fairness audit's
group rates, the privacy-budget ledger's totals) are read strictly: a renamed key is an error,
never a silent "—". Statuses shown per area and framework row come from ``impactflow.audits.sections`` /
``impactflow.audits.frameworks`` (candidate models decide; baselines beside), never recomputed here. Audits the renderer knows
(performance, fairness, privacy) get their tables and figures; any other audit is rendered
generically (metrics table, by-group table, gates, notes).

HTML: jinja2 autoescape on, CSS inline, figures as ``data:image/png;base64`` URIs; no scripts,
no external resources. Markdown: text from the data is escaped for tables (``|``, ``<``, ``>``,
newlines); figures are only in the HTML.
"""

from __future__ import annotations

import base64
import json
import math
import os
import re
from pathlib import Path
from typing import Any, Callable

from impactflow.audits.atomic import mkstemp_for
from impactflow.audits.report import GATE_STATUS_ORDER, gate_status_rank, validate_report

TEMPLATES_DIR = Path(__file__).with_name("templates")
REPORT_FILES = {
    "json": "impact_report.json",
    "md": "impact_report.md",
    "html": "impact_report.html",
}
KNOWN_KINDS = ("performance", "fairness", "privacy")
DASH = "—"

# Columns of the fairness group table: (label, key of the rate in the fairness audit's by_group rows;
# its interval is ``<key>_ci_low``/``<key>_ci_high``). The keys are audits.bootstrap.RATE_CELLS's.
FAIRNESS_RATE_COLUMNS = (
    ("Selection rate", "selection_rate"),
    ("TPR", "true_positive_rate"),
    ("FPR", "false_positive_rate"),
    ("FNR", "false_negative_rate"),
    ("Accuracy", "accuracy"),
)
_CI_SUFFIXES = (("_ci_low", "_ci_high"), ("/ci_low", "/ci_high"))


# --------------------------------------------------------------------------- formatting


def fmt(x: Any) -> str:
    """Numbers (rates, differences, scores) to 4 decimals; below 0.0001 (δ, tiny p-values) and
    from 10^9 in scientific notation with 4 significant digits; ``None``/NaN -> "—"; ints and
    strings unchanged; booleans -> yes/no. Counts: ``fmt_count``; quantities with units: ``fmt_si``."""
    if x is None:
        return DASH
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        if math.isnan(x):
            return DASH
        if math.isinf(x):
            return "∞" if x > 0 else "−∞"
        if x == 0:
            return "0"
        if abs(x) < 1e-4 or abs(x) >= 1e9:
            return f"{x:.3e}"
        return f"{x:.4f}"
    return str(x)


# A number's kind, read from the last segment of its key or metric name ("eval/tn",
# "fairness/sex/n_groups_judged", "privacy/canary_guesses"): counts are shown as integers even
# when the JSON holds them as floats (``5224.0`` -> ``5224``), 0/1 indicators as yes/no.
_COUNT_NAME = re.compile(r"^(n|k|tp|fp|tn|fn|count|support|canaries)$|^(n|distinct)_|_count$|_(guesses|correct|size)$")
_FLAG_NAME = re.compile(r"_degenerate$")


def _last_segment(name: Any) -> str:
    return re.split(r"[/.]", str(name))[-1].lower()


def is_count_name(name: Any) -> bool:
    """Whether a key or metric name names a count (``n``, ``tp``, ``n_groups_judged``, ...)."""
    return bool(_COUNT_NAME.search(_last_segment(name)))


def fmt_count(x: Any) -> str:
    """A count as an integer (``5224.0`` -> ``5224``); a non-integral value (an expected count,
    a weighted sum) keeps ``fmt``'s decimals rather than being rounded into a different number."""
    if isinstance(x, float) and x.is_integer():
        return str(int(x))
    return fmt(x)


def fmt_metric(x: Any, name: Any) -> str:
    """``x`` formatted by what ``name`` says it is: a count as an integer, a 0/1 indicator as
    yes/no, anything else (rates, differences, scores) by ``fmt`` (4 decimals)."""
    if is_count_name(name):
        return fmt_count(x)
    if _FLAG_NAME.search(_last_segment(name)) and x in (0, 1) and not isinstance(x, bool):
        return "yes" if x == 1 else "no"
    return fmt(x)


def fmt_param(x: Any) -> str:
    """A hyperparameter as it was set (``0.001``, ``1e-05``, ``1.0``): Python's own shortest
    spelling, not rounded to 4 decimals; None -> "—"; booleans -> yes/no."""
    if x is None or isinstance(x, bool):
        return fmt(x)
    if isinstance(x, float):
        return fmt(x) if (math.isnan(x) or math.isinf(x)) else repr(x)
    return str(x)


# SI prefixes for quantities with units (energy, CO2e mass, FLOPs): 4 significant digits.
_PREFIXES = ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"), (1.0, ""), (1e-3, "m"), (1e-6, "µ"), (1e-9, "n"))


def fmt_si(x: Any, unit: str) -> str:
    """``x`` (in ``unit``) with an SI prefix and 4 significant digits: ``fmt_si(0.02958, "Wh")``
    -> ``29.58 mWh``. None/NaN -> "—"."""
    if x is None or isinstance(x, bool) or not isinstance(x, (int, float)) or math.isnan(x):
        return fmt(x)
    if x == 0 or math.isinf(x):
        return f"{fmt(x)} {unit}"
    for scale, prefix in _PREFIXES:
        if abs(x) >= scale * 0.99995:  # 999.97 mWh reads 1.000 Wh, not 1000 mWh
            break
    v = x / scale
    digits = max(0, 3 - int(math.floor(math.log10(abs(v)))) if abs(v) >= 1 else 3)
    return f"{v:.{digits}f} {prefix}{unit}"


def fmt_energy_kwh(x: Any) -> str:
    """Energy given in kWh (the JSON's ``energy_kwh``), shown with its unit: ``2.958e-05`` -> ``29.58 mWh``."""
    return fmt_si(x * 1000.0, "Wh") if isinstance(x, (int, float)) and not isinstance(x, bool) else fmt(x)


def fmt_mass_g(x: Any) -> str:
    """A mass in grams (``co2e_g``) with its unit: ``0.0142`` -> ``14.20 mg``."""
    return fmt_si(x, "g")


def fmt_flops(x: Any) -> str:
    """A number of floating-point operations: ``40883036040.0`` -> ``40.88 GFLOP``."""
    return fmt_si(x, "FLOP")


def fmt_seconds(x: Any) -> str:
    """A duration in seconds: ``8.8737 s``."""
    return DASH if _missing(x) else f"{fmt(x)} s"


def budget_text(b: Any, non_private: Any = ()) -> str:
    """One sentence for the privacy-budget ledger's totals of a dataset (``data.privacy_budget``, the
    shape of ``impactflow.tasks.ledger_store.report_view``). ``non_private``: this run's models trained without
    DP (named in the ∞ warning). Every key is read strictly: a renamed key is an error, not a "—"."""
    if b is None:
        return "not measured (no privacy-budget ledger for this dataset)"
    n_priv, n_non = b["private_models"], b["non_private_models"]
    text = (
        f"dataset {str(b['dataset_sha256'])[:12]}: {fmt_count(n_priv)} DP model(s) spent ε = "
        f"{fmt(b['epsilon_spent_private_models'])}, δ = {fmt(b['delta_spent'])} ({b['composition']})"
    )
    if b["epsilon_spent_is_infinite"]:
        names = ", ".join(str(n) for n in non_private) or "recorded by an earlier run"
        text += (
            f"; total ε = ∞: a non-private model ({names}; {fmt_count(n_non)} in the ledger) was trained on "
            "the same rows, so the data are not protected by differential privacy"
        )
    else:
        text += f"; total ε = {fmt(b['epsilon_spent'])}"
    budget = b["budget_epsilon"]
    text += (
        f"; budget {fmt(budget)}, remaining {fmt(b['remaining_epsilon'])}"
        if budget is not None
        else "; no total budget configured (privacy.budget_epsilon)"
    )
    return text + "."


def anonymity_text(a: Any) -> str:
    """One sentence for k-anonymity of the contract's quasi-identifiers (``data.anonymity``)."""
    if not isinstance(a, dict) or a.get("status") != "measured":
        return "not measured (the data contract declares no quasi-identifiers)"
    unit = a.get("unit") or "rows"
    text = (
        f"k = {fmt_count(a.get('k'))} over the quasi-identifiers {', '.join(map(str, a.get('quasi_identifiers') or []))} "
        f"({fmt_count(a.get('n_classes'))} classes of {unit}); {fmt_count(a.get('units_below_min_k'))} "
        f"(a share of {fmt(a.get('share_below_min_k'))}) sit in classes smaller than "
        f"k = {fmt_count(a.get('min_k'))}"
    )
    if a.get("l_diversity") is not None:
        text += f"; distinct ℓ-diversity of {a.get('sensitive')}: {fmt_count(a.get('l_diversity'))}"
    return text + "."


def pii_text(findings: Any) -> str:
    """One sentence for the contract's identifier/PII scan (column, rule, counts; never a value)."""
    if findings is None:
        return "not measured"
    if not findings:
        return "no column of the model's inputs looks like a direct identifier or PII."
    parts = [f"'{f.get('column')}': {f.get('rule')} ({f.get('evidence')}; {f.get('action')})" for f in findings]
    return "; ".join(parts) + "."


def fmt_ci(low: Any, high: Any) -> str:
    """``[low, high]``, or empty when neither bound is known."""
    if _missing(low) and _missing(high):
        return ""
    return f"[{fmt(low)}, {fmt(high)}]"


def fairness_flags(row: dict) -> list[str]:
    """Flags for one fairness group row: too small to judge; below four-fifths of the max."""
    flags = []
    if row.get("too_small"):
        flags.append("too small to judge")
    ratio = row.get("selection_rate_ratio_to_max")
    if isinstance(ratio, (int, float)) and not isinstance(ratio, bool) and ratio < 0.8:
        flags.append("below four-fifths of the highest selection rate")
    return flags


def _missing(x: Any) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


_ENTITY = re.compile(r"&(?=#?\w+;)")
_TAG_START = re.compile(r"<(?=[A-Za-z/!?])")  # "<" that could open an HTML tag or comment
# a "]" that closes a link's text: "](url)", "][ref]", "]: url" (a reference definition)
_LINK_CLOSE = re.compile(r"\](?=[(\[:])")


def md_escape(text: str) -> str:
    """Escape text for a Markdown table cell / paragraph: no raw HTML (a ``<`` that could open
    a tag becomes ``&lt;``; ``<=`` and ``>50K`` stay readable), no links or images (a ``]``
    that could close a link's text, e.g. ``[x](javascript:...)`` or ``![](http://...)``,
    becomes ``\\]``; ``[0.80, 0.91]`` stays as it is), no column breaks, one line. Backslashes
    are doubled first, so a value cannot undo an escape."""
    text = text.replace("\\", "\\\\")
    text = _LINK_CLOSE.sub("\\\\]", text)
    text = _ENTITY.sub("&amp;", text)
    text = _TAG_START.sub("&lt;", text).replace("|", "\\|")
    return re.sub(r"\s*[\r\n]+\s*", " ", text)


EVIDENCE_STATUSES = (
    "measured",
    "estimated",
    "evidence",
    "partial",
    "incomplete",
    "no-guarantee",
    "vacuous",
)  # sections 2 and 13


def _status_class(status: Any) -> str:
    s = str(status)
    return s if s in GATE_STATUS_ORDER or s in EVIDENCE_STATUSES else "unknown"


def _fence(text: str) -> str:
    """A backtick fence longer than any backtick run in ``text``."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


# --------------------------------------------------------------------------- view


# The numbered sections (anchor, title), then the appendices: one table of contents.
SECTIONS = (
    ("cover", "1. Cover and integrity"),
    ("summary", "2. Executive summary"),
    ("intended-use", "3. System and intended use"),
    ("datasheets", "4. Data sheets"),
    ("performance", "5. Performance"),
    ("privacy", "6. Privacy"),
    ("bias", "7. Bias"),
    ("resources", "8. Concentration and resources"),
    ("oversight", "9. Employment and human oversight"),
    ("discovery", "10. What the configured gates did not cover"),
    ("since", "11. Since the last run"),
    ("risks", "12. Risks, limitations and what was not measured"),
    ("frameworks", "13. Mapping to frameworks"),
    ("provenance", "14. Provenance"),
)
NOT_STATED = "not stated by the run owner"


def build_view(report: dict, *, figures: bool) -> dict:
    """Everything the templates show, derived from the report document only."""
    from impactflow.audits.sections import USE_FIELDS, section_of

    summary = report.get("summary") or {}
    gates = [gate_view(g) for g in sorted(summary.get("gates") or [], key=lambda g: gate_status_rank(g.get("status")))]
    run = report.get("run") or {}
    bias = report.get("bias") or {}
    config_json = json.dumps(report.get("config") or {}, indent=2, ensure_ascii=False, default=str)
    return {
        "title": f"Social-impact report — {run.get('preset', '')}".rstrip(" —"),
        "status": summary.get("status"),
        "counts": summary.get("counts") or {},
        # gates that could not be measured ({model, gate, reason}) and gates the user skipped, with the
        # user's reason: shown on the cover, in the executive summary and beside the framework table
        "incomplete": (report.get("executive_summary") or {}).get("incomplete") or [],
        "skipped": (report.get("executive_summary") or {}).get("skipped") or [],
        "non_private": [
            m.get("name")
            for m in report.get("models") or []
            if not ((m.get("training") or {}).get("dp") or {}).get("enabled")
        ],
        "gates": gates,
        "run": run,
        "generated_at": report.get("generated_at"),
        "schema_version": report.get("schema_version"),
        "data": _data_view(report.get("data") or {}),
        "models": [
            _model_view(m, figures=figures, config=report.get("config") or {}) for m in report.get("models") or []
        ],
        "not_measured": report.get("not_measured") or [],
        "provenance": report.get("provenance") or {},
        "config_json": config_json,
        "config_asked": _config_asked(report),
        "config_effective": _config_effective(report),
        "config_fence": _fence(config_json),
        "extra_sections": _extra_sections(report),
        "sections": SECTIONS,
        "cover": report.get("cover") or {},
        "integrity": report.get("integrity") or None,
        "executive": report.get("executive_summary") or {},
        "use": [
            (k.replace("_", " ").capitalize(), _use_text(use.get(k)))
            for use in [report.get("intended_use") or {}]
            for k in USE_FIELDS
        ],
        "datasheets": report.get("datasheets") or [],
        "performance": report.get("performance") or {},
        "privacy": report.get("privacy") or {},
        "bias": {**bias, "four_fifths": [gate_view(r) for r in bias.get("four_fifths") or []]},
        "resources": report.get("resources") or {},
        "oversight": report.get("oversight") or {},
        "discovery": _discovery_view(report.get("discovery") or {}, figures=figures),
        "since": {"present": "since_last_run" in report, **(report.get("since_last_run") or {})},
        "oversight_use": [
            (k.replace("_", " ").capitalize(), _use_text((report.get("oversight") or {}).get(k)))
            for k in ("decision_type", "human_review", "affected_jobs", "training_needs")
        ],
        "risks": report.get("risks") or {},
        "frameworks": report.get("frameworks") or [],
        "by_section": _audits_by_section(report, section_of, figures=figures),
        "resource_figure": _resource_figure(report.get("resources") or {}) if figures else None,
    }


def _discovery_view(d: dict, *, figures: bool) -> dict:
    """Section 10 as shown: the JSON's slices, proxies and attributions, with a bar chart of each
    model's worst slices (95 % intervals, the all-rows value dashed), one of proxy strength and
    one of the attribution gaps."""
    from impactflow.audits.plots import bar_chart_png, interval_bars_png

    slices = []
    for s in d.get("slices") or []:
        found = s.get("findings") or []
        fig = None
        if figures and found:
            fig = _b64(
                interval_bars_png(
                    [f.get("slice") for f in found],
                    [f.get("metric") for f in found],
                    [f.get("metric_ci_low") for f in found],
                    [f.get("metric_ci_high") for f in found],
                    f"{s.get('model')}: worst slices ({s.get('metric')}, 95 % interval)",
                    str(s.get("metric") or ""),
                    reference=s.get("overall"),
                    reference_label="all test rows",
                )
            )
        slices.append({**s, "figure": fig})
    proxies = dict(d.get("proxies") or {"models": []})
    proxies.setdefault("attributes", [])
    proxies.setdefault("score_auc", [])
    proxies.setdefault("statements", [])
    measured = [a for a in proxies["attributes"] if a.get("proxy_auc") is not None]
    proxies["figure"] = None
    if figures and measured:
        labels, values = [], []
        for a in measured:
            labels.append(f"{a['attribute']}: all features")
            values.append(a.get("proxy_auc"))
            for p in a.get("proxies") or []:
                labels.append(f"{a['attribute']}: {p.get('feature')} alone")
                values.append(p.get("auc"))
        proxies["figure"] = _b64(bar_chart_png(labels, values, "Proxy strength (cross-validated AUC)", "AUC"))
    attributions = []
    for r in d.get("attributions") or []:
        diffs = r.get("differences") or []
        fig = None
        if figures and diffs:
            fig = _b64(
                bar_chart_png(
                    [
                        f"{x.get('attribute')}: {x.get('feature')} ({x.get('max_group')} vs {x.get('min_group')})"
                        for x in diffs
                    ],
                    [x.get("gap") for x in diffs],
                    f"{r.get('model')}: attribution gaps between groups",
                    "gap in mean |attribution|",
                )
            )
        attributions.append({**r, "figure": fig})
    return {
        "intro": d.get("intro") or "",
        "present": bool(d),
        "slices": slices,
        "proxies": proxies,
        "attributions": attributions,
    }


def _use_text(value: Any) -> str:
    if value in (None, "", []):
        return NOT_STATED
    if isinstance(value, list):
        return "; ".join(str(v) for v in value)
    return str(value)


def _audits_by_section(report: dict, section_of: Callable[[str], str], *, figures: bool) -> dict[str, list[dict]]:
    """``{section: [{"model", "a": audit view}]}``: each audit shown once, in its section."""
    out: dict[str, list[dict]] = {}
    for m in report.get("models") or []:
        dp = (m.get("training") or {}).get("dp") or {}
        audits = m.get("audits") or {}
        for key, audit in sorted(audits.items(), key=lambda kv: _kind_rank(_kind(*kv))):
            if isinstance(audit, dict):
                view = _audit_view(key, audit, dp=dp, figures=figures)
                out.setdefault(section_of(key), []).append({"model": m.get("name"), "a": view})
    return out


def _resource_figure(resources: dict) -> str | None:
    rows = [r for r in resources.get("models") or [] if r.get("energy_kwh") is not None]
    if not rows:
        return None
    from impactflow.audits.plots import bar_chart_png

    return _b64(
        bar_chart_png(
            [r.get("model") for r in rows],
            [r["energy_kwh"] * 1000 for r in rows],
            "Training energy per model (Wh)",
            "Wh",
        )
    )


_KNOWN_TOP = {
    "schema_version",
    "generated_at",
    "run",
    "summary",
    "data",
    "models",
    "provenance",
    "config",
    "not_measured",
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
    "risks",
    "frameworks",
}


def _extra_sections(report: dict) -> list[dict]:
    """Top-level sections added later (e.g. employment) that this renderer does not know yet:
    shown as key/value tables so nothing in the document is silently dropped."""
    out = []
    for key, value in report.items():
        if key in _KNOWN_TOP:
            continue
        title = key.replace("_", " ").capitalize()
        if isinstance(value, dict):
            out.append({"title": title, "items": [(k, _scalar(v)) for k, v in value.items()]})
        elif isinstance(value, list):
            out.append({"title": title, "items": [(str(i + 1), _scalar(v)) for i, v in enumerate(value)]})
        else:
            out.append({"title": title, "items": [("value", _scalar(value))]})
    return out


def _scalar(v: Any) -> Any:
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    return json.dumps(v, ensure_ascii=False, default=str)


def contract_scope(stats: dict) -> str | None:
    """What a streamed audit's contract checked (``tasks.stream_audit.check_streamed``): the GX
    suite on a seeded sample, the full-data counts over every row. None for a frame checked whole."""
    sample, full = stats.get("sample"), stats.get("full_data")
    if not sample or not full:
        return None
    c = fmt_count
    nulls = ", ".join(f"{k} {c(v)}" for k, v in full["nulls"].items())
    labels = ", ".join(f"'{k}' {c(v)}" for k, v in full["label_values"].items())
    return (
        f"Checked on a seeded uniform sample of {c(sample['rows'])} of {c(sample['of'])} rows (the GX suite, "
        f"seed {c(sample['seed'])}), plus full-data counts over every row ({full['engine']} engine, "
        f"{full['seconds']:g} s): {c(full['rows'])} rows; missing values: {nulls}; label values: {labels}."
    )


def _data_view(data: dict) -> dict:
    cr = data.get("contract_result") or {}
    failures = []
    for f in cr.get("failures") or []:
        if isinstance(f, dict):
            failures.append("; ".join(f"{k}={_scalar(v)}" for k, v in f.items()))
        else:
            failures.append(str(f))
    stats = cr.get("statistics") or {}
    reused = stats.get("reused") or None
    return {
        "contract_scope": contract_scope(stats),
        **data,
        "contract_result": cr,
        # a passing result reused for an identical frame (data_contracts.validation_cache)
        "contract_reused": (
            f"Result reused: this exact frame (same values, suite and validation code) "
            f"passed at {reused.get('validated_at')}; `data.reuse_validation: false` "
            "validates it again."
        )
        if reused
        else None,
        "failure_lines": failures,
        "contract_file": data.get("contract_file"),  # absent in documents written before it existed
        "missing_items": [(k, v) for k, v in (data.get("missing") or {}).items()],
        "nonzero_missing": [(k, v) for k, v in (data.get("missing") or {}).items() if v],
    }


def _model_view(model: dict, *, figures: bool, config: dict | None = None) -> dict:
    training = model.get("training") or {}
    dp = training.get("dp") or {}
    audits = model.get("audits") or {}
    ordered = sorted(audits.items(), key=lambda kv: _kind_rank(_kind(*kv)))
    return {
        "name": model.get("name"),
        "family": model.get("family"),
        "description": model.get("description"),
        "status": model.get("status"),
        "mlflow_run_id": model.get("mlflow_run_id"),
        **_params_view(model, config),
        "training": training,
        "dp": dp,
        "dp_text": _dp_text(dp),
        "audits": [_audit_view(k, a, dp=dp, figures=figures) for k, a in ordered],
    }


# Hyperparameters a library reports that do not describe the fitted model: execution settings
# (a single fit, no parallel effect on the result) and placeholders a library uses for "not set,
# the library decides" (scikit-learn's ``penalty='deprecated'``, ``multi_class='warn'``).
EXECUTION_PARAMS = frozenset({"verbose", "n_jobs", "warm_start", "copy_X", "pre_dispatch"})
PLACEHOLDER_VALUES = frozenset({"deprecated", "warn"})


def _params_view(model: dict, config: dict | None) -> dict:
    """A model's hyperparameters as shown: ``params``: ``(name, value, source)`` rows, where source
    says whether the run's configuration set it (``model.params`` of the preset or ``--set``) or
    it is the family's / library's default; ``params_hidden``: names not shown (execution settings,
    library placeholders), listed in one line so nothing disappears silently."""
    params = model.get("params") or {}
    configured = (
        (((config or {}).get("model") or {}).get("params") or {})
        if model.get("role", "candidate") != "baseline"
        else {}
    )
    rows, hidden = [], []
    for k, v in params.items():
        if k in EXECUTION_PARAMS or (isinstance(v, str) and v in PLACEHOLDER_VALUES):
            hidden.append(k)
            continue
        if k == "seed":
            source = "run seed"
        elif k in configured:
            source = "run configuration"
        elif model.get("role", "candidate") == "baseline":
            source = "fixed for the baseline"
        else:
            source = "family default"
        rows.append((k, fmt_param(v), source))
    return {"params": rows, "params_hidden": hidden}


# Configuration sections that do not change what was trained, measured or decided: shown in the
# complete configuration only (``use`` is section 3; ``orchestration`` is how tasks are scheduled).
_CONFIG_NOT_SHOWN = ("use", "orchestration", "description", "preset", "extends")
# DP-SGD settings that matter only when privacy.enabled is true.
_DP_TRAINING_KEYS = (
    "target_epsilon",
    "noise_multiplier",
    "delta",
    "max_grad_norm",
    "accountant",
    "grad_sample_mode",
    "clipping",
)


def command_overrides(command: Any) -> list[str]:
    """The ``--set key=value`` overrides of the command line recorded in provenance."""
    if not isinstance(command, str):
        return []
    words = command.split()
    out = []
    for i, w in enumerate(words):
        if w in ("--set", "-s") and i + 1 < len(words):
            out.append(words[i + 1])
        elif w.startswith("--set="):
            out.append(w[len("--set=") :])
    return out


def _config_asked(report: dict) -> dict:
    """What the run owner asked for: the preset (and the preset it extends), the command line and
    its ``--set`` overrides (from provenance.command; absent when the run came from Python)."""
    config = report.get("config") or {}
    command = (report.get("provenance") or {}).get("command")
    return {
        "preset": config.get("preset"),
        "extends": config.get("extends"),
        "command": command,
        "overrides": command_overrides(command),
    }


def _flatten(value: Any, prefix: str) -> list[tuple[str, Any]]:
    if isinstance(value, dict) and value:
        return [kv for k, v in value.items() for kv in _flatten(v, f"{prefix}.{k}" if prefix else str(k))]
    return [(prefix, value)]


def _config_effective(report: dict) -> list[tuple[str, str, str]]:
    """``(key, value, source)`` for the effective settings that change what was trained, measured
    or gated; unset (null) keys, the intended-use statements (section 3), scheduling and, without
    DP, the DP-SGD settings are left to the complete configuration."""
    config = report.get("config") or {}
    overridden = {
        o.split("=", 1)[0].strip() for o in command_overrides((report.get("provenance") or {}).get("command"))
    }
    dp_on = bool((config.get("privacy") or {}).get("enabled"))
    rows = []
    for key, value in _flatten({k: v for k, v in config.items() if k not in _CONFIG_NOT_SHOWN}, ""):
        if value is None or value in ({}, [], ""):
            continue
        if not dp_on and key.startswith("privacy.") and key.split(".", 1)[1] in _DP_TRAINING_KEYS:
            continue
        if isinstance(value, list):
            shown = json.dumps(value, ensure_ascii=False, default=str)
        else:
            shown = fmt_param(value)
        source = "--set" if any(key == o or key.startswith(o + ".") for o in overridden) else "preset or default"
        rows.append((key, shown, source))
    return rows


def _dp_text(dp: dict) -> str:
    if not dp.get("enabled"):  # a model not trained here (audit-only) says so in dp.summary
        return str(dp.get("summary") or "not private (trained without differential privacy)")
    parts = [f"(ε = {fmt(dp.get('epsilon'))}, δ = {fmt(dp.get('delta'))})-DP"]
    if dp.get("accountant"):
        parts.append(f"accountant: {dp['accountant']}")
    if dp.get("privacy_unit"):
        parts.append(f"privacy unit: {dp['privacy_unit']}")
    return "; ".join(parts)


def _kind(key: str, audit: dict) -> str:
    for kind in KNOWN_KINDS:
        if str(key).lower().startswith(kind) or str(audit.get("name", "")).lower().startswith(kind):
            return kind
    return "generic"


def _kind_rank(kind: str) -> int:
    return KNOWN_KINDS.index(kind) if kind in KNOWN_KINDS else len(KNOWN_KINDS)


def metric_rows(metrics: dict) -> list[dict]:
    """``{name, value, ci_low, ci_high}`` rows; ``x_ci_low``/``x_ci_high`` (or ``x/ci_low``)
    are folded into the row of ``x`` when ``x`` is present."""
    consumed: set[str] = set()
    rows = []
    for name, value in metrics.items():
        if name in consumed:
            continue
        low = high = None
        for lo_s, hi_s in _CI_SUFFIXES:
            if name + lo_s in metrics or name + hi_s in metrics:
                low, high = metrics.get(name + lo_s), metrics.get(name + hi_s)
                consumed |= {name + lo_s, name + hi_s}
                break
        rows.append({"name": name, "value": value, "ci_low": low, "ci_high": high})
    return [r for r in rows if r["name"] not in consumed]


def _audit_view(key: str, audit: dict, *, dp: dict, figures: bool) -> dict:
    kind = _kind(key, audit)
    details = audit.get("details") or {}
    metrics = audit.get("metrics") or {}
    view: dict[str, Any] = {
        "key": key,
        "name": audit.get("name", key),
        "kind": kind,
        "title": key.replace("_", " ").capitalize(),
        "status": _shown_status(audit),
        "gates": [gate_view(g) for g in audit.get("gates") or []],
        "notes": audit.get("notes") or [],
        "thresholds": list((audit.get("thresholds") or {}).items()),
        "metrics": metric_rows(metrics),
        "figures": [],
        "attributes": [],
        "conventions": [],
        "by_group_columns": [],
        "by_group": audit.get("by_group") or [],
        "details_scalars": [],
        "confusion": None,
    }
    if kind == "performance":
        cm = details.get("confusion_matrix")
        if _is_matrix(cm):
            view["confusion"] = cm
        if figures:
            _add_figure(view, "ROC curve (test)", details.get("roc"), _roc_fig)
            _add_figure(view, "Calibration (test)", details.get("calibration"), _calibration_fig)
            _add_figure(view, "Confusion matrix (test)", cm if _is_matrix(cm) else None, _confusion_fig)
    elif kind == "fairness":
        attrs: dict[str, list[dict]] = {}
        for row in view["by_group"]:
            attrs.setdefault(str(row.get("attribute")), []).append(row)
        used: set[str] = set()
        for attr, rows in attrs.items():
            attr_metrics = {k: v for k, v in metrics.items() if attr in str(k).split("/")}
            used |= set(attr_metrics)
            entry = {"attribute": attr, "rows": rows, "metrics": metric_rows(attr_metrics), "figure": None}
            if figures:
                from impactflow.audits.plots import group_bars_png

                entry["figure"] = _b64(group_bars_png(rows, attr))
            view["attributes"].append(entry)
        view["metrics"] = metric_rows({k: v for k, v in metrics.items() if k not in used})
        conv = details.get("conventions") or {}
        if isinstance(conv, dict):
            view["conventions"] = [(k, _scalar(v)) for k, v in conv.items()]
        view["by_group"] = []  # shown per attribute instead
    elif kind == "privacy":
        view["dp_text"] = _dp_text(dp)
        if figures:
            eps = dp.get("epsilon") if dp.get("enabled") else None
            _add_figure(
                view,
                "Membership-inference ROC (log-log)",
                details.get("roc"),
                lambda roc: _roc_fig(
                    roc, title="Membership inference", loglog=True, epsilon=eps, delta=dp.get("delta")
                ),
            )
    if view["by_group"]:
        cols: list[str] = []
        for row in view["by_group"]:
            cols += [c for c in row if c not in cols]
        view["by_group_columns"] = cols
    if kind == "generic" and figures:
        # any audit may ask for bar charts: details["bar_charts"] = [{title, labels, values, xlabel}]
        for chart in details.get("bar_charts") or []:
            if isinstance(chart, dict) and chart.get("labels"):
                _add_figure(view, str(chart.get("title", "")), chart, _bar_fig)
        # and line plots: details["line_plots"] = [{title, x_label, y_label, diagonal, series: [{label, x, y}]}]
        for plot in details.get("line_plots") or []:
            if isinstance(plot, dict) and plot.get("series"):
                _add_figure(view, str(plot.get("title", "")), plot, _line_fig)
    if kind == "generic":
        conv = details.get("conventions")
        if isinstance(conv, dict):
            view["conventions"] = [(k, _scalar(v)) for k, v in conv.items()]
        view["details_scalars"] = [
            (k, v if isinstance(v, str) else fmt_metric(v, k))
            for k, v in details.items()
            if v is None or isinstance(v, (bool, int, float, str))
        ]
    return view


def gate_view(g: dict) -> dict:
    """A gate as listed: ``label`` is its status in capitals, or ``vacuous (cannot fail: …)`` for a gate
    that cannot fail (``vacuous: true``: its pass is no evidence); ``shown_note`` is the note when the
    label does not already carry it (a skipped gate's note is the user's reason)."""
    from impactflow.audits.sections import vacuous_label

    if g.get("vacuous"):
        return {**g, "label": vacuous_label(g), "shown_note": ""}
    return {**g, "label": str(g.get("status") or "unknown").upper(), "shown_note": g.get("note") or ""}


def _shown_status(audit: dict) -> Any:
    """An audit with metrics but no gate configured is shown as "measured" (its JSON status stays
    "not-measured": no gate decided anything)."""
    status = audit.get("status")
    if (
        status == "not-measured"
        and not audit.get("gates")
        and any(v is not None for v in (audit.get("metrics") or {}).values())
    ):
        return "measured"
    return status


def _is_matrix(m: Any) -> bool:
    return isinstance(m, list) and bool(m) and all(isinstance(r, list) and len(r) == len(m) for r in m)


def _add_figure(view: dict, title: str, payload: Any, draw: Callable[[Any], bytes]) -> None:
    if not payload:
        return
    view["figures"].append({"title": title, "b64": _b64(draw(payload))})


def _roc_fig(roc: dict, *, title: str = "ROC", loglog: bool = False, epsilon=None, delta=None) -> bytes:
    from impactflow.audits.plots import roc_png

    return roc_png(roc.get("fpr") or [], roc.get("tpr") or [], title, loglog=loglog, epsilon=epsilon, delta=delta)


def _line_fig(plot: dict) -> bytes:
    from impactflow.audits.plots import line_plot_png

    return line_plot_png(
        plot.get("series") or [],
        str(plot.get("title", "")),
        str(plot.get("x_label", "")),
        str(plot.get("y_label", "")),
        diagonal=bool(plot.get("diagonal")),
    )


def _bar_fig(chart: dict) -> bytes:
    from impactflow.audits.plots import bar_chart_png

    return bar_chart_png(
        chart.get("labels") or [], chart.get("values") or [], str(chart.get("title", "")), str(chart.get("xlabel", ""))
    )


def _calibration_fig(bins: list) -> bytes:
    from impactflow.audits.plots import calibration_png

    return calibration_png(bins)


def _confusion_fig(matrix: list) -> bytes:
    from impactflow.audits.plots import confusion_png

    return confusion_png(matrix)


def _b64(png: bytes) -> str:
    return base64.b64encode(png).decode("ascii")


# --------------------------------------------------------------------------- jinja


def _environment(kind: str):
    import jinja2

    if kind == "html":
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            finalize=lambda v: fmt(v) if v is None or isinstance(v, (bool, float)) else v,
        )
    else:

        def finalize(v: Any) -> Any:
            if hasattr(v, "__html__"):  # marked |safe (markupsafe.Markup): already Markdown
                return str(v)
            if v is None or isinstance(v, (bool, int, float)):
                return fmt(v)
            return md_escape(str(v))

        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)),
            autoescape=False,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
            finalize=finalize,
        )
    env.filters["fmt"] = fmt
    env.filters["count"] = fmt_count
    env.filters["metric"] = fmt_metric
    env.filters["param"] = fmt_param
    env.filters["energy_kwh"] = fmt_energy_kwh
    env.filters["mass_g"] = fmt_mass_g
    env.filters["flops"] = fmt_flops
    env.filters["seconds"] = fmt_seconds
    env.filters["budget_text"] = budget_text
    env.filters["pii_text"] = pii_text
    env.filters["anonymity_text"] = anonymity_text
    env.filters["ci"] = lambda row, key: fmt_ci(row.get(f"{key}_ci_low"), row.get(f"{key}_ci_high"))
    env.filters["status_class"] = _status_class
    env.globals["fmt_ci"] = fmt_ci
    env.filters["fairness_flags"] = fairness_flags
    env.globals["FAIRNESS_RATE_COLUMNS"] = FAIRNESS_RATE_COLUMNS
    return env


def render_markdown(report: dict) -> str:
    """The report as Markdown (no figures; they are in the HTML)."""
    view = build_view(report, figures=False)
    return _environment("md").get_template("report.md.j2").render(v=view)


def render_html(report: dict) -> str:
    """The report as one self-contained HTML page (inline CSS, base64 PNG figures, no JS)."""
    view = build_view(report, figures=True)
    return _environment("html").get_template("report.html.j2").render(v=view)


# --------------------------------------------------------------------------- writing


def write_report(report: dict, out_dir: Path) -> dict[str, Path]:
    """Validate, render and write ``impact_report.{json,md,html}`` into ``out_dir``.

    Everything is rendered in memory first, then each file is written to a temporary file in
    ``out_dir``, fsynced and moved into place with ``os.replace``. If validation or rendering
    fails nothing is written; temporary files never outlive the call.
    Returns ``{"json": path, "md": path, "html": path}``.
    """
    validate_report(report)
    contents = {
        "json": json.dumps(report, indent=2, sort_keys=False, ensure_ascii=False, allow_nan=False) + "\n",
        "md": render_markdown(report),
        "html": render_html(report),
    }
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    temps: dict[str, Path] = {}
    try:
        for kind, text in contents.items():
            fd, tmp = mkstemp_for(out_dir / REPORT_FILES[kind])  # names its writer (audits.atomic)
            temps[kind] = Path(tmp)
            with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
        paths = {}
        for kind, tmp in temps.items():
            final = out_dir / REPORT_FILES[kind]
            os.replace(tmp, final)
            paths[kind] = final
        temps.clear()
        _fsync_dir(out_dir)
        return paths
    finally:
        for tmp in temps.values():
            try:
                tmp.unlink()
            except FileNotFoundError:
                pass


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # e.g. Windows: directories cannot be opened
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
