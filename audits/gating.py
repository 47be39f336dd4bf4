"""Configured gates, all accounted for: each one measured, not measured (with why), or skipped
by the run owner (with the owner's reason). ``impactflow.audits.results.run_status`` then judges the run.

A threshold key of an audit *configures a gate* when it is set in the run config's
``gates.<audit>`` section, or when it has a default (``AUDIT_THRESHOLDS``, ``thresholds.py``) and the audit ran and
applied to the data (did not report itself ``skipped``, e.g. a fairness audit on a contract
that declares no sensitive column). ``audited`` runs one audit and then makes sure that

- an audit that raises becomes ``not-measured`` with the exception's type and message as the
  reason of each of its configured gates (or of one ``<audit>/audit`` gate when none is);
- a configured threshold that produced no gate gets a ``not-measured`` gate ``<audit>/<key>``
  whose note is the audit's own reason (its status and first notes);
- a ``gates.<audit>`` section that gates nothing (empty, or only parameters) gets a
  ``not-measured`` gate ``<audit>/section`` -- set a threshold, skip one, or remove the section;
- ``gates.<audit>.skip: {<key>: "<reason>"}`` drops that key's gates and lists it as a
  ``skipped`` gate ``<audit>/<key>`` whose note is the reason (skip wins over a threshold set
  in the same section, so a ``--set`` can skip a gate a preset sets);
- every gate goes through ``results.checked_gate`` (no pass without a finite value; vacuous
  gates labelled).

``not_run`` does the same for a section of an audit the model does not run at all (a family
without that audit). Pure: no prefect, no mlflow.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Mapping

from .results import AuditResult, Gate, Status, checked_gate, overall_status
from .thresholds import Threshold, defaults

SKIP = "skip"

SKIP_NOT_A_GATE = "gates.{audit}.skip.{key}: not a gate of the {audit} audit (gates: {known})"
SKIP_NO_REASON = (
    "gates.{audit}.skip.{key}: give the reason for skipping this gate as text, "
    "e.g. gates.{audit}.skip.{key}: 'too few rows in this sample'"
)
NULL_DEFAULT = (
    "gates.{audit}.{key}: null would silently drop a gate that applies by default ({default}); "
    "to skip it, say why under gates.{audit}.skip.{key} (e.g. --set "
    "'gates.{audit}.skip.{key}=<reason>', or --gate {audit}.skip.{key}=<reason> for `audit`)"
)
NULL_PARAMETER = "gates.{audit}.{key}: null is not a value for this setting (default {default}); remove the key instead"


def gate_keys(spec: Mapping[str, Threshold]) -> list[str]:
    """The keys of one audit's table that set a gate (``thresholds.Threshold.is_gate``)."""
    return [k for k, t in spec.items() if t.is_gate]


def key_of(spec: Mapping[str, Threshold], gate_name: str) -> str | None:
    """The threshold key a gate came from (None: a gate no key sets, e.g. the DP bound)."""
    last = str(gate_name).rsplit("/", 1)[-1]
    for key, t in spec.items():
        if t.gate is not None and (re.fullmatch(t.gate, last) or last == key):
            return key
    return None


def section_problems(audit: str, section: Mapping[str, Any], spec: Mapping[str, Threshold]) -> list[str]:
    """What is wrong with the skip entries and nulls of one ``gates.<audit>`` section (messages
    naming the key); the config loaders turn them into a ConfigError."""
    out = []
    skip = section.get(SKIP)
    if skip is not None:
        if not isinstance(skip, Mapping):
            return [f"gates.{audit}.skip: expected a mapping of gate key to reason, got {skip!r}"]
        for key, reason in skip.items():
            if key not in spec or not spec[key].is_gate:
                out.append(SKIP_NOT_A_GATE.format(audit=audit, key=key, known=", ".join(gate_keys(spec)) or "none"))
            elif not isinstance(reason, str) or not reason.strip():
                out.append(SKIP_NO_REASON.format(audit=audit, key=key))
    for key, value in section.items():
        if key == SKIP or value is not None or key not in spec or spec[key].default is None or key in (skip or {}):
            continue
        template = NULL_DEFAULT if spec[key].is_gate else NULL_PARAMETER
        out.append(template.format(audit=audit, key=key, default=spec[key].default))
    return out


def _reason(result: AuditResult) -> str:
    notes = "; ".join(str(n) for n in result.notes[:2])
    return f"{result.name} audit {result.status.value}" + (f": {notes}" if notes else "")


def _skipped(
    audit: str, skip: Mapping[str, str], effective: Mapping[str, Any], spec: Mapping[str, Threshold]
) -> list[Gate]:
    return [
        Gate(
            f"{audit}/{key}",
            Status.SKIPPED,
            None,
            float(effective[key]) if isinstance(effective.get(key), (int, float)) else None,
            spec[key].comparison or "==",
            str(reason).strip(),
        )
        for key, reason in skip.items()
    ]


def complete(
    audit: str,
    result: AuditResult,
    section: Mapping[str, Any] | None,
    spec: Mapping[str, Threshold],
    *,
    raised: str = "",
) -> AuditResult:
    """``result`` with a gate for every configured key (see the module docstring).
    ``section``: the run config's ``gates.<audit>`` (None: the config has none, defaults apply);
    ``spec``: the audit's table (``AUDIT_THRESHOLDS[audit]``); ``raised``: why the audit produced
    nothing (it raised, or was not run)."""
    in_config = section is not None
    section = dict(section or {})
    skip = dict(section.pop(SKIP, None) or {})
    effective = {**defaults(spec), **section}
    configured = [
        k
        for k in gate_keys(spec)
        if effective.get(k) is not None
        and k not in skip
        and (k in section or raised or result.status is not Status.SKIPPED)
    ]
    gates = [checked_gate(g) for g in result.gates if key_of(spec, g.name) not in skip]
    covered = {key_of(spec, g.name) for g in gates}
    reason = raised or _reason(result)
    gates += [
        Gate(f"{audit}/{k}", Status.NOT_MEASURED, None, float(effective[k]), spec[k].comparison or "==", reason)
        for k in configured
        if k not in covered
    ]
    if raised and not gates:
        gates.append(Gate(f"{audit}/audit", Status.NOT_MEASURED, None, None, "==", reason))
    if in_config and not gates and not skip:
        gates.append(
            Gate(
                f"{audit}/section",
                Status.NOT_MEASURED,
                None,
                None,
                "==",
                f"gates.{audit} is configured but gates nothing here ({reason}); set a "
                "threshold, skip one with a reason, or remove the section",
            )
        )
    gates += _skipped(audit, skip, effective, spec)
    if gates == list(result.gates):
        return result
    return AuditResult(
        name=result.name,
        status=overall_status(gates) if gates else result.status,
        metrics=result.metrics,
        by_group=result.by_group,
        thresholds=result.thresholds,
        gates=gates,
        notes=result.notes,
        details=result.details,
    )


def audited(
    audit: str,
    fn: Callable[[Any, dict], AuditResult],
    inputs: Any,
    section: Mapping[str, Any] | None,
    spec: Mapping[str, Threshold],
) -> AuditResult:
    """Run one audit on its ``gates.<audit>`` section (None: not in the config), without the
    ``skip`` entry and the keys it skips, and complete its gates. An exception becomes a
    ``not-measured`` result naming it: it never passes, and never stops the other audits."""
    skip = (section or {}).get(SKIP) or {}
    thresholds = {k: v for k, v in (section or {}).items() if k != SKIP and k not in skip}
    try:
        result = fn(inputs, thresholds)
    except Exception as exc:  # noqa: BLE001 - an audit's bug must show up as evidence missing
        message = str(exc).splitlines()[0][:400] if str(exc) else ""
        raised = f"the {audit} audit raised {type(exc).__name__}" + (f": {message}" if message else "")
        result = AuditResult(
            name=audit,
            status=Status.NOT_MEASURED,
            notes=[raised],
            details={"error": {"type": type(exc).__name__, "message": message}},
        )
        return complete(audit, result, section, spec, raised=raised)
    return complete(audit, result, section, spec)


def not_run(audit: str, section: Mapping[str, Any], spec: Mapping[str, Threshold], reason: str) -> AuditResult:
    """The result of a configured ``gates.<audit>`` section whose audit this model does not run."""
    return complete(
        audit, AuditResult(name=audit, status=Status.NOT_MEASURED, notes=[reason]), section, spec, raised=reason
    )
