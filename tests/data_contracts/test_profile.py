"""impactflow init (issue 21, item 2): a starting contract.yaml + preset from a profile of the data.
The contract it writes loads with get_contract and meets its own generated suite on the file."""

from __future__ import annotations


import pytest
import yaml

from impactflow.data_contracts import get_contract, load_dataset
from impactflow.errors import ConfigError
from impactflow.data_contracts.profile import profile_file


def _rows(n: int = 60) -> list[str]:
    """Deterministic rows: id, age, job (with NA), sex (F/M), hours, answer (yes/no)."""
    jobs = ["clerk", "nurse", "NA", "driver"]
    out = []
    for i in range(n):
        out.append(
            f"{1_000_000 + i * 7};{20 + i % 41};{jobs[i % 4]};{'F' if i % 3 else 'M'};{30 + (i % 5) * 2.5};"
            f"{'yes' if i % 2 else 'no'}"
        )
    return out


@pytest.fixture
def semicolon_csv(tmp_path):
    p = tmp_path / "survey.csv"
    p.write_text("person_id;age;job;sex;hours;answer\n" + "\n".join(_rows()) + "\n")
    return p


def _write(tmp_path, prof):
    (tmp_path / "contract.yaml").write_text(prof.contract_yaml)
    return get_contract(str(tmp_path / "contract.yaml"))


def test_profile_of_a_semicolon_file(semicolon_csv, tmp_path):
    prof = profile_file(semicolon_csv, "answer", ["sex", "age"], contract_ref="contract.yaml", data_ref="survey.csv")
    raw = yaml.safe_load(prof.contract_yaml)
    assert raw["read"] == {"format": "csv", "delimiter": ";", "header": True, "na_values": ["", "NA"]}
    cols = raw["columns"]
    assert cols["age"] == {"type": "integer", "min": 20, "max": 60}
    assert cols["hours"] == {"type": "number", "min": 30, "max": 40}
    # 15 of 60 jobs are NA: a category of the three others (most frequent first), 25% missing allowed
    assert cols["job"] == {"type": "category", "values": ["clerk", "nurse", "driver"], "max_missing": 0.25}
    assert cols["sex"] == {"type": "category", "values": ["F", "M"]}  # 40 F, 20 M
    assert cols["answer"] == {"type": "category", "values": ["no", "yes"]}  # 'yes'/'no' stay text, quoted
    assert "person_id" in raw["exclude_from_features"]  # unique long numbers: an identifier
    assert "REVIEW: looks like an identifier" in prof.contract_yaml
    # the numeric sensitive column is audited as a band split at its median: ages 20..38 twice and
    # 39..60 once, so the 30th and 31st of 60 are 34 and 35: median 34.5, an integer edge 35 (30 / 30 rows)
    assert raw["derived"] == {"age_band": {"from": "age", "bins": [35]}}
    assert raw["sensitive"] == ["sex", "age_band"]
    assert raw["target"] == "answer" and raw["positive_label"] == "yes" and raw["favourable_outcome"] == "yes"
    assert raw["min_group_size"] == 20  # the smallest group (20 M) is below 30: lowered, and said
    assert any(line.startswith("min_group_size: lowered from 30 to 20") for line in prof.review)
    assert any(line.startswith("favourable_outcome:") for line in prof.review)
    preset = yaml.safe_load(prof.preset_yaml)
    assert preset["extends"] == "tabular" and preset["data"] == {"contract": "contract.yaml", "path": "survey.csv"}
    assert preset["gates"]["fairness"]["intersections"] == [["sex", "age_band"]]

    contract = _write(tmp_path, prof)
    df = load_dataset(contract, semicolon_csv)
    assert len(df) == 60 and int(df["job"].isna().sum()) == 15
    assert df["age_band"].value_counts().to_dict() == {"<35": 30, "35+": 30}
    assert "person_id" not in contract.feature_columns


def test_the_written_contract_meets_its_own_suite(semicolon_csv, tmp_path):
    from impactflow.data_contracts.validation import validate

    contract = _write(tmp_path, profile_file(semicolon_csv, "answer", ["sex", "age"]))
    report = validate(load_dataset(contract, semicolon_csv), contract)
    assert report.success, [f.description for f in report.failures]
    assert report.total_expectations > 20


def test_no_header_tab_separated_latin1(tmp_path):
    p = tmp_path / "plain.tsv"
    rows = [f"{'Zoë' if i % 2 else 'Åsa'}\t{i % 3}\t{'ok' if i % 4 else 'bad'}" for i in range(40)]
    p.write_bytes(("\n".join(rows) + "\n").encode("latin-1"))
    prof = profile_file(p, "col3", ["col2"], positive_label="bad", favourable="ok")
    raw = yaml.safe_load(prof.contract_yaml)
    assert raw["read"] == {"format": "tsv", "header": False, "encoding": "latin-1", "na_values": [""]}
    assert raw["columns"]["col2"] == {"type": "category", "values": ["0", "1", "2"]}  # codes stay text
    assert raw["positive_label"] == "bad" and raw["favourable_outcome"] == "ok"
    assert not any(line.startswith(("positive_label", "favourable")) for line in prof.review)
    contract = _write(tmp_path, prof)
    df = load_dataset(contract, p)
    assert list(df.columns) == ["col1", "col2", "col3"] and set(df["col1"]) == {"Zoë", "Åsa"}


def test_free_text_is_not_a_category(tmp_path):
    p = tmp_path / "notes.csv"
    p.write_text(
        "note,g,y\n"
        + "\n".join(f"note number {i} about things,{'a' if i % 2 else 'b'},{i % 2}" for i in range(80))
        + "\n"
    )
    raw = yaml.safe_load(profile_file(p, "y", ["g"]).contract_yaml)
    assert raw["columns"]["note"] == {"type": "text"}
    assert raw["columns"]["y"] == {"type": "category", "values": ["0", "1"]}  # 40 each: first seen first
    assert raw["positive_label"] == "1"


@pytest.mark.parametrize(
    "label, sensitive, message",
    [
        ("answr", ["sex"], "--label 'answr': not a column of"),
        ("answer", ["sexx"], "--sensitive 'sexx': not a column of"),
        ("answer", ["answer"], "--sensitive 'answer': the label cannot also be a sensitive column"),
        ("person_id", ["sex"], "--label 'person_id': 60 distinct values"),
    ],
)
def test_bad_arguments_are_one_line(semicolon_csv, label, sensitive, message):
    with pytest.raises(ConfigError) as exc:
        profile_file(semicolon_csv, label, sensitive)
    assert str(exc.value).startswith(message) and "\n" not in str(exc.value)
    if "not a column" in message:
        assert "did you mean" in str(exc.value)


def test_a_one_value_label_is_refused(tmp_path):
    p = tmp_path / "one.csv"
    p.write_text("g,y\n" + "\n".join(f"{'a' if i % 2 else 'b'},x" for i in range(10)) + "\n")
    with pytest.raises(ConfigError, match="1 distinct value"):
        profile_file(p, "y", ["g"])


def test_init_command_writes_both_files_and_refuses_to_overwrite(semicolon_csv, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from impactflow.flows.cli import app

    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    args = ["init", "--data", "survey.csv", "--label", "answer", "--sensitive", "sex, age", "--out", "mine"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "wrote mine/contract.yaml (7 columns; target answer; sensitive: sex, age_band)" in r.output
    assert "impactflow run --config mine/run.yaml" in r.output and "Review before the first run" in r.output
    preset = yaml.safe_load((tmp_path / "mine" / "run.yaml").read_text())
    assert preset["data"] == {"contract": "mine/contract.yaml", "path": "survey.csv"}
    from impactflow.flows.config import load_config

    cfg = load_config(str(tmp_path / "mine" / "run.yaml"))  # the preset passes every pre-run check
    assert cfg.data.contract == str(tmp_path / "mine" / "contract.yaml")
    r = runner.invoke(app, args)
    assert r.exit_code == 1 and "mine/contract.yaml: exists" in r.output
    r = runner.invoke(app, ["init", "--data", "survey.csv", "--label", "answer", "--sensitive", "sx", "--out", "o2"])
    assert r.exit_code == 1 and "--sensitive 'sx': not a column" in r.output and "Traceback" not in r.output


def test_parquet_keeps_its_types(tmp_path):
    pytest.importorskip("pyarrow")
    import pandas as pd

    df = pd.DataFrame(
        {
            "score": [0.5 + i / 100 for i in range(40)],
            "n": list(range(40)),
            "grp": ["x", "y"] * 20,
            "out": ["good", "bad", "good", "good"] * 10,
        }
    )
    df.loc[3, "score"] = None
    p = tmp_path / "t.parquet"
    df.to_parquet(p)
    prof = profile_file(p, "out", ["grp"], positive_label="good")
    raw = yaml.safe_load(prof.contract_yaml)
    assert raw["read"] == {"format": "parquet"}
    assert raw["columns"]["score"] == {"type": "number", "min": 0.5, "max": 0.89, "max_missing": 0.03}  # 1 of 40
    assert raw["columns"]["n"]["type"] == "integer" and raw["columns"]["out"]["values"] == ["good", "bad"]
    contract = _write(tmp_path, prof)
    from impactflow.data_contracts.validation import validate

    assert validate(load_dataset(contract, p), contract).success
