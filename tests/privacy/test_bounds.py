"""Empirical epsilon lower bounds: hand-checkable values, library cross-checks, properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from impactflow.audits.privacy_bounds import (
    clopper_pearson,
    clopper_pearson_upper,
    epsilon_lower_bound_from_rates,
    epsilon_lower_bound_from_scores,
    one_run_epsilon_lower_bound,
    one_run_guesses,
    one_run_p_value,
)


@pytest.mark.parametrize("k,n", [(0, 10), (3, 10), (10, 10), (17, 250)])
def test_clopper_pearson_matches_scipy_exact_interval(k, n):
    from scipy.stats import binomtest

    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    assert clopper_pearson(k, n) == pytest.approx((ci.low, ci.high), abs=1e-9)


def test_clopper_pearson_upper_zero_successes_is_one_minus_alpha_root():
    # P[Bin(n, u) = 0] = (1 - u)^n = alpha  ->  u = 1 - alpha^(1/n)
    assert clopper_pearson_upper(0, 100, 0.05) == pytest.approx(1 - 0.05 ** (1 / 100), rel=1e-9)
    assert clopper_pearson_upper(7, 7) == 1.0
    with pytest.raises(ValueError):
        clopper_pearson_upper(5, 3)


def test_jagielski_bound_with_no_errors_by_hand():
    u = 1 - 0.025 ** (1 / 100)  # each rate's upper bound at alpha/2
    assert epsilon_lower_bound_from_rates(0, 100, 0, 100, delta=0.0) == pytest.approx(math.log((1 - u) / u), rel=1e-9)
    d = 1e-5
    assert epsilon_lower_bound_from_rates(0, 100, 0, 100, delta=d) == pytest.approx(math.log((1 - d - u) / u), rel=1e-9)


def test_jagielski_bound_is_zero_for_a_chance_attack():
    assert epsilon_lower_bound_from_rates(50, 100, 50, 100, delta=1e-5) == 0.0


def test_bound_from_scores_separated_vs_identical():
    rng = np.random.default_rng(0)
    strong = epsilon_lower_bound_from_scores(rng.normal(3, 1, 400), rng.normal(0, 1, 400), delta=1e-5)
    assert strong["epsilon_lower_bound"] > 1.0 and strong["n_members"] == 200
    # true epsilon is 0: the bound must exceed 0 in at most ~alpha of the repeats
    positive = sum(
        epsilon_lower_bound_from_scores(rng.normal(size=200), rng.normal(size=200), delta=1e-5, seed=s)[
            "epsilon_lower_bound"
        ]
        > 0
        for s in range(40)
    )
    assert positive <= 6


def test_one_run_all_correct_by_hand():
    # delta = 0: P[Bin(10, q) >= 10] = q^10 < 0.05  <=>  q < 0.05^(1/10); eps = logit(q)
    q = 0.05 ** (1 / 10)
    assert one_run_epsilon_lower_bound(100, 10, 10) == pytest.approx(math.log(q / (1 - q)), abs=1e-5)


def test_one_run_half_correct_is_zero_and_p_value_by_hand():
    assert one_run_epsilon_lower_bound(1000, 100, 50, delta=1e-5) == 0.0
    # p-value at eps = 0, delta = 0, r = v = 2: P[Bin(2, 1/2) >= 2] = 1/4
    assert one_run_p_value(10, 2, 2, 0.0) == pytest.approx(0.25)
    # delta term by hand: r = 2, v = 1, q = 1/2: alpha_v = P[Bin = 0] / 1 = 1/4; beta = 3/4
    assert one_run_p_value(10, 2, 1, 0.0, delta=0.01) == pytest.approx(0.75 + 2 * 10 * 0.01 * 0.25)


def test_one_run_bound_on_randomised_response_stays_below_true_epsilon():
    # An eps-DP mechanism: each canary's guess is right with probability e^eps / (1 + e^eps).
    eps = 1.0
    rng = np.random.default_rng(1)
    r = 2000
    v = int((rng.random(r) < math.exp(eps) / (1 + math.exp(eps))).sum())
    lb = one_run_epsilon_lower_bound(r, r, v)
    assert 0.8 < lb < eps


def test_one_run_guesses_by_hand():
    scores = [0.9, 0.1, 0.5, 0.8, 0.2, 0.3]
    included = [True, False, True, False, False, True]
    # top-2 IN: 0.9 (in, right), 0.8 (out, wrong); bottom-2 OUT: 0.1 (out, right), 0.2 (out, right)
    assert one_run_guesses(scores, included, 2, 2) == {"m": 6, "r": 4, "v": 3}


@settings(max_examples=30, deadline=None)
@given(r=st.integers(1, 200), frac=st.floats(0, 1), delta=st.sampled_from([0.0, 1e-5, 1e-3]))
def test_one_run_bound_properties(r, frac, delta):
    v = int(round(frac * r))
    m = 2 * r
    lb = one_run_epsilon_lower_bound(m, r, v, delta)
    assert lb >= 0
    if v < r:
        assert one_run_epsilon_lower_bound(m, r, v + 1, delta) >= lb - 1e-6  # more right -> larger bound
    if delta > 0:
        assert lb <= one_run_epsilon_lower_bound(m, r, v, 0.0) + 1e-6  # the delta term only weakens it
    if lb > 0:
        assert one_run_p_value(m, r, v, lb, delta) < 0.05 <= one_run_p_value(m, r, v, lb + 1e-4, delta) + 1e-9


def test_opacus_accountants_known_values():
    """REFERENCE.md / Opacus's own tests: sigma=1.5, q=0.04, 2250 steps, delta=1e-5."""
    from opacus.accountants import PRVAccountant, RDPAccountant

    # PRV is a numerical estimate within its eps_error (default 0.01): 6.7791 here
    for cls, expected, tol in ((RDPAccountant, 7.3291, 1e-4), (PRVAccountant, 6.7774, 0.01)):
        acc = cls()
        acc.history = [(1.5, 0.04, 2250)]
        eps = acc.get_epsilon(delta=1e-5)
        assert eps == pytest.approx(expected, abs=tol)
        # the advantage any attack can reach at that epsilon leaves room for an empirical bound < eps
        assert one_run_epsilon_lower_bound(1000, 1000, 1000, delta=1e-5) < eps
