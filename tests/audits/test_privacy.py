import math

import numpy as np
import pandas as pd
import pytest

from impactflow.audits.inputs import AuditInputs
from impactflow.audits.privacy import dp_advantage_bound, loss_threshold_mia, privacy_audit
from impactflow.audits.results import Status


def test_perfectly_separated_losses():
    # members all have lower loss than every non-member -> a threshold separates them
    out = loss_threshold_mia([0.1, 0.2, 0.3], [1.0, 2.0, 3.0])
    assert out["auc"] == 1.0
    assert out["advantage"] == 1.0
    assert out["tpr_at_1pct_fpr"] == 1.0
    assert out["tpr_at_0.1pct_fpr"] == 1.0
    assert out["balanced"] is False and out["n_members"] == 3


def test_hand_computed_roc():
    # scores (-loss), descending: 0 (m), -.5 (m), -1 (n), -2 (n), -2.5 (m), -3 (n)
    # ROC: (0,1/3) (0,2/3) (1/3,2/3) (2/3,2/3) (2/3,1) (1,1)
    # AUC: member-beats-nonmember pairs 3 + 3 + 1 = 7 of 9; advantage = 2/3 at (0, 2/3)
    out = loss_threshold_mia([0.0, 0.5, 2.5], [1.0, 2.0, 3.0])
    assert out["auc"] == pytest.approx(7 / 9)
    assert out["advantage"] == pytest.approx(2 / 3)
    assert out["tpr_at_1pct_fpr"] == pytest.approx(2 / 3)


def test_reversed_losses_auc_zero():
    out = loss_threshold_mia([5.0, 6.0], [1.0, 2.0])
    assert out["auc"] == 0.0
    assert out["advantage"] == 0.0  # the (0,0) point: no threshold helps


def test_identical_distributions_near_half():
    rng = np.random.default_rng(0)
    out = loss_threshold_mia(rng.exponential(1.0, 5000), rng.exponential(1.0, 5000))
    assert out["auc"] == pytest.approx(0.5, abs=0.03)
    assert out["advantage"] < 0.05
    assert len(out["roc"]["fpr"]) <= 200
    assert out["roc"]["fpr"][0] == 0.0 and out["roc"]["fpr"][-1] == 1.0
    assert sum(f <= 0.01 for f in out["roc"]["fpr"]) >= 10  # low-FPR end kept


def test_balancing_is_seeded():
    rng = np.random.default_rng(1)
    mem, non = rng.normal(0, 1, 50), rng.normal(0.5, 1, 200)
    a = loss_threshold_mia(mem, non, seed=0)
    b = loss_threshold_mia(mem, non, seed=0)
    c = loss_threshold_mia(mem, non, seed=7)
    assert a["balanced"] is True
    assert a["n_members"] == a["n_nonmembers"] == 50
    assert a["n_nonmembers_total"] == 200
    assert a["auc"] == b["auc"]
    assert a["auc"] != c["auc"]


def test_dp_advantage_bound():
    # (e - 1)/(e + 1) = 1.718282/3.718282 = 0.462117
    assert dp_advantage_bound(1.0, 0.0) == pytest.approx(0.4621, abs=1e-4)
    assert dp_advantage_bound(0.0, 0.0) == 0.0
    # eps=0: 2*delta/2 = delta
    assert dp_advantage_bound(0.0, 0.01) == pytest.approx(0.01)
    assert dp_advantage_bound(float("inf"), 0.0) == 1.0


def _inputs(**kw):
    return AuditInputs(
        y_true=np.array([0, 1]), y_score=np.array([0.2, 0.8]), sensitive=pd.DataFrame(index=range(2)), **kw
    )


def test_privacy_audit_not_measured_without_losses():
    res = privacy_audit(_inputs(), {})
    assert res.status is Status.NOT_MEASURED
    assert "privacy/mia_auc" not in res.metrics


def test_privacy_audit_dp_bound_violation_fails():
    res = privacy_audit(
        _inputs(member_loss=[0.1, 0.2, 0.3], nonmember_loss=[1.0, 2.0, 3.0], epsilon=1.0, delta=0.0), {}
    )
    m = res.metrics
    assert m["privacy/mia_auc"] == 1.0 and m["privacy/mia_advantage"] == 1.0
    assert m["privacy/epsilon"] == 1.0
    assert m["privacy/mia_advantage_bound"] == pytest.approx(0.4621, abs=1e-4)
    gates = {g.name: g for g in res.gates}
    assert gates["privacy/mia_auc"].status is Status.FAIL  # 1.0 > default 0.6
    assert gates["privacy/mia_advantage"].status is Status.FAIL
    assert res.status is Status.FAIL
    assert any("bug" in n for n in res.notes)
    assert res.details["attack"] == "loss-threshold (Yeom et al. 2018)"
    assert any("weak diagnostic" in n for n in res.notes)


def test_privacy_audit_passes_on_indistinguishable_losses():
    rng = np.random.default_rng(3)
    res = privacy_audit(
        _inputs(member_loss=rng.exponential(1, 3000), nonmember_loss=rng.exponential(1, 3000), epsilon=8.0, delta=1e-5),
        {"max_mia_auc": 0.55},
    )
    assert res.status is Status.PASS
    assert [g.status for g in res.gates] == [Status.PASS, Status.PASS]
    assert res.thresholds == {"max_mia_auc": 0.55}
    assert not math.isnan(res.metrics["privacy/mia_tpr_at_0.1pct_fpr"])
    assert "privacy/mia_advantage_bound" in res.metrics
