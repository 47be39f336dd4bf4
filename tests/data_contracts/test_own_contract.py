"""Contracts a user writes (issue 21): a contract.yaml anywhere on disk, read by the generic loader,
with derived columns and a GX suite generated from its declarations. Tiny literal data."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from impactflow.data_contracts import CONTRACTS, get_contract, load_dataset, resolve_contract_ref
from impactflow.errors import ConfigError, DataError
from impactflow.data_contracts.spec import DerivedSpec, apply_derived, generate_suite
from impactflow.data_contracts.validation import MIN_GROUP_CHECK, load_suite, validate

CONTRACT = """\
name: tiny_credit
source: "made up for a test"
license: "CC0"
default_files: [credit.csv]
read:
  format: csv
  delimiter: ";"
  header: true
  na_values: ["NA", ""]
columns:
  years: {type: integer, min: 18, max: 99}
  status: {type: category, values: [A91, A92, A93]}
  amount: {type: number, min: 0, strict_min: true, max_missing: 0.5}
  outcome: {type: category, values: [good, bad]}
derived:
  age_group: {from: years, bins: [25], labels: ["<25", "25+"]}
  sex: {from: status, map: {A91: male, A92: female, A93: male}}
target: outcome
positive_label: bad
favourable_outcome: good
sensitive: [sex, age_group]
min_group_size: 2
exclude_from_features: [status]
"""

ROWS = """\
years;status;amount;outcome
19;A92;100;good
24;A91;NA;bad
25;A93;250.5;good
40;A92;80;bad
61;A91;1000;good
"""


def write(folder: Path, contract: str = CONTRACT, rows: str = ROWS, data_name: str = "credit.csv") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "contract.yaml").write_text(contract)
    if rows is not None:
        (folder / data_name).write_text(rows)
    return folder / "contract.yaml"


def one_line_error(path: Path, contract_text: str) -> str:
    path.write_text(contract_text)
    with pytest.raises(ConfigError) as err:
        get_contract(str(path))
    message = str(err.value)
    assert "\n" not in message and str(path) in message
    return message


# --------------------------------------------------------------------------- reading


def test_a_contract_file_or_its_folder_anywhere_on_disk(tmp_path):
    path = write(tmp_path / "somewhere")
    by_file, by_folder = get_contract(str(path)), get_contract(str(path.parent))
    assert by_file == by_folder and by_file.name == "tiny_credit"
    assert resolve_contract_ref(str(path.parent)) == str(path.resolve())
    assert resolve_contract_ref("adult") == "adult" and "adult" in CONTRACTS  # registered names still work
    c = by_file
    assert (c.target, c.positive_label, c.labels, c.favourable_outcome) == ("outcome", "bad", ("good", "bad"), "good")
    assert c.sensitive == ("sex", "age_group") and c.min_group_size == 2
    assert c.columns == ("years", "status", "amount", "outcome", "age_group", "sex")
    assert c.numeric == ("years", "amount") and c.categorical == ("status", "age_group", "sex")
    assert c.feature_columns == ("years", "amount", "age_group", "sex")  # target and exclusions dropped
    assert c.suite_path is None and c.default_files == (path.parent / "credit.csv",)


def test_generic_loader_reads_and_derives(tmp_path):
    c = get_contract(str(write(tmp_path)))
    df = load_dataset(c)
    assert list(df.columns) == ["years", "status", "amount", "outcome", "age_group", "sex"]
    assert df["years"].tolist() == [19, 24, 25, 40, 61]
    assert np.isnan(df.loc[1, "amount"]) and df.loc[2, "amount"] == 250.5  # "NA" is a declared NA token
    assert df["age_group"].tolist() == ["<25", "<25", "25+", "25+", "25+"]  # 25 falls in [25, inf)
    assert df["sex"].tolist() == ["female", "male", "male", "female", "male"]
    assert df["status"].tolist() == ["A92", "A91", "A93", "A92", "A91"]  # the source stays


def test_headerless_tsv_latin1_and_categories_read_as_text(tmp_path):
    contract = textwrap.dedent("""\
        name: tsv_case
        read: {format: tsv, header: false, encoding: latin-1, na_values: ["?"]}
        columns:
          city: {type: category, values: ["Köln", "Zürich"]}
          code: {type: category, values: [1, 2]}
          y: {type: category, values: ["0", "1"]}
        target: y
        sensitive: [city]
        min_group_size: 1
        """)
    path = write(tmp_path, contract, rows=None)
    data = tmp_path / "rows.tsv"
    data.write_bytes("Köln\t1\t0\nZürich\t2\t1\n?\t2\t1\n".encode("latin-1"))
    df = load_dataset(get_contract(str(path)), data)
    assert df["city"].tolist()[:2] == ["Köln", "Zürich"] and pd.isna(df.loc[2, "city"])
    assert df["code"].tolist() == ["1", "2", "2"]  # a declared category is text: 1 -> "1"
    assert df["y"].tolist() == ["0", "1", "1"]


def test_parquet(tmp_path):
    contract = CONTRACT.replace(
        '  format: csv\n  delimiter: ";"\n  header: true\n  na_values: ["NA", ""]\n', "  format: parquet\n"
    ).replace("credit.csv", "credit.parquet")
    path = write(tmp_path, contract, rows=None)
    pd.DataFrame(
        {"years": [30, 20], "status": ["A91", "A92"], "amount": [1.0, None], "outcome": ["good", "bad"]}
    ).to_parquet(tmp_path / "credit.parquet")
    df = load_dataset(get_contract(str(path)))
    assert df["age_group"].tolist() == ["25+", "<25"] and df["sex"].tolist() == ["male", "female"]


def test_a_fifo_is_refused_with_one_line(tmp_path):
    c = get_contract(str(write(tmp_path)))
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    with pytest.raises(DataError, match=r"pipe\.csv: not a regular file \(a FIFO \(named pipe\)\)"):
        load_dataset(c, fifo)  # refused before opening: a FIFO would block or be read only once


def test_derived_columns_by_hand():
    df = pd.DataFrame({"x": [np.nan, 5.0, 10.0, 99.0], "k": ["a", "b", None, "z"]})
    out = apply_derived(
        df,
        [
            DerivedSpec(name="band", source="x", bins=(5.0, 10.0), labels=("low", "mid", "high")),
            DerivedSpec(name="k", source="k", mapping=(("a", "A"), ("b", "B"))),  # in place, unmapped kept
            DerivedSpec(name="k2", source="k", mapping=(("A", "yes"),), default="no"),  # from the derived k
        ],
    )
    assert out["band"].isna().tolist() == [True, False, False, False]
    assert out["band"].tolist()[1:] == ["mid", "high", "high"]
    assert out["k"].tolist()[:2] == ["A", "B"] and pd.isna(out.loc[2, "k"]) and out.loc[3, "k"] == "z"
    assert out["k2"].tolist()[:2] == ["yes", "no"] and pd.isna(out.loc[2, "k2"]) and out.loc[3, "k2"] == "no"
    assert list(df.columns) == ["x", "k"]  # the input is not modified


# --------------------------------------------------------------------------- the generated suite


def test_generated_suite_by_hand(tmp_path):
    c = get_contract(str(write(tmp_path)))
    suite = load_suite(c)
    by_type: dict[str, list] = {}
    for e in suite["expectations"]:
        by_type.setdefault(e["type"], []).append(e["kwargs"])
    assert by_type["expect_table_columns_to_match_set"] == [
        {"column_set": ["years", "status", "amount", "outcome", "age_group", "sex"], "exact_match": True}
    ]
    assert [k["column"] for k in by_type["expect_column_values_to_be_in_type_list"]] == [
        "years",
        "status",
        "amount",
        "outcome",
    ]  # declared columns; derived ones are made here
    assert {k["column"]: k.get("mostly") for k in by_type["expect_column_values_to_not_be_null"]} == {
        "years": None,
        "status": None,
        "amount": 0.5,
        "outcome": None,
        "age_group": None,
        "sex": None,
    }
    assert {k["column"]: k["value_set"] for k in by_type["expect_column_values_to_be_in_set"]} == {
        "status": ["A91", "A92", "A93"],
        "outcome": ["good", "bad"],
        "age_group": ["<25", "25+"],
        "sex": ["male", "female"],
    }
    assert by_type["expect_column_values_to_be_between"] == [
        {"column": "years", "min_value": 18, "max_value": 99},
        {"column": "amount", "min_value": 0, "strict_min": True},
    ]
    groups = [e for e in suite["expectations"] if e.get("meta", {}).get("impactflow_check") == MIN_GROUP_CHECK]
    assert [
        (
            e["kwargs"]["row_condition"]["column"]["name"],
            e["kwargs"]["row_condition"]["parameter"],
            e["kwargs"]["min_value"],
        )
        for e in groups
    ] == [("sex", "male", 2), ("sex", "female", 2), ("age_group", "<25", 2), ("age_group", "25+", 2)]
    assert len(suite["expectations"]) == 2 + 4 + 6 + 4 + 1 + 2 + 2 * (1 + 2)


def test_generated_suite_passes_and_catches(tmp_path):
    c = get_contract(str(write(tmp_path)))
    df = load_dataset(c)
    assert validate(df, c).success
    bad = df.copy()
    bad.loc[0, "years"] = 17  # below the declared min
    bad.loc[4, "age_group"] = "<25"  # the 25+ group now has 2 rows: still enough
    report = validate(bad, c)
    assert not report.success
    assert [(f.expectation, f.column, f.unexpected_count) for f in report.failures] == [
        ("expect_column_values_to_be_between", "years", 1)
    ]


def test_a_declared_type_the_data_does_not_have_names_file_key_and_value(tmp_path):
    path = write(tmp_path, rows=ROWS.replace("40;A92", "forty;A92"))
    c = get_contract(str(path))
    report = validate(load_dataset(c), c)
    (failure,) = [f for f in report.failures if f.expectation == "expect_column_values_to_be_in_type_list"]
    line = failure.line()
    assert f"columns.years.type: integer in {path}" in line and "'forty'" in line and "\n" not in line


def test_hand_written_expectations_are_merged(tmp_path):
    path = write(tmp_path, CONTRACT.replace("default_files:", "suite: extra.json\ndefault_files:"))
    extra = {
        "name": "extra",
        "expectations": [
            {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "amount"}},
            {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 1}},  # already generated
        ],
    }
    (tmp_path / "extra.json").write_text(json.dumps(extra))
    c = get_contract(str(path))
    suite = load_suite(c)
    generated = generate_suite(c)
    assert suite["expectations"][:-1] == generated["expectations"]
    assert suite["expectations"][-1]["type"] == "expect_column_values_to_be_unique"


# --------------------------------------------------------------------------- bad contracts


@pytest.mark.parametrize(
    "old, new, expected",
    [
        (
            "min_group_size: 2",
            "min_group_size: 2\nsensitve: [sex]",
            "sensitve: unknown key (did you mean 'sensitive'?)",
        ),
        (
            "years: {type: integer",
            "years: {type: int",
            "columns.years.type: 'int' is not a known type (did you mean 'integer'?)",
        ),
        (
            "from: years, bins",
            "from: yaers, bins",
            "derived.age_group.from: 'yaers' is not a declared column (did you mean 'years'?)",
        ),
        (
            "status: {type: category, values: [A91, A92, A93]}",
            "status: {type: category, values: []}",
            "columns.status.values: empty list: a category needs at least one allowed value",
        ),
        (
            "favourable_outcome: good",
            "favourable_outcome: approved",
            "favourable_outcome: 'approved' is not one of the labels ['good', 'bad']",
        ),
        (
            "positive_label: bad",
            "positive_label: good_",
            "positive_label: 'good_' is not one of the labels ['good', 'bad']",
        ),
        (
            "positive_label: bad",
            "positive_label: yes",
            "positive_label: True is a boolean (YAML reads yes/no/on/off/true/false as booleans: quote the value",
        ),
        (
            "outcome: {type: category, values: [good, bad]}",
            "outcome: {type: category, values: [yes, no]}",
            "columns.outcome.values: True is a boolean",
        ),
        ("A93: male}", "A93: on}", "derived.sex.map: True is a boolean"),
        ("bins: [25]", "bins: [25, 20]", "derived.age_group.bins: edges must be strictly ascending, got [25, 20]"),
        (
            'labels: ["<25", "25+"]',
            'labels: ["<25"]',
            "derived.age_group.labels: expected 2 labels for 1 edge(s), got ['<25']",
        ),
        (
            "sensitive: [sex, age_group]",
            "sensitive: [sex, amount]",
            "columns.amount: a sensitive column must be a category with its values listed",
        ),
        ('  delimiter: ";"', '  delimiter: ";;"', "read.delimiter: expected one character, got ';;'"),
        ("  format: csv", "  format: xlsx", "read.format: 'xlsx' is not a known format"),
        ("  header: true", "  header: maybe", "read.header: expected true, false or auto, got 'maybe'"),
        ("read:\n", "loader: uci_adult\nread:\n", "read: give read: (the generic loader) or loader:"),
        (
            "amount: {type: number, min: 0,",
            "amount: {type: number, min: 10, max: 1,",
            "columns.amount.min: 10 is greater than max 1",
        ),
        ("min_group_size: 2", "min_group_size: 0", "min_group_size: expected a whole number >= 1, got 0"),
        ("name: tiny_credit", "name: ../evil", "name: '../evil' is not a safe name"),
    ],
)
def test_bad_contract_one_line_naming_file_key_and_value(tmp_path, old, new, expected):
    assert old in CONTRACT
    message = one_line_error(tmp_path / "contract.yaml", CONTRACT.replace(old, new))
    assert message.startswith(f"Contract file {tmp_path / 'contract.yaml'}: ")
    assert expected in message


def test_unknown_contract_reference(tmp_path):
    with pytest.raises(ConfigError, match=r"Contract file .*nowhere.*contract\.yaml: not found"):
        get_contract(str(tmp_path / "nowhere" / "contract.yaml"))
    with pytest.raises(ConfigError, match=r"Unknown data contract 'adlt'"):
        get_contract("adlt")


def test_an_edited_contract_is_read_again(tmp_path):
    path = write(tmp_path)
    assert get_contract(str(path)).min_group_size == 2
    path.write_text(CONTRACT.replace("min_group_size: 2", "min_group_size: 3"))
    os.utime(path, ns=(1, 1))  # another mtime even on a coarse clock
    assert get_contract(str(path)).min_group_size == 3


def test_run_config_takes_a_contract_path_and_checks_it_before_any_task(tmp_path, monkeypatch):
    from impactflow.flows.config import load_config

    write(tmp_path / "mine")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(
        ConfigError,
        match=r"^gates\.fairness\.intersections: 'race' is not a sensitive column of "
        r"contract 'tiny_credit' \(sensitive: sex, age_group\); list combinations of those, or set it to "
        r"null for all of them combined$",
    ):
        # Adult's [[sex, race]] on a contract without race: refused before training
        load_config("tabular", ["data.contract=mine", "gates.fairness.intersections=[[sex, race]]"])
    assert load_config("tabular", ["data.contract=mine"]).gates["fairness"].get("intersections") is None  # all combined
    cfg = load_config(
        "tabular",
        [
            "data.contract=mine",
            f"tracking.output_dir={tmp_path / 'out'}",
            "gates.fairness.intersections=[[sex, age_group]]",
        ],
    )
    assert load_config("tabular", ["data.contract=mine", "gates.fairness.intersections=null"])
    assert cfg.data.contract == str((tmp_path / "mine" / "contract.yaml").resolve())  # absolute for every task
    (tmp_path / "mine" / "contract.yaml").write_text(
        CONTRACT.replace("favourable_outcome: good", "favourable_outcome: approved")
    )
    with pytest.raises(ConfigError, match=r"contract\.yaml: favourable_outcome: 'approved' is not one of"):
        load_config("tabular", ["data.contract=mine/contract.yaml"])
    with pytest.raises(ConfigError, match=r"data\.contract='nope': unknown contract"):
        load_config("tabular", ["data.contract=nope"])
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match=r"data\.path: .*pipe\.csv: not a regular file \(a FIFO"):
        load_config("tabular", [f"data.path={fifo}"])  # Adult, registered


def test_the_validation_cache_key_of_a_map_is_the_same_in_every_process():
    from impactflow.data_contracts.validation_cache import _field_text

    text = _field_text(get_contract("adult").derived)  # Adult's label map keeps unmapped values
    assert "default=keep" in text and " at 0x" not in text  # no object address (it differs per process)


def test_a_registered_special_reader_with_declared_columns(tmp_path):
    """``loader:`` (a registered reader) instead of ``read:``: the suite is still generated."""
    import yaml

    from impactflow.data_contracts.adult import load_uci_adult

    adult = get_contract("adult")
    raw = yaml.safe_load(adult.contract_path.read_text())
    del raw["read"], raw["derived"]  # the UCI reader strips adult.test's label dots itself
    raw["loader"] = "uci_adult"
    raw["default_files"] = [str(p) for p in adult.default_files]
    path = tmp_path / "contract.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    c = get_contract(str(path))
    assert c.loader is load_uci_adult and c.derived == ()

    def checks(contract):
        return [(e["type"], e["kwargs"]) for e in load_suite(contract)["expectations"]]

    assert checks(c) == checks(adult)
    raw["loader"] = "uci_adlt"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    with pytest.raises(ConfigError, match=r"contract\.yaml: loader: unknown loader 'uci_adlt'"):
        get_contract(str(path))
