"""Worst-slice discovery with false-discovery control: where does the model fail most, on slices
nobody configured a gate for?

A *predicate* is one feature's value (a category; a numeric column below or above one of its
quantile cuts; or "missing"); a *slice* is a conjunction of up to ``max_order`` predicates on distinct features.
Every slice with at least ``min_slice_size`` test rows is tested, one-sided, for a loss worse
than the rest of the rows:

- a classifier's loss is its error (0/1): Fisher's exact test on the 2x2 table slice/rest x
  wrong/right, i.e. the hypergeometric tail P(X >= errors in slice) with the margins fixed;
- a rating model's loss is the squared error: Welch's t-test of the slice's mean squared error
  against the rest's (from per-slice sums, so every slice costs two dot products).

The p-values of all tested slices go through Benjamini-Hochberg at level ``fdr``
(``scipy.stats.false_discovery_control``); only slices whose adjusted p-value (q) is at most
``fdr`` are findings. Slices below ``min_slice_size`` are never tested nor shown (disclosure).
Significant slices overlap (a slice, its refinements, its neighbours): they are grouped into
findings. Taking the slice with the strongest evidence (smallest p) first, every other
significant slice whose rows *outside* it are no worse than the remaining rows (one-sided, at
the Benjamini-Hochberg cut-off) is explained by it and joins it as ``related``; the next
finding is the strongest slice left. Findings are listed worst first with confidence (by the
lower end of the 95 % interval of their loss); each carries its definition, size, loss with
that interval, lift over the rest, p and q.

A slice of order k+1 extends one of order k by a predicate on a later feature (each
conjunction is built once), and a slice below the minimum size is not extended (a conjunction
is never larger than its parts). ``slice_stream`` does this level by level on bool masks (the
reference; ``tests/audits/test_slices.py`` checks it against a brute-force enumeration);
``find_slices`` does the same on bit-packed masks (``pack``: 64 rows a uint64 word), depth
first, all extensions of one slice at once (``packed_slices``), so it holds only the current
path's masks, never a level's: sizes and a 0/1 loss's error counts are popcounts of ANDed words,
exact; a squared error is summed on unpacked blocks. The results are then put back in
``slice_stream``'s order, so both paths give the same findings (the test checks the sums).
The grouping, too, rebuilds the remaining significant slices' packed masks a bounded block at a
time. On 1M rows with a 0/1 loss the discovery takes about 25 s and 0.4 GB on 2 cores
(``benchmarks/slices.py``, ``docs/benchmarks.md``).
A discovery is a prompt to look, not a verdict: the only gate, ``max_significant_slices``, is
off unless configured.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .inputs import AuditInputs
from .results import AuditResult, Status, overall_status
from .stats import compare_gate, wilson_interval
from .thresholds import Threshold, at_most, defaults, setting

SLICE_THRESHOLDS: dict[str, Threshold] = {
    "max_significant_slices": at_most("significant_slices", kind="whole"),
    "fdr": setting(0.05, "open_fraction"),  # Benjamini-Hochberg level, in (0, 1)
    "max_order": setting(3, "count"),  # predicates per slice
    "n_bins": setting(4, "count"),  # quantile bins per numeric feature
    "min_slice_size": setting(30, "count"),  # test rows a slice needs to be tested or shown
    "max_reported": setting(10, "count"),  # findings listed in the report (all are counted)
}
SLICE_DEFAULTS = defaults(SLICE_THRESHOLDS)
FRAME_KEY = "slice_frame"  # AuditInputs.extra: the test rows' features to slice on
BLOCK_CELLS = 20_000_000  # slice-x-row cells a block of unpacked masks (160 MB as float64); bytes a packed block
MAX_LEVELS = 50  # a categorical feature's most frequent values that get a predicate


@dataclass(frozen=True)
class Predicate:
    feature: str
    text: str  # e.g. "age in [17, 28)", "sex = Female", "workclass is missing"
    mask: np.ndarray  # bool, one per test row


def predicates(frame: pd.DataFrame, n_bins: int, min_size: int) -> list[Predicate]:
    """Each feature's predicates with at least ``min_size`` rows: one per category (the most
    frequent ``MAX_LEVELS``); for a numeric column, ``x < c`` and ``x >= c`` at each interior
    cut ``c`` of its ``n_bins`` quantile bins (so a slice can say "age < 25 AND hours >= 50");
    and "missing"."""
    out: list[Predicate] = []
    for col in frame.columns:
        s = frame[col]
        missing = s.isna().to_numpy()
        found: list[Predicate] = []
        if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s) and s.nunique() > n_bins:
            x = s.to_numpy(dtype=float)
            cuts = np.unique(np.nanquantile(x, np.linspace(0, 1, n_bins + 1)[1:-1]))
            for cut in cuts:
                found.append(Predicate(col, f"{col} < {cut:g}", x < cut))
                found.append(Predicate(col, f"{col} >= {cut:g}", x >= cut))
        else:
            for value in s.dropna().value_counts().index[:MAX_LEVELS]:
                found.append(Predicate(col, f"{col} = {value}", (s == value).to_numpy()))
        if missing.any():
            found.append(Predicate(col, f"{col} is missing", missing))
        out += [p for p in found if int(p.mask.sum()) >= min_size]
    return out


def slice_stream(preds: list[Predicate], max_order: int, min_size: int):
    """Every conjunction of up to ``max_order`` predicates on distinct features with at least
    ``min_size`` rows, as ``(predicate indices, mask)``, level by level. Only the masks of the
    level being extended are held; the last level's are yielded as they are made."""
    order = {f: i for i, f in enumerate(dict.fromkeys(p.feature for p in preds))}
    rank = [order[p.feature] for p in preds]
    level: list[tuple[tuple[int, ...], np.ndarray]] = [((i,), p.mask) for i, p in enumerate(preds)]
    yield from level
    for depth in range(1, max_order):
        keep = depth < max_order - 1  # masks to extend at the next level
        nxt: list[tuple[tuple[int, ...], np.ndarray]] = []
        for idx, mask in level:
            last = rank[idx[-1]]
            for j, p in enumerate(preds):
                if rank[j] <= last:
                    continue
                m = mask & p.mask
                if np.count_nonzero(m) >= min_size:
                    yield (*idx, j), m
                    if keep:
                        nxt.append(((*idx, j), m))
        level = nxt


def enumerate_slices(preds: list[Predicate], max_order: int, min_size: int) -> list[tuple[tuple[int, ...], np.ndarray]]:
    """All of ``slice_stream`` in one list (small data: tests, brute-force comparisons)."""
    return list(slice_stream(preds, max_order, min_size))


def slice_sums(masks: np.ndarray, loss: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each slice's (size, sum of loss, sum of squared loss), for a bool matrix of slices x rows;
    a 0/1 loss is counted with bool operations (no float copy of the masks)."""
    size = np.count_nonzero(masks, axis=1).astype(np.float64)
    if np.isin(loss, (0.0, 1.0)).all():
        in_sum = np.count_nonzero(masks & (loss > 0), axis=1).astype(np.float64)
        return size, in_sum, in_sum
    m = masks.astype(np.float64)
    return size, m @ loss, m @ (loss * loss)


def pack(masks: np.ndarray) -> np.ndarray:
    """Bool masks (..., rows) as bits in uint64 words (..., ceil(rows / 64)); the padding bits
    are 0, so a conjunction's padding stays 0 and counts stay exact."""
    bits = np.packbits(masks, axis=-1, bitorder="little")
    pad = -bits.shape[-1] % 8
    if pad:
        bits = np.concatenate([bits, np.zeros((*bits.shape[:-1], pad), np.uint8)], axis=-1)
    return np.ascontiguousarray(bits).view(np.uint64)


def unpack(words: np.ndarray, n: int) -> np.ndarray:
    """``pack``'s inverse: the first ``n`` bits of each row of words, as bools."""
    return np.unpackbits(words.view(np.uint8), axis=-1, count=n, bitorder="little").view(bool)


def popcount(words: np.ndarray) -> np.ndarray:
    """Set bits per row of packed masks (up to 2**32 rows)."""
    return np.bitwise_count(words).sum(axis=-1, dtype=np.uint32).astype(np.int64)


def packed_slices(words: np.ndarray, rank: list[int], max_order: int, min_size: int):
    """``slice_stream``'s slices from the predicates' packed masks (``pack``), depth first and a
    parent's extensions at once: yields ``(indices, packed masks, sizes)``, first for the
    predicates themselves, then for each slice that is extended, its extensions with at least
    ``min_size`` rows. Only the current path's extensions are held (at most ``max_order``
    blocks of predicates x words): memory does not grow with the number of slices."""
    later = [np.flatnonzero(np.asarray(rank) > r) for r in range(max(rank, default=0) + 1)]
    # the predicates on later features: a view when they are contiguous (as ``predicates`` makes them)
    cands = [words[j[0] : j[-1] + 1] if j.size and j[-1] - j[0] + 1 == j.size else words[j] for j in later]
    bufs = [np.empty_like(words) for _ in range(max_order - 1)]
    yield [(i,) for i in range(len(words))], words, popcount(words)

    def extend(idx: tuple[int, ...], mask: np.ndarray, depth: int):
        j = later[rank[idx[-1]]]
        if not j.size:
            return
        kids = np.bitwise_and(cands[rank[idx[-1]]], mask, out=bufs[depth - 1][: j.size])
        size = popcount(kids)
        ok = np.flatnonzero(size >= min_size)
        if not ok.size:
            return
        yield [(*idx, int(j[o])) for o in ok], kids[ok], size[ok]
        if depth + 1 < max_order:
            for o in ok:
                yield from extend((*idx, int(j[o])), kids[o], depth + 1)

    if max_order > 1:
        for i in range(len(words)):
            yield from extend((i,), words[i], 1)


def _batched(groups, max_bytes: int):
    """``packed_slices``' groups merged into batches of about ``max_bytes`` of packed masks (few
    large matrix products rather than many small ones)."""
    batch: list[tuple[list[tuple[int, ...]], np.ndarray, np.ndarray]] = []
    held = 0
    for group in itertools.chain(groups, [None]):
        if group is not None:
            batch.append(group)
            held += group[1].nbytes
        if batch and (group is None or held >= max_bytes):
            yield (
                [i for g in batch for i in g[0]],
                np.concatenate([g[1] for g in batch]),
                np.concatenate([g[2] for g in batch]),
            )
            batch, held = [], 0


def _float_sums(masks: np.ndarray, loss: np.ndarray, loss_sq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sum of loss and of squared loss per packed mask, unpacked a bounded block at a time."""
    block = max(1, int(BLOCK_CELLS // max(loss.size, 1)))
    in_sum, in_sq = np.empty(len(masks)), np.empty(len(masks))
    for s in range(0, len(masks), block):
        m = unpack(masks[s : s + block], loss.size).astype(np.float64)
        in_sum[s : s + block], in_sq[s : s + block] = m @ loss, m @ loss_sq
        del m  # before the next block's is made
    return in_sum, in_sq


def packed_sums(
    masks: np.ndarray, loss: np.ndarray, errors: np.ndarray | None, loss_sq: np.ndarray, size: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``slice_sums`` of packed masks: a 0/1 loss (``errors``: its packed nonzero rows) by
    counting bits, exactly; another loss from unpacked blocks."""
    size = (popcount(masks) if size is None else size).astype(np.float64)
    if errors is not None:
        in_sum = popcount(masks & errors).astype(np.float64)
        return size, in_sum, in_sum
    return size, *_float_sums(masks, loss, loss_sq)


def pvalues(size, in_sum, in_sq, loss: np.ndarray, binary: bool) -> tuple[np.ndarray, ...]:
    """One-sided p-values (module doc) from each slice's sums, as natural logs (a strong slice's
    p underflows a float); with each slice's mean loss and loss variance."""
    from scipy import stats

    n, total = float(loss.size), float(loss.sum())
    mean_in = in_sum / size
    if binary:
        # P(X >= errors in slice), X ~ Hypergeom(population n, n_errors, draws = slice size)
        p = stats.hypergeom.sf(in_sum - 1, n, total, size)  # boost's; logsf sums terms (slow)
        with np.errstate(divide="ignore"):
            logp = np.log(p)
        tiny = p < 1e-300  # underflowed: the exact log for the few strongest slices
        if tiny.any():
            logp[tiny] = stats.hypergeom.logsf(in_sum[tiny] - 1, n, total, size[tiny])
        return np.minimum(logp, 0.0), mean_in, mean_in * (1.0 - mean_in)
    rest = n - size
    mean_out = (total - in_sum) / rest
    var_in = np.maximum(in_sq / size - mean_in**2, 0.0) * size / np.maximum(size - 1, 1)
    out_sq = float((loss * loss).sum()) - in_sq
    var_out = np.maximum(out_sq / rest - mean_out**2, 0.0) * rest / np.maximum(rest - 1, 1)
    se2_in, se2_out = var_in / size, var_out / rest
    se = np.sqrt(se2_in + se2_out)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (mean_in - mean_out) / se
        dof = (se2_in + se2_out) ** 2 / (se2_in**2 / np.maximum(size - 1, 1) + se2_out**2 / np.maximum(rest - 1, 1))
    logp = np.where(se > 0, stats.t.logsf(t, np.nan_to_num(dof, nan=1.0)), np.where(mean_in > mean_out, -np.inf, 0.0))
    return np.minimum(logp, 0.0), mean_in, var_in


def slice_pvalues(masks: np.ndarray, loss: np.ndarray, binary: bool) -> tuple[np.ndarray, ...]:
    """``pvalues`` of slices given as rows of a bool matrix: (log p, size, mean loss, variance)."""
    size, in_sum, in_sq = slice_sums(masks, loss)
    logp, mean_in, var_in = pvalues(size, in_sum, in_sq, loss, binary)
    return logp, size, mean_in, var_in


def _mask_blocks(words: np.ndarray, idxs: list[tuple[int, ...]]):
    """The packed masks of slices given by their predicate indices, a bounded block at a time
    (``BLOCK_CELLS`` bytes of words)."""
    block = max(1, int(BLOCK_CELLS // max(8 * words.shape[1], 1)))
    for s in range(0, len(idxs), block):
        part = idxs[s : s + block]
        masks = words[[i[0] for i in part]]
        for depth in range(1, max(map(len, part))):
            masks &= words[[i[min(depth, len(i) - 1)] for i in part]]  # x & x = x pads a shorter one
        yield masks


def find_slices(
    frame: pd.DataFrame,
    loss: np.ndarray,
    *,
    binary: bool,
    fdr: float = 0.05,
    max_order: int = 3,
    n_bins: int = 4,
    min_slice_size: int = 30,
) -> dict[str, Any]:
    """All tested slices' statistics and the findings (dicts, ranked); see the module doc."""
    from scipy.stats import false_discovery_control

    if frame.shape[1] == 0:
        raise ValueError("no features to slice on")
    if not 0.0 < fdr < 1.0:
        raise ValueError(f"fdr must be in (0, 1), got {fdr}")
    if min_slice_size < 1 or max_order < 1 or n_bins < 1:
        raise ValueError("min_slice_size, max_order and n_bins must be at least 1")
    loss = np.asarray(loss, dtype=float).reshape(-1)
    if loss.size != len(frame):
        raise ValueError(f"the slice frame has {len(frame)} rows but there are {loss.size} losses")
    preds = predicates(frame.reset_index(drop=True), n_bins, min_slice_size)
    # every slice's sums from bit-packed masks, a parent's extensions at a time (none are kept)
    words = np.stack([pack(p.mask) for p in preds]) if preds else np.zeros((0, 0), np.uint64)
    errors = pack(loss > 0) if np.isin(loss, (0.0, 1.0)).all() else None
    loss_sq = loss * loss
    features = {f: r for r, f in enumerate(dict.fromkeys(p.feature for p in preds))}
    idxs: list[tuple[int, ...]] = []
    sums: list[tuple[np.ndarray, ...]] = []
    groups = packed_slices(words, [features[p.feature] for p in preds], max_order, min_slice_size)
    for group, masks, n_rows in _batched(groups, BLOCK_CELLS):
        idxs += group
        sums.append(packed_sums(masks, loss, errors, loss_sq, n_rows))
    if not idxs:
        return {"n_tested": 0, "n_significant": 0, "findings": [], "overall": float(loss.mean()) if loss.size else None}
    level_wise = sorted(range(len(idxs)), key=lambda i: (len(idxs[i]), idxs[i]))  # slice_stream's order
    idxs = [idxs[i] for i in level_wise]
    size, in_sum, in_sq = (np.concatenate([s[i] for s in sums])[level_wise] for i in range(3))
    partial = np.flatnonzero(size < loss.size)  # a slice of every row has no rest to compare with
    idxs = [idxs[i] for i in partial]
    size, in_sum, in_sq = size[partial], in_sum[partial], in_sq[partial]
    if not idxs:
        return {"n_tested": 0, "n_significant": 0, "findings": [], "overall": float(loss.mean())}
    logp, mean_in, var_in = pvalues(size, in_sum, in_sq, loss, binary)
    p = np.exp(logp)
    q = false_discovery_control(p, method="bh")
    rest_mean = (float(loss.sum()) - size * mean_in) / (loss.size - size)
    keep = np.flatnonzero((q <= fdr) & (mean_in > rest_mean))
    p_cut = float(p[keep].max()) if keep.size else 0.0  # the Benjamini-Hochberg cut-off
    order = list(keep[np.lexsort((-size[keep], logp[keep]))])  # strongest evidence first
    findings = []
    while order:
        k = order.pop(0)
        idx = idxs[k]
        lead = np.bitwise_and.reduce(words[list(idx)], axis=0)
        # a significant slice whose rows outside this one are no worse than every other row
        # outside it (at the same cut-off) is explained by it: the same finding, not a new one
        outside = ~lead  # (its padding bits are set, the slices' are not)
        loss_out = loss[~unpack(lead, loss.size)]
        rest = [packed_sums(m & outside, loss, errors, loss_sq) for m in _mask_blocks(words, [idxs[o] for o in order])]
        rest_size, rest_sum, rest_sq = (np.concatenate([r[i] for r in rest] or [np.zeros(0)]) for i in range(3))
        enough = rest_size >= min_slice_size
        explained = ~enough
        if enough.any():
            lp = pvalues(rest_size[enough], rest_sum[enough], rest_sq[enough], loss_out, binary)[0]
            explained[np.flatnonzero(enough)] = np.exp(lp) > p_cut
        same = [o for o, e in zip(order, explained) if e]
        order = [o for o, e in zip(order, explained) if not e]
        n_k, metric = int(size[k]), float(mean_in[k])
        if binary:  # Wilson 95 % interval of the error rate
            low, high = wilson_interval(round(metric * n_k), n_k)
        else:  # the RMSE: a normal 95 % interval on the slice's MSE, taken to the square root
            half = 1.959964 * float(np.sqrt(var_in[k] / n_k))
            low, high = float(np.sqrt(max(metric - half, 0.0))), float(np.sqrt(metric + half))
        findings.append(
            {
                "slice": " AND ".join(preds[i].text for i in idx),
                "predicates": [preds[i].text for i in idx],
                "size": n_k,
                "metric": metric if binary else float(np.sqrt(metric)),
                "metric_ci_low": low,
                "metric_ci_high": high,
                "rest": float(rest_mean[k]) if binary else float(np.sqrt(rest_mean[k])),
                "lift": float(mean_in[k] / rest_mean[k]) if rest_mean[k] > 0 else float("inf"),
                "p_value": float(p[k]),
                "q_value": float(q[k]),
                "related": [" AND ".join(preds[i].text for i in idxs[o]) for o in same][:5],
                "n_related": len(same),
            }
        )
    findings.sort(key=lambda f: (-f["metric_ci_low"], -f["size"]))  # worst first, with confidence
    return {
        "n_tested": len(idxs),
        "n_significant": int(keep.size),
        "findings": findings,
        "overall": float(loss.mean()),
    }


def slice_audit(inputs: AuditInputs, thresholds: dict) -> AuditResult:
    """Worst-slice discovery over ``inputs.extra["slice_frame"]`` (module doc)."""
    cfg = {**SLICE_DEFAULTS, **{k: v for k, v in (thresholds or {}).items() if v is not None}}
    frame = inputs.extra.get(FRAME_KEY)
    if frame is None or frame.shape[1] == 0:
        return AuditResult(name="slices", status=Status.NOT_MEASURED, notes=["no features to slice on"])
    binary = inputs.task.classifies
    loss = (inputs.y_pred != inputs.y_true).astype(float) if binary else (inputs.y_score - inputs.y_true) ** 2
    found = find_slices(
        frame,
        loss,
        binary=binary,
        fdr=float(cfg["fdr"]),
        max_order=int(cfg["max_order"]),
        n_bins=int(cfg["n_bins"]),
        min_slice_size=int(cfg["min_slice_size"]),
    )
    findings = found["findings"]
    metric = "error rate" if binary else "RMSE"
    metrics: dict[str, float | None] = {
        "slices/n_tested": float(found["n_tested"]),
        "slices/significant_slices": float(len(findings)),
        "slices/significant_raw": float(found["n_significant"]),
    }
    gates = []
    if cfg.get("max_significant_slices") is not None:
        limit = float(cfg["max_significant_slices"])
        gates.append(compare_gate("slices/significant_slices", metrics["slices/significant_slices"], limit, "<="))
    notes = [
        f"{found['n_tested']} slices of up to {cfg['max_order']} predicates with >= {cfg['min_slice_size']} test rows "
        f"tested one-sided for a higher {metric} than the rest ({'Fisher exact' if binary else 'Welch t'}); "
        f"Benjamini-Hochberg at FDR {cfg['fdr']:g}: {found['n_significant']} significant, "
        f"{len(findings)} distinct findings (a significant slice explained by a stronger one, i.e. no worse than "
        "the rest outside it, is listed under it)"
    ]
    return AuditResult(
        name="slices",
        status=overall_status(gates),
        metrics=metrics,
        thresholds={k: cfg[k] for k in ("fdr", "max_order", "n_bins", "min_slice_size")},
        gates=gates,
        notes=notes,
        details={
            "metric": metric,
            # over every test row, in the findings' unit: the error rate, or the RMSE (not the MSE)
            "overall": found["overall"] if binary or found["overall"] is None else float(np.sqrt(found["overall"])),
            "findings": findings[: int(cfg["max_reported"])],
            "binning": f"numeric features: {cfg['n_bins']} quantile bins",
        },
    )
