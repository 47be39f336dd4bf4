"""Loader, hashing and contract registry (no Great Expectations here: fast)."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from impactflow.data_contracts import CONTRACTS, Contract, get_contract, load_dataset
from impactflow.data_contracts.adult import ADULT_COLUMNS, load_uci_adult
from impactflow.errors import ConfigError, DataError
from impactflow.data_contracts.files import file_sha256, sha256_files, sha256_per_file

SHIPPED = Path(__file__).resolve().parents[2] / "data_contracts" / "adult"
SHARED = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "adult"
SHA_DATA = "5b00264637dbfec36bdeaab5676b0b309ff9eb788d63554ca0a249491c86603d"
SHA_TEST = "a2a9044bc167a35b2361efbabec64e89d69ce82d9790d2980119aac5fd7e9c05"

ROW = "39, State-gov, 77516, Bachelors, 13, Never-married, Adm-clerical, Not-in-family, White, Male, 2174, 0, 40, United-States, <=50K"


@pytest.fixture(scope="module")
def adult() -> pd.DataFrame:
    return load_dataset(get_contract("adult"))


# --------------------------------------------------------------------------- shipped data


def test_shipped_data_shape_and_labels(adult):
    assert adult.shape == (48_842, 15)
    assert list(adult.columns) == list(ADULT_COLUMNS)
    assert adult["income"].value_counts().to_dict() == {"<=50K": 37_155, ">50K": 7_841 + 3_846}
    assert list(adult.index) == list(range(len(adult)))


def test_shipped_data_per_file_counts():
    c = get_contract("adult")
    train = load_dataset(c, c.default_files[0])
    test = load_dataset(c, [c.default_files[1]])
    assert len(train) == 32_561 and len(test) == 16_281
    assert (train["income"] == ">50K").sum() == 7_841
    assert (test["income"] == ">50K").sum() == 3_846  # "<=50K." / ">50K." normalised
    assert train["sex"].value_counts().to_dict() == {"Male": 21_790, "Female": 10_771}


def test_question_marks_become_missing(adult):
    assert adult[["workclass", "occupation", "native-country"]].isna().sum().to_dict() == {
        "workclass": 2_799,
        "occupation": 2_809,
        "native-country": 857,
    }
    text = adult.select_dtypes(exclude="number")
    assert not text.isin(["?"]).any().any()
    assert not adult.drop(columns=["workclass", "occupation", "native-country"]).isna().any().any()


def test_dtypes_are_inferred_not_forced(adult):
    numeric = ["age", "fnlwgt", "education-num", "capital-gain", "capital-loss", "hours-per-week"]
    assert all(pd.api.types.is_integer_dtype(adult[c]) for c in numeric)
    assert not any(pd.api.types.is_numeric_dtype(adult[c]) for c in set(ADULT_COLUMNS) - set(numeric))


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/datasets not present")
def test_plain_originals_load_like_the_shipped_gzip(adult):
    plain = load_uci_adult([SHARED / "adult.data", SHARED / "adult.test"])
    pd.testing.assert_frame_equal(plain, adult)


# --------------------------------------------------------------------------- hashes


def test_hashes_are_over_uncompressed_bytes():
    data, test = SHIPPED / "adult.data.gz", SHIPPED / "adult.test.gz"
    assert file_sha256(data) == SHA_DATA
    assert file_sha256(test) == SHA_TEST
    both = hashlib.sha256(gzip.decompress(data.read_bytes()) + gzip.decompress(test.read_bytes()))
    assert sha256_files([data, test]) == both.hexdigest()
    assert sha256_files([test, data]) != both.hexdigest()  # order is part of the dataset
    assert sha256_per_file([data, test]) == {str(data): SHA_DATA, str(test): SHA_TEST}


def test_hash_of_plain_and_gzip_copy_match(tmp_path):
    plain = tmp_path / "x.data"
    plain.write_text(ROW + "\n")
    packed = tmp_path / "x.data.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    assert file_sha256(plain) == file_sha256(packed) == hashlib.sha256(plain.read_bytes()).hexdigest()


# --------------------------------------------------------------------------- format handling


def test_uci_test_file_quirks(tmp_path):
    f = tmp_path / "mini.test"
    f.write_text("|1x3 Cross validator\n" + ROW + ".\n\n" + ROW.replace("<=50K", ">50K") + ".\n\n")
    df = load_uci_adult([f])
    assert df.shape == (2, 15)
    assert df["income"].tolist() == ["<=50K", ">50K"]
    assert df.loc[0, "workclass"] == "State-gov"  # leading space stripped


def test_gzip_detected_by_magic_bytes_not_suffix(tmp_path):
    f = tmp_path / "no_suffix"
    f.write_bytes(gzip.compress((ROW + "\n").encode()))
    assert load_uci_adult([f]).shape == (1, 15)


def test_headered_csv_round_trip(adult, tmp_path):
    sample = adult.sample(500, random_state=0).reset_index(drop=True)
    f = tmp_path / "export.csv"
    sample.to_csv(f, index=False)
    pd.testing.assert_frame_equal(load_uci_adult([f]), sample)


def test_headered_csv_in_another_column_order(adult, tmp_path):
    sample = adult.head(50)[list(reversed(ADULT_COLUMNS))]
    f = tmp_path / "reordered.csv"
    sample.to_csv(f, index=False)
    pd.testing.assert_frame_equal(load_uci_adult([f]), sample)


def test_bad_numeric_value_stays_visible(tmp_path):
    f = tmp_path / "bad.data"
    f.write_text(ROW + "\n" + ROW.replace("39,", "abc,", 1) + "\n")
    df = load_uci_adult([f])
    assert not pd.api.types.is_numeric_dtype(df["age"])
    assert df["age"].tolist() == ["39", "abc"]


# --------------------------------------------------------------------------- errors


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"nope\.data: file not found"):
        load_uci_adult([tmp_path / "nope.data"])


@pytest.mark.parametrize("content", ["", "\n\n", "|1x3 Cross validator\n\n", ",".join(ADULT_COLUMNS) + "\n"])
def test_empty_file(tmp_path, content):
    f = tmp_path / "empty.data"
    f.write_text(content)
    with pytest.raises(DataError, match=r"empty\.data: no data rows"):
        load_uci_adult([f])


def test_wrong_number_of_fields(tmp_path):
    f = tmp_path / "short.data"
    short = ROW.rsplit(",", 1)[0]  # 14 fields
    f.write_text("|1x3 Cross validator\n" + ROW + "\n" + short + "\n")
    with pytest.raises(DataError, match=r"short\.data: expected 15 fields, line 3 has 14"):
        load_uci_adult([f])


def test_truncated_gzip(tmp_path):
    raw = (SHIPPED / "adult.test.gz").read_bytes()
    f = tmp_path / "cut.test.gz"
    f.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match=r"cut\.test\.gz: truncated or corrupt gzip"):
        load_uci_adult([f])
    with pytest.raises(DataError, match="truncated or corrupt gzip"):
        file_sha256(f)


def test_undecodable_bytes(tmp_path):
    f = tmp_path / "latin.data"
    f.write_bytes(ROW.replace("White", "Wh\xefte").encode("latin-1") + b"\n")
    with pytest.raises(DataError, match=r"latin\.data: not UTF-8 text"):
        load_uci_adult([f])


def test_files_with_different_columns(tmp_path):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    a.write_text(",".join(ADULT_COLUMNS) + "\n" + ROW + "\n")
    b.write_text(",".join(ADULT_COLUMNS[:-1]) + "\n" + ROW.rsplit(",", 1)[0] + "\n")
    # counts and a position, never the header (a mistaken file's first line: issue 28)
    with pytest.raises(
        DataError,
        match=r"b\.csv: its 14 column\(s\) differ from the first file's 15 "
        r"\(first difference: column 15\)",
    ):
        load_uci_adult([a, b])


# --------------------------------------------------------------------------- contract


def test_adult_contract_roles():
    c = get_contract("adult")
    assert isinstance(c, Contract) and c.name == "adult"
    assert (c.target, c.positive_label, c.labels) == ("income", ">50K", ("<=50K", ">50K"))
    assert c.sensitive == ("sex", "race") and c.min_group_size == 30
    assert c.weight == "fnlwgt" and "fnlwgt" in c.exclude_from_features
    assert c.columns == ADULT_COLUMNS
    assert set(c.categorical) | set(c.numeric) | {c.target} == set(ADULT_COLUMNS)
    assert load_dataset(c).equals(load_uci_adult(c.default_files))  # the generic loader reads it as before
    assert "fnlwgt" not in c.feature_columns and "income" not in c.feature_columns
    assert len(c.feature_columns) == 13
    assert all(p.is_absolute() and p.is_file() for p in c.default_files)
    assert c.suite_path is None and "CC BY 4.0" in c.license  # the suite is generated from the declarations
    assert c.favourable_outcome == ">50K" and c.contract_path.name == "contract.yaml"
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.name = "x"  # type: ignore[misc]


def test_unknown_contract_lists_known_names():
    assert "adult" in CONTRACTS
    with pytest.raises(ConfigError) as err:
        get_contract("nope")
    assert str(err.value) == (
        f"Unknown data contract 'nope': neither a registered name ({', '.join(sorted(CONTRACTS))})"
        " nor a contract.yaml (or a folder holding one)"
    )


@pytest.mark.e2e  # starts a process
def test_import_is_light():
    code = (
        "import sys, impactflow.data_contracts, impactflow.errors; "
        "heavy = {'pandas', 'great_expectations', 'torch', 'prefect', 'mlflow', 'yaml'} & set(sys.modules); "
        "assert not heavy, heavy"
    )
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root)
