"""What every audit reads: predictions on the test split plus what the privacy audit needs."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from impactflow.task_kind import TaskKind


@dataclass(frozen=True, eq=False)
class AuditInputs:
    """Arrays on the held-out (test) split, aligned row by row.

    - ``y_true``: 0/1 labels; ``y_score``: P(y = 1).
    - ``sensitive``: sensitive columns of the same rows, in the same order (may have 0 columns;
      its index is reset, alignment is positional).
    - ``member_loss`` / ``nonmember_loss``: per-example loss on training rows (members) and on
      held-out rows (non-members), for membership inference; ``None`` when not computed.
    - ``epsilon`` / ``delta``: the accountant's (ε, δ) when trained with DP, else ``None``.
    - ``decision_threshold``: predicted label is 1 iff ``y_score >= decision_threshold``.

    Arrays are coerced on construction (labels to int, scores/losses to float); mismatched
    lengths or non-binary labels raise ``ValueError`` (a programming error, not an audit finding).
    """

    y_true: np.ndarray
    y_score: np.ndarray
    sensitive: pd.DataFrame
    member_loss: np.ndarray | None = None
    nonmember_loss: np.ndarray | None = None
    epsilon: float | None = None
    delta: float | None = None
    decision_threshold: float = 0.5
    # BINARY (y_score = P(y=1)), MULTICLASS (y_score = (N, K) class probabilities, y_true =
    # class index), RATING (y_score = predicted rating, y_true = rating); a string is parsed.
    task: TaskKind = TaskKind.BINARY
    labels: tuple = ()  # class names, index-aligned with the columns of a multiclass y_score
    synthetic_groups: tuple = ()  # names of ``sensitive`` columns the project made up
    extra: dict = field(default_factory=dict)  # family-specific inputs (scorers, interactions)

    def __post_init__(self) -> None:
        object.__setattr__(self, "task", TaskKind.parse(self.task))
        y_true = np.asarray(self.y_true).reshape(-1)
        y_score = np.asarray(self.y_score, dtype=float)
        if self.task != TaskKind.MULTICLASS:
            y_score = y_score.reshape(-1)
        if y_true.shape[0] != y_score.shape[0]:
            raise ValueError(f"y_true has {y_true.shape[0]} rows but y_score has {y_score.shape[0]}")
        if self.task == TaskKind.BINARY and y_true.size and not np.isin(y_true, (0, 1)).all():
            raise ValueError("y_true must contain only 0/1 labels")
        sensitive = self.sensitive
        if sensitive is None:
            sensitive = pd.DataFrame(index=range(y_true.shape[0]))
        sensitive = pd.DataFrame(sensitive).reset_index(drop=True)
        if len(sensitive) != y_true.shape[0]:
            raise ValueError(f"sensitive has {len(sensitive)} rows but y_true has {y_true.shape[0]}")
        object.__setattr__(self, "y_true", y_true.astype(int) if self.task.classifies else y_true.astype(float))
        object.__setattr__(self, "y_score", y_score)
        object.__setattr__(self, "sensitive", sensitive)
        for name in ("member_loss", "nonmember_loss"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, np.asarray(value, dtype=float).reshape(-1))

    @property
    def y_pred(self) -> np.ndarray:
        """Hard predictions: 1 iff ``y_score >= decision_threshold`` (binary); the most probable
        class (multiclass); the predicted rating (rating)."""
        if self.task == TaskKind.MULTICLASS:
            return self.y_score.argmax(axis=1)
        if self.task == TaskKind.RATING:
            return self.y_score
        return (self.y_score >= self.decision_threshold).astype(int)
