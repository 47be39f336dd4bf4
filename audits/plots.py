"""Small report figures as PNG bytes (matplotlib, Agg backend, imported lazily).

Each function takes plain report data (lists/dicts from the JSON document), draws one small
figure, closes it and returns the PNG bytes. Text from the data (group names, titles) has its
``$`` escaped, so it is shown as typed rather than parsed as mathtext.
"""

from __future__ import annotations

import io
import math
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

DPI = 90
_RC = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "savefig.bbox": "tight",
}
BAR_COLOR = "#4c72b0"
SMALL_COLOR = "#b0b0b0"
BAND_COLOR = "#f4c7c3"


@contextmanager
def _figure(width: float = 5.0, height: float = 3.4) -> Iterator[tuple[Any, Any]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with matplotlib.rc_context(_RC):  # type: ignore[arg-type]  # (its stubs take only Literal rc names)
        fig, ax = plt.subplots(figsize=(width, height), dpi=DPI)
        try:
            yield fig, ax
        finally:
            plt.close(fig)


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def warm_up() -> None:
    """Draw one log-log ROC figure and one bar chart: fills matplotlib's font, glyph and mathtext
    caches, so a process forked after this (the warm runner's runs) does not pay them again."""
    roc_png([1e-3, 0.1, 1.0], [2e-3, 0.2, 1.0], "warm-up", loglog=True, epsilon=1.0, delta=1e-5)
    bar_chart_png(["a", "b"], [0.5, 0.25], "warm-up", "x")


def _t(text: Any) -> str:
    """Data text for a label: ``$`` would start mathtext (and can make drawing fail)."""
    return str(text).replace("$", r"\$")


def _num(x: Any) -> float:
    """``None``/non-numbers -> NaN so gaps are skipped rather than crashing the plot."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return math.nan
    return v


def four_fifths_band(rows: Sequence[dict]) -> float | None:
    """Top of the four-fifths band of a selection-rate plot: 0.8 × the highest selection rate of
    the groups large enough to judge (``too_small`` false); None when no judged group has one."""
    judged = [_num(r.get("selection_rate")) for r in rows if not r.get("too_small")]
    judged = [v for v in judged if not math.isnan(v)]
    top = max(judged, default=0.0)
    return 0.8 * top if top > 0 else None


def group_bars_png(rows: Sequence[dict], attribute: str) -> bytes:
    """Selection rate per group of ``attribute`` with its CI, and the four-fifths band.

    The selection rate is the favourable decision's rate (``impactflow.audits.fairness``). The band shades
    [0, 0.8 × the highest judged group's rate): a group whose bar ends inside it is selected at less
    than four-fifths the rate of the most-selected group. Groups flagged ``too_small`` are drawn
    grey and hatched, and neither set the band (as in the four-fifths gate) nor are held to it;
    with no judged group there is no band.
    """
    rows = [r for r in rows if str(r.get("attribute")) == str(attribute)]
    with _figure(width=max(4.0, min(9.0, 1.2 + 0.8 * len(rows)))) as (fig, ax):
        if not rows:
            ax.text(0.5, 0.5, "no groups", ha="center", va="center", transform=ax.transAxes)
            ax.set_axis_off()
            return _png(fig)
        labels = [str(r.get("group")) for r in rows]
        rates = [_num(r.get("selection_rate")) for r in rows]
        lows = [_num(r.get("selection_rate_ci_low")) for r in rows]
        highs = [_num(r.get("selection_rate_ci_high")) for r in rows]
        small = [bool(r.get("too_small")) for r in rows]
        x = list(range(len(rows)))
        heights = [0.0 if math.isnan(v) else v for v in rates]
        bars = ax.bar(
            x,
            heights,
            color=[SMALL_COLOR if s else BAR_COLOR for s in small],
            width=0.6,
            zorder=2,
        )
        for bar, s in zip(bars, small):
            if s:
                bar.set_hatch("//")
        err_lo = [v - lo if not (math.isnan(v) or math.isnan(lo)) else 0.0 for v, lo in zip(rates, lows)]
        err_hi = [hi - v if not (math.isnan(v) or math.isnan(hi)) else 0.0 for v, hi in zip(rates, highs)]
        ax.errorbar(x, heights, yerr=[err_lo, err_hi], fmt="none", ecolor="black", capsize=4, zorder=3)
        finite = [v for v in rates if not math.isnan(v)]
        # the band follows the highest JUDGED group, as the four-fifths gate does: a group too small
        # to judge (hatched) neither sets nor is held to it
        band = four_fifths_band(rows)
        top = band / 0.8 if band else 0.0
        if band:
            ax.axhspan(0, band, color=BAND_COLOR, alpha=0.5, zorder=1, label="below 0.8 × highest judged (four-fifths)")
            ax.axhline(band, color="#c0392b", linestyle="--", linewidth=1, zorder=1)
            ax.legend(loc="upper right", fontsize=7, frameon=False)
        finite_hi = [h for h in highs if not math.isnan(h)]
        ax.set_ylim(0, min(1.0, max([top, *finite, *finite_hi, 0.05]) * 1.25) or 1.0)
        ax.set_xticks(x)
        ax.set_xticklabels(
            [_t(lab if len(lab) <= 18 else lab[:17] + "…") for lab in labels],
            rotation=30 if len(rows) > 3 else 0,
            ha="right" if len(rows) > 3 else "center",
        )
        ax.set_ylabel("selection rate (95% CI)")
        ax.set_title(_t(f"Selection rate by {attribute}"))
        return _png(fig)


def roc_png(
    fpr: Sequence[float],
    tpr: Sequence[float],
    title: str,
    loglog: bool = False,
    *,
    epsilon: float | None = None,
    delta: float | None = None,
) -> bytes:
    """ROC curve; ``loglog`` for membership inference (the low-FPR region is what matters).

    With ``epsilon`` (and ``delta``) the (ε, δ)-DP upper bound on any attack's TPR at each FPR,
    TPR ≤ min(e^ε·FPR + δ, 1 − e^−ε·(1 − δ − FPR)), is drawn for comparison.
    On log axes, points with FPR or TPR of 0 cannot be shown and are dropped.
    """
    pts = [(_num(f), _num(t)) for f, t in zip(fpr, tpr)]
    pts = [(f, t) for f, t in pts if not (math.isnan(f) or math.isnan(t))]
    if loglog:
        pts = [(f, t) for f, t in pts if f > 0 and t > 0]
    with _figure(width=4.2, height=3.6) as (fig, ax):
        lo = min((f for f, _ in pts), default=1e-5) if loglog else 0.0
        lo = max(min(lo, 1e-2), 1e-6) if loglog else 0.0
        if loglog:
            grid = [lo * (1.0 / lo) ** (i / 200) for i in range(201)]
        else:
            grid = [i / 200 for i in range(201)]
        ax.plot(grid, grid, linestyle=":", color="grey", linewidth=1, label="chance")
        if pts:
            ax.plot([f for f, _ in pts], [t for _, t in pts], color=BAR_COLOR, linewidth=1.6, label="observed")
        if epsilon is not None and math.isfinite(_num(epsilon)):
            eps = _num(epsilon)
            d = _num(delta) if delta is not None and math.isfinite(_num(delta)) else 0.0
            bound = [min(1.0, math.exp(eps) * f + d, 1.0 - math.exp(-eps) * (1.0 - d - f)) for f in grid]
            ax.plot(grid, bound, color="#c0392b", linestyle="--", linewidth=1.2, label=f"DP bound (ε={eps:.3g})")
        if loglog:
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlim(lo, 1.0)
            ax.set_ylim(lo, 1.05)
        else:
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 1.01)
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.set_title(_t(title))
        ax.legend(loc="lower right", fontsize=7, frameon=False)
        return _png(fig)


def calibration_png(bins: Sequence[dict]) -> bytes:
    """Reliability diagram: observed positive rate vs mean score per bin, sized by count."""
    pts = [(_num(b.get("mean_score")), _num(b.get("positive_rate")), _num(b.get("count"))) for b in bins]
    pts = [(s, r, c) for s, r, c in pts if not (math.isnan(s) or math.isnan(r)) and not (c <= 0)]
    with _figure(width=4.2, height=3.6) as (fig, ax):
        ax.plot([0, 1], [0, 1], linestyle=":", color="grey", linewidth=1, label="perfectly calibrated")
        if pts:
            cmax = max((c for _, _, c in pts if not math.isnan(c)), default=1.0) or 1.0
            sizes = [12 + 80 * ((c if not math.isnan(c) else 0.0) / cmax) for _, _, c in pts]
            ax.plot([s for s, _, _ in pts], [r for _, r, _ in pts], color=BAR_COLOR, linewidth=1.2)
            ax.scatter(
                [s for s, _, _ in pts],
                [r for _, r, _ in pts],
                s=sizes,
                color=BAR_COLOR,
                zorder=3,
                label="bins (size ∝ count)",
            )
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.01)
        ax.set_xlabel("mean predicted score")
        ax.set_ylabel("observed positive rate")
        ax.set_title("Calibration")
        ax.legend(loc="upper left", fontsize=7, frameon=False)
        return _png(fig)


def confusion_png(matrix: Sequence[Sequence[float]]) -> bytes:
    """2×2 (or k×k) confusion matrix ``[[tn, fp], [fn, tp]]``: rows actual, columns predicted."""
    m = [[_num(v) for v in row] for row in matrix]
    k = len(m)
    with _figure(width=3.2, height=2.9) as (fig, ax):
        vals = [v for row in m for v in row if not math.isnan(v)]
        vmax = max(vals, default=1.0) or 1.0
        ax.imshow([[0.0 if math.isnan(v) else v for v in row] for row in m], cmap="Blues", vmin=0, vmax=vmax)
        for i, row in enumerate(m):
            for j, v in enumerate(row):
                text = "—" if math.isnan(v) else f"{int(v):,}" if float(v).is_integer() else f"{v:.4g}"
                ax.text(j, i, text, ha="center", va="center", color="white" if v > vmax / 2 else "black")
        ticks = list(range(k))
        names = ["0", "1"] if k == 2 else [str(i) for i in ticks]
        ax.set_xticks(ticks)
        ax.set_yticks(ticks)
        ax.set_xticklabels(names)
        ax.set_yticklabels(names)
        ax.set_xlabel("predicted")
        ax.set_ylabel("actual")
        ax.set_title("Confusion matrix (test)")
        for side in ("top", "right"):
            ax.spines[side].set_visible(True)
        return _png(fig)


def _no_values(fig, ax) -> bytes:
    ax.text(0.5, 0.5, "no values", ha="center", va="center", transform=ax.transAxes)
    ax.set_axis_off()
    return _png(fig)


def interval_bars_png(
    labels: Sequence[Any],
    values: Sequence[Any],
    lows: Sequence[Any],
    highs: Sequence[Any],
    title: str,
    xlabel: str = "",
    reference: Any = None,
    reference_label: str = "",
) -> bytes:
    """Horizontal bars with their intervals as whiskers (e.g. each slice's error rate and its 95 %
    interval) and, when given, a dashed reference line (e.g. the rest of the rows' error rate)."""
    labels = [_t(x) for x in labels]
    vals, lo, hi = ([_num(v) for v in seq] for seq in (values, lows, highs))
    with _figure(width=6.0, height=max(2.0, min(12.0, 0.8 + 0.3 * len(labels)))) as (fig, ax):
        if not labels:
            return _no_values(fig, ax)
        y = list(range(len(labels)))
        width = [0.0 if math.isnan(v) else v for v in vals]
        err = [
            [0.0 if math.isnan(v - a) else max(v - a, 0.0) for v, a in zip(width, lo)],
            [0.0 if math.isnan(b - v) else max(b - v, 0.0) for v, b in zip(width, hi)],
        ]
        ax.barh(y, width, xerr=err, color=BAR_COLOR, ecolor="#333333", capsize=3)
        if reference is not None and not math.isnan(_num(reference)):
            ax.axvline(_num(reference), color="#c44e52", linestyle="--", linewidth=1.0, label=_t(reference_label))
            if reference_label:
                ax.legend(loc="lower right", fontsize=7, frameon=False)
        ax.set_yticks(y)
        ax.set_yticklabels([x if len(x) <= 60 else x[:57] + "..." for x in labels], fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel(_t(xlabel))
        ax.set_title(_t(title))
        return _png(fig)


def bar_chart_png(labels: Sequence[Any], values: Sequence[Any], title: str, xlabel: str = "") -> bytes:
    """Horizontal bars, one per label (e.g. a metric per identity term); missing values are
    left blank (no bar), so an undefined value is never drawn as 0."""
    labels = [_t(x) for x in labels]
    vals = [_num(v) for v in values]
    with _figure(width=5.5, height=max(2.0, min(12.0, 0.6 + 0.19 * len(labels)))) as (fig, ax):
        if not labels:
            return _no_values(fig, ax)
        y = list(range(len(labels)))
        ax.barh(
            y,
            [0.0 if math.isnan(v) else v for v in vals],
            color=[BAR_COLOR if not math.isnan(v) else SMALL_COLOR for v in vals],
        )
        ax.set_yticks(y)
        ax.set_yticklabels(labels, fontsize=7)
        ax.invert_yaxis()
        ax.axvline(0.0, color="#333333", linewidth=0.6)
        ax.set_xlabel(_t(xlabel))
        ax.set_title(_t(title))
        return _png(fig)


def line_plot_png(
    series: Sequence[dict], title: str, x_label: str = "", y_label: str = "", diagonal: bool = False
) -> bytes:
    """One line per series ``{label, x, y}`` (e.g. Lorenz curves); ``diagonal`` adds the
    y = x reference line (perfect equality for a Lorenz curve)."""
    with _figure(width=5.0, height=3.6) as (fig, ax):
        if diagonal:
            ax.plot([0, 1], [0, 1], color=SMALL_COLOR, linestyle="--", linewidth=0.8, label="equality")
        for s in series:
            xs, ys = [_num(v) for v in s.get("x") or []], [_num(v) for v in s.get("y") or []]
            if xs and len(xs) == len(ys):
                ax.plot(xs, ys, linewidth=1.4, label=_t(s.get("label", "")))
        ax.set_xlabel(_t(x_label))
        ax.set_ylabel(_t(y_label))
        ax.set_title(_t(title))
        ax.legend(fontsize=7, frameon=False)
        return _png(fig)
