"""The social-impact report: one JSON document per pipeline run (the source of truth).

``build_report`` assembles it from what the pipeline already has (run ids, data contract
result, each model's training record and audit results, provenance, config);
``validate_report`` checks it against ``report_schema.json``. Rendering to Markdown/HTML and
writing to disk live in ``audits/render.py``.

The document is plain JSON (no NaN: non-finite numbers become ``null``) so it can be logged
as an MLflow artifact, diffed, and re-rendered later. Sections are data-driven: an audit the
renderer does not know still appears (metrics, by-group table, gates).
"""

from __future__ import annotations

import json
import math
from datetime import date, datetime, timezone
from enum import Enum
from functools import lru_cache
from pathlib import Path, PurePath
from typing import Any
from urllib.parse import urlsplit, urlunsplit

SCHEMA_VERSION = "2.0"  # 2.0: the numbered sections (audits/sections.py)
SCHEMA_PATH = Path(__file__).with_name("report_schema.json")

# Order gates are listed in: what a reviewer must look at first.
GATE_STATUS_ORDER = ("fail", "not-measured", "skipped", "pass")

# Audits the pipeline is expected to run for every model, and what is missing without them.
EXPECTED_AUDITS = {
    "performance": "predictive performance (discrimination, calibration)",
    "fairness": "group fairness (selection rate, error rates per group)",
    "privacy": "membership-inference attack",
}

# Things this report does not measure unless an audit of that name is present for some model
# (or a top-level section of that name exists). Later work adds audits; the statement then
# disappears by itself.
KNOWN_GAPS: tuple[tuple[str, str], ...] = (
    (
        "lira",
        "stronger membership-inference attacks (LiRA with reference models) — not run in this run "
        "(set privacy_audit.reference_models >= 1, e.g. preset tabular-privacy-audit); "
        "the reported attack is a weaker one, so it gives a lower bound on leakage, "
        "not an upper bound",
    ),
    (
        "energy",
        "energy use and CO2 emissions of inference and deployment — not measured; training energy "
        "is estimated from wall time (section 8) unless energy counters were readable",
    ),
    (
        "employment",
        "employment impact (jobs or tasks changed by deploying the model) — not measured; section 9 "
        "shows how much work the model could take over, not what happens to jobs",
    ),
)
DEPLOYMENT_GAP = (
    "outcomes after deployment (drift, feedback loops, appeals, harms to people affected) — "
    "not measured; every figure here is computed on the held-out test split"
)
AUDIT_ONLY_DEPLOYMENT_GAP = (
    "outcomes beyond the decision log (drift, feedback loops, appeals, harms to people affected) — "
    "not measured; every figure here is computed on the decisions supplied"
)
AUDIT_ONLY_PRIVACY_GAP = (
    "privacy of the audited model's training data — not audited: audit-only sees the logged decisions, "
    "not the model or its training data"
)
INTERSECTIONAL_GAP = (
    "intersectional groups (e.g. sex × race) — not measured; fairness is reported one sensitive attribute at a time"
)

_SECRET_KEY_PARTS = ("password", "passwd", "secret", "token", "api_key", "apikey", "credential")
REDACTED = "***"


# --------------------------------------------------------------------------- building


def build_report(
    *,
    run: dict,
    data: dict,
    models: list[dict],
    provenance: dict,
    config: dict,
    integrity: dict | None = None,
) -> dict:
    """Assemble the report document (see ``report_schema.json``) from the pipeline's records.

    Inputs are copied, converted to plain JSON types (numpy scalars/arrays, enums, paths,
    datetimes; NaN/inf -> ``None``) and left unmodified. Credentials embedded in URIs
    (``scheme://user:pass@host``) and config values under secret-looking keys are redacted.
    ``summary.status`` follows ``impactflow.audits.results.run_status``: ``"fail"`` if any gate of a
    candidate model failed; else ``"incomplete"`` if any of them was not measured, or none was
    measured at all; ``"pass"`` only when every configured gate was measured and passed
    (skipped gates -- skipped by the run owner, with the reason as note -- do not count).
    ``summary.incomplete`` lists the deciding gates not measured: ``{model, gate, reason}``.
    Every gate dict (in ``summary.gates`` and in each audit) goes through
    ``results.checked_gate``: a pass/fail without a finite value is ``not-measured``, and
    ``vacuous: true`` marks a pass no value could have missed (its note says why). A model with
    ``"role": "baseline"`` is a reference shown beside the candidates: its gates are reported
    (marked ``"baseline": true``) but do not decide the run's status; a run with only
    baselines is judged on them. Each model's ``status`` is the same verdict over its own gates.

    The numbered sections of schema 2.0 (cover, executive summary, intended use, data sheets,
    performance, privacy, bias, resources, oversight, risks, frameworks, provenance) are added by
    ``impactflow.audits.sections.add_sections``. ``integrity`` (``signer_public_key``, ``signer_key_id``,
    ``evidence_manifest_sha256``, ``previous_report_sha256``; all optional) is recorded under
    ``integrity``; without it the report is rendered as unsigned.
    """
    from .sections import add_sections

    run_doc = _plain(run)
    if isinstance(run_doc.get("mlflow"), dict) and run_doc["mlflow"].get("tracking_uri"):
        run_doc["mlflow"]["tracking_uri"] = redact_uri(str(run_doc["mlflow"]["tracking_uri"]))
    data_doc = _plain(data)
    model_docs = [_plain(m) for m in models]
    for m in model_docs:
        m.setdefault("audits", {})
        for audit in m["audits"].values():
            if isinstance(audit, dict) and audit.get("gates"):
                audit["gates"] = [_checked(g) for g in audit["gates"]]
        m["status"] = _status_of([g["status"] for g in _model_gates(m)])

    gates = sorted(
        (g for m in model_docs for g in _model_gates(m)),
        key=lambda g: gate_status_rank(g["status"]),
    )  # stable: model order, then audit order, is kept within one status
    deciding = [g for g in gates if not g["baseline"]] or gates
    counts = {s: 0 for s in ("pass", "fail", "not-measured", "skipped")}
    for g in gates:
        counts[g["status"]] = counts.get(g["status"], 0) + 1

    return add_sections(
        {
            "schema_version": SCHEMA_VERSION,
            "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "run": run_doc,
            "summary": {
                "status": _status_of([g["status"] for g in deciding]),
                "gates": gates,
                "counts": counts,
                "incomplete": incomplete_gates(deciding),
            },
            "data": data_doc,
            "models": model_docs,
            "provenance": _plain(provenance),
            "config": redact_config(_plain(config)),
            "not_measured": not_measured_statements(data_doc, model_docs),
        },
        _plain(integrity) if integrity is not None else None,
    )


def not_measured_statements(data: dict, models: list[dict]) -> list[str]:
    """Plain statements of what the report does not measure, derived from what is present."""
    out: list[str] = []
    audit_only = bool(data.get("audit_only"))
    present = {str(k).lower() for m in models for k in (m.get("audits") or {})}
    present |= {
        str(a.get("name", "")).lower() for m in models for a in (m.get("audits") or {}).values() if isinstance(a, dict)
    }
    for m in models:
        name = m.get("name", "?")
        audits = m.get("audits") or {}
        # an audit may stand in for an expected one of another task kind: details.covers
        covered = set(audits) | {
            str(c)
            for a in audits.values()
            if isinstance(a, dict)
            for c in ((a.get("details") or {}).get("covers") or [])
        }
        for key, what in EXPECTED_AUDITS.items():
            if key not in covered and not (audit_only and key == "privacy"):
                out.append(f"{name}: {what} — not run")
        for key, audit in audits.items():
            status = audit.get("status") if isinstance(audit, dict) else None
            measured_without_gate = (
                status == "not-measured"
                and not audit.get("gates")
                and any(v is not None for v in (audit.get("metrics") or {}).values())
            )  # evidence, just no gate set
            if status in ("not-measured", "skipped") and not measured_without_gate:
                why = "; ".join(str(n) for n in (audit.get("notes") or [])[:2])
                out.append(f"{name}: {key} audit — {status}" + (f" ({why})" if why else ""))
        # Sensitive attributes declared by the contract but absent from the fairness table.
        fairness = audits.get("fairness") if isinstance(audits.get("fairness"), dict) else None
        if fairness is not None and fairness.get("status") not in ("not-measured", "skipped"):
            audited = {str(r.get("attribute")) for r in fairness.get("by_group") or []}
            for attr in data.get("sensitive") or []:
                if str(attr) not in audited:
                    out.append(f"{name}: fairness for sensitive attribute '{attr}' — not measured")
    for key, statement in KNOWN_GAPS:
        if audit_only:  # no training here: no attack to strengthen, no training energy, no deferral curve
            break
        if not any(key in p for p in present):
            out.append(statement)
    if audit_only:
        out.append(AUDIT_ONLY_PRIVACY_GAP)
        out.append("employment impact (jobs or tasks changed by these decisions) — not measured")
    sensitive = {str(s) for s in data.get("sensitive") or []}
    fairness_attrs = set()
    for m in models:
        fairness = (m.get("audits") or {}).get("fairness")
        if isinstance(fairness, dict):
            fairness_attrs |= {str(r.get("attribute")) for r in fairness.get("by_group") or [] if isinstance(r, dict)}
    if len(sensitive) > 1 and fairness_attrs <= sensitive:
        out.append(INTERSECTIONAL_GAP)
    out.append(AUDIT_ONLY_DEPLOYMENT_GAP if audit_only else DEPLOYMENT_GAP)
    return out


def _model_gates(model: dict) -> list[dict]:
    gates = []
    for audit_key, audit in (model.get("audits") or {}).items():
        if not isinstance(audit, dict):
            continue
        for g in audit.get("gates") or []:
            gates.append(
                {
                    "model": model.get("name"),
                    "audit": audit_key,
                    "name": g.get("name"),
                    "status": g.get("status"),
                    "value": g.get("value"),
                    "threshold": g.get("threshold"),
                    "comparison": g.get("comparison"),
                    "note": g.get("note", ""),
                    "vacuous": bool(g.get("vacuous", False)),
                    "baseline": model.get("role") == "baseline",
                }
            )
    return gates


def gate_status_rank(status: Any) -> int:
    try:
        return GATE_STATUS_ORDER.index(status)
    except ValueError:
        return len(GATE_STATUS_ORDER)


def _status_of(statuses: list[Any]) -> str:
    from .results import run_status

    return run_status(statuses)


def incomplete_gates(gates: list[dict]) -> list[dict]:
    """The gates that keep a run from passing although none failed: ``{model, gate, reason}``."""
    return [
        {"model": g.get("model"), "gate": g.get("name"), "reason": g.get("note") or "not measured"}
        for g in gates
        if g.get("status") not in ("pass", "fail", "skipped")
    ]


def _checked(gate: Any) -> Any:
    """A gate dict as the verdict reads it (``results.checked_gate``), with ``vacuous`` always set."""
    from .results import Gate, Status, checked_gate

    if not isinstance(gate, dict):
        return gate
    try:
        g = Gate(
            name=str(gate.get("name")),
            status=Status(gate.get("status")),
            value=gate.get("value"),
            threshold=gate.get("threshold"),
            comparison=str(gate.get("comparison")),
            note=str(gate.get("note") or ""),
            vacuous=bool(gate.get("vacuous", False)),
        )
    except ValueError:  # an unknown status: left as it is (run_status reads it as not measured)
        return {**gate, "vacuous": bool(gate.get("vacuous", False))}
    c = checked_gate(g)
    return {**gate, "status": c.status.value, "value": c.value, "note": c.note, "vacuous": c.vacuous}


# --------------------------------------------------------------------------- hygiene


def redact_uri(uri: str) -> str:
    """Drop credentials from a URI: ``http://u:p@host/x`` -> ``http://***@host/x``."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return uri
    if parts.username is None and parts.password is None:
        return uri
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{REDACTED}@{host}"))


def redact_config(obj: Any) -> Any:
    """Replace values under secret-looking keys (password, token, ...) and URI credentials."""
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if any(p in str(k).lower() for p in _SECRET_KEY_PARTS) and v not in (None, ""):
                out[k] = REDACTED
            else:
                out[k] = redact_config(v)
        return out
    if isinstance(obj, list):
        return [redact_config(v) for v in obj]
    if isinstance(obj, str) and "://" in obj and "@" in obj:
        return redact_uri(obj)
    return obj


def _plain(obj: Any) -> Any:
    """A deep copy in plain JSON types; non-finite floats become ``None``."""
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, Enum):
        return _plain(obj.value)
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [_plain(v) for v in obj]
    if isinstance(obj, (datetime, date)):
        return obj.isoformat()
    if isinstance(obj, PurePath):
        return str(obj)
    if hasattr(obj, "to_dict") and callable(obj.to_dict):  # AuditResult and friends
        return _plain(obj.to_dict())
    if hasattr(obj, "tolist"):  # numpy array or scalar
        return _plain(obj.tolist())
    if hasattr(obj, "item"):
        return _plain(obj.item())
    return str(obj)


# --------------------------------------------------------------------------- validation


@lru_cache(maxsize=1)
def _schema_text() -> str:
    return SCHEMA_PATH.read_text(encoding="utf-8")


def validate_report(report: dict) -> None:
    """Raise ``ValueError`` naming the path of the first schema violation; return ``None`` if valid.

    Errors are ordered by their location in the document, so the message is deterministic,
    e.g. ``report invalid at $: 'schema_version' is a required property``.
    """
    from jsonschema import Draft202012Validator

    validator = Draft202012Validator(json.loads(_schema_text()))
    errors = sorted(
        validator.iter_errors(report),
        key=lambda e: (len(e.absolute_path), [str(p) for p in e.absolute_path]),
    )
    if errors:
        err = errors[0]
        raise ValueError(f"report invalid at {_json_path(err.absolute_path)}: {err.message}")


def _json_path(path) -> str:
    out = "$"
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else f".{p}"
    return out
