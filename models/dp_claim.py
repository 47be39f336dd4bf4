"""What a DP model's (ε, δ) covers, in words a reviewer can check against the run.

DP-SGD's guarantee is about the model *weights*. Everything else released with the model
(preprocessing state, vocabulary, decision threshold) must be data-independent or paid for
from the same budget, and what trains on the same rows outside the guarantee must be named.
This project takes the first road (documented in README "Privacy"): under DP every family
builds its preprocessing from the contract's declarations or fixed constants
(``make_preprocessor(..., private=True)``), so no ε share is spent on it. This module checks
that claim (fail closed: a component "fitted on training rows" stops a DP run) and writes it
down as two keys of ``training["dp"]``:

- ``preprocessing``: component -> how it was made ("data-independent: ..."), the decision rule
  included;
- ``covers``: one sentence built from the run's facts: ε, δ, the privacy unit, the
  preprocessing, the threshold, and what is *not* covered (the validation rows early stopping
  reads, non-private baselines trained on the same rows), and the privacy audit's own DP
  trainings on the same rows (they spend their own ε, which the privacy ledger adds up).

Pure functions, no Prefect/MLflow.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from impactflow.errors import ConfigError
from impactflow.task_kind import TaskKind

NOT_DATA_INDEPENDENT = (
    "under DP, family '{family}': {component} is {how}; the released model would carry it outside the (ε, δ) claim"
)
NO_DP_PREPROCESSING = (
    "under DP, family '{family}' has no data-independent preprocessing "
    "(make_preprocessor(..., private=True) with components() and summary()): {error}"
)


@dataclass(frozen=True)
class SameRows:
    """Other trainings of the run on the same training rows (the pipeline passes them)."""

    baselines: tuple[str, ...] = ()  # non-private scikit-learn baselines
    canary_models: int = 0  # the one-run canary audit's model (DP when the run is)
    reference_models: int = 0  # LiRA reference models (DP when the run is)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "SameRows":
        d = d or {}
        return cls(
            baselines=tuple(str(b) for b in d.get("baselines") or ()),
            canary_models=int(d.get("canary_models") or 0),
            reference_models=int(d.get("reference_models") or 0),
        )


def decision_rule(task: str, threshold: float = 0.5) -> str:
    """How the released model turns outputs into decisions (never fitted on rows here)."""
    return TaskKind.parse(task).decision_rule(threshold)


def preprocessing_record(family: str, pre, task: str, threshold: float = 0.5) -> dict[str, str]:
    """``training["dp"]["preprocessing"]``: component -> how it was made. ``ConfigError`` when a
    component was fitted on training rows (the DP claim would not cover it)."""
    record = {**pre.components(), "decision": decision_rule(task, threshold)}
    for component, how in record.items():
        if not (how.startswith("data-independent") or how.startswith("DP:")):
            raise ConfigError(NOT_DATA_INDEPENDENT.format(family=family, component=component, how=how))
    return record


def _names(names: tuple[str, ...]) -> str:
    quoted = [f"'{n}'" for n in names]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]


def covers_sentence(
    dp: dict[str, Any],
    *,
    privacy_unit: str,
    summary: str,
    task: str,
    same_rows: SameRows = SameRows(),
    threshold: float = 0.5,
) -> str:
    """``training["dp"]["covers"]``: one sentence saying what the (ε, δ) covers (module doc)."""
    eps, delta = dp.get("epsilon"), dp.get("delta")
    eps_text = "?" if eps is None else f"{eps:.3g}"
    decision = TaskKind.parse(task).decision_phrase(threshold)
    not_covered = ["the validation rows read by early stopping and best-epoch selection"]
    if same_rows.baselines:
        plural = "s" if len(same_rows.baselines) > 1 else ""
        not_covered.append(f"the non-private baseline{plural} {_names(same_rows.baselines)} trained on the same rows")
    parts = [
        f"(ε = {eps_text}, δ = {delta:g}) covers the model weights (privacy unit: {privacy_unit})",
        f"the preprocessing ({summary}) and {decision} are data-independent",
        "not covered (ε = ∞): " + " and ".join(not_covered),
    ]
    audit = []
    if same_rows.canary_models:
        audit.append("canary model")
    if same_rows.reference_models:
        n = same_rows.reference_models
        audit.append(f"{n} LiRA reference model{'s' if n > 1 else ''}")
    if audit:
        one = same_rows.canary_models + same_rows.reference_models == 1
        parts.append(
            f"the privacy audit's {' and '.join(audit)}, trained on the same rows with the same DP "
            f"settings, {'spends its' if one else 'spend their'} own ε, which the privacy ledger "
            "adds to this one"
        )
    parts.append("the number of training rows (it sets the sampling rate) is treated as public")
    return "; ".join(parts) + "."


def dp_record(
    dp: dict[str, Any], *, family, pre, same_rows: SameRows = SameRows(), threshold: float = 0.5
) -> dict[str, Any]:
    """``dp`` with ``preprocessing`` and ``covers`` added (unchanged when DP is off)."""
    if not dp.get("enabled"):
        return dp
    preprocessing = preprocessing_record(family.name, pre, family.task, threshold)
    covers = covers_sentence(
        dp,
        privacy_unit=family.privacy_unit,
        summary=pre.summary(),
        task=family.task,
        same_rows=same_rows,
        threshold=threshold,
    )
    return {
        **dp,
        "privacy_unit": f"{family.privacy_unit} (example-level DP); validation rows used for "
        "early stopping are not covered",
        "preprocessing": preprocessing,
        "covers": covers,
    }
