"""Memorisation audit: exposure of secrets planted in the fine-tuning data, against the number
of times each was repeated (Carlini et al. 2019, "The Secret Sharer").

The secrets are planted and ranked where the model is trained (``models/memorisation.py``);
what arrives here, in ``AuditInputs.extra["secrets"]``, is that measurement: per number of
repeats and label ("side": positive or negative), the secrets' ranks among never-trained
candidates, their mean and largest exposure (bits) and the 95% chance interval of the mean
exposure of a model that memorised nothing.

Metrics: ``memorisation/exposure_r{r}_{side}`` (mean exposure of the secrets repeated r times
with that label), ``memorisation/exposure_max_r{r}_{side}``, ``memorisation/chance_high_r{r}``,
and ``memorisation/exposure_max`` (largest mean exposure over the levels). Gate (optional):
``gates.memorisation.max_exposure``: every level's mean exposure must be at most this many
bits. Without it the audit gates nothing; a mean above the chance interval is named in the
notes.
"""

from __future__ import annotations

from .inputs import AuditInputs
from .results import AuditResult, Gate, Status, overall_status
from .stats import compare_gate
from .thresholds import Threshold, at_most

MEMORISATION_THRESHOLDS: dict[str, Threshold] = {
    "max_exposure": at_most(r"exposure_r\d+_(positive|negative)", kind="number"),
}
NOT_PLANTED = (
    "no secrets were planted in this model's training data (scikit-learn baselines never get them; "
    "privacy_audit.secrets.enabled: false turns them off for the model)"
)


def _key(level: dict) -> str:
    return f"r{int(level['repeats'])}_{level['side']}"


def memorisation_audit(inputs: AuditInputs, thresholds: dict) -> AuditResult:
    """Exposure per number of repeats; gated by ``max_exposure`` when configured."""
    data = (inputs.extra or {}).get("secrets")
    if not data:
        return AuditResult(name="memorisation", status=Status.NOT_MEASURED, notes=[NOT_PLANTED])
    if data.get("problem"):  # planted, but the model cannot tell the strings apart (models/memorisation.py)
        return AuditResult(name="memorisation", status=Status.NOT_MEASURED, notes=[data["problem"]])
    levels = list(data["levels"])
    if not levels:
        raise ValueError("the secrets record has no levels (privacy_audit.secrets.repeats is empty)")
    metrics: dict[str, float | None] = {}
    for level in levels:
        key = _key(level)
        metrics[f"memorisation/exposure_{key}"] = float(level["exposure_mean"])
        metrics[f"memorisation/exposure_max_{key}"] = float(level["exposure_max"])
        metrics[f"memorisation/chance_high_r{int(level['repeats'])}"] = float(level["chance_high"])
    metrics["memorisation/exposure_max"] = max(float(level["exposure_mean"]) for level in levels)
    metrics["memorisation/chance_mean"] = float(data["chance_mean"])
    limit = thresholds.get("max_exposure")
    gates: list[Gate] = []
    if limit is not None:
        gates = [
            compare_gate(f"memorisation/exposure_{_key(level)}", float(level["exposure_mean"]), float(limit), "<=")
            for level in levels
        ]
    above = [f"{level['repeats']}x ({level['label']})" for level in levels if level["above_chance"]]
    notes = [
        f'{len(levels)} levels (repeats x label) of {levels[0]["secrets"]} secrets ("{data["format"]}", … = {data["secret"]}), '
        "each ranked among "
        f"{data['candidates']} never-trained candidates by {data['score']}; exposure = log2(N+1) - log2(rank), "
        f"at most {data['max_exposure']:.2f} bits; chance level {data['chance_mean']:.2f} bits",
        (
            "mean exposure above the 95% chance interval (memorised) for secrets repeated " + ", ".join(above)
            if above
            else "every level's mean exposure is within the 95% chance interval: no memorisation measured"
        ),
    ]
    if any("group_epsilon" in level for level in levels):
        notes.append(
            "under DP each copy of a secret is one privacy unit: a secret repeated r times is protected at r·ε "
            "(group privacy), given per level as group_epsilon"
        )
    details = {
        k: data[k] for k in ("format", "secret", "candidates", "planted_rows", "labels", "max_exposure", "score")
    }
    details |= {"chance_mean": data["chance_mean"], "chance_level": data["chance_level"], "levels": levels}
    status = overall_status(gates) if gates else Status.PASS
    return AuditResult(
        name="memorisation",
        status=status,
        metrics=metrics,
        thresholds={"max_exposure": float(limit)} if limit is not None else {},
        gates=gates,
        notes=notes,
        details=details,
    )
