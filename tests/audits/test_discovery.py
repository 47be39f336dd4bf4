"""The discovery audits (issue 23) as the pipeline runs them: registered beside the family's own
audits, gating nothing unless asked, and failing closed when asked but not measurable."""

from __future__ import annotations

import numpy as np
import pandas as pd

from impactflow.audits import AUDITS, REPORT_AUDITS, AuditInputs, Status, run_audits

DISCOVERY = ("slices", "proxies", "attributions")


def _inputs(with_frames: bool = True) -> AuditInputs:
    """400 rows: errors only where age < 25 and hours >= 50 (80 rows), sex carried by relationship."""
    rng = np.random.default_rng(0)
    n = 400
    age = np.where(np.arange(n) < 80, 20, rng.integers(30, 60, n))
    hours = np.where(np.arange(n) < 80, 60, rng.integers(20, 45, n))
    sex = rng.choice(["F", "M"], n)
    relationship = np.where(sex == "F", "Wife", "Husband")
    y = rng.integers(0, 2, n)
    wrong = np.arange(n) < 80
    score = np.where(wrong, 1.0 - y, y).astype(float) * 0.8 + 0.1
    frame = pd.DataFrame({"age": age, "hours": hours, "relationship": relationship})
    extra = (
        {
            "slice_frame": frame.assign(sex=sex),
            "proxy_frame": frame,
            "sensitive_excluded": True,
            "attribution": {"frame": frame, "predict": lambda df: (df["age"].to_numpy() < 25) * 0.8 + 0.1},
        }
        if with_frames
        else {}
    )
    return AuditInputs(y, score, pd.DataFrame({"sex": sex}), extra=extra)


def test_every_family_runs_the_discovery_audits_and_they_gate_nothing_by_default():
    assert set(DISCOVERY) <= set(AUDITS) and set(DISCOVERY) <= set(REPORT_AUDITS)
    out = run_audits(_inputs(), {}, names=list(DISCOVERY))
    assert all(out[a].gates == [] for a in DISCOVERY)
    findings = out["slices"].details["findings"]
    # the planted rows (the predicates cut at quantiles: "age < 31" holds them and a few others)
    assert 80 <= findings[0]["size"] <= 90 and findings[0]["metric"] >= 80 / 90
    assert "age <" in findings[0]["slice"] or "hours >=" in findings[0]["slice"]
    assert out["proxies"].metrics["proxies/sex/proxy_auc"] > 0.99
    assert out["proxies"].details["statements"][0].startswith("sex is left out of the model's features, but")
    assert out["attributions"].details["overall"]["age"] > 0 and out["attributions"].details["overall"]["hours"] == 0


def test_a_configured_discovery_gate_decides_and_one_that_cannot_be_measured_fails_closed():
    gates = {"slices": {"max_significant_slices": 0}, "proxies": {"max_proxy_auc": 0.9}}
    out = run_audits(_inputs(), gates, names=list(DISCOVERY))
    assert out["slices"].status is Status.FAIL and out["proxies"].status is Status.FAIL
    # no features to slice on, no model features to test: the configured gates are not measured
    out = run_audits(_inputs(with_frames=False), gates, names=list(DISCOVERY))
    for audit in ("slices", "proxies"):
        assert out[audit].status is Status.NOT_MEASURED
        assert [g.status for g in out[audit].gates] == [Status.NOT_MEASURED]
    assert "no features to slice on" in " ".join(out["slices"].notes + [g.note for g in out["slices"].gates])
