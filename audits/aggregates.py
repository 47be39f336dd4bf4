"""Streaming aggregates of a decision log: everything the audit-only report needs, accumulated
one Arrow batch at a time in memory bounded by the number of groups, not of rows.

Per *cell* (one combination of the sensitive columns' values) and true label (0/1):

- the confusion counts (decision = score >= threshold, or the logged hard prediction): exact;
- a score histogram on a fixed grid of ``grid`` equal bins of [0, 1] (bin ``floor(s * grid)``,
  1.0 in the last): the ROC curve and the AUC. Pairs of a positive and a negative row in the same
  bin count as ties (1/2), so ``|AUC_grid - AUC_exact| <= 1/2 * sum_b P_b N_b / (P N)``, the
  bound reported beside every AUC (``auc_from_hist``); on continuous scores and the default
  10,000 bins it is of the order of 1e-5;
- the counts and score sums in the 15 ECE bins and the 10 reliability bins of
  ``impactflow.audits.performance`` (the same bin function): the ECE and the reliability diagram
  are exact, not approximated;
- the sums of s, s^2 and the log-loss term: Brier score, mean score and log loss, exact up to
  floating-point summation order.

Every group of every attribute (a sensitive column, or an intersection of several) is a union
of cells, so its statistics are sums over cells: the same numbers as the in-memory audit
(``tests/audits/test_aggregates.py`` compares them on the same rows). Two accumulators of the
same columns merge by adding (``merge``): a Dask partition's, another thread's.

Group values are compared as text (``str(v).strip()``, ``data_contracts.predictions``' rule);
a missing value is its own group, ``(missing)``, as in ``fairness.group_labels``. A column with
more than ``max_levels`` distinct values is refused (it is an identifier, not a group), and so is
a combination of more than ``max_cells`` cells (the memory bound: ``2 * grid * 8`` bytes a cell).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from impactflow.errors import DataError

from .bootstrap import FN, FP, TN, TP
from .fairness import GROUP_SEP, INTERSECTION_SEP, MISSING_LABEL
from .performance import _bin_index, bin_rows

GRID = 10_000
ECE_BINS = 15  # performance.expected_calibration_error's default
REL_BINS = 10  # performance.calibration_bins in the performance audit
MAX_LEVELS = 1_000
MAX_CELLS = 4_096
MAX_LABEL_VALUES = 100  # distinct label values tracked for the domain check; more: not a label
_EPS = np.finfo(np.float64).eps  # sklearn's log_loss clips probabilities to [eps, 1 - eps]


def _label(value: str | None) -> str:
    return MISSING_LABEL if value is None else value


def key(value: Any) -> str | None:
    """A value as the text it is compared by (None: missing)."""
    return None if value is None else str(value).strip()


def expit(x: np.ndarray) -> np.ndarray:
    """The logistic function, without overflow warnings for large |x|."""
    out = np.empty_like(x, dtype=np.float64)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    e = np.exp(x[~pos])
    out[~pos] = e / (1.0 + e)
    return out


def _indices(column) -> tuple[np.ndarray, list]:
    """(int64 indices with -1 for null, the dictionary's values) of an Arrow array/chunked array."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    if not pa.types.is_dictionary(column.type):
        column = pc.dictionary_encode(column)
    idx = column.indices.to_numpy(zero_copy_only=False) if column.null_count == 0 else None
    if idx is None:
        idx = column.indices.fill_null(-1).to_numpy(zero_copy_only=False)
    return idx.astype(np.int64, copy=False), column.dictionary.to_pylist()


class Aggregates:
    """The accumulator (see the module docstring). ``positive``: the label value (as text) that is
    the positive class; ``hard``: ``prediction`` holds logged decisions (no score); else
    ``score`` holds P(y = 1) (``score_kind="logit"``: log-odds, mapped through the logistic
    function)."""

    # per cell (first axis), allocated by ``_alloc`` (the score arrays only with scores)
    conf: np.ndarray
    hist: np.ndarray
    ece_n: np.ndarray
    ece_s: np.ndarray
    rel_n: np.ndarray
    rel_s: np.ndarray
    s2: np.ndarray
    ll: np.ndarray

    def __init__(
        self,
        *,
        label: str,
        sensitive: list[str],
        positive: str,
        score: str | None = None,
        prediction: str | None = None,
        threshold: float = 0.5,
        score_kind: str = "probability",
        grid: int = GRID,
        max_levels: int = MAX_LEVELS,
        max_cells: int = MAX_CELLS,
    ) -> None:
        if (score is None) == (prediction is None):
            raise ValueError("give exactly one of score or prediction")
        if score_kind not in ("probability", "logit"):
            raise ValueError(f"score_kind {score_kind!r}: probability or logit")
        self.label, self.sensitive, self.positive = label, list(sensitive), str(positive).strip()
        self.score, self.prediction, self.threshold = score, prediction, float(threshold)
        self.score_kind, self.grid = score_kind, int(grid)
        self.max_levels, self.max_cells = int(max_levels), int(max_cells)
        self.levels: list[dict[str | None, int]] = [{} for _ in self.sensitive]
        self.cells: dict[tuple[int, ...], int] = {}
        self.rows = 0  # rows read
        self.nulls: dict[str, int] = {c: 0 for c in self.roles}
        self.label_values: dict[str | None, int] = {}  # label value (text) -> rows
        self.prediction_values: dict[str | None, int] = {}
        self.score_range = [np.inf, -np.inf]
        self._cap = 0
        self._alloc(16)

    # ---------------------------------------------------------------- state

    @property
    def roles(self) -> list[str]:
        return list(dict.fromkeys([self.label, *(c for c in (self.score, self.prediction) if c), *self.sensitive]))

    @property
    def hard(self) -> bool:
        return self.prediction is not None

    @property
    def n_cells(self) -> int:
        return len(self.cells)

    def _arrays(self) -> dict[str, tuple[tuple[int, ...], type]]:
        shapes: dict[str, tuple[tuple[int, ...], type]] = {"conf": ((2, 2), np.int64)}
        if not self.hard:
            shapes.update(
                hist=((2, self.grid), np.int64),
                ece_n=((2, ECE_BINS), np.int64),
                ece_s=((2, ECE_BINS), np.float64),  # score sums per label: also the sums of s
                rel_n=((2, REL_BINS), np.int64),
                rel_s=((REL_BINS,), np.float64),
                s2=((2,), np.float64),
                ll=((2,), np.float64),
            )
        return shapes

    def _alloc(self, cap: int) -> None:
        for name, (shape, dtype) in self._arrays().items():
            new: np.ndarray = np.zeros((cap, *shape), dtype=dtype)
            if self._cap:
                new[: self._cap] = getattr(self, name)
            setattr(self, name, new)
        self._cap = cap

    def _cell_id(self, gids: tuple[int, ...]) -> int:
        cell = self.cells.get(gids)
        if cell is None:
            cell = len(self.cells)
            if cell >= self.max_cells:
                raise DataError(
                    f"columns {', '.join(self.sensitive)}: more than {self.max_cells} combinations of "
                    "group values; audit fewer or coarser columns, or raise --max-cells"
                )
            self.cells[gids] = cell
            if cell >= self._cap:
                self._alloc(min(max(2 * self._cap, 16), self.max_cells))
        return cell

    def _gid(self, i: int, value: str | None) -> int:
        levels = self.levels[i]
        gid = levels.get(value)
        if gid is None:
            gid = len(levels)
            if gid >= self.max_levels:
                raise DataError(
                    f"column {self.sensitive[i]!r}: more than {self.max_levels} distinct values, too many to be "
                    "groups (an identifier?); give a group column, or raise --max-levels"
                )
            levels[value] = gid
        return gid

    # ---------------------------------------------------------------- accumulate

    def add(self, batch, where: str = "") -> None:
        """Accumulate one Arrow record batch or table holding (at least) the role columns.
        ``where``: the batch's origin, for messages (a file)."""
        n = batch.num_rows
        if n == 0:
            return
        self.rows += n
        at = f" ({where})" if where else ""
        valid = np.ones(n, dtype=bool)
        y = self._binary(batch.column(self.label), self.label, self.label_values, valid)
        if self.prediction is not None:
            pred = self._binary(batch.column(self.prediction), self.prediction, self.prediction_values, valid)
            s = None
        else:
            assert self.score is not None  # one of the two (__init__)
            s = batch.column(self.score)
            s = s.to_numpy(zero_copy_only=False) if hasattr(s, "to_numpy") else np.asarray(s)
            try:
                s = np.asarray(s, dtype=np.float64)
            except (TypeError, ValueError):
                raise DataError(f"column {self.score!r}{at}: not numeric scores") from None
            missing = np.isnan(s)
            self.nulls[self.score] += int(missing.sum())
            valid &= ~missing
            if self.score_kind == "logit":
                s = expit(np.where(missing, 0.0, s))
            ok = s[~missing]
            if ok.size:
                lo, hi = float(ok.min()), float(ok.max())
                if lo < 0.0 or hi > 1.0:
                    bad = lo if lo < 0.0 else hi
                    count = int(((ok < 0.0) | (ok > 1.0)).sum())
                    raise DataError(
                        f"column {self.score!r}{at}: {count} scores outside [0, 1] (e.g. {bad:g}): not "
                        "probabilities; if they are log-odds, give --score-kind logit"
                    )
                self.score_range = [min(self.score_range[0], lo), max(self.score_range[1], hi)]
            pred = s >= self.threshold
        cell = self._cells(batch, n)
        if not valid.all():
            cell, y, pred = cell[valid], y[valid], pred[valid]
            s = None if s is None else s[valid]
        k = self.n_cells
        cy = cell * 2 + y
        self.conf[:k] += np.bincount(cy * 2 + pred, minlength=k * 4).reshape(k, 2, 2)
        if s is None:
            return
        b = _bin_index(s, self.grid)
        self.hist[:k] += np.bincount(cy * self.grid + b, minlength=k * 2 * self.grid).reshape(k, 2, self.grid)
        e = _bin_index(s, ECE_BINS)
        self.ece_n[:k] += np.bincount(cy * ECE_BINS + e, minlength=k * 2 * ECE_BINS).reshape(k, 2, ECE_BINS)
        self.ece_s[:k] += np.bincount(cy * ECE_BINS + e, weights=s, minlength=k * 2 * ECE_BINS).reshape(k, 2, ECE_BINS)
        r = _bin_index(s, REL_BINS)
        self.rel_n[:k] += np.bincount(cy * REL_BINS + r, minlength=k * 2 * REL_BINS).reshape(k, 2, REL_BINS)
        self.rel_s[:k] += np.bincount(cell * REL_BINS + r, weights=s, minlength=k * REL_BINS).reshape(k, REL_BINS)
        self.s2[:k] += np.bincount(cy, weights=s * s, minlength=k * 2).reshape(k, 2)
        p = np.clip(s, _EPS, 1.0 - _EPS)
        loss = -np.log(np.where(y == 1, p, 1.0 - p))
        self.ll[:k] += np.bincount(cy, weights=loss, minlength=k * 2).reshape(k, 2)

    def _binary(self, column, name: str, seen: dict, valid: np.ndarray) -> np.ndarray:
        """0/1 per row (1 = the positive value); counts each distinct value; nulls are counted and
        left out (``valid``)."""
        idx, values = _indices(column)
        keys = [key(v) for v in values]
        null = idx < 0
        if null.any():
            self.nulls[name] += int(null.sum())
            valid &= ~null
        counts = np.bincount(idx[~null], minlength=len(keys)) if keys else np.zeros(0, dtype=np.int64)
        for k_, c in zip(keys, counts.tolist()):
            if c:
                seen[k_] = seen.get(k_, 0) + int(c)
        if len(seen) > MAX_LABEL_VALUES:
            raise DataError(f"column {name!r}: more than {MAX_LABEL_VALUES} distinct values: not a binary label")
        lut = np.array([k_ == self.positive for k_ in keys] + [False], dtype=np.int64)
        return lut[idx]  # -1 (null) reads the trailing False

    def _cells(self, batch, n: int) -> np.ndarray:
        """The cell id of each row: local dictionary codes -> global group ids -> cell."""
        if not self.sensitive:
            return np.full(n, self._cell_id(()), dtype=np.int64)
        locals_, luts = [], []
        for i, c in enumerate(self.sensitive):
            idx, values = _indices(batch.column(c))
            lut = [self._gid(i, key(v)) for v in values]
            if (idx < 0).any():
                self.nulls[c] += int((idx < 0).sum())  # a missing group value: counted, and its own group
                idx = np.where(idx < 0, len(values), idx)
                lut.append(self._gid(i, None))
            locals_.append(idx)
            luts.append(lut)
        sizes = [len(lut) for lut in luts]
        combo = np.zeros(n, dtype=np.int64)
        stride = 1
        for idx, size in zip(locals_, sizes):
            combo += idx * stride
            stride *= size
        if stride <= 1 << 22:
            present = np.flatnonzero(np.bincount(combo, minlength=stride))
            table = np.zeros(stride, dtype=np.int64)
            inverse = None
        else:  # many local levels: only the combinations that occur
            present, inverse = np.unique(combo, return_inverse=True)
            table = np.zeros(present.size, dtype=np.int64)
        for j, code in enumerate(present.tolist()):
            gids, rest = [], code
            for lut, size in zip(luts, sizes):
                gids.append(lut[rest % size])
                rest //= size
            table[code if inverse is None else j] = self._cell_id(tuple(gids))
        return table[combo] if inverse is None else table[inverse.reshape(-1)]

    # ---------------------------------------------------------------- merge

    def cell_values(self) -> list[tuple[str | None, ...]]:
        """Each cell's values (text; None = missing), in cell order."""
        names = [{g: v for v, g in levels.items()} for levels in self.levels]
        return [tuple(names[i][g] for i, g in enumerate(gids)) for gids in self.cells]

    def merge(self, other: Aggregates) -> Aggregates:
        """Add ``other`` (same roles and settings) into this one; returns self."""
        if (other.roles, other.positive, other.threshold, other.grid, other.hard) != (
            self.roles,
            self.positive,
            self.threshold,
            self.grid,
            self.hard,
        ):
            raise ValueError("cannot merge aggregates of different columns or settings")
        self.rows += other.rows
        for c, v in other.nulls.items():
            self.nulls[c] += v
        for mine, theirs in (
            (self.label_values, other.label_values),
            (self.prediction_values, other.prediction_values),
        ):
            for k_, v in theirs.items():
                mine[k_] = mine.get(k_, 0) + v
        self.score_range = [
            min(self.score_range[0], other.score_range[0]),
            max(self.score_range[1], other.score_range[1]),
        ]
        for j, values in enumerate(other.cell_values()):
            cell = self._cell_id(tuple(self._gid(i, v) for i, v in enumerate(values)))
            for name in self._arrays():
                getattr(self, name)[cell] += getattr(other, name)[j]
        return self

    def __getstate__(self) -> dict:  # pickled for Dask: only the used cells travel
        state = dict(self.__dict__)
        for name in self._arrays():
            state[name] = state[name][: self.n_cells].copy()
        state["_cap"] = self.n_cells
        return state

    # ---------------------------------------------------------------- read

    def attributes(self, intersections: list | None) -> dict[str, list[str]]:
        """Attribute name -> its columns: each sensitive column, then the intersections (None:
        every column combined when there are two or more), as ``fairness._attributes``."""
        out = {c: [c] for c in self.sensitive}
        if intersections is None:
            intersections = [self.sensitive] if len(self.sensitive) >= 2 else []
        for combo in intersections:
            missing = [c for c in combo if c not in self.sensitive]
            if missing:
                raise ValueError(f"intersection {combo} names columns not in the sensitive data: {missing}")
            out.setdefault(INTERSECTION_SEP.join(combo), list(combo))
        return out

    def groups(self, columns: list[str]) -> tuple[list[str], np.ndarray]:
        """(sorted group labels, each cell's group index) of the attribute over ``columns``."""
        pos = [self.sensitive.index(c) for c in columns]
        labels = [GROUP_SEP.join(_label(v[i]) for i in pos) for v in self.cell_values()]
        uniques = sorted(set(labels))
        where = {g: i for i, g in enumerate(uniques)}
        return uniques, np.array([where[g] for g in labels], dtype=np.int64)

    def _sum(self, name: str, index: np.ndarray, n_groups: int) -> np.ndarray:
        arr = getattr(self, name)[: self.n_cells]
        out = np.zeros((n_groups, *arr.shape[1:]), dtype=arr.dtype)
        np.add.at(out, index, arr)
        return out

    def confusion(self, columns: list[str]) -> tuple[list[str], np.ndarray]:
        """(group labels, (G, 4) counts [TP, FP, TN, FN]) as ``bootstrap.group_counts`` gives them."""
        labels, index = self.groups(columns)
        conf = self._sum("conf", index, len(labels))  # [group, y, pred]
        counts = np.zeros((len(labels), 4), dtype=np.int64)
        counts[:, TP], counts[:, FN] = conf[:, 1, 1], conf[:, 1, 0]
        counts[:, FP], counts[:, TN] = conf[:, 0, 1], conf[:, 0, 0]
        return labels, counts

    def overall(self) -> dict[str, np.ndarray]:
        """Every array summed over all cells."""
        return {name: getattr(self, name)[: self.n_cells].sum(axis=0) for name in self._arrays()}

    def by_group(self, columns: list[str]) -> tuple[list[str], dict[str, np.ndarray]]:
        labels, index = self.groups(columns)
        return labels, {name: self._sum(name, index, len(labels)) for name in self._arrays()}


# -------------------------------------------------------------------- metrics from sums


def auc_from_hist(neg: np.ndarray, pos: np.ndarray) -> tuple[float, float]:
    """(AUC, bound on |AUC - exact AUC|) from the negative and positive rows' histograms on the same
    grid: a pair in the same bin counts 1/2 (nan, nan with one class)."""
    neg, pos = np.asarray(neg, dtype=np.float64), np.asarray(pos, dtype=np.float64)
    n_neg, n_pos = neg.sum(), pos.sum()
    if n_neg == 0 or n_pos == 0:
        return float("nan"), float("nan")
    below = np.cumsum(neg) - neg  # negatives in lower bins
    pairs = n_neg * n_pos
    auc = float((pos * (below + 0.5 * neg)).sum() / pairs)
    return auc, float(0.5 * (pos * neg).sum() / pairs)


def roc_from_hist(neg: np.ndarray, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ROC curve at the grid's bin edges, from the highest bin down (fpr, tpr from 0 to 1)."""
    neg, pos = np.asarray(neg, dtype=np.float64)[::-1], np.asarray(pos, dtype=np.float64)[::-1]
    keep = (neg + pos) > 0
    fpr = np.concatenate([[0.0], np.cumsum(neg[keep]) / max(neg.sum(), 1.0)])
    tpr = np.concatenate([[0.0], np.cumsum(pos[keep]) / max(pos.sum(), 1.0)])
    return fpr, tpr


def ece_from(ece_n: np.ndarray, ece_s: np.ndarray) -> float:
    """``performance.expected_calibration_error`` from the per-(label, bin) counts and score sums."""
    n = ece_n.sum()
    if n == 0:
        return float("nan")
    return float(np.abs(ece_s.sum(axis=0) - ece_n[1]).sum() / n)


def group_statistics(sums: dict[str, np.ndarray], i: int | None = None) -> dict[str, float]:
    """n, base rate, mean score, ECE, Brier, log loss, AUC (+ bound) of one group's sums
    (``i``: its index in ``by_group``'s arrays; None: ``overall``'s)."""
    pick = (lambda a: a) if i is None else (lambda a: a[i])
    conf = pick(sums["conf"])
    n_y = conf.sum(axis=1).astype(np.float64)  # rows per label
    n = float(n_y.sum())
    out = {"n": int(n), "base_rate": float(n_y[1] / n) if n else float("nan")}
    if "hist" not in sums:
        return out
    s1, s2, ll = pick(sums["ece_s"]).sum(axis=-1), pick(sums["s2"]), pick(sums["ll"])
    hist = pick(sums["hist"])
    auc, bound = auc_from_hist(hist[0], hist[1])
    out.update(
        mean_score=float(s1.sum() / n) if n else float("nan"),
        ece=ece_from(pick(sums["ece_n"]), pick(sums["ece_s"])),
        # sum (s - y)^2 = sum s^2 - 2 sum_{y=1} s + n_1
        brier=float((s2.sum() - 2.0 * s1[1] + n_y[1]) / n) if n else float("nan"),
        log_loss=float(ll.sum() / n) if n else float("nan"),
        roc_auc=auc,
        roc_auc_error_bound=bound,
    )
    return out


def classification_metrics(agg: Aggregates) -> dict[str, float]:
    """``performance.classification_metrics`` (same keys) from the aggregates, plus the AUC's
    bound (``roc_auc_error_bound``)."""
    sums = agg.overall()
    conf = sums["conf"].astype(np.float64)
    tn, fp, fn, tp = conf[0, 0], conf[0, 1], conf[1, 0], conf[1, 1]
    n = tn + fp + fn + tp
    stats = group_statistics(sums)
    recall = tp / (tp + fn) if tp + fn else 0.0
    spec = tn / (tn + fp) if tn + fp else 0.0
    present = [r for r, d in ((recall, tp + fn), (spec, tn + fp)) if d]
    precision = tp / (tp + fp) if tp + fp else 0.0
    out = {
        "accuracy": (tp + tn) / n if n else float("nan"),
        "balanced_accuracy": float(np.mean(present)) if present else float("nan"),
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "roc_auc": stats.get("roc_auc", float("nan")),
        "roc_auc_error_bound": stats.get("roc_auc_error_bound", float("nan")),
        "log_loss": stats.get("log_loss", float("nan")),
        "ece": stats.get("ece", float("nan")),
        "tn": tn,
        "fp": fp,
        "fn": fn,
        "tp": tp,
        "n": n,
    }
    return {k: float(v) for k, v in out.items()}


def calibration_bins(agg: Aggregates) -> list[dict[str, float]]:
    """``performance.calibration_bins`` (10 bins) from the aggregates."""
    sums = agg.overall()
    return bin_rows(sums["rel_n"].sum(axis=0), sums["rel_s"], sums["rel_n"][1])


def representation(agg: Aggregates) -> list[dict[str, Any]]:
    """``tasks.report.representation`` rows (each sensitive column's groups: n, share, positive
    rate) from the aggregates."""
    rows = []
    for c in agg.sensitive:
        labels, index = agg.groups([c])
        conf = agg._sum("conf", index, len(labels))
        total = conf.sum()
        for g, counts in zip(labels, conf):
            n = int(counts.sum())
            rows.append(
                {
                    "attribute": c,
                    "group": g,
                    "n": n,
                    "share": n / total if total else float("nan"),
                    "positive_rate": float(counts[1].sum() / n) if n else float("nan"),
                }
            )
    return rows
