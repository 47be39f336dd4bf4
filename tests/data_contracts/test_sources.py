"""Sources of a streamed audit: checked before a row is aggregated (one line naming the file,
column or value), units of work and batches, hive partition values as columns."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from impactflow.data_contracts.sources import file_batches, public_url, resolve, without_password
from impactflow.errors import ConfigError, DataError

COLS = ["y", "score", "g"]


def write(path, n=100, seed=0, **columns):
    rng = np.random.default_rng(seed)
    data = {"y": rng.integers(0, 2, n), "score": rng.random(n), "g": rng.choice(["a", "b"], n)}
    data.update(columns)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(data), path, row_group_size=40)
    return path


def test_a_hive_folder_becomes_files_units_and_partition_columns(tmp_path):
    write(tmp_path / "log" / "region=north" / "part-0.parquet", 100)
    write(tmp_path / "log" / "region=south" / "part-0.parquet", 50, seed=1)
    (tmp_path / "log" / "_SUCCESS").write_text("")  # markers and hidden files are not data
    src = resolve(str(tmp_path / "log"), [*COLS, "region"])
    assert src.n_rows == 150 and len(src.files) == 2
    assert src.partitions == ({"region": "north"}, {"region": "south"})
    # 40-row groups: 3 + 2 of them, each file one unit (far below UNIT_ROWS)
    assert src.units == ((0, (0, 1, 2)), (1, (0, 1)))
    batches = list(file_batches(src, 1, [*COLS, "region"], ["y", "g", "region"]))
    assert sum(b.num_rows for b in batches) == 50
    assert batches[0].column("region").dictionary.to_pylist() == ["south"]


def test_big_files_are_cut_into_runs_of_row_groups(tmp_path, monkeypatch):
    import impactflow.data_contracts.sources as sources

    monkeypatch.setattr(sources, "UNIT_ROWS", 80)
    src = resolve(str(write(tmp_path / "one.parquet", 200)), COLS)  # groups of 40, 40, 40, 40, 40
    assert src.units == ((0, (0, 1)), (0, (2, 3)), (0, (4,)))
    assert [sum(b.num_rows for b in file_batches(src, u, COLS, ["y", "g"])) for u in range(3)] == [80, 80, 40]


def test_bad_sources_are_one_line_naming_the_file_or_column(tmp_path):
    with pytest.raises(DataError, match=r"no file matches"):
        resolve(str(tmp_path / "*.parquet"), COLS)
    write(tmp_path / "mixed" / "a.parquet")
    write(tmp_path / "mixed" / "b.parquet", score=np.array(["0.5"] * 100))
    with pytest.raises(DataError, match=r"b.parquet: column 'score' is string, but double in .*a.parquet"):
        resolve(str(tmp_path / "mixed"), COLS)
    bad = write(tmp_path / "corrupt" / "a.parquet")
    bad.write_bytes(bad.read_bytes()[:-20])  # the footer cut off
    with pytest.raises(DataError, match=r"a.parquet: not a readable Parquet file"):
        resolve(str(tmp_path / "corrupt"), COLS)
    with pytest.raises(DataError, match=r"a.parquet: no column 'label'"):
        resolve(str(tmp_path / "mixed" / "a.parquet"), ["label"])
    (tmp_path / "both").mkdir()
    write(tmp_path / "both" / "a.parquet")
    (tmp_path / "both" / "b.csv").write_text("y,score,g\n1,0.5,a\n")
    with pytest.raises(DataError, match=r"mixes Parquet \(a.parquet\) and CSV \(b.csv\)"):
        resolve(str(tmp_path / "both"), COLS)
    for err in (DataError, ConfigError):
        with pytest.raises(err) as caught:
            if err is DataError:
                resolve(str(tmp_path / "nope.parquet"), COLS)
            else:
                resolve("postgresql://u:secret@h/db", COLS)  # neither --query nor --table
        assert "\n" not in str(caught.value) and "secret" not in str(caught.value)
    with pytest.raises(ConfigError, match=r"--table 'x; drop table y': expected NAME or SCHEMA.NAME"):
        resolve("postgresql://u@h/db", COLS, table="x; drop table y")


def test_csv_files_are_one_unit_each_and_read_in_batches(tmp_path):
    (tmp_path / "a.csv").write_text("y,score,g\n" + "1,0.9,a\n0,0.1,b\n" * 50)
    src = resolve(str(tmp_path / "a.csv"), COLS)
    assert src.format == "csv" and src.units == ((0, None),) and src.n_rows is None
    (batch,) = list(file_batches(src, 0, COLS, ["y", "g"]))
    assert batch.num_rows == 100 and batch.schema.field("y").type == pa.string()  # text: '1' like 1


def test_the_password_never_shows():
    assert public_url("postgresql://auditor:s3cr3t@db:5432/loans") == "postgresql://auditor:***@db:5432/loans"
    assert public_url("postgresql://auditor@db/loans") == "postgresql://auditor@db/loans"
    # the CLI moves it to PGPASSWORD: the flow run's parameters never see it
    assert without_password("postgresql://auditor:p%40ss@db:5432/loans") == (
        "postgresql://auditor@db:5432/loans",
        "p@ss",
    )
    assert without_password("postgresql://auditor@db/loans") == ("postgresql://auditor@db/loans", None)
