"""Audits: pure functions ``(AuditInputs, thresholds) -> AuditResult``.

Add an audit by writing one function in this package and one line in ``AUDITS``.
Heavy libraries (sklearn, fairlearn) are imported inside the functions.
"""

from __future__ import annotations

from typing import Callable, Sequence

from impactflow.data_contracts.plugins import GROUPS, FollowerRegistry, PluginRegistry

from .attributions import ATTRIBUTION_THRESHOLDS, attribution_audit
from .calibration import CALIBRATION_THRESHOLDS
from .drift import DRIFT_THRESHOLDS, drift_audit
from .fairness import FAIRNESS_THRESHOLDS, fairness_audit
from .groups import GROUP_THRESHOLDS, MULTICLASS_THRESHOLDS, group_robustness_audit, multiclass_performance_audit
from .identity import IDENTITY_THRESHOLDS, identity_audit
from .inputs import AuditInputs
from .mitigation import MITIGATION_THRESHOLDS, mitigation_audit
from .oversight import OVERSIGHT_THRESHOLDS, oversight_audit
from .memorisation import MEMORISATION_THRESHOLDS, memorisation_audit
from .lira import CANARY_THRESHOLDS, LIRA_THRESHOLDS, canary_audit, lira_audit
from .performance import PERFORMANCE_THRESHOLDS, performance_audit
from .privacy import PRIVACY_THRESHOLDS, privacy_audit
from .proxies import PROXY_THRESHOLDS, proxy_audit
from .slices import SLICE_THRESHOLDS, slice_audit
from .recommender import (
    EXPOSURE_THRESHOLDS,
    RECOMMENDATION_THRESHOLDS,
    USER_GROUP_THRESHOLDS,
    exposure_audit,
    recommendation_audit,
    user_group_audit,
)
from .gating import SKIP, audited, not_run
from .thresholds import Threshold, as_spec
from .results import AuditResult, Gate, Status, overall_status, run_status


def run_drift_audit(inputs: AuditInputs, thresholds: dict) -> AuditResult:
    """The ``drift`` audit of a pipeline run: ``inputs.extra["drift"]`` is what
    ``tasks.watch.drift_check`` found (this run's training-data summary, the reference's, or why
    there is none). A reference that exists but cannot be read or compared raises: the audit is
    then not measured (a configured drift gate makes the run incomplete), never passed."""
    found = inputs.extra.get("drift")
    if not found:
        raise ValueError("no drift input: this run's training data was not summarised")
    if found.get("problem"):
        raise ValueError(found["problem"])
    return drift_audit(
        found.get("reference"),
        found["current"],
        thresholds,
        reference_label=found.get("label") or "",
        no_reference_reason=found.get("reason") or "",
    )


_BUILTIN_AUDITS: dict[str, Callable[[AuditInputs, dict], AuditResult]] = {
    "performance": performance_audit,
    "fairness": fairness_audit,
    "privacy": privacy_audit,
    "performance_multiclass": multiclass_performance_audit,
    "group_robustness": group_robustness_audit,
    "identity": identity_audit,
    "recommendation": recommendation_audit,
    "user_groups": user_group_audit,
    "exposure": exposure_audit,
    "oversight": oversight_audit,
    "mitigation": mitigation_audit,
    "privacy_lira": lira_audit,
    "privacy_canary": canary_audit,
    "memorisation": memorisation_audit,
    "slices": slice_audit,
    "proxies": proxy_audit,
    "attributions": attribution_audit,
    "drift": run_drift_audit,
}

#: Audits that feed the social-impact report (sections 7 and 9) and run for every family after the
#: family's own ``audits``; each reports not-measured (with the reason) where it does not apply.
#: ``slices`` / ``proxies`` / ``attributions`` look for what no configured gate asked about (report
#: section 10); their inputs come from ``models.base.discovery_inputs``.
REPORT_AUDITS: tuple[str, ...] = ("oversight", "mitigation", "slices", "proxies", "attributions")

#: The keys each audit accepts under ``gates.<audit>`` in the run config, as each audit module
#: declares them (``thresholds.Threshold``: default, kind, gate). The config loader refuses any
#: other key and any value of the wrong kind.
_BUILTIN_THRESHOLDS: dict[str, dict[str, Threshold]] = {
    "performance": PERFORMANCE_THRESHOLDS,
    "fairness": FAIRNESS_THRESHOLDS,
    "privacy": PRIVACY_THRESHOLDS,
    "performance_multiclass": MULTICLASS_THRESHOLDS,
    "group_robustness": GROUP_THRESHOLDS,
    "identity": IDENTITY_THRESHOLDS,
    "recommendation": RECOMMENDATION_THRESHOLDS,
    "user_groups": USER_GROUP_THRESHOLDS,
    "exposure": EXPOSURE_THRESHOLDS,
    "oversight": OVERSIGHT_THRESHOLDS,
    "mitigation": MITIGATION_THRESHOLDS,
    "privacy_lira": LIRA_THRESHOLDS,
    "privacy_canary": CANARY_THRESHOLDS,
    "memorisation": MEMORISATION_THRESHOLDS,
    "slices": SLICE_THRESHOLDS,
    "proxies": PROXY_THRESHOLDS,
    "attributions": ATTRIBUTION_THRESHOLDS,
    "drift": DRIFT_THRESHOLDS,
}

#: The audit-only flow's audits (a predictions table of a model not trained here) and their keys.
AUDIT_ONLY_THRESHOLDS: dict[str, dict[str, Threshold]] = {
    "fairness": FAIRNESS_THRESHOLDS,
    "performance": PERFORMANCE_THRESHOLDS,
    "calibration_by_group": CALIBRATION_THRESHOLDS,
    "slices": SLICE_THRESHOLDS,
    "proxies": PROXY_THRESHOLDS,
}


def _plugin_audit(ep) -> Callable[[AuditInputs, dict], AuditResult]:
    """An ``impactflow.audits`` entry point: the audit function, whose ``THRESHOLDS`` dict (keys
    under ``gates.<name>``: ``Threshold`` values, or plain defaults for unchecked settings; none:
    no keys) lands in ``AUDIT_THRESHOLDS``."""
    from impactflow.data_contracts.plugins import broken

    try:
        fn = ep.load()
    except Exception as exc:
        raise broken(ep, exc) from None
    thresholds = getattr(fn, "THRESHOLDS", {})
    if not callable(fn) or not isinstance(thresholds, dict) or not all(isinstance(k, str) for k in thresholds):
        raise broken(
            ep,
            TypeError(
                "expected a function (inputs, thresholds) -> AuditResult with an optional THRESHOLDS dict of str keys"
            ),
        )
    dict.__setitem__(AUDIT_THRESHOLDS, ep.name, as_spec(thresholds))
    return fn


#: Audit name -> function; ``AUDIT_THRESHOLDS``: audit name -> its ``{key: Threshold}`` table
#: (the keys it accepts under ``gates.<audit>``, their defaults, kinds and gates). Both take the
#: ``impactflow.audits`` entry points of installed packages on first look-up (data_contracts.plugins).
AUDITS = PluginRegistry(_BUILTIN_AUDITS, GROUPS["audits"], "audit", _plugin_audit)
AUDIT_THRESHOLDS = FollowerRegistry(_BUILTIN_THRESHOLDS, AUDITS)


def run_audits(
    inputs: AuditInputs,
    thresholds_by_audit: dict[str, dict] | None = None,
    names: Sequence[str] | None = None,
    *,
    not_run_reason: Callable[[str], str] | None = None,
) -> dict[str, AuditResult]:
    """Run the named audits (default: every audit in ``AUDITS``, in order), each with its own
    ``gates.<audit>`` section (absent = defaults only), and account for every configured gate
    (``impactflow.audits.gating``: an audit that raises, a threshold that produced no gate, a skip).
    With ``not_run_reason``, a section of an audit not in ``names`` becomes that audit's
    not-measured result (its gates not measured, ``not_run_reason(audit)`` as the reason);
    without it, such sections are ignored."""
    thresholds_by_audit = thresholds_by_audit or {}
    names = list(AUDITS) if names is None else list(names)
    unknown = (set(thresholds_by_audit) | set(names)) - set(AUDITS)
    if unknown:
        raise ValueError(f"unknown audits: {sorted(unknown)}; known: {sorted(AUDITS)}")
    out = {
        name: audited(name, AUDITS[name], inputs, thresholds_by_audit.get(name), AUDIT_THRESHOLDS[name])
        for name in names
    }
    if not_run_reason is not None:
        for name, section in thresholds_by_audit.items():
            if name not in out:
                out[name] = not_run(name, section, AUDIT_THRESHOLDS[name], not_run_reason(name))
    return out


__all__ = [
    "AUDITS",
    "AUDIT_ONLY_THRESHOLDS",
    "AUDIT_THRESHOLDS",
    "REPORT_AUDITS",
    "SKIP",
    "Threshold",
    "AuditInputs",
    "AuditResult",
    "Gate",
    "Status",
    "overall_status",
    "run_audits",
    "run_status",
]
