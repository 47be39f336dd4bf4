"""Audits: pure functions ``(AuditInputs, thresholds) -> AuditResult``.

Add an audit by writing one function in this package and one line in ``AUDITS``.
Heavy libraries (sklearn, fairlearn) are imported inside the functions.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from impactflow.data_contracts.plugins import GROUPS, FollowerRegistry, PluginRegistry

from .calibration import CALIBRATION_DEFAULTS
from .fairness import FAIRNESS_DEFAULTS, fairness_audit
from .groups import (
    GROUP_DEFAULTS,
    PERFORMANCE_GATES as MULTICLASS_GATES,
    group_robustness_audit,
    multiclass_performance_audit,
)
from .identity import IDENTITY_DEFAULTS, identity_audit
from .inputs import AuditInputs
from .mitigation import MITIGATION_DEFAULTS, mitigation_audit
from .oversight import OVERSIGHT_DEFAULTS, oversight_audit
from .lira import CANARY_DEFAULTS, LIRA_DEFAULTS, canary_audit, lira_audit
from .performance import performance_audit
from .privacy import privacy_audit
from .recommender import (
    EXPOSURE_DEFAULTS,
    RECOMMENDATION_DEFAULTS,
    USER_GROUP_DEFAULTS,
    exposure_audit,
    recommendation_audit,
    user_group_audit,
)
from .gating import GATE_KEYS, SKIP, audited, not_run
from .results import AuditResult, Gate, Status, overall_status, run_status

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
}

#: Audits that feed the social-impact report (sections 7 and 9) and run for every family after the
#: family's own ``audits``; each reports not-measured (with the reason) where it does not apply.
REPORT_AUDITS: tuple[str, ...] = ("oversight", "mitigation")

#: The threshold keys each audit accepts under ``gates.<audit>`` in the run config, with their
#: defaults (None = no gate unless configured). The config loader refuses any other key.
_BUILTIN_THRESHOLDS: dict[str, dict[str, Any]] = {
    "performance": {"min_accuracy": None, "min_roc_auc": None, "max_ece": None},
    "fairness": dict(FAIRNESS_DEFAULTS),
    "privacy": {"max_mia_auc": 0.6},
    "performance_multiclass": dict.fromkeys(MULTICLASS_GATES),
    "group_robustness": dict(GROUP_DEFAULTS),
    "identity": dict(IDENTITY_DEFAULTS),
    "recommendation": dict(RECOMMENDATION_DEFAULTS),
    "user_groups": dict(USER_GROUP_DEFAULTS),
    "exposure": dict(EXPOSURE_DEFAULTS),
    "oversight": dict(OVERSIGHT_DEFAULTS),
    "mitigation": dict(MITIGATION_DEFAULTS),
    "privacy_lira": dict(LIRA_DEFAULTS),
    "privacy_canary": dict(CANARY_DEFAULTS),
}

#: The audit-only flow's audits (a predictions table of a model not trained here) and their keys.
AUDIT_ONLY_THRESHOLDS: dict[str, dict[str, Any]] = {
    "fairness": _BUILTIN_THRESHOLDS["fairness"],
    "performance": _BUILTIN_THRESHOLDS["performance"],
    "calibration_by_group": dict(CALIBRATION_DEFAULTS),
}


def _plugin_audit(ep) -> Callable[[AuditInputs, dict], AuditResult]:
    """An ``impactflow.audits`` entry point: the audit function, whose ``THRESHOLDS`` dict (keys
    under ``gates.<name>`` and their defaults; none: no keys) lands in ``AUDIT_THRESHOLDS``."""
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
    dict.__setitem__(AUDIT_THRESHOLDS, ep.name, dict(thresholds))
    return fn


#: Audit name -> function; ``AUDIT_THRESHOLDS``: the threshold keys each audit accepts under
#: ``gates.<audit>`` in the run config, with their defaults (None = no gate unless configured);
#: the config loader refuses any other key. Both take the ``impactflow.audits`` entry points of
#: installed packages on first look-up (data_contracts.plugins).
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
    "GATE_KEYS",
    "REPORT_AUDITS",
    "SKIP",
    "AuditInputs",
    "AuditResult",
    "Gate",
    "Status",
    "overall_status",
    "run_audits",
    "run_status",
]
