"""Small statistics helpers shared by the audits (stdlib + numpy only)."""

from __future__ import annotations

from collections.abc import Mapping
from statistics import NormalDist

import numpy as np


def wilson_interval(successes, n, level: float = 0.95):
    """Wilson score interval for a binomial proportion (Wilson 1927).

    p̂ = s/n, z = Φ⁻¹(1 − (1 − level)/2),
    centre = (p̂ + z²/2n) / (1 + z²/n),
    half-width = z / (1 + z²/n) · sqrt(p̂(1 − p̂)/n + z²/4n²).

    Vectorised: scalars give a ``(low, high)`` tuple of floats, arrays give a tuple of arrays.
    ``n == 0`` gives ``(nan, nan)``. Example: 8/10 at 95 % → (0.4902, 0.9433).
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    s = np.asarray(successes, dtype=float)
    n_arr = np.asarray(n, dtype=float)
    if np.any(s < 0) or np.any(s > n_arr):
        raise ValueError("successes must be between 0 and n")
    z = NormalDist().inv_cdf(1.0 - (1.0 - level) / 2.0)
    z2 = z * z
    with np.errstate(divide="ignore", invalid="ignore"):
        p = s / n_arr
        denom = 1.0 + z2 / n_arr
        centre = (p + z2 / (2.0 * n_arr)) / denom
        half = (z / denom) * np.sqrt(p * (1.0 - p) / n_arr + z2 / (4.0 * n_arr * n_arr))
        # exact ends (the formula gives 0 / 1 there up to rounding)
        low = np.where(s == 0, 0.0, np.clip(centre - half, 0.0, 1.0))
        high = np.where(s == n_arr, 1.0, np.clip(centre + half, 0.0, 1.0))
        low = np.where(n_arr > 0, low, np.nan)
        high = np.where(n_arr > 0, high, np.nan)
    if low.ndim == 0:
        return float(low), float(high)
    return low, high


def downsample_curve(fpr, tpr, max_points: int = 200, keep_low_fpr: bool = False) -> dict[str, list[float]]:
    """Thin an ROC curve to at most ``max_points`` points, keeping both ends.

    With ``keep_low_fpr`` half the budget goes to a log-spaced FPR grid (1e-5 … 1) so the
    low-FPR region that membership-inference reporting needs (Carlini et al. 2022) survives.
    """
    fpr = np.asarray(fpr, dtype=float)
    tpr = np.asarray(tpr, dtype=float)
    m = fpr.shape[0]
    if m <= max_points:
        return {"fpr": fpr.tolist(), "tpr": tpr.tolist()}
    budget = max_points - 2  # first and last are always kept
    if keep_low_fpr:
        n_log = budget // 2
        grid = np.geomspace(1e-5, 1.0, n_log)
        # last index whose fpr <= target: the top of each vertical step (the ROC corner)
        log_idx = np.clip(np.searchsorted(fpr, grid, side="right") - 1, 0, m - 1)
        uni_idx = np.linspace(0, m - 1, budget - n_log).round().astype(int)
        idx = np.concatenate([[0, m - 1], log_idx, uni_idx])
    else:
        idx = np.concatenate([[0, m - 1], np.linspace(0, m - 1, budget).round().astype(int)])
    idx = np.unique(idx)[:max_points]
    if idx[-1] != m - 1:
        idx[-1] = m - 1
    return {"fpr": fpr[idx].tolist(), "tpr": tpr[idx].tolist()}


def compare_gate(name: str, value: float | None, threshold: float, comparison: str, note: str = ""):
    """A :class:`~audits.results.Gate`: PASS/FAIL from ``value <= / >= threshold``;
    NOT_MEASURED when the value is missing or not finite."""
    import math

    from .results import Gate, Status

    if comparison not in ("<=", ">="):
        raise ValueError(f"comparison must be '<=' or '>=', got {comparison!r}")
    if value is None or not math.isfinite(value):
        return Gate(name, Status.NOT_MEASURED, None, float(threshold), comparison, note or "value undefined (nan)")
    ok = value <= threshold if comparison == "<=" else value >= threshold
    return Gate(name, Status.PASS if ok else Status.FAIL, float(value), float(threshold), comparison, note)


def threshold_gates(thresholds: dict, spec: dict[str, tuple[str, str]], metrics: Mapping[str, float | None]):
    """Gates for the configured thresholds: ``spec`` maps a threshold key to (metric name,
    comparison); keys left unset (None/absent) make no gate. Returns (gates, thresholds used)."""
    gates, used = [], {}
    for key, (metric, comparison) in spec.items():
        if thresholds.get(key) is None:
            continue
        used[key] = float(thresholds[key])
        gates.append(compare_gate(metric, metrics[metric], used[key], comparison))
    return gates, used
