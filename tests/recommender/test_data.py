"""Ratings loaders and contracts: the synthetic generator, MovieLens-format files (tiny files
written here in MovieLens' format, never MovieLens itself), and the real MovieLens when present."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from impactflow.data_contracts import get_contract, load_dataset
from impactflow.errors import DataError
from impactflow.data_contracts.ratings import RATING_COLUMNS, age_band
from impactflow.data_contracts.synthetic_ratings import HERE as SYNTH_DIR, generate_ratings, load_synthetic_ratings
from tests.conftest import SHARED_DATASETS

MOVIELENS = SHARED_DATASETS / "movielens-100k"


def _write(folder: Path, data: str, user: str | None = None, item: bytes | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "u.data").write_text(data)
    (folder / "u.user").write_text(user if user is not None else "1|24|M|technician|85711\n2|53|F|other|94043\n")
    (folder / "u.item").write_bytes(
        item
        if item is not None
        else (
            "1|Caf\xe9 (1995)|01-Jan-1995||http://x" + "|0" * 19 + "\n"
            "2|B (1995)|01-Jan-1995||http://y" + "|0" * 19 + "\n"
        ).encode("latin-1")
    )
    return folder


def test_age_bands():
    assert age_band([7, 18, 24, 25, 49, 50, 56, 73]).tolist() == [
        "<18",
        "18-24",
        "18-24",
        "25-34",
        "45-49",
        "50-55",
        "56+",
        "56+",
    ]


def test_movielens_format_is_read_and_joined(tmp_path):
    folder = _write(tmp_path / "ml", "1\t1\t5\t881250949\n2\t2\t3\t881250950\n")
    df = load_dataset(get_contract("movielens"), folder)
    assert list(df.columns) == list(RATING_COLUMNS)
    assert df["title"].tolist() == ["Café (1995)", "B (1995)"]  # u.item decoded as Latin-1
    assert df[["gender", "age_band", "occupation"]].values.tolist() == [
        ["M", "18-24", "technician"],
        ["F", "50-55", "other"],
    ]


@pytest.mark.parametrize(
    "problem, match",
    [
        ("missing", r"u\.user: file not found"),
        ("comma", r"u\.data: expected 4 TAB-separated fields, line 1 has 1 \(it looks ','-separated\)"),
        ("duplicate_user", r"user_id 1 appears 2 times"),
        ("no_path", r"not shipped.*data\.path"),
    ],
)
def test_bad_movielens_files_are_clear_data_errors(tmp_path, problem, match):
    folder = _write(tmp_path / "ml", "1\t1\t5\t881250949\n")
    if problem == "missing":
        (folder / "u.user").unlink()
    elif problem == "comma":
        (folder / "u.data").write_text("1,1,5,881250949\n")
    elif problem == "duplicate_user":
        (folder / "u.user").write_text("1|24|M|technician|85711\n1|25|F|other|1\n")
    with pytest.raises(DataError, match=match):
        load_dataset(get_contract("movielens"), [] if problem == "no_path" else folder)


def test_contract_reports_range_duplicates_and_unknown_users():
    from impactflow.data_contracts.validation import validate

    contract = get_contract("synthetic_ratings")
    df = load_dataset(contract)
    bad = pd.concat([df, df.iloc[[0]]], ignore_index=True)  # a duplicated (user, item) pair
    bad.loc[1, "rating"] = 7  # out of range
    bad.loc[2, ["gender", "age", "age_band", "occupation"]] = None  # a user_id the users table lacks
    report = validate(bad, contract)
    lines = {f.expectation: f.line() for f in report.failures}
    assert not report.success
    assert "ratings between 1 and 5" in lines["expect_column_values_to_be_between"]
    assert (
        "1 of" in lines["expect_column_values_to_be_between"]
        and "examples: 7" in lines["expect_column_values_to_be_between"]
    )
    assert "no duplicate (user_id, item_id) pairs; 2 of" in lines["expect_compound_columns_to_be_unique"]
    assert "users table joins" in lines["expect_column_values_to_not_be_null"]


def test_synthetic_generator_is_seeded_and_has_the_advertised_shape():
    a = load_synthetic_ratings([SYNTH_DIR / "spec.yaml"])
    b = load_synthetic_ratings([SYNTH_DIR / "spec.yaml"])
    pd.testing.assert_frame_equal(a, b)
    assert not a.duplicated(["user_id", "item_id"]).any() and a["rating"].between(1, 5).all()
    counts = a["item_id"].value_counts()
    assert counts.iloc[: len(counts) // 10].sum() / len(a) > 0.3  # long tail: top 10% items > 30% of ratings
    assert not generate_ratings({"seed": 1}).equals(a)


def test_synthetic_spec_errors_name_the_file_and_key(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text("n_user: 10\n")
    with pytest.raises(DataError, match=r"spec\.yaml: unknown keys \['n_user'\]"):
        load_synthetic_ratings([spec])


def test_real_movielens_meets_its_contract():
    if not (MOVIELENS / "u.data").is_file():
        pytest.skip(f"MovieLens 100K not found at {MOVIELENS} (licence: never shipped); CI provides it")
    from impactflow.data_contracts.validation import validate

    contract = get_contract("movielens")
    df = load_dataset(contract, MOVIELENS)
    assert (len(df), df["user_id"].nunique(), df["item_id"].nunique()) == (100_000, 943, 1682)
    assert df.groupby("gender")["user_id"].nunique().to_dict() == {"F": 273, "M": 670}
    report = validate(df, contract)
    assert report.success, [f.line() for f in report.failures]
