"""The streamed audit-only path (``impactflow audit --engine stream|dask``), end to end.

- Exactness: a seeded 1M-row decision log (3 sensitive columns of 8, 2 and 5 levels, 1% of one
  missing) audited in memory from one Parquet file and streamed from a hive-partitioned folder of
  8 files: the report's counts, rates and by-group rows equal to 1e-12, every AUC within the error
  bound the streamed report gives beside it, and a few numbers counted here by hand.
- Dask: the same pass on a ``LocalCluster`` of two worker processes gives the local stream
  engine's report numbers bit for bit (the merge tree is fixed).
- Bad input: one ``error:`` line naming the file, column or value, exit 1, no traceback, nothing
  written (no run folder, no MLflow run).
- SIGKILL during the aggregation pass leaves nothing, and a rerun succeeds.

The audits compared with each other run in this process (``run_audit_only`` under the session's
Prefect server, as ``tests/evidence/test_audit_only.py`` does: the imports are paid once); what a
user sees (errors, exit codes, a killed and rerun command) runs as ``impactflow audit`` processes,
the bad-input ones side by side.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from impactflow.audits.aggregates import expit
from impactflow.tasks.progress import HOLD_MARK
from tests.reliability.hold import kill_when_held

pytestmark = pytest.mark.e2e

REGIONS = [f"r{i}" for i in range(8)]
SEXES = ["F", "M"]
AGES = ["18-25", "26-35", "36-50", "51-65", "66+"]
SENSITIVE = ["region", "sex", "age_band"]
AUDITS = ("fairness", "performance", "calibration_by_group")  # what a streamed audit computes


def decision_log(n: int, seed: int, effect: float = 0.3, missing: float = 0.01) -> pd.DataFrame:
    """A seeded decision log: label ``y`` (0/1), ``score`` = P(y = 1) of a model (``logit``: its
    log-odds), ``region`` (8 levels), ``sex`` (2), ``age_band`` (5, plus ``missing`` of None).
    ``effect``: how much region and sex shift the risk (0: no group differences)."""
    rng = np.random.default_rng(seed)
    region, sex, age = rng.integers(0, 8, n), rng.integers(0, 2, n), rng.integers(0, 5, n)
    risk = rng.normal(size=n) + effect * (region / 7 - sex)
    y = (rng.random(n) < expit(1.5 * risk)).astype(np.int64)
    logit = risk + rng.normal(scale=0.7, size=n)
    age_band = np.array(AGES, dtype=object)[age]
    age_band[rng.random(n) < missing] = None
    return pd.DataFrame(
        {
            "y": y,
            "score": expit(logit),
            "logit": logit,
            "region": np.array(REGIONS)[region],
            "sex": np.array(SEXES)[sex],
            "age_band": age_band,
        }
    )


def roles(sensitive: str = "region,sex") -> list[str]:
    return ["--label", "y", "--score", "score", "--sensitive", sensitive]


def audit_in_process(data, output_dir: Path, uri: str, **kwargs) -> tuple[dict, dict]:
    """(summary, report) of ``run_audit_only`` on ``data`` (label y, score score), tracked in ``uri``."""
    from impactflow.flows.audit_only import run_audit_only

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        summary = run_audit_only(data=str(data), label="y", score="score", output_dir=str(output_dir), **kwargs)
    return summary, json.loads(Path(summary["report"]["json"]).read_text())


def report_of(output_dir: Path) -> dict:
    (path,) = list((output_dir / "runs").glob("*/reports/impact_report.json"))
    return json.loads(path.read_text())


def audits_of(report: dict) -> dict:
    return report["models"][0]["audits"]


def mlflow_runs(db: Path) -> list[tuple[str, str]]:
    """(run id, status) of every run in the SQLite store (none when the file does not exist)."""
    if not db.exists():
        return []
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)) as con:
        if not con.execute("SELECT name FROM sqlite_master WHERE name = 'runs'").fetchall():
            return []
        return con.execute("SELECT run_uuid, status FROM runs").fetchall()


def assert_nothing_written(output_dir: Path) -> None:
    runs = output_dir / "runs"
    assert not runs.exists() or not any(runs.iterdir()), f"a run folder was written: {list(runs.iterdir())}"
    assert mlflow_runs(output_dir / "mlflow.db") == [], "an MLflow run was opened"
    assert not list(output_dir.rglob("*.tmp")), "a temporary file was left"


def assert_one_error_line(r: subprocess.CompletedProcess, *expected: str) -> str:
    """Exit 1, no traceback, stderr one ``error:`` line holding every ``expected`` text; returns it."""
    assert "Traceback" not in r.stdout + r.stderr, r.stderr[-3000:]
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert r.returncode == 1, (r.returncode, r.stdout[-2000:], r.stderr[-3000:])
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr[-3000:]
    for text in expected:
        assert text in lines[0], f"{text!r} not in {lines[0]!r}"
    return lines[0]


# ----------------------------------------------------------------------------- comparison


def _close(a, b, tol: float, where: str) -> None:
    if isinstance(a, (int, float)) and not isinstance(a, bool) and a is not None and b is not None:
        if np.isnan(a) and np.isnan(b):
            return
        assert abs(a - b) <= tol, f"{where}: {a!r} vs {b!r} (|diff| {abs(a - b):.3g} > {tol:.3g})"
    else:
        assert a == b, f"{where}: {a!r} vs {b!r}"


def assert_same_audits(memory: dict, streamed: dict, tol: float = 1e-12) -> None:
    """The streamed report's fairness, performance and calibration-by-group numbers equal the
    in-memory report's: counts and rates to ``tol``; each AUC within the error bound the streamed
    report gives beside it (a group's ``roc_auc_error_bound``; for a gap between two groups' AUCs,
    twice the largest bound of the attribute's groups). The streamed report only adds the bounds."""
    mem, st = audits_of(memory), audits_of(streamed)
    bounds: dict[str, float] = {}
    for r in st["calibration_by_group"]["by_group"]:
        bounds[r["attribute"]] = max(bounds.get(r["attribute"], 0.0), r["roc_auc_error_bound"])
    eval_bound = st["performance"]["metrics"]["eval/roc_auc_error_bound"]
    assert 0 < eval_bound < 1e-3 and all(0 < b < 1e-3 for b in bounds.values()), (eval_bound, bounds)
    for name in AUDITS:
        m, s = mem[name], st[name]
        assert m["status"] == s["status"], name
        assert set(s["metrics"]) - set(m["metrics"]) <= {"eval/roc_auc_error_bound"}, name
        assert set(m["metrics"]) <= set(s["metrics"]), name
        for key, value in m["metrics"].items():
            if key == "eval/roc_auc":
                limit = eval_bound
            elif key.endswith("/roc_auc_gap"):
                limit = 2 * bounds[key.split("/")[1]]
            else:
                limit = tol
            _close(value, s["metrics"][key], limit, f"{name} {key}")
        m_rows = {(r["attribute"], r["group"]): r for r in m["by_group"]}
        s_rows = {(r["attribute"], r["group"]): r for r in s["by_group"]}
        assert list(m_rows) == list(s_rows), name  # the same groups, in the same order
        for group, row in m_rows.items():
            other = s_rows[group]
            assert set(other) - set(row) <= {"roc_auc_error_bound"} and set(row) <= set(other), (name, group)
            for key, value in row.items():
                limit = other["roc_auc_error_bound"] if key == "roc_auc" else tol
                _close(value, other[key], limit, f"{name} {group} {key}")
        assert [(g["name"], g["status"]) for g in m["gates"]] == [(g["name"], g["status"]) for g in s["gates"]]


# ----------------------------------------------------------------------------- 1. exactness


@pytest.fixture(scope="module")
def exact(prefect_api, tmp_path_factory):
    """One in-memory audit of a 1M-row Parquet file, one streamed audit of the same rows as a
    hive-partitioned folder (``region=rK/part-0.parquet``: region comes from the folder names)."""
    root = tmp_path_factory.mktemp("stream_exact")
    df = decision_log(1_000_000, seed=11).drop(columns=["logit"])
    one = root / "all.parquet"
    df.to_parquet(one, index=False)
    folder = root / "log"
    for region, part in df.groupby("region", sort=True):
        (folder / f"region={region}").mkdir(parents=True)
        part.drop(columns=["region"]).to_parquet(folder / f"region={region}" / "part-0.parquet", index=False)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    runs = {
        engine: audit_in_process(data, root / engine, uri, sensitive=SENSITIVE, engine=engine)
        for engine, data in (("stream", folder), ("memory", one))
    }
    return {"df": df, "db": root / "mlflow.db", **runs}


def test_streamed_audit_of_a_folder_equals_the_in_memory_audit(exact):
    (_, memory), (_, streamed) = exact["memory"], exact["stream"]
    assert "(8 PARQUET files, " in streamed["data"]["source"]
    assert_same_audits(memory, streamed)
    # the representation table too: a missing value is the group '(missing)' in both, as in the
    # by-group tables
    named = memory["data"]["representation"]
    assert "(missing)" in {r["group"] for r in named}
    key = lambda r: (r["attribute"], r["group"])  # noqa: E731
    for a, b in zip(sorted(named, key=key), sorted(streamed["data"]["representation"], key=key), strict=True):
        assert key(a) == key(b) and a["n"] == b["n"], (a, b)
        assert a["share"] == pytest.approx(b["share"], abs=1e-12) and a["positive_rate"] == pytest.approx(
            b["positive_rate"], abs=1e-12
        ), (a, b)


def test_streamed_audit_numbers_by_hand(exact):
    """The row count, the missing values, three groups' confusion counts and the AUC, counted here."""
    from sklearn.metrics import roc_auc_score

    df = exact["df"]
    (summary, st), (_, mem) = exact["stream"], exact["memory"]
    assert st["data"]["n_rows"] == mem["data"]["n_rows"] == 1_000_000
    missing_age = int(df["age_band"].isna().sum())
    assert 9_000 < missing_age < 11_000
    assert st["data"]["missing"] == mem["data"]["missing"] == {"age_band": missing_age}
    stats = st["data"]["contract_result"]["statistics"]
    full = stats["full_data"]
    assert full["rows"] == 1_000_000 and full["cells"] == 8 * 2 * 6 and full["engine"] == "stream"
    assert full["nulls"] == {"y": 0, "score": 0, "region": 0, "sex": 0, "age_band": missing_age}
    assert full["label_values"] == {"1": int(df["y"].sum()), "0": int((df["y"] == 0).sum())}
    assert full["groups"] == {"region": 8, "sex": 2, "age_band": 6}
    assert stats["sample"] == {"rows": 100_000, "of": 1_000_000, "seed": 0, "method": "uniform (reservoir)"}

    pred, y = df["score"].to_numpy() >= 0.5, df["y"].to_numpy() == 1
    rows = {(r["attribute"], r["group"]): r for r in audits_of(st)["fairness"]["by_group"]}
    for key, mask in (
        (("region", "r3"), df["region"] == "r3"),
        (("age_band", "(missing)"), df["age_band"].isna()),
        (
            ("region_x_sex_x_age_band", "r5 & M & 26-35"),
            (df.region == "r5") & (df.sex == "M") & (df.age_band == "26-35"),
        ),
    ):
        mask = mask.to_numpy()
        row = rows[key]
        assert row["n"] == int(mask.sum()), key
        counts = [int(c.sum()) for c in (mask & y & pred, mask & ~y & pred, mask & ~y & ~pred, mask & y & ~pred)]
        assert [row["tp"], row["fp"], row["tn"], row["fn"]] == counts, key
        assert row["selection_rate"] == pytest.approx(pred[mask].mean(), abs=1e-12), key
    perf = audits_of(st)["performance"]["metrics"]
    assert perf["eval/n"] == 1_000_000 and perf["eval/tp"] == int((y & pred).sum())
    assert abs(perf["eval/roc_auc"] - roc_auc_score(y, df["score"])) <= perf["eval/roc_auc_error_bound"]
    cal = {r["group"]: r for r in audits_of(st)["calibration_by_group"]["by_group"] if r["attribute"] == "sex"}
    f = df["sex"].to_numpy() == "F"
    assert abs(cal["F"]["roc_auc"] - roc_auc_score(y[f], df["score"][f])) <= cal["F"]["roc_auc_error_bound"]
    assert cal["F"]["brier"] == pytest.approx(np.mean((df["score"][f] - y[f]) ** 2), abs=1e-12)
    assert (summary["parent_run_id"], "FINISHED") in mlflow_runs(exact["db"])


# ----------------------------------------------------------------------------- 2. Dask


@pytest.fixture(scope="module")
def small(prefect_api, tmp_path_factory):
    """200k rows without group differences as 4 Parquet files (``logs/day-K.parquet``), the same
    rows with log-odds scores (``logodds/day-K.parquet``), and the local stream engine's audit of
    the first (in this process)."""
    root = tmp_path_factory.mktemp("stream_small")
    df = decision_log(200_000, seed=5, effect=0.0)
    for name, frame in (
        ("logs", df.drop(columns=["logit"])),
        ("logodds", df.assign(score=df["logit"]).drop(columns=["logit"])),
    ):
        (root / name).mkdir()
        for i in range(4):
            frame.iloc[i * 50_000 : (i + 1) * 50_000].to_parquet(root / name / f"day-{i}.parquet", index=False)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    kw = {"sensitive": ["region", "sex"], "sample_rows": 20_000}
    glob = str(root / "logs" / "*.parquet")
    _, local = audit_in_process(glob, root / "local", uri, engine="stream", **kw)
    return {"df": df, "root": root, "uri": uri, "glob": glob, "local": local, "kw": kw}


def test_dask_engine_equals_the_local_stream_engine_exactly(small):
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        _, dask = audit_in_process(
            small["glob"],
            small["root"] / "dask",
            small["uri"],
            engine="dask",
            dask_address=cluster.scheduler_address,
            **small["kw"],
        )
        ran = set(cluster.scheduler.task_prefixes)
    assert {"aggregate_unit", "merge_pair"} <= ran, ran  # the pass ran on the cluster's worker processes
    local = small["local"]
    for name in AUDITS:  # bit for bit: the JSON floats round-trip
        assert audits_of(local)[name]["metrics"] == audits_of(dask)[name]["metrics"], name
        assert audits_of(local)[name]["by_group"] == audits_of(dask)[name]["by_group"], name
        assert audits_of(local)[name]["gates"] == audits_of(dask)[name]["gates"], name
    assert local["data"]["representation"] == dask["data"]["representation"]
    full_local, full_dask = (dict(r["data"]["contract_result"]["statistics"]["full_data"]) for r in (local, dask))
    assert (full_local.pop("engine"), full_dask.pop("engine")) == ("stream", "dask")
    full_local.pop("seconds"), full_dask.pop("seconds")
    assert full_local == full_dask
    # by hand: rows, and one group's confusion counts
    df = small["df"]
    assert local["data"]["n_rows"] == dask["data"]["n_rows"] == 200_000
    m, y, pred = (df["sex"] == "F").to_numpy(), df["y"].to_numpy() == 1, df["score"].to_numpy() >= 0.5
    row = next(r for r in audits_of(dask)["fairness"]["by_group"] if (r["attribute"], r["group"]) == ("sex", "F"))
    assert (row["n"], row["tp"], row["fn"]) == (int(m.sum()), int((m & y & pred).sum()), int((m & y & ~pred).sum()))


# ----------------------------------------------------------------------------- 3. bad input


def _frame(n: int = 5_000, seed: int = 3) -> pd.DataFrame:
    return decision_log(n, seed=seed, effect=0.0).drop(columns=["logit", "age_band"])


def _two_files(folder: Path, second: bool = True) -> tuple[Path, pd.DataFrame]:
    """``folder/logs/{a,b}.parquet`` (b only when ``second``); returns the folder and b's rows."""
    logs = folder / "logs"
    logs.mkdir()
    df = _frame()
    df.iloc[:2_500].to_parquet(logs / "a.parquet", index=False)
    if second:
        df.iloc[2_500:].to_parquet(logs / "b.parquet", index=False)
    return logs, df.iloc[2_500:]


def case_glob_matches_nothing(folder):
    pattern = str(folder / "logs" / "day-*.parquet")
    return ["--data", pattern, *roles()], [f"--data {pattern}: no file matches"]


def case_mixed_schemas(folder):
    logs, b = _two_files(folder, second=False)
    b.assign(score=b["score"].map(lambda s: f"{s:.6f}")).to_parquet(logs / "b.parquet", index=False)
    return ["--data", str(logs), *roles()], [
        f"{logs / 'b.parquet'}: column 'score' is string, but double in {logs / 'a.parquet'}",
        "the files' schemas differ",
    ]


def case_corrupt_footer(folder):
    logs, _ = _two_files(folder)
    raw = (logs / "b.parquet").read_bytes()
    (logs / "b.parquet").write_bytes(raw[: len(raw) - 100])  # the footer and its magic bytes cut off
    return ["--data", str(logs), *roles()], [f"{logs / 'b.parquet'}: not a readable Parquet file ("]


def case_log_odds_as_probabilities(folder):
    df = decision_log(20_000, seed=7, effect=0.0)
    df.assign(score=df["logit"]).to_parquet(folder / "log.parquet", index=False)
    outside = int(((df["logit"] < 0) | (df["logit"] > 1)).sum())  # hand count: the logits outside [0, 1]
    assert 10_000 < outside < 20_000
    return ["--data", str(folder / "*.parquet"), *roles()], [
        f"column 'score' ({folder / 'log.parquet'}): {outside} scores outside [0, 1] (e.g. ",
        "not probabilities; if they are log-odds, give --score-kind logit",
    ]


def case_too_many_group_values(folder):
    df = _frame().assign(customer=[f"c{i:05d}" for i in range(5_000)])  # an identifier, not a group
    df.to_parquet(folder / "log.parquet", index=False)
    args = ["--data", str(folder / "*.parquet"), "--label", "y", "--score", "score", "--sensitive", "sex,customer"]
    return [*args, "--max-levels", "1000"], [
        "column 'customer': more than 1000 distinct values, too many to be groups",
        "raise --max-levels",
    ]


def case_memory_engine_with_a_folder(folder):
    logs, _ = _two_files(folder)
    return ["--data", str(logs), *roles(), "--engine", "memory"], [
        f"--engine memory reads one file; --data {logs} is streamed (--engine stream or dask)"
    ]


def case_model_with_stream_engine(folder):
    logs, _ = _two_files(folder)
    args = ["--data", str(logs), "--label", "y", "--model", "models:/external/1", "--sensitive", "sex"]
    return [*args, "--engine", "stream"], [
        "--model reads the table into memory",
        "not with a streamed audit (--engine stream)",
    ]


def case_contract_with_stream_engine(folder):
    logs, _ = _two_files(folder)
    return ["--data", str(logs), "--contract", "adult", "--score", "score", "--engine", "stream"], [
        "--contract reads the table into memory",
        "not with a streamed audit (--engine stream)",
    ]


BAD = [
    case_glob_matches_nothing,
    case_mixed_schemas,
    case_corrupt_footer,
    case_log_odds_as_probabilities,
    case_too_many_group_values,
    case_memory_engine_with_a_folder,
    case_model_with_stream_engine,
    case_contract_with_stream_engine,
]


@pytest.fixture(scope="module")
def bad_runs(impactflow_process, tmp_path_factory):
    """Every bad-input case as an ``impactflow audit`` process (``impactflow_process``: forked
    from the session's warm runner), three at a time: case name -> (process, expected texts,
    output folder)."""
    cases = {}
    for case in BAD:
        folder = tmp_path_factory.mktemp(case.__name__)
        args, expected = case(folder)
        cases[case.__name__] = (folder, args, expected)

    def run(name):
        folder, args, expected = cases[name]
        r = impactflow_process("audit", *args, "--output-dir", str(folder / "out"), cwd=folder)
        return r, expected, folder / "out"

    with ThreadPoolExecutor(max_workers=3) as pool:
        return dict(zip(cases, pool.map(run, cases)))


@pytest.mark.parametrize("case", [c.__name__ for c in BAD], ids=[c.__name__[5:] for c in BAD])
def test_bad_input_is_one_line_exit_1_and_nothing_written(bad_runs, case):
    r, expected, out = bad_runs[case]
    assert_one_error_line(r, *expected)
    assert_nothing_written(out)


# ----------------------------------------------------------------------------- 4. SIGKILL


def _owned_flow_runs(pid: int) -> list:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    from impactflow.flows.audit_only import AUDIT_ONLY_FLOW

    owner = f"impactflow.owner={socket.gethostname()}/{pid}/"
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=[AUDIT_ONLY_FLOW])), limit=200)
    return [fr for fr in runs if any(t.startswith(owner) for t in fr.tags)]


def _held_then_killed(command: list[str], env: dict, cwd: Path) -> tuple[int, str]:
    """Start ``command``, wait for the hold mark on its stderr, SIGKILL it there: (pid, the line)."""
    proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seen = kill_when_held(proc, timeout=300)
    assert proc.returncode == -signal.SIGKILL
    return proc.pid, next(s for s in seen.splitlines(keepends=True) if s.startswith(HOLD_MARK))


def test_sigkill_while_aggregating_leaves_nothing_and_a_rerun_succeeds(cli, prefect_api, small, tmp_path):
    """Killed at the start of the pass over the log-odds copy of the 200k rows; the rerun (with
    ``--score-kind logit``, which the log needs) completes, and its numbers are those of the
    probabilities' audit."""
    from prefect.client.schemas.objects import StateType

    out = tmp_path / "out"
    glob = str(small["root"] / "logodds" / "*.parquet")
    args = ["audit", "--data", glob, *roles(), "--score-kind", "logit", "--sample-rows", "20000"]
    args += ["--engine", "stream", "--output-dir", str(out)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST") and k != "MLFLOW_TRACKING_URI"}
    env.update(PREFECT_API_URL=prefect_api, IMPACTFLOW_TEST_HOLD_AT="aggregate")
    pid, held = _held_then_killed([sys.executable, "-m", "impactflow.flows.cli", *args], env, tmp_path)
    assert held.startswith(HOLD_MARK + f"aggregate {glob} (4 PARQUET files, ") and "(stream engine)" in held, held
    # the pass writes nothing: no run folder, no MLflow run (RUNNING or any), no temporary file
    assert_nothing_written(out)
    (killed,) = _owned_flow_runs(pid)
    assert killed.state.type is StateType.RUNNING  # what SIGKILL leaves on the Prefect server

    rerun = cli(*args)
    assert rerun.returncode == 0, (rerun.stdout + rerun.stderr)[-3000:]
    assert "Traceback" not in rerun.stdout + rerun.stderr
    report = report_of(out)
    assert mlflow_runs(out / "mlflow.db") == [(report["run"]["run_id"], "FINISHED")]
    (killed,) = _owned_flow_runs(pid)
    assert killed.state.type is StateType.CRASHED  # the rerun reconciled the killed command's flow run
    assert not list(out.rglob("*.tmp"))
    # the log-odds, mapped through the logistic function, are the probabilities audited above
    assert report["config"]["score_kind"] == "logit" and report["data"]["n_rows"] == 200_000
    assert_same_audits(small["local"], report)
    df = small["df"]
    y, p = df["y"].to_numpy() == 1, expit(df["logit"].to_numpy())
    perf = audits_of(report)["performance"]["metrics"]
    assert perf["eval/tp"] == int((y & (p >= 0.5)).sum())  # the threshold applies to the probability
    from sklearn.metrics import log_loss

    assert perf["eval/log_loss"] == pytest.approx(log_loss(y, p), abs=1e-12)
