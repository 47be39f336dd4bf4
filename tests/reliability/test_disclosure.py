"""Disclosure control: no table row, count or plot cell of fewer than k people is shown."""
from __future__ import annotations

import json

import pytest

from audits.disclosure import suppress_small_cells


def _doc():
    return {
        "config": {"rows": [{"n": 1, "x": 1}]},  # skipped: settings, not data
        "data": {"representation": [
            {"attribute": "race", "group": "White", "n": 40, "share": 0.8},
            {"attribute": "race", "group": "PLANTED_TINY", "n": 3, "share": 0.06},
            {"attribute": "race", "group": "Other", "n": 10, "share": 0.2},  # exactly k: kept
        ]},
        "models": [{"audits": {"fairness": {"by_group": [
            {"group": "A", "n": 50, "tp": 4, "fp": 0, "tn": 30, "fn": 16},
            {"group": "B", "n": 9, "tp": 1, "fp": 2, "tn": 3, "fn": 3},
        ], "details": {"confusion_matrix": [[30, 4], [0, 16]],
                        "calibration": [{"lower": 0.0, "count": 5}, {"lower": 0.5, "count": 45}]}}}}],
    }


def test_small_rows_removed_small_counts_blanked_by_hand():
    doc = _doc()
    before = json.dumps(doc, sort_keys=True)
    out = suppress_small_cells(doc, 10)
    assert json.dumps(doc, sort_keys=True) == before, "the input was modified"
    assert [r["group"] for r in out["data"]["representation"]] == ["White", "Other"]
    fair = out["models"][0]["audits"]["fairness"]
    # row A kept; its tp=4 (<10, >0) blanked, fp=0 kept (zero reveals no one), 30 and 16 kept
    assert fair["by_group"] == [{"group": "A", "n": 50, "tp": None, "fp": 0, "tn": 30, "fn": 16}]
    assert fair["details"]["confusion_matrix"] == [[30, None], [0, 16]]
    assert fair["details"]["calibration"] == [{"lower": 0.5, "count": 45}]
    assert out["config"] == doc["config"]
    # rows: PLANTED_TINY, B, calibration bin of 5 = 3; values: tp=4 and the matrix cell 4 = 2
    assert out["disclosure"] == {"min_cell_size": 10, "suppressed_rows": 3, "suppressed_values": 2}
    assert "PLANTED_TINY" not in json.dumps(out)


def test_k_is_configurable_and_one_disables_it():
    assert len(suppress_small_cells(_doc(), 3)["data"]["representation"]) == 3
    assert len(suppress_small_cells(_doc(), 41)["data"]["representation"]) == 0
    out = suppress_small_cells(_doc(), 1)
    assert out["disclosure"]["suppressed_rows"] == 0 and out["data"] == _doc()["data"]
    with pytest.raises(ValueError, match="min_cell_size"):
        suppress_small_cells(_doc(), 0)


def test_suppressed_report_still_validates_and_renders(tmp_path):
    from audits.render import write_report
    from audits.report import build_report
    from tests.report.conftest import make_inputs

    report = build_report(**make_inputs())
    # k above the small confusion cells (50) and calibration bins (100..140) of the fixture
    out = suppress_small_cells(report, 120)
    paths = write_report(out, tmp_path)
    written = json.loads(paths["json"].read_text())
    assert written["disclosure"]["min_cell_size"] == 120
    cm = written["models"][0]["audits"]["performance"]["details"]["confusion_matrix"]
    assert cm == [[700, None], [None, 150]]
    assert [b["count"] for b in written["models"][0]["audits"]["performance"]["details"]["calibration"]] == [120, 130, 140]
    assert "Disclosure" in paths["html"].read_text()


@pytest.mark.parametrize("family", ["tabular", "image", "text", "recommender"])
def test_model_input_example_is_no_ones_row(family):
    import numpy as np

    from audits.disclosure import EXAMPLE_TEXT, synthetic_example
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
