import math

import numpy as np
import pytest

from impactflow.audits.stats import compare_gate, downsample_curve, wilson_interval
from impactflow.audits.results import Status


def test_wilson_known_value_8_of_10():
    # p=0.8, z=1.959964, z²=3.841459, n=10: centre=(0.8+0.192073)/1.384146=0.716741,
    # half=(1.959964/1.384146)*sqrt(0.016+0.009604)=1.416009*0.160011=0.226577
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-4)
    assert high == pytest.approx(0.9433, abs=1e-4)


def test_wilson_zero_successes_upper_bound():
    # p=0: low=0, high = z²/(n+z²) = 3.841459/13.841459 = 0.277533
    low, high = wilson_interval(0, 10)
    assert low == 0.0
    assert high == pytest.approx(0.277533, abs=1e-5)


def test_wilson_n_zero_is_nan_and_vectorised():
    low, high = wilson_interval(np.array([8, 0, 5]), np.array([10, 0, 10]))
    assert low[0] == pytest.approx(0.4902, abs=1e-4)
    assert math.isnan(low[1]) and math.isnan(high[1])
    # 5/10 is symmetric around 0.5
    assert low[2] + high[2] == pytest.approx(1.0)
    assert all(math.isnan(v) for v in wilson_interval(0, 0))


def test_wilson_wider_at_higher_level():
    lo95, hi95 = wilson_interval(8, 10, 0.95)
    lo99, hi99 = wilson_interval(8, 10, 0.99)
    assert lo99 < lo95 and hi99 > hi95


def test_compare_gate():
    assert compare_gate("m", 0.1, 0.2, "<=").status is Status.PASS
    assert compare_gate("m", 0.3, 0.2, "<=").status is Status.FAIL
    assert compare_gate("m", 0.3, 0.2, ">=").status is Status.PASS
    assert compare_gate("m", float("nan"), 0.2, ">=").status is Status.NOT_MEASURED


def test_downsample_keeps_ends_and_low_fpr():
    fpr = np.linspace(0, 1, 10_001)
    tpr = np.sqrt(fpr)
    for keep in (False, True):
        out = downsample_curve(fpr, tpr, 200, keep_low_fpr=keep)
        assert len(out["fpr"]) <= 200
        assert out["fpr"][0] == 0.0 and out["fpr"][-1] == 1.0
    low = downsample_curve(fpr, tpr, 200, keep_low_fpr=True)
    uni = downsample_curve(fpr, tpr, 200, keep_low_fpr=False)
    n_low = sum(f <= 0.01 for f in low["fpr"])
    assert n_low > sum(f <= 0.01 for f in uni["fpr"])
    assert n_low >= 10
