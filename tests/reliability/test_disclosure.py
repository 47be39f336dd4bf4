"""Disclosure control: no table row, count or plot cell of fewer than k people is shown."""

from __future__ import annotations

import json

import pytest

from impactflow.audits.disclosure import suppress_small_cells


def _doc():
    return {
        "config": {"rows": [{"n": 1, "x": 1}]},  # skipped: settings, not data
        "data": {
            "representation": [
                {"attribute": "race", "group": "White", "n": 40, "share": 0.8},
                {"attribute": "race", "group": "PLANTED_TINY", "n": 3, "share": 0.06},
                {"attribute": "race", "group": "Other", "n": 10, "share": 0.2},  # exactly k: kept
            ]
        },
        "models": [
            {
                "audits": {
                    "fairness": {
                        "by_group": [
                            {
                                "group": "A",
                                "n": 50,
                                "tp": 4,
                                "fp": 0,
                                "tn": 30,
                                "fn": 16,
                                "selection_rate": 0.08,
                                "share": 0.6,
                            },
                            {"group": "B", "n": 9, "tp": 1, "fp": 2, "tn": 3, "fn": 3},
                            {"group": "C", "n": 24, "tp": 12, "fp": 12, "tn": 0, "fn": 0},
                        ],
                        "details": {
                            "confusion_matrix": [[30, 4], [0, 16]],
                            "calibration": [{"lower": 0.0, "count": 5}, {"lower": 0.5, "count": 45}],
                        },
                    }
                }
            }
        ],
    }


def test_small_rows_removed_small_counts_blanked_by_hand():
    doc = _doc()
    before = json.dumps(doc, sort_keys=True)
    out = suppress_small_cells(doc, 10)
    assert json.dumps(doc, sort_keys=True) == before, "the input was modified"
    # PLANTED_TINY (3) removed; with one row gone the total would give it back, so the
    # smallest other row of the attribute (Other, 10) goes too
    assert [r["group"] for r in out["data"]["representation"]] == ["White"]
    fair = out["models"][0]["audits"]["fairness"]
    # B (9) removed, C (24, smallest left) removed with it. Row A kept: tp=4 (<10, >0) blanked
    # and, as 50 - 0 - 30 - 16 would give it back, the smallest other non-zero part (fn=16)
    # too; fp=0 kept (zero reveals no one); the selection rate (= (tp + fp) / n) blanked
    assert fair["by_group"] == [
        {"group": "A", "n": 50, "tp": None, "fp": 0, "tn": 30, "fn": None, "selection_rate": None, "share": 0.6}
    ]
    # the matrix's row and column totals follow from printed rates: no line keeps one hidden cell
    assert fair["details"]["confusion_matrix"] == [[None, None], [None, None]]
    assert fair["details"]["calibration"] == [{"lower": 0.5, "count": 45}]
    assert out["config"] == doc["config"]
    # rows: PLANTED_TINY, Other, B, C, calibration bin of 5 = 5 (Other and C complementary);
    # values: tp, fn, selection rate of A + the four matrix cells (fn and 3 cells complementary)
    assert out["disclosure"] == {
        "min_cell_size": 10,
        "suppressed_rows": 5,
        "suppressed_values": 7,
        "complementary_rows": 2,
        "complementary_values": 4,
    }
    assert "PLANTED_TINY" not in json.dumps(out)


def test_k_is_configurable_and_one_disables_it():
    assert len(suppress_small_cells(_doc(), 3)["data"]["representation"]) == 3  # nothing below 3
    assert len(suppress_small_cells(_doc(), 41)["data"]["representation"]) == 0
    out = suppress_small_cells(_doc(), 1)
    assert out["disclosure"]["suppressed_rows"] == 0 and out["data"] == _doc()["data"]
    with pytest.raises(ValueError, match="min_cell_size"):
        suppress_small_cells(_doc(), 0)


def test_suppressed_report_still_validates_and_renders(tmp_path):
    from impactflow.audits.render import write_report
    from impactflow.audits.report import build_report
    from tests.report.conftest import make_inputs

    report = build_report(**make_inputs())
    # k above the small confusion cells (50) and calibration bins (100..140) of the fixture
    out = suppress_small_cells(report, 120)
    paths = write_report(out, tmp_path)
    written = json.loads(paths["json"].read_text())
    assert written["disclosure"]["min_cell_size"] == 120
    cm = written["models"][0]["audits"]["performance"]["details"]["confusion_matrix"]
    assert cm == [[None, None], [None, None]]  # two small cells; the margins would give them back
    assert [b["count"] for b in written["models"][0]["audits"]["performance"]["details"]["calibration"]] == [
        120,
        130,
        140,
    ]
    assert "Disclosure" in paths["html"].read_text()


@pytest.mark.parametrize("family", ["tabular", "image", "text", "recommender"])
def test_model_input_example_is_no_ones_row(family):
    import numpy as np

    from impactflow.audits.disclosure import EXAMPLE_TEXT, synthetic_example
    from tests.models import family_examples

    df, _ = getattr(family_examples, f"{family}_example")(64)
    ex = synthetic_example(df)
    assert list(ex.columns) == list(df.columns) and len(ex) == 5
    for col in df.columns:
        s, v = df[col], ex[col].iloc[0]
        if isinstance(s.iloc[0], np.ndarray):
            assert v.shape == s.iloc[0].shape and v.dtype == s.iloc[0].dtype and not v.any()
        elif s.dtype.kind in "iuf":
            assert ex[col].dtype == s.dtype
            assert v == np.asarray([s.median()]).astype(s.dtype)[0]  # median, not a row's value
        elif s.astype(str).nunique() > 32:
            assert v == EXAMPLE_TEXT  # free text: never a real message
        else:
            assert v == s.astype(str).mode().iloc[0]


# --------------------------------------------------------------------------- rebuilding attempts
# Issue 20, defect 6: suppressed counts could be rebuilt exactly from the rates, Wilson bounds
# and the other counts printed beside them. The attacker below knows the audit's formulas and
# tries every (tp, fp, tn, fn) a disclosed row allows.
#
# Hand data, attribute "race", k = 10:
#   A: n=40, tp=12 fp=3  tn=20 fn=5   fp, fn small (3 + 5 = 8: two hidden parts, nothing more)
#   B: n=30, tp=10 fp=10 tn=10 fn=0   nothing small
#   C: n=4,  tp=1  fp=0  tn=2  fn=1   n < 10: removed
#   D: n=25, tp=10 fp=5  tn=10 fn=0   fp small; but D is the smallest row left beside C, so it
#                                     is removed with C (else total - A - B - D = C exactly)
HAND = {"A": (12, 3, 20, 5), "B": (10, 10, 10, 0), "C": (1, 0, 2, 1), "D": (10, 5, 10, 0)}


def _hand_audit():
    import numpy as np
    import pandas as pd

    from impactflow.audits.fairness import fairness_audit
    from impactflow.audits.inputs import AuditInputs

    y, p, g = [], [], []
    for group, (tp, fp, tn, fn) in HAND.items():
        for yt, yp, count in ((1, 1, tp), (0, 1, fp), (0, 0, tn), (1, 0, fn)):
            y += [yt] * count
            p += [yp] * count
            g += [group] * count
    inputs = AuditInputs(
        y_true=np.array(y), y_score=np.where(np.array(p) == 1, 0.9, 0.1), sensitive=pd.DataFrame({"race": g})
    )
    return fairness_audit(inputs, {"min_group_size": 1, "n_boot": 0})


def _candidates(row: dict) -> list[tuple[int, int, int, int]]:
    """Every (tp, fp, tn, fn) consistent with everything the disclosed row still shows."""
    import math

    from impactflow.audits.bootstrap import RATE_CELLS
    from impactflow.audits.stats import wilson_interval

    n = row["n"]
    out = []
    for tp in range(n + 1):
        for fp in range(n + 1 - tp):
            for tn in range(n + 1 - tp - fp):
                cells = (tp, fp, tn, n - tp - fp - tn)
                if any(row.get(key) is not None and row[key] != v for key, v in zip(("tp", "fp", "tn", "fn"), cells)):
                    continue
                ok = True
                for rate, (num, den) in RATE_CELLS.items():
                    k, d = sum(cells[i] for i in num), sum(cells[i] for i in den)
                    value = k / d if d else 0.0
                    lo, hi = wilson_interval(k, d) if d else (math.nan, math.nan)
                    for key, expected in ((rate, value), (f"{rate}_ci_low", lo), (f"{rate}_ci_high", hi)):
                        shown = row.get(key)
                        if shown is not None and not (
                            math.isclose(shown, expected, abs_tol=1e-12) or (math.isnan(shown) and math.isnan(expected))
                        ):
                            ok = False
                if ok:
                    out.append(cells)
    return out


def test_the_attacker_rebuilds_everything_from_an_undisclosed_row():
    """Sanity check of the attacker: on the raw audit rows the rates pin every count."""
    rows = {r["group"]: r for r in _hand_audit().by_group}
    for group in ("A", "D"):
        hidden = dict(rows[group], fp=None, fn=None)  # the old rule: small counts blanked only
        assert _candidates(hidden) == [HAND[group]]


def test_suppressed_counts_can_no_longer_be_rebuilt():
    res = _hand_audit()
    doc = {"models": [{"audits": {"fairness": {"by_group": res.by_group}}}]}
    out = suppress_small_cells(doc, 10)
    rows = {r["group"]: r for r in out["models"][0]["audits"]["fairness"]["by_group"]}
    assert set(rows) == {"A", "B"}  # C (n=4) and, complementary, D
    a = rows["A"]
    assert (a["tp"], a["fp"], a["tn"], a["fn"]) == (12, None, 20, None)
    assert all(
        a[key] is None for key in a if key.endswith(("_rate", "_ci_low", "_ci_high", "accuracy", "ratio_to_max"))
    )
    # A's hidden fp and fn: every split of 8 is consistent with what is shown
    cands = _candidates(a)
    assert HAND["A"] in cands and len(cands) == 9 and {c[1] for c in cands} == set(range(9))
    # B had nothing small: shown as is, and the attacker's answer is the truth
    assert _candidates(rows["B"]) == [HAND["B"]]
    # the attribute's total (the test-set size, the overall confusion matrix) minus the rows
    # shown is what the removed rows hold: C and D together (4 + 25 people), not C alone
    unaccounted = sum(sum(v) for v in HAND.values()) - rows["A"]["n"] - rows["B"]["n"]
    assert unaccounted == 29 != sum(HAND["C"])
    assert out["disclosure"]["complementary_rows"] == 1
