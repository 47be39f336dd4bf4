"""The streamed engine: the same aggregates and sample whatever the threads, units or schedule;
the merge tree is fixed by the number of leaves."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from impactflow.data_contracts.sources import resolve
from impactflow.tasks.stream_audit import Reservoir, StreamSettings, fold, run_dask, run_local

SETTINGS = StreamSettings(
    label="y",
    sensitive=("g", "h"),
    positive="1",
    score="score",
    prediction=None,
    threshold=0.5,
    score_kind="probability",
    max_levels=100,
    max_cells=100,
    sample_rows=50,
    seed=7,
)


def log(tmp_path, files=3, n=1_000):
    rng = np.random.default_rng(0)
    for i in range(files):
        pq.write_table(
            pa.table(
                {
                    "y": rng.integers(0, 2, n),
                    "score": rng.random(n),
                    "g": rng.choice(["a", "b", "c"], n),
                    "h": rng.integers(0, 4, n),
                    "row": np.arange(i * n, (i + 1) * n),
                }
            ),
            tmp_path / f"part-{i}.parquet",
            row_group_size=300,
        )
    return resolve(str(tmp_path), ["y", "score", "g", "h"])


def test_fold_merges_along_a_tree_fixed_by_the_count():
    assert fold("abcde", lambda a, b: f"({a}{b})") == "(((ab)(cd))e)"
    assert fold(iter("abcdefg"), lambda a, b: f"({a}{b})") == "(((ab)(cd))((ef)g))"
    assert fold(["x"], lambda a, b: a + b) == "x"


def test_threads_and_dask_give_bit_identical_aggregates_and_the_same_sample(tmp_path):
    src = log(tmp_path)
    one, s1 = run_local(src, SETTINGS, threads=1)
    two, s2 = run_local(src, SETTINGS, threads=2)
    dsk, s3 = run_dask(src, SETTINGS, None)
    assert one.rows == two.rows == dsk.rows == 3_000
    for other in (two, dsk):
        assert other.cell_values() == one.cell_values()
        for name in one._arrays():
            assert np.array_equal(getattr(one, name)[: one.n_cells], getattr(other, name)[: other.n_cells]), name
    assert s1.to_pandas().equals(s2.to_pandas()) and s1.to_pandas().equals(s3.to_pandas())
    assert len(s1.to_pandas()) == 50


def test_the_reservoir_is_a_uniform_sample():
    counts = np.zeros(10)
    for seed in range(400):
        r = Reservoir(5, seed, 0)
        for start in range(0, 100, 30):  # batches of 30 rows
            r.add(pa.record_batch({"i": np.arange(start, min(start + 30, 100))}))
        picked = r.to_pandas()["i"].to_numpy()
        assert len(set(picked)) == 5
        counts += np.bincount(picked // 10, minlength=10)
    # 400 samples x 5 rows over 10 deciles: 200 each; a biased reservoir (e.g. keeping the first
    # batch) puts hundreds in the first decile
    assert counts.min() > 150 and counts.max() < 250
