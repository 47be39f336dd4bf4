"""Empirical lower bounds on the ε of a training algorithm, from membership guesses.

Pure functions over counts and scores (numpy + scipy only). Two bounds:

- ``epsilon_lower_bound_from_rates``: from an attack's false-positive and false-negative
  counts, with Clopper–Pearson upper bounds on both rates (Jagielski, Ullman, Oprea 2020,
  "Auditing Differentially Private Machine Learning: How Private is Private SGD?", NeurIPS).
  ``epsilon_lower_bound_from_scores`` picks the attack's threshold on one half of the audit
  set and computes the bound on the other half, so the threshold choice cannot inflate it.
- ``one_run_epsilon_lower_bound``: the one-training-run audit of Steinke, Nasr, Jagielski
  2023 ("Privacy Auditing with One (1) Training Run", NeurIPS), including its δ > 0 term.

What each bound assumes (at confidence 1 − α: if the training algorithm really is (ε, δ)-DP,
the bound exceeds ε with probability at most α):

- the one-run bound holds from a single training run because each canary is included by an
  independent fair coin flip (Steinke et al. 2023, Theorem 3.1). A one-run bound above the
  accountant's ε therefore means a bug in training/accounting (or a broken privacy claim), up
  to that α; it is the bound the audits gate on.
- the Clopper–Pearson bound treats every scored example as an independent trial of the
  mechanism: it holds for repeated trainings on neighbouring datasets (Jagielski et al. 2020),
  or for examples that are i.i.d. members/non-members with membership independent of
  everything else the attack uses. Applied to one model trained on fixed training rows and
  compared with fixed held-out rows (the LiRA and loss attacks here), those assumptions do not
  hold, and the figure is a heuristic estimate of leakage, not a certified bound
  (``impactflow.audits.lira`` labels it so and never gates on it).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

DEFAULT_ALPHA = 0.05


def clopper_pearson(k: int, n: int, alpha: float = DEFAULT_ALPHA) -> tuple[float, float]:
    """Two-sided exact (Clopper & Pearson 1934) 1 − α interval for a binomial proportion k/n:
    (Beta(α/2; k, n−k+1), Beta(1−α/2; k+1, n−k)), with 0 and 1 at the ends."""
    from scipy.stats import beta

    _check_counts(k, n)
    lo = 0.0 if k == 0 else float(beta.ppf(alpha / 2, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(1 - alpha / 2, k + 1, n - k))
    return lo, hi


def clopper_pearson_upper(k: int, n: int, alpha: float = DEFAULT_ALPHA) -> float:
    """One-sided exact upper 1 − α confidence bound on a binomial proportion: Beta(1−α; k+1, n−k)
    (1 when k = n; 1 when n = 0, nothing is known)."""
    from scipy.stats import beta

    _check_counts(k, n)
    if k >= n:
        return 1.0
    return float(beta.ppf(1 - alpha, k + 1, n - k))


def _check_counts(k: int, n: int) -> None:
    if n < 0 or k < 0 or k > n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")


def _eps_from_rates(fpr: float, fnr: float, delta: float) -> float:
    """ε implied by (FPR, FNR) under (ε, δ)-DP: max(ln((1−δ−FPR)/FNR), ln((1−δ−FNR)/FPR)),
    clipped at 0 (Kairouz et al. 2015 hypothesis-testing region; Jagielski et al. 2020)."""
    best = 0.0
    for a, b in ((fpr, fnr), (fnr, fpr)):
        num = 1.0 - delta - a
        if num <= 0:
            continue
        best = max(best, math.inf if b <= 0 else math.log(num / b))
    return best


def epsilon_lower_bound_from_rates(
    false_positives: int,
    n_nonmembers: int,
    false_negatives: int,
    n_members: int,
    delta: float,
    alpha: float = DEFAULT_ALPHA,
) -> float:
    """Jagielski et al. 2020: ε_LB = max(ln((1−δ−FPR̄)/FNR̄), ln((1−δ−FNR̄)/FPR̄)), clipped at 0,
    where FPR̄ and FNR̄ are one-sided Clopper–Pearson upper bounds each at level α/2 (so both
    hold together with probability >= 1 − α, Bonferroni), for one threshold fixed in advance."""
    fpr_hi = clopper_pearson_upper(false_positives, n_nonmembers, alpha / 2)
    fnr_hi = clopper_pearson_upper(false_negatives, n_members, alpha / 2)
    return _eps_from_rates(fpr_hi, fnr_hi, delta)


def _counts_at(member: np.ndarray, nonmember: np.ndarray, t: float) -> tuple[int, int]:
    """(false positives, false negatives) of the rule "member iff score >= t"."""
    return int((nonmember >= t).sum()), int((member < t).sum())


def epsilon_lower_bound_from_scores(
    member_scores, nonmember_scores, delta: float, alpha: float = DEFAULT_ALPHA, seed: int = 0
) -> dict[str, Any]:
    """Honest threshold choice for ``epsilon_lower_bound_from_rates`` (higher score = member).

    Members and non-members are each split at random (``seed``) into a selection half and an
    evaluation half. On the selection half, every distinct score is tried as threshold and the
    one with the largest Clopper–Pearson ε_LB is kept; the bound reported is the one of that
    threshold on the evaluation half only, so it stays a 1 − α lower bound despite the search.
    Returns ``epsilon_lower_bound``, the ``threshold``, the evaluation counts and ``method``.
    """
    mem = np.asarray(member_scores, dtype=float).reshape(-1)
    non = np.asarray(nonmember_scores, dtype=float).reshape(-1)
    mem, non = mem[~np.isnan(mem)], non[~np.isnan(non)]
    out: dict[str, Any] = {
        "method": "Clopper-Pearson, threshold chosen on a random half, "
        "bound computed on the other half (Jagielski et al. 2020)",
        "alpha": alpha,
        "delta": delta,
    }
    if mem.size < 2 or non.size < 2:
        return {
            **out,
            "epsilon_lower_bound": 0.0,
            "threshold": None,
            "n_members": int(mem.size),
            "n_nonmembers": int(non.size),
        }
    rng = np.random.default_rng(seed)
    pm, pn = rng.permutation(mem.size), rng.permutation(non.size)
    sel_m, ev_m = mem[pm[: mem.size // 2]], mem[pm[mem.size // 2 :]]
    sel_n, ev_n = non[pn[: non.size // 2]], non[pn[non.size // 2 :]]
    best_t, best = None, -1.0
    for t in np.unique(np.concatenate([sel_m, sel_n])):
        fp, fn = _counts_at(sel_m, sel_n, t)
        eps = epsilon_lower_bound_from_rates(fp, sel_n.size, fn, sel_m.size, delta, alpha)
        if eps > best:
            best, best_t = eps, float(t)
    assert best_t is not None  # both halves are non-empty (checked above): the loop ran
    fp, fn = _counts_at(ev_m, ev_n, best_t)
    eps = epsilon_lower_bound_from_rates(fp, ev_n.size, fn, ev_m.size, delta, alpha)
    return {
        **out,
        "epsilon_lower_bound": eps,
        "threshold": best_t,
        "false_positives": fp,
        "false_negatives": fn,
        "n_members": int(ev_m.size),
        "n_nonmembers": int(ev_n.size),
    }


def one_run_p_value(m: int, r: int, v: int, epsilon: float, delta: float = 0.0) -> float:
    """Steinke, Nasr, Jagielski 2023 (Theorem 3.1 / Proposition 5.2, the p-value of their
    Algorithm 1): the probability that an (ε, δ)-DP algorithm lets an auditor who guesses
    ``r`` of ``m`` canaries (each included independently with probability ½) get at least
    ``v`` right:

        β + 2·m·δ·α_v,  β = P[Bin(r, q) >= v],  q = e^ε / (1 + e^ε),
        α_v = max_{1<=i<=v} P[v − i <= Bin(r, q) < v] / i.

    With δ = 0 it is the binomial tail: (ε, 0)-DP makes each guess no better than
    randomised response with accuracy q."""
    from scipy.stats import binom

    if not 0 <= v <= r <= m:
        raise ValueError(f"need 0 <= v <= r <= m, got m={m}, r={r}, v={v}")
    if epsilon < 0 or not 0 <= delta <= 1:
        raise ValueError(f"need epsilon >= 0 and 0 <= delta <= 1, got {epsilon}, {delta}")
    q = 1.0 / (1.0 + math.exp(-epsilon))
    beta_tail = float(binom.sf(v - 1, r, q))
    if delta == 0 or v == 0:
        return min(1.0, beta_tail)
    pmf = binom.pmf(np.arange(v - 1, -1, -1), r, q)  # P[Bin = v−1], P[Bin = v−2], ..., P[Bin = 0]
    alpha_v = float(np.max(np.cumsum(pmf) / np.arange(1, v + 1)))
    return min(1.0, beta_tail + 2.0 * m * delta * alpha_v)


def one_run_epsilon_lower_bound(
    m: int, r: int, v: int, delta: float = 0.0, alpha: float = DEFAULT_ALPHA, tol: float = 1e-6
) -> float:
    """ε_LB = sup{ε : p-value(m, r, v, ε, δ) < α} (Steinke et al. 2023), by bisection; the
    p-value grows with ε, so the set is an interval [0, ε_LB). 0 when even ε = 0 cannot be
    rejected (e.g. half the guesses right)."""
    if one_run_p_value(m, r, v, 0.0, delta) >= alpha:
        return 0.0
    lo, hi = 0.0, 1.0
    while one_run_p_value(m, r, v, hi, delta) < alpha:
        lo, hi = hi, 2 * hi
        if hi > 1e4:
            return math.inf
    while hi - lo > tol:
        mid = (lo + hi) / 2
        if one_run_p_value(m, r, v, mid, delta) < alpha:
            lo = mid
        else:
            hi = mid
    return lo


def one_run_guesses(scores, included, k_pos: int, k_neg: int) -> dict[str, int]:
    """The one-run auditor's guesses: the ``k_pos`` highest-scoring canaries are guessed IN,
    the ``k_neg`` lowest OUT, the rest abstain (k± fixed before seeing the scores). Returns
    m, r = k_pos + k_neg and v = correct guesses."""
    s = np.asarray(scores, dtype=float).reshape(-1)
    inc = np.asarray(included, dtype=bool).reshape(-1)
    if s.shape != inc.shape:
        raise ValueError("scores and included differ in length")
    if k_pos < 0 or k_neg < 0 or k_pos + k_neg > s.size:
        raise ValueError(f"need k_pos + k_neg <= m, got {k_pos} + {k_neg} > {s.size}")
    order = np.argsort(-np.nan_to_num(s, nan=-np.inf), kind="stable")
    guess_in, guess_out = order[:k_pos], order[s.size - k_neg :] if k_neg else order[:0]
    v = int(inc[guess_in].sum() + (~inc[guess_out]).sum())
    return {"m": int(s.size), "r": int(k_pos + k_neg), "v": v}
