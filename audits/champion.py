"""Champion vs challenger: may a newly trained model take the registry's ``champion`` alias?

Before the alias moves, the current champion is re-scored on *this* run's test rows and both
models are compared on every gated metric, paired (the same rows, the same resamples). The
challenger is promoted only when no gated metric is significantly worse than the champion's by
more than a tolerance. Pure: numpy/scipy only, no prefect, no mlflow.

Direction. For each gate the *regression* is signed so that > 0 means the challenger is worse:
``champion - challenger`` for a ``>=`` gate (accuracy, AUC, four-fifths ratio), ``challenger -
champion`` for a ``<=`` gate (ECE, parity differences, RMSE, gaps). The tolerance ``t >= 0`` is in
the metric's own units (``max_regression``: one number, or per gate name / last name segment
with a ``"default"``).

Accuracy gates (``performance/accuracy``, ``eval/accuracy``, ``groups/accuracy``): McNemar.
Each row gives a pair of binary outcomes (champion right/wrong, challenger right/wrong); only
the discordant rows carry information: b rows the challenger gets wrong and the champion right,
c the reverse, and the accuracy regression is exactly (b - c)/n. Under H0 "no regression" a
discordant row is equally likely to go either way, so b ~ Binomial(b + c, 1/2) and the exact
one-sided p-value is P(X >= b) (``scipy.stats.binomtest``, ``alternative="greater"``); with
t = 0 the challenger is significantly worse when p < alpha. The interval is Wald's for a
difference of paired proportions, d ± z(1-alpha)·sqrt((b + c - (b - c)²/n) / n²) (the variance
of a mean of the per-row differences in {-1, 0, 1}, with the 1/n of the ML estimate); with
t > 0 the decision is its lower end > t (equivalently the one-sided Wald p for H0: d <= t,
reported as ``p``). Wald is poor with a handful of discordant rows, which is why t = 0 uses the
exact test; on thousands of test rows the two agree.

Every other re-scorable gate: paired percentile bootstrap. Rows are resampled with replacement,
the *same* indices for both models, the metric is recomputed for both and the regression taken
per resample; its alpha and 1 - alpha quantiles are a two-sided (1 - 2·alpha) interval whose
lower end is the one-sided (1 - alpha) lower bound. Significantly worse: lower end > t;
``p`` = the share of resampled regressions <= t. Pairing matters: the two models' errors on
the same rows are strongly correlated, so the paired interval of the difference is far
narrower than two unpaired intervals (and comparing the two models' own CIs would be wrong).
A resample is drawn as a vector of row counts (n x B) and every metric is a function of
weighted sums over rows (one sparse product per quantity), so 1,000 resamples of 16k rows cost
about as much as a few matrix products, not 1,000 calls to sklearn/fairlearn; AUC is the
Mann-Whitney statistic of the weighted ranks (ties count 1/2), equal to sklearn's. On the full
sample (all counts 1) the same functions reproduce the audits' values (tested).

Groups are the audits': a sensitive column's values (missing -> "(missing)"), intersections
named ``a_x_b`` joined with " & ", ``class`` the true label. Gate values use the groups judged
on the full sample (n >= ``min_group_size`` rows, like the fairness and group-robustness
audits; ``judged_groups`` overrides, e.g. the recommender's user-count rule), the same set in
every resample; a resample in which a judged group draws no row cannot compute the metric.

Decision (``decision``): ``promote`` iff no row is significantly worse and every re-scorable
gate was measured. Fail closed: a metric that cannot be computed on these rows for either
model, or on fewer than 90 % of the resamples, holds the promotion. A gate that is not a
function of the predictions on these rows (privacy, epsilon, identity, LiRA, ranking quality,
anything unknown) gets a row marked "not re-scorable" and never blocks: it is gated on its own.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np
from scipy import sparse

from impactflow.task_kind import TaskKind

from .bootstrap import FN, FP, TN, TP, gaps

#: prefixes of the gates on one overall metric (binary and multiclass performance audits gate
#: ``eval/<metric>``; the report names the section ``performance/``)
OVERALL_PREFIXES = ("performance", "performance_multiclass", "eval", "groups", "recommendation")
ACCURACY = "accuracy"
OVERALL_METRICS: dict[TaskKind, tuple[str, ...]] = {
    TaskKind.BINARY: ("accuracy", "balanced_accuracy", "roc_auc", "ece", "brier"),
    TaskKind.MULTICLASS: ("accuracy", "balanced_accuracy", "macro_f1", "ece"),
    TaskKind.RATING: ("rmse", "mae"),
}
FAIRNESS_METRICS = (
    "demographic_parity_difference",
    "demographic_parity_ratio",
    "equalized_odds_difference",
    "four_fifths_min_ratio",
)
GROUP_METRICS = ("worst_group_gap", "worst_group_accuracy", "accuracy_difference")
RATING_GAPS = ("rmse_gap", "mae_gap")
CLASS = "class"
INTERSECTION_SEP = "_x_"
GROUP_SEP = " & "
MISSING_LABEL = "(missing)"
MCNEMAR, BOOTSTRAP, NOT_RESCORABLE = "McNemar", "paired bootstrap", "not re-scorable"
#: a bootstrapped gate needs at least this share of resamples on which both models' values exist
MIN_VALID_SHARE = 0.9
ECE_BINS = 15
#: resample weights are drawn in blocks of about this many cells (rows x resamples)
BLOCK_CELLS = 2_000_000
NOT_RESCORABLE_NOTE = (
    "a property of training (or of data other than these rows' predictions), not of the "
    "predictions on these test rows: gated on its own, never blocks the promotion"
)


@dataclass(frozen=True)
class Outputs:
    """One model's predictions on the test rows, as the MLflow pyfunc returns them:
    binary: label (0/1 or the class labels; give `positive`) and score (P(positive));
    multiclass: label and probs (n x k, columns in `classes` order); rating: rating.

    Binary: hard-prediction metrics (accuracy, fairness, groups) read ``label``, score metrics
    (AUC, ECE, Brier) read ``score``. Multiclass: the predicted class is ``probs.argmax`` (the
    audits' rule); ``label`` is read only when ``probs`` is None."""

    label: np.ndarray | None = None
    score: np.ndarray | None = None
    probs: np.ndarray | None = None
    rating: np.ndarray | None = None


# --------------------------------------------------------------------------- gate names


def _parse(gate_name: str) -> tuple[str, str, str] | None:
    """(family, attribute, metric) of a re-scorable gate name, else None. Families:
    ``overall`` (attribute ""), ``fairness``, ``groups``, ``rating_gap``."""
    parts = str(gate_name).split("/")
    if len(parts) == 2 and parts[0] in OVERALL_PREFIXES:
        known = {m for ms in OVERALL_METRICS.values() for m in ms}
        return ("overall", "", parts[1]) if parts[1] in known else None
    if len(parts) != 3 or not parts[1]:
        return None
    prefix, attr, metric = parts
    if prefix == "fairness" and metric in FAIRNESS_METRICS:
        return ("fairness", attr, metric)
    if prefix in ("fairness", "user_groups") and metric in RATING_GAPS:
        return ("rating_gap", attr, metric)
    if prefix == "groups" and metric in GROUP_METRICS:
        return ("groups", attr, metric)
    return None


def rescorable(gate_name: str) -> bool:
    """True when the gate's metric is a function of (y, predictions, groups) on the test rows:
    overall performance (``performance|eval|groups|recommendation/<metric>``), the fairness
    gaps, the group-robustness gaps and the recommender's group RMSE/MAE gaps. False for
    privacy, epsilon, identity, LiRA, ranking (NDCG: needs the catalog) and anything unknown."""
    return _parse(gate_name) is not None


def _applies(task: TaskKind, family: str, metric: str) -> bool:
    if family == "overall":
        return metric in OVERALL_METRICS[task]
    if family == "fairness":
        return task is TaskKind.BINARY
    if family == "groups":
        return task.classifies
    return task is TaskKind.RATING


# --------------------------------------------------------------------------- inputs


@dataclass
class _Model:
    pred: np.ndarray | None = None  # class index (binary: 0/1)
    score: np.ndarray | None = None  # binary P(positive)
    probs: np.ndarray | None = None  # (n, k)
    rating: np.ndarray | None = None


@dataclass
class _Groups:
    codes: np.ndarray  # (n,) group index
    names: list[str]
    judged: np.ndarray  # (G,) bool
    rule: str  # how the judged groups were chosen


def _missing(v: Any) -> bool:
    try:
        return v is None or bool(v != v)
    except (TypeError, ValueError):  # pandas.NA and friends
        return True


def _labels(values: Any) -> np.ndarray:
    arr = np.asarray(values, dtype=object).reshape(-1)
    return np.array([MISSING_LABEL if _missing(v) else str(v) for v in arr], dtype=str)


class _Data:
    """The validated inputs of one comparison: y, the two models' outputs, the group columns."""

    def __init__(
        self,
        task: TaskKind,
        y: np.ndarray,
        models: tuple[_Model, _Model],
        groups: Mapping[str, Any],
        *,
        k: int,
        class_names: list[str],
        min_group_size: int,
        judged_groups: Mapping[str, Collection[Any]] | None,
        favourable: int,
    ) -> None:
        self.task, self.y, self.models, self.k = task, y, models, k
        self.n = int(y.shape[0])
        self.class_names = class_names
        self.raw_groups = {str(a): v for a, v in groups.items()}
        self.min_group_size = min_group_size
        self.judged_groups = {str(a): {str(g) for g in v} for a, v in (judged_groups or {}).items()}
        self.favourable = favourable
        self._groups: dict[str, _Groups] = {}
        self._labels: dict[str, np.ndarray] = {}
        self.cache: dict[Any, Any] = {}  # sparse matrices / vectors, built once, reused by every block

    def has_attribute(self, attr: str) -> bool:
        return self._label_source(attr) is not None

    def _label_source(self, attr: str) -> list[str] | None:
        if attr in self.raw_groups or (attr == CLASS and self.task.classifies):
            return [attr]
        parts = attr.split(INTERSECTION_SEP)
        if len(parts) >= 2 and all(p in self.raw_groups or (p == CLASS and self.task.classifies) for p in parts):
            return parts
        return None

    def labels(self, column: str) -> np.ndarray:
        if column not in self._labels:
            if column in self.raw_groups:
                self._labels[column] = _labels(self.raw_groups[column])
            else:  # the true class
                self._labels[column] = np.asarray(self.class_names, dtype=str)[self.y.astype(int)]
        return self._labels[column]

    def groups(self, attr: str) -> _Groups:
        if attr not in self._groups:
            source = self._label_source(attr)
            assert source is not None  # checked by compare_models
            lab = self.labels(source[0])
            for part in source[1:]:
                lab = np.char.add(np.char.add(lab, GROUP_SEP), self.labels(part))
            uniques, codes = np.unique(lab, return_inverse=True)
            names = [str(u) for u in uniques]
            sizes = np.bincount(codes, minlength=len(names))
            if attr in self.judged_groups:
                wanted = self.judged_groups[attr]
                judged = np.array([g in wanted for g in names], dtype=bool)
                absent = sorted(wanted - set(names))
                rule = f"judged groups as given ({len(wanted)})" + (
                    f"; absent from these rows: {', '.join(absent)}" if absent else ""
                )
            else:
                judged = sizes >= self.min_group_size
                rule = f"groups with n >= {self.min_group_size} rows judged ({int(judged.sum())} of {len(names)})"
            self._groups[attr] = _Groups(codes.reshape(-1), names, judged, rule)
        return self._groups[attr]


# --------------------------------------------------------------------------- resampled sums


class _Block:
    """One block of resamples: ``wt`` (n, B) holds how often each row is drawn in each resample
    (all ones, B = 1: the full sample). Every metric is built from weighted sums over rows."""

    def __init__(self, data: _Data, wt: np.ndarray) -> None:
        self.data, self.wt, self.n = data, wt, data.n
        self.size = wt.shape[1]
        self._memo: dict[Any, np.ndarray] = {}

    def sums(self, key: Any, rows: Callable[[], tuple[np.ndarray, np.ndarray, int]]) -> np.ndarray:
        """(C, B): Σ_i w_i·data_i over the rows of each cell; ``rows()`` -> (cell per row, data
        per row, C), turned once into a sparse (C, n) matrix."""
        if key not in self._memo:
            if key not in self.data.cache:
                cell, value, n_cells = rows()
                self.data.cache[key] = sparse.csr_matrix(
                    (value.astype(float), (cell.astype(np.int64), np.arange(self.n))), shape=(n_cells, self.n)
                )
            self._memo[key] = np.asarray(self.data.cache[key] @ self.wt)
        return self._memo[key]

    def dot(self, key: Any, vector: Callable[[], np.ndarray]) -> np.ndarray:
        """(B,): Σ_i w_i·v_i."""
        if key not in self._memo:
            if key not in self.data.cache:
                self.data.cache[key] = np.asarray(vector(), dtype=float)
            self._memo[key] = self.data.cache[key] @ self.wt
        return self._memo[key]

    def memo(self, key: Any, compute: Callable[[], Any]) -> Any:
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]


def _blocks(data: _Data, n_boot: int, seed: int):
    """Resample weights in blocks: each resample draws n row indices uniformly with replacement
    (``default_rng(seed).integers``), counted per row."""
    n = data.n
    rng = np.random.default_rng(seed)
    size = max(1, min(n_boot, BLOCK_CELLS // max(n, 1)))
    done = 0
    while done < n_boot:
        b = min(size, n_boot - done)
        idx = rng.integers(0, n, size=(b, n))
        counts = np.bincount((idx + n * np.arange(b)[:, None]).ravel(), minlength=b * n).reshape(b, n)
        yield _Block(data, np.ascontiguousarray(counts.T, dtype=float))
        done += b


# --------------------------------------------------------------------------- metrics


def _pred(data: _Data, m: int) -> np.ndarray:
    pred = data.models[m].pred
    assert pred is not None
    return pred


def _correct(data: _Data, m: int) -> np.ndarray:
    return _pred(data, m) == data.y


def _accuracy(blk: _Block, m: int) -> np.ndarray:
    return blk.dot(("correct", m), lambda: _correct(blk.data, m)) / blk.n


def _roc_auc(blk: _Block, m: int) -> np.ndarray:
    """Mann-Whitney AUC of the weighted rows: Σ_pos w·(negatives below + ½ tied) / (P·N)."""
    data = blk.data

    def rows():
        score = data.models[m].score
        assert score is not None
        uniq, rank = np.unique(score, return_inverse=True)
        return 2 * rank.reshape(-1) + data.y, np.ones(data.n), 2 * uniq.size

    res = blk.sums(("auc", m), rows)
    neg, pos = res[0::2], res[1::2]
    below = np.cumsum(neg, axis=0) - neg
    num = (pos * (below + 0.5 * neg)).sum(axis=0)
    p, q = pos.sum(axis=0), neg.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((p > 0) & (q > 0), num / (p * q), np.nan)


def _bin(conf: np.ndarray) -> np.ndarray:
    return np.clip(np.floor(conf * ECE_BINS).astype(int), 0, ECE_BINS - 1)


def _ece(blk: _Block, m: int) -> np.ndarray:
    """ECE over 15 equal-width bins: Σ_b |Σ w·conf − Σ w·hit| / n; binary: positive-class score
    vs label (``performance.expected_calibration_error``), multiclass: top-label confidence vs
    correctness (``groups.top_label_ece``)."""
    data = blk.data

    def rows():
        model = data.models[m]
        if data.task is TaskKind.BINARY:
            assert model.score is not None
            conf, hit = model.score.astype(float), data.y.astype(float)
        else:
            assert model.probs is not None
            conf = model.probs.max(axis=1)
            hit = (model.probs.argmax(axis=1) == data.y).astype(float)
        b = _bin(conf)
        return np.concatenate([2 * b, 2 * b + 1]), np.concatenate([conf, hit]), 2 * ECE_BINS

    # two entries per row: build the (2·bins, n) matrix by hand
    key = ("ece", m)
    if key not in blk.data.cache:
        cell, value, n_cells = rows()
        cols = np.concatenate([np.arange(data.n), np.arange(data.n)])
        blk.data.cache[key] = sparse.csr_matrix((value, (cell, cols)), shape=(n_cells, data.n))
    res = blk.memo(("ece-sums", m), lambda: np.asarray(blk.data.cache[key] @ blk.wt))
    return np.abs(res[0::2] - res[1::2]).sum(axis=0) / blk.n


def _brier(blk: _Block, m: int) -> np.ndarray:
    def vec():
        score = blk.data.models[m].score
        assert score is not None
        return np.square(score - blk.data.y)

    return blk.dot(("brier", m), vec) / blk.n


def _class_counts(blk: _Block, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(true per class, predicted per class, correct per class), each (K, B)."""
    data = blk.data
    k = data.k
    true = blk.sums(("class_true",), lambda: (data.y, np.ones(data.n), k))
    pred = blk.sums(("class_pred", m), lambda: (_pred(data, m), np.ones(data.n), k))
    hit = blk.sums(("class_hit", m), lambda: (data.y, _correct(data, m).astype(float), k))
    return true, pred, hit


def _balanced_accuracy(blk: _Block, m: int) -> np.ndarray:
    """Mean recall over the classes present in y (sklearn's ``balanced_accuracy_score``)."""
    true, _, hit = _class_counts(blk, m)
    present = true > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = np.where(present, hit / np.where(present, true, 1), 0.0)
        return np.where(present.any(axis=0), recall.sum(axis=0) / present.sum(axis=0), np.nan)


def _macro_f1(blk: _Block, m: int) -> np.ndarray:
    """Mean over all K classes of 2·TP / (true + predicted), 0 where both are 0 (sklearn's
    ``f1_score(average="macro", labels=range(K), zero_division=0)``)."""
    true, pred, hit = _class_counts(blk, m)
    den = true + pred
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = np.where(den > 0, 2 * hit / np.where(den > 0, den, 1), 0.0)
    return f1.mean(axis=0)


def _rmse(blk: _Block, m: int) -> np.ndarray:
    return np.sqrt(blk.dot(("sq", m), lambda: _error(blk.data, m) ** 2) / blk.n)


def _mae(blk: _Block, m: int) -> np.ndarray:
    return blk.dot(("abs", m), lambda: np.abs(_error(blk.data, m))) / blk.n


def _error(data: _Data, m: int) -> np.ndarray:
    rating = data.models[m].rating
    assert rating is not None
    return rating - data.y


def _group_n(blk: _Block, attr: str) -> np.ndarray:
    """(G, B) rows per group; judged groups only."""
    g = blk.data.groups(attr)
    res = blk.sums(("group_n", attr), lambda: (g.codes, np.ones(blk.n), len(g.names)))
    return res[g.judged]


def _judged_present(n: np.ndarray) -> np.ndarray:
    """(B,) every judged group drew at least one row."""
    return np.asarray((n > 0).all(axis=0))


def _fairness(blk: _Block, m: int, attr: str, metric: str) -> np.ndarray:
    """The fairness audit's gap metrics from the judged groups' confusion counts (the same
    ``bootstrap.gaps`` the audit uses): EO on the label's TPR/FPR, DP and the four-fifths ratio
    on the favourable decision's rate."""

    def compute() -> dict[str, np.ndarray]:
        data = blk.data
        g = data.groups(attr)

        def rows():
            y, p = data.y.astype(bool), _pred(data, m).astype(bool)
            cell = np.where(y, np.where(p, TP, FN), np.where(p, FP, TN))
            return g.codes * 4 + cell, np.ones(data.n), 4 * len(g.names)

        res = blk.sums(("cells", attr, m), rows)
        counts = res.reshape(len(g.names), 4, blk.size).transpose(2, 0, 1)[:, g.judged]  # (B, G, 4)
        # the favourable decision's rate: for favourable 0, TN/FN take the places of TP/FP
        # (``fairness.selection_counts``)
        sel = gaps(counts if data.favourable == 1 else counts[..., [TN, FN, TP, FP]])
        out = {
            "equalized_odds_difference": gaps(counts)["equalized_odds_difference"],
            "demographic_parity_difference": sel["demographic_parity_difference"],
            "demographic_parity_ratio": sel["demographic_parity_ratio"],
            "four_fifths_min_ratio": sel["demographic_parity_ratio"],
        }
        ok = (counts.sum(axis=-1) > 0).all(axis=-1)
        return {k: np.where(ok, v, np.nan) for k, v in out.items()}

    return blk.memo(("fairness", attr, m), compute)[metric]


def _groups_metric(blk: _Block, m: int, attr: str, metric: str) -> np.ndarray:
    """Group robustness: accuracy per judged group; worst = min, gap = overall − worst,
    difference = max − min (``groups._summary``)."""
    g = blk.data.groups(attr)
    n = _group_n(blk, attr)
    hits = blk.sums(("group_hit", attr, m), lambda: (g.codes, _correct(blk.data, m).astype(float), len(g.names)))
    hits = hits[g.judged]
    if n.shape[0] == 0:
        return np.full(blk.size, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        acc = hits / np.where(n > 0, n, 1)
    worst, best = acc.min(axis=0), acc.max(axis=0)
    value = {
        "worst_group_accuracy": worst,
        "worst_group_gap": _accuracy(blk, m) - worst,
        "accuracy_difference": best - worst,
    }[metric]
    return np.where(_judged_present(n), value, np.nan)


def _rating_gap(blk: _Block, m: int, attr: str, metric: str) -> np.ndarray:
    """max − min over the judged groups of the group RMSE (or MAE) (``user_group_audit``)."""
    g = blk.data.groups(attr)
    n = _group_n(blk, attr)
    if metric == "rmse_gap":
        s = blk.sums(("group_sq", attr, m), lambda: (g.codes, _error(blk.data, m) ** 2, len(g.names)))[g.judged]
    else:
        s = blk.sums(("group_abs", attr, m), lambda: (g.codes, np.abs(_error(blk.data, m)), len(g.names)))[g.judged]
    if n.shape[0] < 2:
        return np.full(blk.size, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        per = s / np.where(n > 0, n, 1)
    if metric == "rmse_gap":
        per = np.sqrt(per)
    return np.where(_judged_present(n), per.max(axis=0) - per.min(axis=0), np.nan)


@dataclass(frozen=True)
class _Metric:
    method: str  # MCNEMAR | BOOTSTRAP
    needs: str  # the Outputs field both models must have
    value: Callable[[_Block, int], np.ndarray]
    undefined: str  # when the value cannot be computed (for the notes)
    caveat: str = ""  # always noted on the row


def _metric(data: _Data, family: str, attr: str, metric: str) -> _Metric:
    task = data.task
    hard = "label" if task is TaskKind.BINARY else "probs or label"
    if family == "overall":
        simple: dict[str, tuple[Callable[[_Block, int], np.ndarray], str, str]] = {
            "accuracy": (_accuracy, hard, "no rows"),
            "balanced_accuracy": (_balanced_accuracy, hard, "no class present in y"),
            "macro_f1": (_macro_f1, hard, "no rows"),
            "roc_auc": (_roc_auc, "score", "ROC AUC needs both classes among the rows"),
            "ece": (_ece, "score" if task is TaskKind.BINARY else "probs", "no rows"),
            "brier": (_brier, "score", "no rows"),
            "rmse": (_rmse, "rating", "no rows"),
            "mae": (_mae, "rating", "no rows"),
        }
        fn, needs, why = simple[metric]
        return _Metric(MCNEMAR if metric == ACCURACY else BOOTSTRAP, needs, fn, why)
    g = data.groups(attr)
    if family == "fairness":
        why = f"needs >= 2 judged groups of {attr} ({g.rule}), each drawn in the resample" + (
            ", and a non-zero highest favourable-decision rate" if "ratio" in metric else ""
        )
        return _Metric(BOOTSTRAP, "label", lambda b, m: _fairness(b, m, attr, metric), why)
    if family == "groups":
        why = f"needs >= 1 judged group of {attr} ({g.rule}), each drawn in the resample"
        return _Metric(BOOTSTRAP, hard, lambda b, m: _groups_metric(b, m, attr, metric), why)
    why = f"needs >= 2 judged groups of {attr} ({g.rule}), each drawn in the resample"
    caveat = (
        ""
        if attr in data.judged_groups
        else f"{g.rule}; the user_groups audit judges groups by ranked users: pass judged_groups to match it"
    )
    return _Metric(BOOTSTRAP, "rating", lambda b, m: _rating_gap(b, m, attr, metric), why, caveat)


# --------------------------------------------------------------------------- McNemar


def mcnemar(worse: int, better: int, n: int, *, alpha: float = 0.05, tolerance: float = 0.0) -> dict[str, Any]:
    """Paired accuracy comparison from the discordant counts: ``worse`` rows only the champion
    gets right, ``better`` rows only the challenger gets right, of ``n`` rows.

    regression d = (worse − better)/n; CI: Wald for paired proportions, d ± z(1−alpha)·se with
    se² = (worse + better − (worse − better)²/n)/n²; p: tolerance 0 -> exact one-sided
    binomial P(X >= worse), X ~ Bin(worse + better, 1/2); tolerance > 0 -> the one-sided Wald
    p for H0 d <= tolerance, 1 − Φ((d − tolerance)/se). ``significantly_worse``: p < alpha
    (tolerance 0), CI lower end > tolerance (tolerance > 0)."""
    from scipy.stats import binomtest

    d = (worse - better) / n
    var = (worse + better - (worse - better) ** 2 / n) / n**2
    se = math.sqrt(max(var, 0.0))
    z = NormalDist().inv_cdf(1 - alpha)
    lo, hi = d - z * se, d + z * se
    if tolerance == 0:
        discordant = worse + better
        p = float(binomtest(worse, discordant, 0.5, alternative="greater").pvalue) if discordant else 1.0
        worse_flag = p < alpha
        test = f"exact binomial test on {worse} vs {better} discordant rows"
    else:
        p = (1 - NormalDist().cdf((d - tolerance) / se)) if se > 0 else (0.0 if d > tolerance else 1.0)
        worse_flag = lo > tolerance
        test = f"Wald on {worse} vs {better} discordant rows"
    return {"regression": d, "ci": [lo, hi], "p": p, "significantly_worse": bool(worse_flag), "test": test}


# --------------------------------------------------------------------------- inputs


def _array(value: Any, what: str, n: int | None, *, dtype: Any = None, ndim: int = 1) -> np.ndarray:
    arr = np.asarray(value, dtype=dtype)
    if ndim == 1:
        arr = arr.reshape(-1)
    elif arr.ndim != 2:
        raise ValueError(f"{what} must be an (n, k) array, got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"{what} has {arr.shape[0]} rows but y has {n}")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ValueError(f"{what} has NaN or infinite values")
    return arr


def _index(values: np.ndarray, classes: Sequence[Any] | None, k: int, what: str) -> np.ndarray:
    """Class indices 0..k-1 of ``values`` (class labels when ``classes`` is given)."""
    if classes is not None:
        lookup = {c: i for i, c in enumerate(classes)}
        lookup.update({str(c): i for i, c in enumerate(classes)})
        try:
            return np.array([lookup[v] if v in lookup else lookup[str(v)] for v in values.tolist()], dtype=np.int64)
        except KeyError as exc:
            raise ValueError(f"{what} has a value not in classes: {exc.args[0]!r}") from None
    if values.dtype.kind not in "iub" and not (values.dtype.kind == "f" and np.array_equal(values, np.round(values))):
        raise ValueError(f"{what} holds class labels ({values.dtype}): give classes=[...] in the probs' column order")
    out = values.astype(np.int64)
    if out.size and (out.min() < 0 or out.max() >= k):
        raise ValueError(f"{what} has class indices outside 0..{k - 1}")
    return out


def _prepare(
    task: TaskKind,
    y: Any,
    outputs: tuple[Outputs, Outputs],
    positive: Any,
    classes: Sequence[Any] | None,
) -> tuple[np.ndarray, tuple[_Model, _Model], int, list[str]]:
    names = ("champion", "challenger")
    y_raw = np.asarray(y).reshape(-1)
    n = y_raw.shape[0]
    if n == 0:
        raise ValueError("y is empty: nothing to compare")
    models: list[_Model] = []
    if task is TaskKind.BINARY:
        y_arr = (y_raw == positive).astype(np.int64)
        labels = [y_raw]
        for who, out in zip(names, outputs):
            model = _Model()
            if out.label is not None:
                lab = _array(out.label, f"{who}.label", n)
                labels.append(lab)
                model.pred = (lab == positive).astype(np.int64)
            if out.score is not None:
                model.score = _array(out.score, f"{who}.score", n, dtype=float)
            models.append(model)
        values: set[Any] = set()
        for v in labels:
            values.update(np.unique(v).tolist())
        if len(values) > 2:
            raise ValueError(f"binary task: y and the labels hold more than two values: {sorted(map(str, values))[:5]}")
        if positive not in values and not any(str(positive) == str(v) for v in values):
            raise ValueError(f"positive label {positive!r} occurs in neither y nor the predicted labels")
        return y_arr, (models[0], models[1]), 2, ["0", "1"]
    if task is TaskKind.RATING:
        y_arr = _array(y_raw, "y", None, dtype=float)
        for who, out in zip(names, outputs):
            models.append(
                _Model(rating=None if out.rating is None else _array(out.rating, f"{who}.rating", n, dtype=float))
            )
        return y_arr, (models[0], models[1]), 0, []
    # multiclass
    ks = {np.asarray(o.probs).shape[-1] for o in outputs if o.probs is not None}
    if len(ks) > 1:
        raise ValueError(f"champion.probs and challenger.probs have different numbers of columns: {sorted(ks)}")
    if classes is not None:
        k = len(classes)
        if ks and ks != {k}:
            raise ValueError(f"probs have {ks.pop()} columns but classes has {k}")
    elif ks:
        k = ks.pop()
    else:
        k = int(max([np.max(y_raw), *(np.max(o.label) for o in outputs if o.label is not None)])) + 1
    y_arr = _index(y_raw, classes, k, "y")
    for who, out in zip(names, outputs):
        model = _Model()
        if out.probs is not None:
            model.probs = _array(out.probs, f"{who}.probs", n, dtype=float, ndim=2)
            model.pred = model.probs.argmax(axis=1)
        elif out.label is not None:
            model.pred = _index(_array(out.label, f"{who}.label", n), classes, k, f"{who}.label")
        models.append(model)
    class_names = [str(c) for c in classes] if classes is not None else [str(i) for i in range(k)]
    return y_arr, (models[0], models[1]), k, class_names


def _has(model: _Model, needs: str) -> bool:
    if needs in ("label", "probs or label"):
        return model.pred is not None
    return getattr(model, needs) is not None


def _tolerance(max_regression: float | Mapping[str, float], name: str, used: set[str]) -> float:
    if not isinstance(max_regression, Mapping):
        return float(max_regression)
    last = name.rsplit("/", 1)[-1]
    for key in (name, last, "default"):
        if key in max_regression:
            used.add(key)
            return float(max_regression[key])
    return 0.0


def _check_tolerances(max_regression: float | Mapping[str, float]) -> None:
    values = max_regression.items() if isinstance(max_regression, Mapping) else [("max_regression", max_regression)]
    for key, v in values:
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0
        if not ok:
            raise ValueError(f"max_regression[{key!r}] must be a finite number >= 0, got {v!r}")


# --------------------------------------------------------------------------- comparison


def _fmt(x: float | None) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.4g}"


def _row(gate: Mapping[str, Any], tolerance: float, method: str, **values: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "gate": str(gate["name"]),
        "comparison": gate.get("comparison"),
        "threshold": gate.get("threshold"),
        "champion": None,
        "challenger": None,
        "difference": None,
        "regression": None,
        "ci": None,
        "p": None,
        "tolerance": tolerance,
        "method": method,
        "significantly_worse": False,
        "measured": method != NOT_RESCORABLE,
        "blocks": False,
        "note": "",
    }
    row.update(values)
    return row


def _clean(x: Any) -> float | None:
    x = float(x) + 0.0  # no -0.0
    return x if math.isfinite(x) else None


def compare_models(
    task: str,
    y: np.ndarray,
    champion: Outputs,
    challenger: Outputs,
    groups: dict[str, np.ndarray],
    gates: list[dict],
    *,
    max_regression: float | dict[str, float] = 0.0,
    alpha: float = 0.05,
    n_boot: int = 1000,
    seed: int = 0,
    positive: Any = 1,
    classes: Sequence[Any] | None = None,
    min_group_size: int = 30,
    judged_groups: Mapping[str, Collection[Any]] | None = None,
    favourable: int = 1,
) -> dict:
    """Compare the challenger with the champion on every gate, paired on the same test rows.

    ``task``: "binary" | "multiclass" | "rating"; ``y``: the true labels (binary: compared with
    ``positive``; multiclass: class indices, or labels with ``classes``) or ratings;
    ``groups``: sensitive/group columns by name, aligned with ``y`` (intersections ``a_x_b`` and
    ``class`` are formed here); ``gates``: ``{"name", "comparison", "threshold", "value"}`` each
    (value: the challenger's audited value, cross-checked against the recomputed one);
    ``max_regression``: the tolerance (see the module docstring); ``min_group_size`` /
    ``judged_groups`` (attribute -> group names): which groups the gap metrics judge;
    ``favourable``: 1 (a positive prediction is favourable) or 0, as the fairness audit's.

    Returns ``{"rows", "decision", "reasons", "method"}``; a row per gate: gate, comparison,
    threshold, champion, challenger, difference (challenger - champion), regression (> 0: the
    challenger is worse), ci (two-sided 1 - 2·alpha), p, tolerance, method, significantly_worse,
    measured, blocks, note (+ ``discordant`` [worse, better] for McNemar, ``n_valid`` for the
    bootstrap). Raises
    ``ValueError`` (one line) for bad inputs: unknown task, lengths that differ, an output a
    gate needs that is missing, a group column a gate needs that is missing."""
    started = time.perf_counter()
    kind = TaskKind.parse(task)
    if not (isinstance(alpha, float | int) and 0 < alpha < 0.5):
        raise ValueError(f"alpha must be in (0, 0.5), got {alpha!r}")
    if not (isinstance(n_boot, int) and n_boot >= 1):
        raise ValueError(f"n_boot must be a positive integer, got {n_boot!r}")
    if favourable not in (0, 1):
        raise ValueError(f"favourable must be 0 or 1, got {favourable!r}")
    for who, out in (("champion", champion), ("challenger", challenger)):
        if not isinstance(out, Outputs):
            raise ValueError(f"{who} must be an Outputs, got {type(out).__name__}")
    _check_tolerances(max_regression)
    y_arr, models, k, class_names = _prepare(kind, y, (champion, challenger), positive, classes)
    n = int(y_arr.shape[0])
    for attr, values in (groups or {}).items():
        size = np.asarray(values, dtype=object).reshape(-1).shape[0]
        if size != n:
            raise ValueError(f"groups[{attr!r}] has {size} rows but y has {n}")
    data = _Data(
        kind,
        y_arr,
        models,
        groups or {},
        k=k,
        class_names=class_names,
        min_group_size=int(min_group_size),
        judged_groups=judged_groups,
        favourable=int(favourable),
    )

    # ---- what each gate needs
    used_keys: set[str] = set()
    plans: list[tuple[Mapping[str, Any], float, _Metric | None, str]] = []
    missing: list[str] = []
    for gate in gates:
        if not isinstance(gate, Mapping) or "name" not in gate:
            raise ValueError(f"each gate must be a dict with a 'name', got {gate!r}")
        name = str(gate["name"])
        tol = _tolerance(max_regression, name, used_keys)
        parsed = _parse(name)
        if parsed is None:
            plans.append((gate, tol, None, ""))
            continue
        if gate.get("comparison") not in ("<=", ">="):
            raise ValueError(f"gate {name}: comparison must be '<=' or '>=', got {gate.get('comparison')!r}")
        family, attr, metric = parsed
        if not _applies(kind, family, metric):
            plans.append((gate, tol, None, f"{metric} is not defined for a {kind.value} model's outputs"))
            continue
        if family != "overall" and not data.has_attribute(attr):
            raise ValueError(
                f"gate {name} needs the group column {attr!r}, missing from groups (have {sorted(data.raw_groups)})"
            )
        spec = _metric(data, family, attr, metric)
        for who, model in zip(("champion", "challenger"), models):
            if not _has(model, spec.needs):
                missing.append(f"{who}.{spec.needs.replace(' or ', '/')} (needed by {name})")
        plans.append((gate, tol, spec, ""))
    if missing:
        raise ValueError(f"{kind.value} outputs missing: " + "; ".join(dict.fromkeys(missing)))

    # ---- full sample, then the paired bootstrap of every bootstrapped gate at once
    full = _Block(data, np.ones((n, 1)))
    point: dict[int, tuple[float, float]] = {}
    for i, plan in enumerate(plans):
        if plan[2] is not None:
            point[i] = (float(plan[2].value(full, 0)[0]), float(plan[2].value(full, 1)[0]))
    sign = {i: (1.0 if plans[i][0].get("comparison") == "<=" else -1.0) for i in point}
    boot = [
        i
        for i, plan in enumerate(plans)
        if plan[2] is not None and plan[2].method == BOOTSTRAP and all(math.isfinite(v) for v in point[i])
    ]
    draws: dict[int, list[np.ndarray]] = {i: [] for i in boot}
    if boot:
        for blk in _blocks(data, n_boot, seed):
            for i in boot:
                boot_spec = plans[i][2]
                assert boot_spec is not None
                draws[i].append(sign[i] * (boot_spec.value(blk, 1) - boot_spec.value(blk, 0)))

    # ---- rows
    rows: list[dict[str, Any]] = []
    level = 1 - 2 * alpha
    for i, (row_gate, tol, row_spec, why_not) in enumerate(plans):
        if row_spec is None:
            if why_not:  # looks re-scorable, but not for this task: fail closed
                rows.append(
                    _row(row_gate, tol, BOOTSTRAP, measured=False, blocks=True, note=f"not measured: {why_not}")
                )
            else:
                rows.append(
                    _row(row_gate, tol, NOT_RESCORABLE, challenger=row_gate.get("value"), note=NOT_RESCORABLE_NOTE)
                )
            continue
        champ, chall = point[i]
        base = {
            "champion": _clean(champ),
            "challenger": _clean(chall),
            "difference": _clean(chall - champ),
            "regression": _clean(sign[i] * (chall - champ)),
        }
        notes: list[str] = [row_spec.caveat] if row_spec.caveat else []
        audited = row_gate.get("value")
        if (
            isinstance(audited, (int, float))
            and math.isfinite(audited)
            and math.isfinite(chall)
            and abs(audited - chall) > 1e-6 * max(1.0, abs(audited))
        ):
            notes.append(
                f"the audited value {_fmt(audited)} differs from the re-scored {_fmt(chall)}: check that the "
                "rows and group settings (min_group_size, judged_groups, favourable) match the audit's"
            )
        if not (math.isfinite(champ) and math.isfinite(chall)):
            who = " and ".join(w for w, v in (("champion", champ), ("challenger", chall)) if not math.isfinite(v))
            notes.insert(0, f"not measured: the {who}'s value cannot be computed on these rows ({row_spec.undefined})")
            rows.append(
                _row(row_gate, tol, row_spec.method, **base, measured=False, blocks=True, note="; ".join(notes))
            )
            continue
        if row_spec.method == MCNEMAR:
            right0, right1 = _correct(data, 0), _correct(data, 1)
            only_champ = int((right0 & ~right1).sum())
            only_chall = int((~right0 & right1).sum())
            worse, better = (only_champ, only_chall) if sign[i] < 0 else (only_chall, only_champ)
            res = mcnemar(worse, better, n, alpha=alpha, tolerance=tol)
            notes.insert(0, f"{res['test']}; {level:.0%} CI: Wald for paired proportions")
            rows.append(
                _row(
                    row_gate,
                    tol,
                    MCNEMAR,
                    **base,
                    ci=[float(res["ci"][0]), float(res["ci"][1])],
                    p=float(res["p"]),
                    significantly_worse=res["significantly_worse"],
                    blocks=res["significantly_worse"],
                    discordant=[worse, better],
                    note="; ".join(notes),
                )
            )
            continue
        reg = np.concatenate(draws[i])
        valid = reg[np.isfinite(reg)]
        share = valid.size / n_boot
        if share < MIN_VALID_SHARE:
            notes.insert(
                0,
                f"not measured: only {valid.size} of {n_boot} resamples ({share:.0%}) could compute it for both "
                f"models, fewer than {MIN_VALID_SHARE:.0%} ({row_spec.undefined})",
            )
            rows.append(
                _row(
                    row_gate,
                    tol,
                    BOOTSTRAP,
                    **base,
                    measured=False,
                    blocks=True,
                    n_valid=int(valid.size),
                    note="; ".join(notes),
                )
            )
            continue
        lo, hi = (float(q) + 0.0 for q in np.quantile(valid, [alpha, 1 - alpha]))
        p = float((valid <= tol).mean())
        worse_flag = lo > tol
        notes.insert(0, f"{valid.size} of {n_boot} resamples valid; {level:.0%} percentile CI")
        rows.append(
            _row(
                row_gate,
                tol,
                BOOTSTRAP,
                **base,
                ci=[lo, hi],
                p=p,
                significantly_worse=bool(worse_flag),
                blocks=bool(worse_flag),
                n_valid=int(valid.size),
                note="; ".join(notes),
            )
        )

    reasons = [_reason(r, level, n_boot, alpha) for r in rows if r["blocks"]]
    decision = "hold" if reasons else "promote"
    if not reasons:
        compared = sum(1 for r in rows if r["method"] != NOT_RESCORABLE)
        own = len(rows) - compared
        reasons = [
            f"no gated metric of the challenger is significantly worse than the champion's beyond its tolerance "
            f"({compared} compared on the same {n} rows, {own} not re-scorable and gated on their own)"
        ]
    unused = sorted(set(max_regression) - used_keys) if isinstance(max_regression, Mapping) else []
    method = {
        "accuracy": "McNemar: exact one-sided binomial test on the discordant rows (tolerance 0), Wald interval "
        "for paired proportions (decides when tolerance > 0)",
        "other": f"paired percentile bootstrap over rows ({n_boot} resamples, the same rows for both models, "
        f"seed {seed}); significantly worse when the interval's lower end > tolerance",
        "regression": "> 0 means the challenger is worse: champion - challenger for '>=' gates, challenger - "
        "champion for '<=' gates",
        "ci_level": level,
        "alpha": alpha,
        "n_boot": n_boot,
        "seed": seed,
        "n_rows": n,
        "min_valid_share": MIN_VALID_SHARE,
        "min_group_size": int(min_group_size),
        "favourable": int(favourable),
        "decision_rule": "promote iff no gate is significantly worse and every re-scorable gate was measured "
        "(fail closed); gates that are not re-scorable never block",
        "tolerance": dict(max_regression) if isinstance(max_regression, Mapping) else float(max_regression),
        "unused_tolerance_keys": unused,
        "seconds": round(time.perf_counter() - started, 3),
    }
    return {"rows": rows, "decision": decision, "reasons": reasons, "method": method}


def _reason(row: dict[str, Any], level: float, n_boot: int, alpha: float) -> str:
    """One sentence for a blocking row: the gate, its regression, CI and tolerance, and why."""
    gate = row["gate"]
    if not row["measured"]:
        return f"{gate}: {row['note'].split('; ')[0]}; a comparison that cannot be made holds the promotion"
    lo, hi = row["ci"]
    values = f"champion {_fmt(row['champion'])}, challenger {_fmt(row['challenger'])}"
    head = f"{gate} is significantly worse for the challenger: regression {row['regression']:+.4g} ({values}), "
    ci = f"{level:.0%} CI [{lo:.4g}, {hi:.4g}]"
    if row["method"] == MCNEMAR and row["tolerance"] == 0:
        worse, better = row["discordant"]
        return (
            f"{head}{ci}, tolerance 0: McNemar exact test, the challenger is wrong on {worse} rows the champion "
            f"gets right and right on {better} it gets wrong, one-sided p = {row['p']:.3g} < alpha {alpha:g}"
        )
    if row["method"] == MCNEMAR:
        test = f"McNemar rows, Wald interval; one-sided p = {row['p']:.3g}"
    else:
        shown = f"= {row['p']:.3g}" if row["p"] > 0 else f"< {1 / row['n_valid']:.1g}"
        test = f"paired bootstrap over {row['n_valid']} resamples; p {shown}"
    return f"{head}{ci} lies above the tolerance {row['tolerance']:g} ({test})"
