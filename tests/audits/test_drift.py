"""Data drift (audits/drift.py): PSI, KS, chi-square, the group tests and Benjamini-Hochberg by hand
or against scipy; a planted shift found and nothing else; no flags on same-distribution samples
(independent or bootstrap) beyond the FDR's share; summaries that hold no row value; schema
differences; the skipped audit without a reference; the gates."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from impactflow.audits.drift import (
    DRIFT_DEFAULTS,
    DRIFT_THRESHOLDS,
    OTHER,
    SUMMARY_VERSION,
    SUPPRESSED,
    benjamini_hochberg,
    chi_square,
    column_kinds,
    drift_audit,
    ks_binned,
    psi,
    round_sig,
    schema_differences,
    summarize,
    two_proportions,
    welch,
)
from impactflow.audits.gating import complete
from impactflow.audits.results import Status, run_status

NUMERIC = ["income", "hours", "score"]
CATEGORICAL = ["city", "plan", "channel"]
SENSITIVE = ["sex", "race"]


def _frame(
    n: int,
    rng: np.random.Generator,
    *,
    mean_shift: float = 0.0,
    plan_b: float = 0.1,
    share_f: float = 0.5,
    rate_f: float = 0.3,
) -> pd.DataFrame:
    """6 columns (3 numeric, 3 categorical), 2 sensitive attributes, a binary label."""
    sex = rng.choice(["F", "M"], n, p=[share_f, 1 - share_f])
    rate = np.where(sex == "F", rate_f, 0.3)
    return pd.DataFrame(
        {
            "income": rng.lognormal(10.0, 0.5, n),
            "hours": rng.normal(40.0 + 10.0 * mean_shift, 10.0, n),  # sd 10: the shift in sd units
            "score": rng.integers(0, 12, n),
            "city": rng.choice(["north", "south", "east", "west"], n, p=[0.4, 0.3, 0.2, 0.1]),
            "plan": rng.choice(["a", "b", "c"], n, p=[0.9 - plan_b, plan_b, 0.1]),
            "channel": rng.choice(["web", "shop"], n),
            "sex": sex,
            "race": rng.choice(["x", "y", "z"], n, p=[0.6, 0.3, 0.1]),
            "y": (rng.random(n) < rate).astype(int),
        }
    )


KINDS = {**{c: "numeric" for c in NUMERIC}, **{c: "categorical" for c in CATEGORICAL}}


def _pair(reference: pd.DataFrame, current: pd.DataFrame, **kw) -> tuple[dict, dict]:
    ref = summarize(reference, KINDS, SENSITIVE, "y", "binary", 1, **kw)
    return ref, summarize(current, KINDS, SENSITIVE, "y", "binary", 1, reference=ref, **kw)


# ------------------------------------------------------------------ the statistics by hand / scipy


def test_psi_by_hand():
    ref, cur = [50, 30, 20, 0], [40, 30, 20, 10]
    p = [0.5, 0.3, 0.2, 1e-4]  # the empty cell's proportion floored at 1e-4 (Evidently's)
    q = [0.4, 0.3, 0.2, 0.1]
    assert psi(ref, cur) == pytest.approx(sum((b - a) * math.log(b / a) for a, b in zip(p, q)), rel=1e-12)
    assert psi([10, 20, 30], [20, 40, 60]) == 0.0  # the same proportions
    assert psi([10, 0], [20, 0]) == 0.0  # empty in both: floor against floor


def test_ks_on_integer_bins_is_scipys_ks_2samp():
    rng = np.random.default_rng(3)
    a = rng.integers(0, 10, 3000)  # 10 values, each of >= 20 rows: a bin each
    b = rng.choice(10, 2000, p=np.linspace(0.9, 1.1, 10) / 10)
    kinds = {"k": "numeric"}
    ref = summarize(pd.DataFrame({"k": a}), kinds, [], None, None)
    cur = summarize(pd.DataFrame({"k": b}), kinds, [], None, None, reference=ref)
    col = ref["columns"]["k"]
    assert col["binning"] == "values" and col["edges"] == [float(v) for v in np.unique(a)[1:]]  # a bin a value
    row = drift_audit(ref, cur, {}).details["columns"][0]
    expected = stats.ks_2samp(a, b, method="asymp")
    assert row["test"] == "KS"
    assert row["statistic"] == pytest.approx(expected.statistic, abs=1e-12)
    assert row["p"] == pytest.approx(expected.pvalue, rel=1e-9)
    assert 1e-4 < row["p"] < 0.5  # a case where p is neither 0 nor 1


def test_ks_on_quantile_bins_is_conservative():
    rng = np.random.default_rng(4)
    a, b = rng.normal(0, 1, 4000), rng.normal(0.1, 1, 4000)
    d, p = ks_binned(*(np.histogram(x, bins=np.r_[-np.inf, np.linspace(-2, 2, 9), np.inf])[0] for x in (a, b)))
    exact = stats.ks_2samp(a, b, method="asymp")
    assert d <= exact.statistic + 1e-12 and p >= exact.pvalue


def test_chi_square_is_scipys_and_drops_empty_cells():
    ref = [120, 80, 0, 40, 0]
    cur = [100, 95, 0, 60, 5]
    statistic, p = chi_square(ref, cur)
    expected = stats.chi2_contingency(np.array([[120, 80, 40, 0], [100, 95, 60, 5]]), correction=False)
    assert statistic == pytest.approx(expected.statistic, rel=1e-12)
    assert p == pytest.approx(expected.pvalue, rel=1e-12)
    assert chi_square([5, 0], [7, 0]) == (0.0, 1.0)  # one cell: nothing to test


def test_the_audits_chi_square_is_on_the_summaries_table():
    rng = np.random.default_rng(5)
    a = pd.DataFrame({"c": rng.choice(["u", "v", "w"], 900, p=[0.5, 0.3, 0.2])})
    b = pd.DataFrame({"c": rng.choice(["u", "v", "w", "new"], 700, p=[0.45, 0.3, 0.2, 0.05])})
    a.loc[:9, "c"] = None  # 10 missing in the reference, none in this run
    ref = summarize(a, {"c": "categorical"}, [], None, None)
    cur = summarize(b, {"c": "categorical"}, [], None, None, reference=ref)
    table = [
        [(a["c"] == k).sum() for k in ("u", "v", "w")] + [0, 10],  # categories, (other), missing
        [(b["c"] == k).sum() for k in ("u", "v", "w")] + [(b["c"] == "new").sum(), 0],
    ]
    row = drift_audit(ref, cur, {}).details["columns"][0]
    expected = stats.chi2_contingency(np.array(table), correction=False)
    assert row["statistic"] == pytest.approx(expected.statistic) and row["p"] == pytest.approx(expected.pvalue)
    assert cur["columns"]["c"]["other"] == table[1][3] and cur["columns"]["c"]["new"] == {"new": table[1][3]}


def test_two_proportions_by_hand():
    out = two_proportions(30, 100, 45, 100)
    pooled = 75 / 200
    z = 0.15 / math.sqrt(pooled * (1 - pooled) * (2 / 100))
    assert out["diff"] == pytest.approx(0.15)
    assert out["p"] == pytest.approx(2 * stats.norm.sf(z), rel=1e-9)
    # Newcombe's hybrid score interval (method 10) from the two Wilson intervals
    lo1, hi1 = stats.binomtest(30, 100).proportion_ci(method="wilson")
    lo2, hi2 = stats.binomtest(45, 100).proportion_ci(method="wilson")
    assert out["ci"][0] == pytest.approx(0.15 - math.hypot(0.45 - lo2, hi1 - 0.30), rel=1e-9)
    assert out["ci"][1] == pytest.approx(0.15 + math.hypot(hi2 - 0.45, 0.30 - lo1), rel=1e-9)
    assert two_proportions(0, 50, 0, 80)["p"] == 1.0


def test_welch_from_sums_is_scipys():
    rng = np.random.default_rng(6)
    a, b = rng.integers(1, 6, 300).astype(float), rng.integers(1, 6, 250).astype(float) + 0.2
    out = welch(a.size, a.sum(), (a * a).sum(), b.size, b.sum(), (b * b).sum())
    expected = stats.ttest_ind(b, a, equal_var=False)
    assert out["diff"] == pytest.approx(b.mean() - a.mean())
    assert out["p"] == pytest.approx(expected.pvalue, rel=1e-9)
    half = stats.t.ppf(0.975, b.size - 1) * b.std(ddof=1) / math.sqrt(b.size)
    assert out["ci"] == pytest.approx([b.mean() - half, b.mean() + half])


def test_benjamini_hochberg_by_hand_and_scipy():
    p = [0.01, 0.04, 0.03, 0.20]
    # sorted 0.01, 0.03, 0.04, 0.20 -> p * 4 / rank = 0.04, 0.06, 0.0533, 0.20; running min from the top
    assert benjamini_hochberg(p) == pytest.approx([0.04, 0.0533333, 0.0533333, 0.20])
    rng = np.random.default_rng(7)
    many = rng.random(50) ** 3
    assert benjamini_hochberg(many) == pytest.approx(stats.false_discovery_control(many, method="bh"))
    assert benjamini_hochberg([]).size == 0


# ------------------------------------------------------------------ the audit finds what is there


def test_a_planted_shift_is_recovered_and_nothing_else():
    rng = np.random.default_rng(11)
    reference = _frame(5000, rng)
    current = _frame(5000, rng, mean_shift=0.3, plan_b=0.2, share_f=0.25, rate_f=0.45)
    ref, cur = _pair(reference, current)
    result = drift_audit(ref, cur, {}, reference_label="run 41")
    cols = {row["column"]: row for row in result.details["columns"]}
    assert {c for c, row in cols.items() if row["drifted"]} == {"hours", "plan"}
    assert cols["hours"]["test"] == "KS" and cols["plan"]["test"] == "chi-square"
    assert cols["hours"]["psi"] > 0.05 and cols["plan"]["psi"] > 0.05
    assert all(cols[c]["psi"] < 0.01 for c in ("income", "score", "city", "channel"))
    groups = {(row["attribute"], row["group"]): row for row in result.by_group}
    female = groups[("sex", "F")]
    assert female["drifted"] and female["share_q"] <= 0.05 and female["rate_q"] <= 0.05
    assert female["share_ci"][0] < female["share_diff"] < female["share_ci"][1] < -0.2  # 0.5 -> 0.25
    assert female["rate_ci"][0] < female["rate_cur"] < female["rate_ci"][1] and female["rate_diff"] > 0.1
    assert groups[("sex", "M")]["share_q"] <= 0.05  # the other side of the same share
    assert not groups[("sex", "M")]["rate_q"] <= 0.05
    # race's shares are untouched; its groups' base rates move with the sex mix (0.3 -> 0.3375)
    assert all(row["share_q"] > 0.05 for (attr, _), row in groups.items() if attr == "race")
    m = result.metrics
    assert m["drift/drifted_columns"] == 2 and m["drift/max_psi"] == max(cols[c]["psi"] for c in cols)
    assert m["drift/max_group_shift"] == pytest.approx(abs(female["share_diff"]))
    assert m["drift/n_reference"] == 5000 and m["drift/psi/hours"] == cols["hours"]["psi"]
    assert "hours" in result.notes[0] and "plan" in result.notes[0] and "sex=F" in result.notes[0]
    assert "income" not in result.notes[0] and result.details["reference"] == "run 41"
    assert result.details["fdr"] == 0.05 and result.by_group == result.details["groups"]


def _flagged(reference: pd.DataFrame, current: pd.DataFrame) -> bool:
    result = drift_audit(*_pair(reference, current), {})
    return result.metrics["drift/drifted_columns"] > 0 or result.metrics["drift/drifted_groups"] > 0


def test_no_drift_flagged_between_samples_of_one_distribution():
    # 20 seeds: a flag anywhere (after BH at 0.05) is a false alarm with probability <= 0.05, so
    # more than 3 seeds of 20 flagged has probability P(Binomial(20, 0.05) > 3) = 0.016
    flagged = sum(
        _flagged(_frame(5000, np.random.default_rng(s)), _frame(5000, np.random.default_rng(100 + s)))
        for s in range(20)
    )
    assert flagged <= 3


def test_no_drift_flagged_between_a_frame_and_its_bootstrap_resamples():
    base = _frame(5000, np.random.default_rng(0))
    flagged = 0
    for s in range(20):
        rows = np.random.default_rng(s).integers(0, len(base), len(base))
        flagged += _flagged(base, base.iloc[rows].reset_index(drop=True))
    assert flagged <= 3


# ------------------------------------------------------------------ what a summary holds


def test_summaries_hold_no_row_value():
    rng = np.random.default_rng(8)
    n = 3000
    frame = pd.DataFrame(
        {
            "amount": rng.normal(5000.0, 1500.0, n) + rng.random(n) / 7,  # every value distinct
            "gain": np.where(rng.random(n) < 0.9, 0.0, rng.lognormal(8.0, 1.0, n)),  # a mass point at 0
            "city": rng.choice(["north", "south"], n),
            "sex": rng.choice(["F", "M"], n),
            "race": rng.choice(["x", "y"], n),
            "y": rng.integers(0, 2, n),
        }
    )
    frame.loc[:4, "city"] = "Smallville"  # 5 rows: pooled
    frame.loc[:6, "race"] = "rare"  # 7 rows: suppressed
    kinds = {"amount": "numeric", "gain": "numeric", "city": "categorical"}
    summary = summarize(frame, kinds, ["sex", "race"], "y", "binary", 1)
    text = json.dumps(summary, allow_nan=False)
    for c in ("amount", "gain"):
        col = summary["columns"][c]
        assert col["edges"] and all(e == round_sig(e) for e in col["edges"])  # 2 significant digits
        assert all(len(f"{abs(e):e}".split("e")[0].replace(".", "").rstrip("0")) <= 2 for e in col["edges"])
        assert sum(col["counts"]) + col["missing"] == n
        assert 2 <= len(col["counts"]) <= 20
    assert not set(summary["columns"]["amount"]["edges"]) & set(frame["amount"])
    gain = summary["columns"]["gain"]
    assert gain["counts"][0] == (frame["gain"] == 0).sum()  # the mass point at 0: one bin, whole
    assert len(gain["counts"]) >= 10 and all(c >= 20 for c in gain["counts"])  # the rest shared out, >= 20 a bin
    assert "Smallville" not in text and summary["columns"]["city"]["other"] == 5  # pooled as OTHER
    assert OTHER not in summary["columns"]["city"]["categories"]
    race = summary["groups"]["race"]
    assert "rare" not in text and set(race["groups"]) == {"x", "y"}
    assert race[SUPPRESSED] == {"groups": 1, "n": 7}
    # the label's positives of the 7 suppressed rows could be had from the label's total: the
    # smallest shown group's label statistics are withheld too (complementary suppression)
    smaller = min(race["groups"], key=lambda g: race["groups"][g]["n"])
    assert race["groups"][smaller] == {"n": race["groups"][smaller]["n"], "label_withheld": True}
    assert "positives" in race["groups"][({"x", "y"} - {smaller}).pop()]
    assert "label statistics" in summary["disclosure"]
    assert summary["version"] == SUMMARY_VERSION and summary["n_rows"] == n and summary["kinds"] == kinds


def test_values_few_enough_get_a_bin_each_and_rare_ones_join_a_neighbour():
    x = np.repeat([1, 2, 3, 4, 5], [100, 100, 5, 100, 100])
    col = summarize(pd.DataFrame({"x": x}), {"x": "numeric"}, [], None, None)["columns"]["x"]
    assert col["binning"] == "values" and col["edges"] == [2.0, 3.0, 5.0] and col["counts"] == [100, 100, 105, 100]


def test_summaries_are_json_with_missing_values_and_odd_dtypes():
    rng = np.random.default_rng(9)
    n = 400
    frame = pd.DataFrame(
        {
            "x": np.where(rng.random(n) < 0.1, np.nan, rng.normal(size=n)),
            "big": np.where(rng.random(n) < 0.01, np.inf, rng.normal(size=n)),
            "nullable": pd.array(np.where(rng.random(n) < 0.1, None, rng.integers(0, 3, n)), dtype="Int64"),
            "flag": rng.random(n) < 0.5,
            "cat": pd.Categorical(rng.choice(["a", "b"], n), categories=["a", "b", "unused"]),
            "g": rng.choice(["p", "q", None], n),
            "rating": np.where(rng.random(n) < 0.05, np.nan, rng.integers(1, 6, n)),
        }
    )
    kinds = column_kinds(frame, ["x", "big", "nullable", "flag", "cat"])
    assert kinds == {
        "x": "numeric",
        "big": "numeric",
        "nullable": "numeric",
        "flag": "categorical",
        "cat": "categorical",
    }
    ref = summarize(frame, kinds, ["g"], "rating", "rating")
    cur = summarize(frame.iloc[::-1], kinds, ["g"], "rating", "rating", reference=ref)
    for s in (ref, cur):
        json.loads(json.dumps(s, allow_nan=False))
    assert ref["columns"]["x"]["missing"] == frame["x"].isna().sum()
    assert sorted(ref["columns"]["cat"]["categories"]) == ["a", "b"]  # the unused category is not one
    g = ref["groups"]["g"]
    assert g["missing"] == frame["g"].isna().sum() and set(g["groups"]["p"]) == {"n", "labelled", "sum", "sumsq"}
    p = frame.loc[frame["g"] == "p", "rating"].dropna()
    assert g["groups"]["p"]["labelled"] == p.size and g["groups"]["p"]["sum"] == pytest.approx(p.sum())
    result = drift_audit(ref, cur, {})  # the same rows: nothing drifts
    assert result.metrics["drift/drifted_columns"] == 0 and result.metrics["drift/max_psi"] == 0.0
    assert all(row["rate_p"] == pytest.approx(1.0) for row in result.by_group)
    json.dumps(result.to_dict(), allow_nan=False)


def test_column_kinds():
    frame = pd.DataFrame(
        {
            "n": [1.0, 2.0, 3.0],
            "i": [1, 2, 3],
            "b": [True, False, True],
            "s": ["a", "b", "a"],
            "text": ["one", "two", "three"],
            "lists": [[1], [2], [3]],
            "when": pd.to_datetime(["2024-01-01"] * 3),
        }
    )
    assert column_kinds(frame, list(frame.columns), max_categories=2) == {
        "n": "numeric",
        "i": "numeric",
        "b": "categorical",
        "s": "categorical",
    }


# ------------------------------------------------------------------ schema, no reference, gates


def test_schema_differences_phrases():
    ref = summarize(_frame(200, np.random.default_rng(1)), KINDS, SENSITIVE, "y", "binary", 1)
    assert schema_differences(ref, KINDS, "y", SENSITIVE) == []
    kinds = {**{k: v for k, v in KINDS.items() if k != "income"}, "plan": "numeric", "age": "numeric"}
    assert schema_differences(ref, kinds, "z", ["sex", "age"], label_kind="rating") == [
        'column "income" is in the reference but not in this run',
        'column "plan" was categorical, is numeric',
        'column "age" is in this run but not in the reference',
        'the label was "y", is "z"',
        'sensitive attribute "race" is in the reference but not in this run',
        'sensitive attribute "age" is in this run but not in the reference',
    ]
    assert schema_differences(ref, KINDS, "y", SENSITIVE, label_kind="rating", positive=0) == [
        'the label "y" was binary, is rating',
        'the positive value of the label "y" was 1, is 0',
    ]
    assert schema_differences(ref, KINDS, None, SENSITIVE) == ['the label was "y", is none']


def test_a_changed_schema_is_noted_and_the_common_columns_compared():
    rng = np.random.default_rng(2)
    reference, current = _frame(1000, rng), _frame(1000, rng)
    ref = summarize(reference, KINDS, SENSITIVE, "y", "binary", 1)
    kinds = {**KINDS, "plan": "numeric"}
    current["plan"] = rng.normal(size=len(current))
    del kinds["income"]
    cur = summarize(current, kinds, SENSITIVE, "y", "binary", 1, reference=ref)
    result = drift_audit(ref, cur, {})
    assert [row["column"] for row in result.details["columns"]] == ["hours", "score", "city", "channel"]
    assert 'column "plan" was categorical, is numeric' in result.details["schema"]
    assert any(n.startswith("schema differs") and '"income"' in n for n in result.notes)


def test_a_current_summary_not_on_the_references_bins_is_refused():
    rng = np.random.default_rng(2)
    reference, current = _frame(1000, rng), _frame(1000, rng)
    ref = summarize(reference, KINDS, SENSITIVE, "y", "binary", 1)
    on_its_own = summarize(current, KINDS, SENSITIVE, "y", "binary", 1)
    with pytest.raises(ValueError, match="not summarized on the reference's"):
        drift_audit(ref, on_its_own, {})
    with pytest.raises(ValueError, match="version"):
        drift_audit({**ref, "version": 99}, on_its_own, {})


def test_without_a_reference_the_audit_and_its_gates_are_skipped():
    cur = summarize(_frame(300, np.random.default_rng(1)), KINDS, SENSITIVE, "y", "binary", 1)
    gates = {"max_psi": 0.2, "max_drifted_columns": 0}
    result = drift_audit(None, cur, gates, no_reference_reason="first run: no reference")
    assert result.status is Status.SKIPPED and result.notes == ["first run: no reference"]
    assert [(g.name, g.status, g.threshold, g.note) for g in result.gates] == [
        ("drift/max_psi", Status.SKIPPED, 0.2, "first run: no reference"),
        ("drift/drifted_columns", Status.SKIPPED, 0.0, "first run: no reference"),
    ]
    # the gating rules keep the skipped gates (no not-measured one added), and they do not count
    done = complete("drift", result, gates, DRIFT_THRESHOLDS)
    assert [g.status for g in done.gates] == [Status.SKIPPED, Status.SKIPPED]
    assert run_status([g.status for g in done.gates] + ["pass"]) == "pass"
    assert drift_audit(None, cur, {}).gates == [] and drift_audit(None, cur, {}).status is Status.SKIPPED


def test_a_gate_over_its_threshold_fails_and_unset_gates_make_none():
    rng = np.random.default_rng(11)
    ref, cur = _pair(_frame(3000, rng), _frame(3000, rng, mean_shift=0.3, share_f=0.25))
    result = drift_audit(ref, cur, {"max_psi": 0.01, "max_drifted_columns": 5, "max_group_shift": 0.5})
    by_name = {g.name: g for g in result.gates}
    assert by_name["drift/max_psi"].status is Status.FAIL and by_name["drift/max_psi"].value > 0.01
    assert by_name["drift/drifted_columns"].status is Status.PASS
    assert by_name["drift/max_group_shift"].status is Status.PASS
    assert result.status is Status.FAIL
    assert drift_audit(ref, cur, {"max_drifted_columns": 0}).status is Status.FAIL
    none = drift_audit(ref, cur, {"max_psi": None, "max_drifted_columns": None})
    assert none.gates == [] and none.status is Status.NOT_MEASURED  # no gate: nothing decided (overall_status)
    assert set(DRIFT_DEFAULTS) == {"max_psi", "max_drifted_columns", "max_group_shift", "fdr", "bins", "min_group_size"}


def test_a_group_gone_small_is_reported_not_compared():
    rng = np.random.default_rng(12)
    reference, current = _frame(2000, rng), _frame(2000, rng)
    current.loc[current["race"] == "z", "race"] = "x"
    current.loc[:9, "race"] = "z"  # 10 rows of z left: suppressed in this run
    ref, cur = _pair(reference, current)
    result = drift_audit(ref, cur, {})
    assert ("race", "z") not in {(r["attribute"], r["group"]) for r in result.by_group}
    assert any(s.get("group") == "z" and s["in"] == "this run" for s in result.details["suppressed"])
    assert any("race=z" in n for n in result.notes)


def test_the_shares_of_a_two_group_attribute_are_one_hypothesis():
    rng = np.random.default_rng(13)
    reference, current = _frame(2000, rng), _frame(2000, rng, share_f=0.45)
    kinds = {**KINDS, "sex": "categorical"}  # sex is also a column: its chi-square is the same test
    ref = summarize(reference, kinds, SENSITIVE, "y", "binary", 1)
    result = drift_audit(ref, summarize(current, kinds, SENSITIVE, "y", "binary", 1, reference=ref), {})
    groups = {(row["attribute"], row["group"]): row for row in result.by_group}
    sex = next(row for row in result.details["columns"] if row["column"] == "sex")
    female, male = groups[("sex", "F")], groups[("sex", "M")]
    assert female["share_p"] == pytest.approx(male["share_p"]) == pytest.approx(sex["p"], rel=1e-9)  # z^2 = chi^2
    assert female["share_q"] == male["share_q"] == sex["q"]
    # 7 columns (sex's shares among them), 2 sex rates, 3 race shares, 3 race rates
    assert result.details["tests"] == 7 + 2 + 3 + 3
