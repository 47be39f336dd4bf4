"""The streamed audit of a PostgreSQL query or table (``impactflow audit --data postgresql://…
--query/--table``): 1M rows COPYed into a table of a fresh database on the local server.

- ``--query "SELECT … FROM t WHERE …"``: the same numbers as the in-memory audit of the same rows
  from a Parquet file (counts and rates to 1e-12, AUCs within the reported bound), and the row
  count and a group's counts by hand;
- ``--table t``: every row, the missing values counted, and a password in the URL nowhere in
  what the run writes or prints;
- a query the server refuses: one line naming the problem, exit 1, nothing written.

Skips (with the reason) only when no PostgreSQL is reachable, as the other topology tests.
"""

from __future__ import annotations

import io
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from tests.flows.test_stream_audit import (
    assert_nothing_written,
    assert_one_error_line,
    assert_same_audits,
    audit_in_process,
    audits_of,
    decision_log,
    report_of,
    roles,
)
from tests.topology import servers

REASON = servers.postgres_reachable()
pytestmark = [pytest.mark.topology, pytest.mark.skipif(REASON is not None, reason=REASON or "")]

N = 1_000_000
QUERY = "SELECT y, score, region, sex, age_band FROM t WHERE day < 20"
SECRET = "s3cret-not-to-be-shown"


def _load(dbname: str, df) -> None:
    """``df`` into table ``t`` through COPY from a CSV buffer (floats written exactly: repr)."""
    import psycopg2

    conn = psycopg2.connect(host=servers.PG_HOST, port=servers.PG_PORT, user=servers.PG_USER, dbname=dbname)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                "CREATE TABLE t (id bigint PRIMARY KEY, y smallint NOT NULL, score double precision NOT NULL, "
                "region text NOT NULL, sex text NOT NULL, age_band text, day integer NOT NULL)"
            )
            buf = io.StringIO()
            df[["id", "y", "score", "region", "sex", "age_band", "day"]].to_csv(buf, index=False, header=False)
            buf.seek(0)
            cur.copy_expert("COPY t FROM STDIN WITH (FORMAT csv)", buf)  # an empty field: NULL
            cur.execute("ANALYZE t")
    finally:
        conn.close()


@pytest.fixture(scope="module")
def pg(impactflow_process, tmp_path_factory):
    """The table, then three ``impactflow audit`` processes side by side (the query, the table
    through a URL with a password, a refused query) while the query's rows are audited in
    memory from a Parquet file in this process."""
    root = tmp_path_factory.mktemp("stream_pg")
    df = decision_log(N, seed=21, effect=0.0).drop(columns=["logit"])
    df.insert(0, "id", np.arange(N))
    df["day"] = np.random.default_rng(22).integers(0, 30, N)
    name = f"impactflow_test_stream_{os.getpid()}"
    with servers.database(name) as db:
        _load(name, df)
        url = f"postgresql://{db}"
        user, rest = db.split("@", 1)
        three = [*roles("region,sex,age_band"), "--intersections", "none"]  # each column's gates only
        runs = {
            "query": ["--data", url, "--query", QUERY, *three],
            "table": ["--data", f"postgresql://{user}:{SECRET}@{rest}", "--table", "t", *three],
            "refused": ["--data", url, "--query", "SELECT * FROM no_such_table", *roles()],
        }

        def run(key):
            out = root / key
            return impactflow_process("audit", *runs[key], "--output-dir", str(out), cwd=root), out

        with ThreadPoolExecutor(max_workers=3) as pool:
            futures = {key: pool.submit(run, key) for key in runs}
            rows = df[df["day"] < 20]
            rows[["y", "score", "region", "sex", "age_band"]].to_parquet(root / "rows.parquet", index=False)
            _, memory = audit_in_process(
                root / "rows.parquet",
                root / "memory",
                f"sqlite:///{root / 'mlflow.db'}",
                sensitive=["region", "sex", "age_band"],
                intersections=[],
                engine="memory",
            )
            done = {key: f.result() for key, f in futures.items()}
        yield {"df": df, "url": url, "memory": memory, **done}


def test_a_query_is_audited_like_the_same_rows_from_a_parquet_file(pg):
    r, out = pg["query"]
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert "Traceback" not in r.stdout + r.stderr
    report = report_of(out)
    assert_same_audits(pg["memory"], report)
    # by hand: the rows the WHERE keeps, one group's counts
    df = pg["df"]
    rows = df[df["day"] < 20]
    assert report["data"]["n_rows"] == len(rows) and 600_000 < len(rows) < 730_000
    data = report["data"]
    assert data["source"] == f"{pg['url']}: {QUERY}" and data["files"] == []
    assert data["missing"] == {"age_band": int(rows["age_band"].isna().sum())}
    full = data["contract_result"]["statistics"]["full_data"]
    assert full["rows"] == len(rows) and full["label_values"] == {
        "1": int(rows["y"].sum()),
        "0": int((rows["y"] == 0).sum()),
    }
    m = (rows["region"] == "r2").to_numpy()
    y, pred = rows["y"].to_numpy() == 1, rows["score"].to_numpy() >= 0.5
    row = next(r for r in audits_of(report)["fairness"]["by_group"] if (r["attribute"], r["group"]) == ("region", "r2"))
    assert (row["n"], row["tp"], row["fp"]) == (int(m.sum()), int((m & y & pred).sum()), int((m & ~y & pred).sum()))


def test_a_table_is_read_whole_and_the_password_is_nowhere(pg):
    r, out = pg["table"]
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    report = report_of(out)
    df = pg["df"]
    assert report["data"]["n_rows"] == N
    full = report["data"]["contract_result"]["statistics"]["full_data"]
    assert full["rows"] == N and full["label_values"] == {"1": int(df["y"].sum()), "0": int((df["y"] == 0).sum())}
    assert full["nulls"]["age_band"] == int(df["age_band"].isna().sum()) > 0  # a NULL is a missing value
    assert report["data"]["source"] == f'{pg["url"]}: SELECT * FROM "t"'  # the URL without the password
    sex = {r["group"]: r["n"] for r in report["data"]["representation"] if r["attribute"] == "sex"}
    assert sex == {"F": int((df["sex"] == "F").sum()), "M": int((df["sex"] == "M").sum())}
    assert SECRET not in r.stdout + r.stderr
    for path in out.rglob("*"):  # the report, the evidence, the Data Docs, the MLflow store
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def test_a_refused_query_is_one_line_and_nothing_written(pg):
    r, out = pg["refused"]
    assert_one_error_line(r, "--query: the server refused it", 'relation "no_such_table" does not exist')
    assert_nothing_written(out)
