"""What kind of prediction a model makes: the one type every layer checks instead of a string.

A ``TaskKind`` is a ``StrEnum``: it is written to JSON, MLflow and the report as its value
(``"binary"``, ``"multiclass"``, ``"rating"``), and ``TaskKind("rating")`` reads one back. What
differs by kind and is not arithmetic lives here: whether the model classifies, which metric
heads its summary, how its outputs become decisions. Stdlib only: every layer imports it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


@dataclass(frozen=True)
class Metric:
    """One evaluation metric as the report and CLI name it: its MLflow key (``eval/...``), the
    label a person reads, and which way is better."""

    key: str
    label: str
    higher_is_better: bool


ACCURACY = Metric("eval/accuracy", "accuracy", True)
RMSE = Metric("eval/rmse", "RMSE", False)


class TaskKind(StrEnum):
    """``BINARY``: outputs P(positive), decisions by a threshold on it. ``MULTICLASS``: outputs
    one probability per class, decisions by argmax. ``RATING``: outputs the predicted rating,
    which is the decision."""

    BINARY = "binary"
    MULTICLASS = "multiclass"
    RATING = "rating"

    @classmethod
    def parse(cls, value: str) -> TaskKind:
        """``value`` as a task kind; ``ValueError`` naming the kinds when it is none of them."""
        try:
            return cls(value)
        except ValueError:
            raise ValueError(f"task {value!r} is not one of {', '.join(k.value for k in cls)}") from None

    @property
    def classifies(self) -> bool:
        """Whether the model predicts a class (it has labels, a confusion matrix, an accuracy,
        and a per-case confidence: the top probability)."""
        return self is not TaskKind.RATING

    @property
    def headline(self) -> Metric:
        """The metric that heads a model's line in the CLI summary."""
        return ACCURACY if self.classifies else RMSE

    def _decision(self, threshold: float) -> tuple[str, str]:
        """(how the rule is made, the rule as a noun phrase)."""
        if self is TaskKind.BINARY:
            return (
                f"fixed threshold {threshold:g} on P(positive) (not fitted)",
                f"the decision threshold (fixed at {threshold:g})",
            )
        if self is TaskKind.MULTICLASS:
            return "argmax over the contract's classes (no threshold)", "the decision rule (argmax)"
        return "the predicted rating itself (no threshold)", "the output (the rating itself)"

    def decision_rule(self, threshold: float = 0.5) -> str:
        """How the released model turns outputs into decisions (never fitted on rows)."""
        return "data-independent: " + self._decision(threshold)[0]

    def decision_phrase(self, threshold: float = 0.5) -> str:
        """The decision rule as a noun phrase, for the DP claim's sentence."""
        return self._decision(threshold)[1]
