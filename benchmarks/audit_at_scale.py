"""Audit at scale: the streamed audit-only path (``impactflow audit --data FOLDER``) on synthetic
decision logs of 10M, 30M and 100M rows, whole process, next to other ways of computing the
same aggregates.

The data: a decision log of a model not trained here, written once as Parquet with a fixed seed
into ``--data-dir`` (default ``/tmp/impactflow-bench/audit-at-scale``) and reused when present:
files of ``--part-rows`` rows (5M; row groups of 1M rows), generated one 1M-row chunk at a time
(memory bounded by the chunk). Columns: ``y`` (int8 0/1), ``score`` (float64 in (0, 1)),
``sex`` (2 levels), ``race`` (5), ``age_band`` (8) stored as dictionary-encoded strings, so 80
intersection cells. The base rate depends on all three groups; the score is informative (AUC
about 0.8) and its calibration depends on race (slope and offset of the model's logit). A size
of N million rows is a folder of hard links to the first N / part-rows part files.

Parts (each prints a Markdown table):

1. ``impactflow audit --data DIR --label y --score score --sensitive sex,race,age_band --engine
   stream`` as a user runs it (contract on a 100k-row sample, fairness with 1,000-replicate CIs,
   performance, calibration by group, report, MLflow, signed manifest), in a fresh output folder
   (so a fresh MLflow store), for each size, in three modes alternated (``--modes``):
   ``temporary`` (a fresh ``PREFECT_HOME``: Prefect's temporary server, the default a user
   gets), ``kept`` (``impactflow server start --warm`` once before, ``impactflow server stop``
   after; these runs set ``IMPACTFLOW_WARM=off``, so they are what a plain kept server gives) and
   ``warm`` (the same kept server, the audit forked from its warm runner). Whole-process wall
   time; peak RSS of the largest process (``/usr/bin/time -v``, the kernel's high-water mark;
   for a forked run the largest RSS polled, the forked run not being the CLI's child) and of the
   process tree (the CLI + the temporary server, or + the forked run), the sum of RSS polled
   every 0.1 s with psutil (an upper bound: shared pages count twice); CPU seconds (user +
   system) of the tree; the share of the machine's CPUs that other processes kept busy meanwhile
   (contention; ``--wait-quiet S`` waits up to S s for a quiet machine before each measurement).
   A least-squares line ``seconds = fixed + slope x rows`` over the sizes splits fixed costs from
   the per-row cost.
2. Where the time goes, from the run's own Prefect database: before the flow run (interpreter,
   imports, the temporary server's start, flow-run creation), each task's duration
   (``stream-aggregate`` is the pass over the data; the files' SHA-256 runs on a thread beside
   it), the flow's engine between tasks, after the flow run (shutdown).
3. Peers, each in a fresh process, imports not timed, at ``--peer-size`` (default 10M rows: what
   fairlearn's MetricFrame handles here, see below) and again, the streaming ones only, at
   ``--stream-peer-size`` (default the largest size): the aggregation alone with our engine
   (``tasks.stream_audit.run_local``: pyarrow batches + numpy, units of work on threads; it also keeps
   the ECE/reliability bins, score sums and the 100k-row sample), polars (streaming engine) and
   duckdb computing the same counts (one group-by on cell x label x decision x score bin, from
   which the confusion counts and the 10,000-bin histogram are sums), the same group-by in
   pandas (``read_parquet`` + ``groupby``), and fairlearn's ``MetricFrame`` point estimates
   (selection rate, TPR, FPR, accuracy on the intersection) after the same ``read_parquet``.
   Each peer's counts are checked against our engine's (exact equality; fairlearn's rates as the
   largest absolute difference). MetricFrame takes about 45-60 s and 0.65 GB per million rows
   here, so 30M rows would need ~20 GB of this 23 GB machine and ~30 min: 10M is the largest
   size it is run at. polars and duckdb are the optional extra ``bench`` (``pip install -e
   '.[bench]'``): a missing one is skipped with a note.

    python benchmarks/audit_at_scale.py --quick             # 1M and 3M rows, peers at 1M and 3M (smoke run)
    python benchmarks/audit_at_scale.py --peers             # 10M, 30M, 100M; peers at 10M and 100M
    python benchmarks/audit_at_scale.py --sizes 10 --modes temporary

Asserts nothing: it prints the tables. The issue's targets (on 2 cores): the whole command on
100M rows in <= 60 s and <= 2 GB peak RSS, time per 10M rows flat across sizes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_memory import peak_mb  # noqa: E402 (beside this script)

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path("/tmp/impactflow-bench/audit-at-scale")
SEED = 20261205
GENERATOR = 1  # bump when the data's recipe changes (the cache is regenerated)
CHUNK = 1_000_000  # rows generated at a time = one row group
M = 1_000_000

SEX = (("female", "male"), (0.52, 0.48), (0.0, 0.25))
RACE = (
    ("white", "black", "hispanic", "asian", "other"),
    (0.60, 0.13, 0.17, 0.06, 0.04),
    (0.2, -0.3, -0.2, 0.4, 0.0),
)
AGE = (
    ("18-24", "25-34", "35-44", "45-54", "55-64", "65-74", "75-84", "85+"),
    (0.12, 0.18, 0.17, 0.17, 0.15, 0.11, 0.07, 0.03),
    (-0.6, -0.2, 0.1, 0.3, 0.3, 0.1, -0.1, -0.3),
)
GROUPS = {"sex": SEX, "race": RACE, "age_band": AGE}
SENSITIVE = list(GROUPS)
# the model's miscalibration by race: its logit = slope * true logit + offset + noise
SLOPE = (1.0, 0.8, 0.9, 1.1, 0.7)
OFFSET = (0.0, 0.3, 0.1, -0.2, 0.0)
THRESHOLD = 0.5
GRID = 10_000  # audits.aggregates.GRID
STRIP_ENV = ("PREFECT_API_URL", "PREFECT_PROFILE", "MLFLOW_TRACKING_URI", "PREFECT_HOME")
PEERS = ("engine", "polars", "duckdb", "pandas", "fairlearn")


# --------------------------------------------------------------------------- data


def _chunk(rng, n: int):
    """One chunk of ``n`` rows (see the module docstring) as an Arrow table."""
    import numpy as np
    import pyarrow as pa

    logit = np.full(n, -0.6)
    codes = {}
    for name, (levels, probs, effect) in GROUPS.items():
        c = np.searchsorted(np.cumsum(probs)[:-1], rng.random(n), side="right").astype(np.int8)
        codes[name] = c
        logit += np.asarray(effect)[c]
    true_logit = logit + 1.6 * rng.standard_normal(n)
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-true_logit))).astype(np.int8)
    race = codes["race"]
    model_logit = np.asarray(SLOPE)[race] * true_logit + np.asarray(OFFSET)[race] + 0.8 * rng.standard_normal(n)
    score = 1.0 / (1.0 + np.exp(-model_logit))
    cols = {"y": pa.array(y, pa.int8()), "score": pa.array(score, pa.float64())}
    for name, (levels, _, _) in GROUPS.items():
        cols[name] = pa.DictionaryArray.from_arrays(pa.array(codes[name], pa.int8()), pa.array(levels, pa.string()))
    return pa.table(cols)


def write_part(path: Path, index: int, rows: int) -> None:
    """Part file ``index``: ``rows`` rows from a generator seeded with (SEED, index), written one
    chunk (row group) at a time to a hidden temporary name, then renamed."""
    import numpy as np
    import pyarrow.parquet as pq

    rng = np.random.default_rng([SEED, index])
    tmp = path.with_name(f".{path.name}.tmp")
    writer = None
    try:
        done = 0
        while done < rows:
            table = _chunk(rng, min(CHUNK, rows - done))
            if writer is None:
                writer = pq.ParquetWriter(tmp, table.schema, compression="snappy")
            writer.write_table(table, row_group_size=CHUNK)
            done += table.num_rows
    finally:
        if writer is not None:
            writer.close()
    tmp.replace(path)


def prepare_data(data_dir: Path, sizes: list[float], part_rows: int) -> tuple[dict[float, Path], list[dict]]:
    """The part files (generated once, reused when present and of the same recipe) and one folder
    of hard links per size; returns ({size: folder}, table rows)."""
    parts_dir = data_dir / f"parts-{part_rows}"
    parts_dir.mkdir(parents=True, exist_ok=True)
    recipe = {"seed": SEED, "generator": GENERATOR, "part_rows": part_rows, "chunk": CHUNK}
    meta = parts_dir / "_recipe.json"
    if meta.exists() and json.loads(meta.read_text()) != recipe:
        for p in parts_dir.glob("*.parquet"):
            p.unlink()
    meta.write_text(json.dumps(recipe))
    folders, rows = {}, []
    generated = 0
    for size in sizes:
        n = round(size * M)
        if n % part_rows:
            raise SystemExit(f"--sizes {size:g}: not a multiple of --part-rows {part_rows:,}")
        k = n // part_rows
        t0 = time.perf_counter()
        made = 0
        for i in range(k):
            part = parts_dir / f"part-{i:05d}.parquet"
            if not part.exists():
                print(f"... generating {part} ({part_rows:,} rows)", file=sys.stderr, flush=True)
                write_part(part, i, part_rows)
                made += 1
        gen_s = time.perf_counter() - t0
        generated += made
        folder = data_dir / f"log-{_size_name(size)}"
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir()
        for i in range(k):
            src, dst = parts_dir / f"part-{i:05d}.parquet", folder / f"part-{i:05d}.parquet"
            try:
                os.link(src, dst)
            except OSError:
                os.symlink(src, dst)
        files = sorted(folder.glob("*.parquet"))
        mb = sum(f.stat().st_size for f in files) / 1e6
        rows.append(
            {
                "size": size,
                "rows": n,
                "files": len(files),
                "mb": mb,
                "generated": made,
                "gen_s": gen_s,
                "sha_s": _sha256_seconds(files),
            }
        )
        folders[size] = folder
    return folders, rows


def _sha256_seconds(files: list[Path]) -> float:
    """Seconds to SHA-256 the files on one thread (what the audit does beside its pass)."""
    import hashlib

    t0 = time.perf_counter()
    for f in files:
        h = hashlib.sha256()
        with open(f, "rb") as fh:
            while block := fh.read(8 << 20):
                h.update(block)
    return time.perf_counter() - t0


def _size_name(size: float) -> str:
    return f"{size:g}M"


# --------------------------------------------------------------------------- whole command


def impactflow_exe() -> str:
    exe = Path(sys.executable).parent / "impactflow"
    return str(exe) if exe.exists() else (shutil.which("impactflow") or "impactflow")


def clean_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in STRIP_ENV}
    env["PREFECT_HOME"] = str(home)
    return env


def _busy_cpu_s() -> float:
    """The machine's busy CPU-seconds so far (all but idle and iowait; steal included)."""
    try:
        with open("/proc/stat") as fh:
            vals = [int(v) for v in fh.readline().split()[1:9]]
        return (sum(vals) - vals[3] - vals[4]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return float("nan")


def wait_quiet(max_s: float, share: float = 0.25, window: float = 3.0) -> float:
    """Waits (at most ``max_s``) until the other processes keep less than ``share`` of the
    machine's CPUs busy over ``window`` seconds (nothing of this benchmark runs meanwhile);
    returns the seconds waited."""
    t0 = time.perf_counter()
    ncpu = os.cpu_count() or 1
    while time.perf_counter() - t0 < max_s:
        b0 = _busy_cpu_s()
        time.sleep(window)
        if (_busy_cpu_s() - b0) / (window * ncpu) < share:
            break
    return time.perf_counter() - t0


class TreePeak:
    """Polls, on a thread, the RSS of a process and its descendants (psutil), plus the descendants
    of ``others`` (the warm runner: the run it forks is its child, not the CLI's): the peak of the
    sum, the processes at that peak, the largest single process, and the CPU seconds of the
    processes under ``others`` (not this script's children, so not in ``os.times``)."""

    def __init__(self, pid: int, others: tuple[int, ...] = (), every: float = 0.1) -> None:
        self.pid, self.others, self.every = pid, others, every
        self.peak, self.peak_procs, self.largest = 0.0, [], 0.0
        self.cpu_others: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "TreePeak":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        try:
            import psutil
        except ImportError:
            self.peak = self.largest = float("nan")
            return
        try:
            root = psutil.Process(self.pid)
            extra = [psutil.Process(p) for p in self.others]
        except psutil.Error:
            return
        while True:
            total, procs = 0, []
            try:
                tree = [root, *root.children(recursive=True)]
            except psutil.Error:
                tree = []
            forked = []
            for r in extra:
                try:
                    forked += r.children(recursive=True)
                except psutil.Error:
                    pass
            for p in [*tree, *forked]:
                try:
                    rss = p.memory_info().rss
                    if p in forked:
                        t = p.cpu_times()
                        self.cpu_others[p.pid] = t.user + t.system
                except psutil.Error:
                    continue
                total += rss
                self.largest = max(self.largest, rss / 2**20)
                procs.append((_proc_name(p), round(rss / 2**20)))
            if total / 2**20 > self.peak:
                self.peak, self.peak_procs = total / 2**20, procs
            if self._stop.wait(self.every):
                break


def _proc_name(p) -> str:
    """A short name: the executable, or for Python the script/module it runs."""
    try:
        cmd = p.cmdline()
    except Exception:  # noqa: BLE001 - a diagnostic only
        return p.name()
    if not cmd:
        return p.name()
    args = [a for a in cmd[1:] if not a.startswith("-")] if "python" in Path(cmd[0]).name else []
    words = [Path(cmd[0]).name, *args[:3]]
    return " ".join(Path(w).name if "/" in w else w for w in words)[:60]


def _time_v(stderr: str) -> dict:
    """Peak RSS (MB), user and system seconds from ``/usr/bin/time -v``'s lines."""
    out = {}
    for line in stderr.splitlines():
        line = line.strip()
        if line.startswith("Maximum resident set size (kbytes):"):
            out["max_rss_mb"] = int(line.rsplit(":", 1)[1]) / 1024.0
        elif line.startswith("User time (seconds):"):
            out["user_s"] = float(line.rsplit(":", 1)[1])
        elif line.startswith("System time (seconds):"):
            out["sys_s"] = float(line.rsplit(":", 1)[1])
    return out


def audit_command(data: Path, out: Path) -> list[str]:
    return [
        impactflow_exe(),
        "audit",
        "--data",
        str(data),
        "--label",
        "y",
        "--score",
        "score",
        "--sensitive",
        ",".join(SENSITIVE),
        "--engine",
        "stream",
        "--output-dir",
        str(out),
    ]


def run_audit(
    data: Path, out: Path, home: Path, env: dict[str, str] | None = None, warm_pid: int | None = None
) -> dict:
    """One whole ``impactflow audit`` process (see the module docstring, part 1); ``warm_pid``: the
    warm runner, whose forked child runs the audit."""
    time_bin = "/usr/bin/time" if Path("/usr/bin/time").exists() else None
    cmd = audit_command(data, out)
    if time_bin:
        cmd = [time_bin, "-v", *cmd]
    before = os.times()
    busy0 = _busy_cpu_s()
    started_at = time.time()
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as so, tempfile.TemporaryFile("w+") as se:
        proc = subprocess.Popen(cmd, env={**clean_env(home), **(env or {})}, stdout=so, stderr=se, cwd=out.parent)
        with TreePeak(proc.pid, (warm_pid,) if warm_pid else ()) as tree:
            rc = proc.wait()
        wall = time.perf_counter() - t0
        ended_at = time.time()
        so.seek(0)
        se.seek(0)
        stdout, stderr = so.read(), se.read()
    after = os.times()
    busy = _busy_cpu_s() - busy0
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    cpu += sum(tree.cpu_others.values())  # the forked run (sampled every 0.1 s)
    res = {
        "rc": rc,
        "wall_s": wall,
        "cpu_s": cpu,
        "others": max(0.0, (busy - cpu) / (wall * (os.cpu_count() or 1))),
        "tree_peak_mb": tree.peak,
        "tree_procs": tree.peak_procs,
        "largest_sampled_mb": tree.largest,
        "forked": "warm runner: run process" in stdout,
        "started_at": started_at,
        "ended_at": ended_at,
        **_time_v(stderr),
    }
    if rc not in (0, 3):
        res["error"] = (stderr[-2000:] or stdout[-2000:]).strip()
    if warm_pid and not res["forked"]:
        notes = [ln for ln in stderr.splitlines() if ln.startswith("warm runner")]
        res["error"] = "not forked from the warm runner: " + (" ".join(notes)[:500] or "(no note)")
    return res


def prefect_phases(home: Path, started_at: float, ended_at: float) -> dict:
    """The latest flow run in ``home``'s Prefect database: the time before it (from the process's
    start), each task's duration (summed per task name), the rest of the flow run, after it."""
    db = home / "prefect.db"
    if not db.exists():
        return {}
    con = sqlite3.connect(db)
    try:
        row = con.execute(
            "SELECT id, start_time, end_time FROM flow_run WHERE end_time IS NOT NULL ORDER BY start_time DESC LIMIT 1"
        ).fetchone()
        if not row:
            return {}
        flow_start, flow_end = _ts(row[1]), _ts(row[2])
        tasks: dict[str, float] = {}
        for name, start, end in con.execute(
            "SELECT name, start_time, end_time FROM task_run WHERE end_time IS NOT NULL AND flow_run_id = ?",
            (row[0],),
        ):
            key = name.rsplit("-", 1)[0]
            tasks[key] = tasks.get(key, 0.0) + (_ts(end) - _ts(start))
    except sqlite3.Error:
        return {}
    finally:
        con.close()
    flow = flow_end - flow_start
    return {
        "before_flow_s": flow_start - started_at,
        "flow_s": flow,
        "tasks": tasks,
        "between_tasks_s": flow - sum(tasks.values()),
        "after_flow_s": ended_at - flow_end,
    }


def _ts(text: str) -> float:
    text = str(text).replace(" ", "T")
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _state(home: Path, name: str) -> dict:
    try:
        return json.loads((home / name).read_text())
    except (OSError, ValueError):
        return {}


def _rss_tree_mb(pid) -> float | None:
    try:
        import psutil

        root = psutil.Process(int(pid))
        return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)]) / 2**20
    except Exception:  # noqa: BLE001 - a diagnostic only
        return None


MODES = ("temporary", "kept", "kept-url", "warm")


def bench_audits(
    folders: dict[float, Path], work: Path, modes: tuple[str, ...], quiet_s: float
) -> tuple[list[dict], dict]:
    """Parts 1 and 2: every size in every mode, alternated: ``temporary`` (a fresh ``PREFECT_HOME``:
    Prefect's temporary server), ``kept`` (``impactflow server start``; ``IMPACTFLOW_WARM=off``),
    ``kept-url`` (the same, with ``PREFECT_API_URL`` set to it in the environment, as a deployment
    would), ``warm`` (the same kept server with its warm runner, ``--warm``: the audit is forked
    from it)."""
    results, server_info = [], {}
    kept_home = work / "kept-home"
    if set(modes) - {"temporary"}:
        kept_home.mkdir()
        t0 = time.perf_counter()
        cmd = [
            impactflow_exe(),
            "server",
            "start",
            "--port",
            str(_free_port()),
            *(["--warm"] if "warm" in modes else []),
        ]
        proc = subprocess.run(cmd, env=clean_env(kept_home), capture_output=True, text=True)
        server_info = {
            "start_s": time.perf_counter() - t0,
            "command": "server start" + (" --warm" if "warm" in modes else ""),
        }
        if proc.returncode:
            server_info["error"] = (proc.stdout + proc.stderr).strip()
            print(f"kept server did not start: {server_info['error'][:500]}", file=sys.stderr)
            modes = ("temporary",)
    warm_pid = _state(kept_home, "impactflow-warm.json").get("pid")
    try:
        for size, folder in folders.items():
            for mode in modes:
                tag = f"{_size_name(size)}-{mode}"
                out = work / f"out-{tag}"
                home = work / f"home-{tag}" if mode == "temporary" else kept_home
                home.mkdir(exist_ok=True)
                print(f"... impactflow audit {_size_name(size)} rows, {mode}", file=sys.stderr, flush=True)
                waited = wait_quiet(quiet_s) if quiet_s else 0.0
                env = {"IMPACTFLOW_WARM": "off"} if mode != "warm" else {}
                if mode == "kept-url":  # the server named up front: Prefect reads it when imported
                    env["PREFECT_API_URL"] = _state(kept_home, "impactflow-server.json").get("api_url", "")
                res = run_audit(folder, out, home, env, warm_pid if mode == "warm" else None)
                if mode == "warm" and not res["forked"]:  # the code changed under it: a new runner, once
                    print(f"    {res.get('error')}; restarting the warm runner", file=sys.stderr, flush=True)
                    subprocess.run(cmd, env=clean_env(kept_home), capture_output=True, text=True)
                    warm_pid = _state(kept_home, "impactflow-warm.json").get("pid")
                    shutil.rmtree(out, ignore_errors=True)
                    res = run_audit(folder, out, home, env, warm_pid)
                    res["runner_restarted"] = True
                res["waited_s"] = waited
                res.update(size=size, mode=mode, phases=prefect_phases(home, res["started_at"], res["ended_at"]))
                if mode != "temporary":
                    res["server_rss_mb"] = _rss_tree_mb(_state(kept_home, "impactflow-server.json").get("pid"))
                    res["warm_rss_mb"] = _rss_tree_mb(warm_pid) if warm_pid else None
                print(f"    {json.dumps({k: v for k, v in res.items() if k != 'phases'})}", file=sys.stderr, flush=True)
                results.append(res)
    finally:
        if kept_home.exists():
            t0 = time.perf_counter()
            subprocess.run([impactflow_exe(), "server", "stop"], env=clean_env(kept_home), capture_output=True)
            server_info["stop_s"] = time.perf_counter() - t0
    return results, server_info


# --------------------------------------------------------------------------- peers


def _files(folder: Path) -> list[str]:
    return [str(p) for p in sorted(folder.glob("*.parquet"))]


def _levels() -> list[tuple[str, ...]]:
    return [GROUPS[c][0] for c in SENSITIVE]


def _cell_index(keys: list) -> "object":
    """Cell number (0..79, in the order of the levels above) of arrays of (sex, race, age_band)."""
    import numpy as np

    index = np.zeros(len(keys[0]), dtype=np.int64)
    for values, levels in zip(keys, _levels()):
        lookup = {v: i for i, v in enumerate(levels)}
        codes = np.array([lookup[str(v)] for v in values], dtype=np.int64)
        index = index * len(levels) + codes
    return index


def _counts_from_groups(sex, race, age, y, pred, b, n):
    """(conf[cell, y, pred], hist[cell, y, bin]) from a group-by's result columns."""
    import numpy as np

    cells = int(np.prod([len(v) for v in _levels()]))
    cell = _cell_index([sex, race, age])
    y, pred, b, n = (np.asarray(a).astype(np.int64) for a in (y, pred, b, n))
    conf = np.bincount((cell * 2 + y) * 2 + pred, weights=n, minlength=cells * 4).reshape(cells, 2, 2)
    hist = np.bincount((cell * 2 + y) * GRID + b, weights=n, minlength=cells * 2 * GRID).reshape(cells, 2, GRID)
    return conf.astype(np.int64), hist.astype(np.int64)


def peer_engine(files: list[str], folder: Path):
    """Our aggregation pass alone, as ``flows.audit_only.stream_pass`` builds it."""
    import numpy as np

    from impactflow.data_contracts.sources import resolve
    from impactflow.tasks.stream_audit import SAMPLE_ROWS, SAMPLE_SEED, StreamSettings, run_local

    t0, c0 = time.perf_counter(), time.process_time()
    settings = StreamSettings(
        label="y",
        sensitive=tuple(SENSITIVE),
        positive="1",
        score="score",
        prediction=None,
        threshold=THRESHOLD,
        score_kind="probability",
        max_levels=1000,
        max_cells=4096,
        sample_rows=SAMPLE_ROWS,
        seed=SAMPLE_SEED,
    )
    source = resolve(str(folder), settings.columns)
    agg, _sample = run_local(source, settings)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    cells = int(np.prod([len(v) for v in _levels()]))
    conf = np.zeros((cells, 2, 2), dtype=np.int64)
    hist = np.zeros((cells, 2, GRID), dtype=np.int64)
    names = [{i: v for v, i in levels.items()} for levels in agg.levels]
    for key, i in agg.cells.items():
        c = int(_cell_index([[names[j][k]] for j, k in enumerate(key)])[0])
        conf[c] += agg.conf[i]
        hist[c] += agg.hist[i]
    return (
        {"seconds": seconds, "cpu_s": cpu, "threads": min(os.cpu_count() or 1, len(getattr(source, "units", files)))},
        conf,
        hist,
    )


def peer_polars(files: list[str], folder: Path):
    import polars as pl

    t0, c0 = time.perf_counter(), time.process_time()
    score = pl.col("score")
    query = (
        pl.scan_parquet(files)
        .select(
            *SENSITIVE,
            "y",
            (score >= THRESHOLD).alias("pred"),
            (score * GRID).floor().clip(0, GRID - 1).cast(pl.Int16).alias("bin"),
        )
        .group_by([*SENSITIVE, "y", "pred", "bin"])
        .agg(pl.len().alias("n"))
    )
    try:
        out = query.collect(engine="streaming")
    except TypeError:  # polars before the engine= argument
        out = query.collect(streaming=True)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    cols = [out[c].cast(pl.String).to_list() for c in SENSITIVE]
    conf, hist = _counts_from_groups(*cols, *(out[c].to_numpy() for c in ("y", "pred", "bin", "n")))
    return {"seconds": seconds, "cpu_s": cpu, "groups": out.height, "threads": pl.thread_pool_size()}, conf, hist


def peer_duckdb(files: list[str], folder: Path):
    import duckdb

    t0, c0 = time.perf_counter(), time.process_time()
    con = duckdb.connect()
    sql = (
        f"SELECT {', '.join(SENSITIVE)}, y, score >= {THRESHOLD} AS pred, "
        f"CAST(least(greatest(floor(score * {GRID}), 0), {GRID - 1}) AS SMALLINT) AS bin, count(*) AS n "
        "FROM read_parquet($files) GROUP BY ALL"
    )
    out = con.execute(sql, {"files": files}).fetchnumpy()
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    threads = con.execute("SELECT current_setting('threads')").fetchone()[0]
    conf, hist = _counts_from_groups(*(out[c] for c in [*SENSITIVE, "y", "pred", "bin", "n"]))
    return {"seconds": seconds, "cpu_s": cpu, "groups": len(out["n"]), "threads": threads}, conf, hist


def peer_pandas(files: list[str], folder: Path):
    import numpy as np
    import pandas as pd

    t0, c0 = time.perf_counter(), time.process_time()
    df = pd.read_parquet(files, columns=["y", "score", *SENSITIVE])
    read_s = time.perf_counter() - t0
    score = df["score"].to_numpy()
    df["pred"] = score >= THRESHOLD
    df["bin"] = np.clip(np.floor(score * GRID), 0, GRID - 1).astype(np.int16)
    out = df.groupby([*SENSITIVE, "y", "pred", "bin"], observed=True, sort=False).size().reset_index(name="n")
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    conf, hist = _counts_from_groups(
        *(out[c].astype(str) for c in SENSITIVE), *(out[c] for c in ("y", "pred", "bin", "n"))
    )
    return {"seconds": seconds, "cpu_s": cpu, "read_s": read_s, "groups": len(out)}, conf, hist


def peer_fairlearn(files: list[str], folder: Path):
    """MetricFrame point estimates on the intersection; conf/hist: None (compared as rates)."""
    import pandas as pd
    from fairlearn.metrics import MetricFrame, false_positive_rate, selection_rate, true_positive_rate
    from sklearn.metrics import accuracy_score

    t0, c0 = time.perf_counter(), time.process_time()
    df = pd.read_parquet(files, columns=["y", "score", *SENSITIVE])
    read_s = time.perf_counter() - t0
    mf = MetricFrame(
        metrics={
            "selection_rate": selection_rate,
            "tpr": true_positive_rate,
            "fpr": false_positive_rate,
            "accuracy": accuracy_score,
        },
        y_true=df["y"],
        y_pred=(df["score"] >= THRESHOLD).astype("int8"),
        sensitive_features=df[SENSITIVE],
    )
    by = mf.by_group
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    rates = {"|".join(str(k) for k in key): [float(v) for v in row] for key, row in by.iterrows()}
    return {"seconds": seconds, "cpu_s": cpu, "read_s": read_s, "groups": len(by), "rates": rates}, None, None


def run_peer(name: str, folder: Path, out: Path) -> None:
    """In the child: import, then time the peer; write RESULT json and its counts (npz)."""
    import numpy as np

    imports = {
        "engine": "impactflow.tasks.stream_audit",
        "polars": "polars",
        "duckdb": "duckdb",
        "pandas": "pandas",
        "fairlearn": "fairlearn.metrics",
    }
    __import__(imports[name])
    __import__("pyarrow.parquet")
    if name == "engine":
        __import__("impactflow.data_contracts.sources")
    if name == "fairlearn":
        __import__("sklearn.metrics")
    files = _files(folder)
    base = peak_mb()
    res, conf, hist = globals()[f"peer_{name}"](files, folder)
    res.update(peak_mb=peak_mb(), import_peak_mb=base)
    if conf is not None:
        np.savez(out / f"{name}.npz", conf=conf, hist=hist)
    print("RESULT " + json.dumps(res))


def rates_from_conf(conf) -> dict[str, list[float]]:
    """selection rate, TPR, FPR, accuracy per cell from conf[cell, y, pred]."""
    import itertools

    out = {}
    for c, key in enumerate(itertools.product(*_levels())):
        (tn, fp), (fn, tp) = conf[c].tolist()
        n = tn + fp + fn + tp
        out["|".join(key)] = [(fp + tp) / n, tp / (tp + fn), fp / (fp + tn), (tp + tn) / n]
    return out


def bench_peers(folder: Path, work: Path, names: tuple[str, ...], quiet_s: float) -> list[dict]:
    import numpy as np

    results = []
    ref = None
    for name in names:
        if name in ("polars", "duckdb"):
            try:
                __import__(name)
            except ImportError:
                print(f"note: {name} is not installed (pip install -e '.[bench]'): skipped", flush=True)
                results.append({"peer": name, "skipped": "not installed"})
                continue
        waited = wait_quiet(quiet_s) if quiet_s else 0.0
        print(f"... peer {name} on {folder}", file=sys.stderr, flush=True)
        busy0 = _busy_cpu_s()
        before = os.times()
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, __file__, "--peer-child", name, "--peer-data", str(folder), "--peer-out", str(work)],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        process_s = time.perf_counter() - t0
        after = os.times()
        cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
        others = max(0.0, (_busy_cpu_s() - busy0 - cpu) / (process_s * (os.cpu_count() or 1)))
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
        if proc.returncode or line is None:
            err = (proc.stderr or proc.stdout).strip().splitlines()
            results.append({"peer": name, "failed": (err[-1] if err else f"exit {proc.returncode}")[:300]})
            continue
        res = {
            "peer": name,
            "process_s": process_s,
            "process_cpu_s": cpu,
            "others": others,
            "waited_s": waited,
            **json.loads(line[len("RESULT ") :]),
        }
        print(f"    {json.dumps({k: v for k, v in res.items() if k != 'rates'})}", file=sys.stderr, flush=True)
        npz = work / f"{name}.npz"
        if name == "engine":
            with np.load(npz) as z:
                ref = {"conf": z["conf"], "hist": z["hist"]}
            res["agrees"] = "(reference)"
        elif npz.exists() and ref is not None:
            with np.load(npz) as z:
                same_conf = np.array_equal(z["conf"], ref["conf"])
                same_hist = np.array_equal(z["hist"], ref["hist"])
                bins = int((z["hist"] != ref["hist"]).sum())
            res["agrees"] = (
                "counts and histogram equal"
                if same_conf and same_hist
                else f"confusion counts {'equal' if same_conf else 'DIFFER'}, histogram "
                + ("equal" if same_hist else f"DIFFERS in {bins} bins")
            )
        elif name == "fairlearn" and ref is not None:
            ours = rates_from_conf(ref["conf"])
            theirs = res.pop("rates")
            diff = max(abs(a - b) for k in ours for a, b in zip(ours[k], theirs.get(k, [float("nan")] * 4)))
            res["agrees"] = f"rates of {len(theirs)} cells, max |diff| {diff:.1e}"
        results.append(res)
    return results


# --------------------------------------------------------------------------- output


def machine_facts() -> list[str]:
    import importlib.metadata as md

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        mem = float("nan")
    versions = []
    for pkg in ("impactflow", "pyarrow", "numpy", "pandas", "polars", "duckdb", "fairlearn", "prefect", "mlflow"):
        try:
            versions.append(f"{pkg} {md.version(pkg)}")
        except md.PackageNotFoundError:
            versions.append(f"{pkg} (not installed)")
    return [
        "| machine | |",
        "|---|---|",
        f"| CPU | {cpu}, {os.cpu_count()} cores |",
        f"| memory | {mem:.1f} GiB |",
        f"| Python | {platform.python_version()} ({platform.system()} {platform.release()}) |",
        f"| versions | {', '.join(versions)} |",
        f"| date (UTC) | {datetime.now(timezone.utc):%Y-%m-%d %H:%M} |",
        f"| load average at start | {', '.join(f'{x:.2f}' for x in os.getloadavg())} |",
    ]


def data_table(rows: list[dict], part_rows: int) -> list[str]:
    out = [
        f"| rows | files ({part_rows / M:g}M rows each, 1M-row row groups) | on disk | generated now | "
        "generation s | SHA-256 of the files, 1 thread |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r['rows']:,} | {r['files']} | {r['mb']:,.0f} MB | {r['generated']} files | {r['gen_s']:.1f} | "
            f"{r['sha_s']:.1f} s |"
        )
    return out


def _fmt(v, spec=".1f", unit="") -> str:
    return "n/a" if v is None or v != v else f"{v:{spec}}{unit}"


def audit_table(results: list[dict]) -> list[str]:
    out = [
        "| rows | mode | exit | wall s | wall s per 10M rows | stream-aggregate s (per 10M rows) | "
        "peak RSS, largest process | peak RSS, process tree (processes) | CPU s (user+sys) | others' CPU |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        rows = r["size"] * M
        agg = r.get("phases", {}).get("tasks", {}).get("stream-aggregate")
        exit_text = str(r["rc"]) + (" (a gate failed)" if r["rc"] == 3 else "") + (" FAILED" if "error" in r else "")
        out.append(
            f"| {rows:,.0f} | {r['mode']} | {exit_text} | {r['wall_s']:.1f} | {r['wall_s'] / r['size'] * 10:.1f} | "
            f"{_fmt(agg)} ({_fmt(agg / r['size'] * 10 if agg else None, '.2f')}) | "
            f"{_largest(r)} | {_fmt(r['tree_peak_mb'], ',.0f', ' MB')} "
            f"({len(r['tree_procs'])}) | {_fmt(r['cpu_s'])} | {r['others'] * 100:.0f}% |"
        )
    return out


def _largest(r: dict) -> str:
    """The kernel's high-water mark of the CLI process (``time -v``), or for a forked run the
    largest RSS polled (the forked child is not the CLI's)."""
    if r["mode"] == "warm" or r.get("max_rss_mb") is None:
        return _fmt(r["largest_sampled_mb"], ",.0f", " MB") + " (polled)"
    return _fmt(r["max_rss_mb"], ",.0f", " MB")


def fit_lines(results: list[dict]) -> list[str]:
    """Least-squares ``seconds = fixed + per 10M rows x rows / 10M`` over the sizes, per server mode."""
    out = []
    for mode in dict.fromkeys(r["mode"] for r in results):
        rs = [r for r in results if r["mode"] == mode and "error" not in r]
        if len({r["size"] for r in rs}) < 2:
            continue
        for what, get in (
            ("wall", lambda r: r["wall_s"]),
            ("stream-aggregate", lambda r: r.get("phases", {}).get("tasks", {}).get("stream-aggregate")),
            (
                "wall minus stream-aggregate",
                lambda r: r["wall_s"] - r.get("phases", {}).get("tasks", {}).get("stream-aggregate", 0.0),
            ),
        ):
            pts = [(r["size"] / 10, get(r)) for r in rs if get(r) is not None]
            if len(pts) < 2:
                continue
            n = len(pts)
            mx, my = sum(x for x, _ in pts) / n, sum(y for _, y in pts) / n
            slope = sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x, _ in pts)
            out.append(
                f"- {mode}, {what}: {my - slope * mx:.1f} s fixed + {slope:.2f} s per 10M rows "
                f"(least squares over {', '.join(_size_name(r['size']) for r in rs)})"
            )
    return out


def peak_lines(results: list[dict]) -> list[str]:
    """The processes of each run's tree at its peak RSS."""
    out = []
    for r in results:
        procs = ", ".join(f"{name} {mb:,} MB" for name, mb in r["tree_procs"])
        out.append(f"- {_size_name(r['size'])}, {r['mode']}: {procs}")
    return out


def phase_table(results: list[dict]) -> list[str]:
    names: list[str] = []
    for r in results:
        for t in sorted(r.get("phases", {}).get("tasks", {}), key=lambda k: -r["phases"]["tasks"][k]):
            if t not in names:
                names.append(t)
    head = ["before the flow run", *names, "flow engine between tasks", "after the flow run", "wall"]
    out = [
        "| rows, mode | " + " | ".join(head) + " |",
        "|---|" + "---|" * len(head),
    ]
    for r in results:
        p = r.get("phases") or {}
        if not p:
            out.append(f"| {_size_name(r['size'])}, {r['mode']} | (no Prefect database) |")
            continue
        vals = [p["before_flow_s"], *(p["tasks"].get(n) for n in names), p["between_tasks_s"], p["after_flow_s"]]
        out.append(
            f"| {_size_name(r['size'])}, {r['mode']} | "
            + " | ".join(_fmt(v, ".2f") for v in vals)
            + f" | {r['wall_s']:.1f} |"
        )
    return out


WHAT = {
    "engine": "impactflow `run_local` (pyarrow batches + numpy on threads; also ECE bins, sums, 100k sample)",
    "polars": "polars `scan_parquet` + `group_by` + `collect(engine='streaming')`",
    "duckdb": "duckdb `read_parquet` + `GROUP BY ALL`",
    "pandas": "pandas `read_parquet` + `groupby(...).size()`",
    "fairlearn": "fairlearn `MetricFrame` (4 metrics, intersection) after pandas `read_parquet`",
}


def peer_table(results: list[dict], size: float) -> list[str]:
    out = [
        f"| {size:g}M rows | threads | seconds (of which read) | s per 10M rows | CPU s | peak RSS (after imports) | "
        "result rows | agrees with the engine | others' CPU |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        name = WHAT[r["peer"]]
        if "skipped" in r or "failed" in r:
            out.append(f"| {name} | | {r.get('skipped') or 'FAILED: ' + r['failed']} | | | | | | |")
            continue
        read = f" ({r['read_s']:.1f})" if "read_s" in r else ""
        threads = r.get("threads", "1 (read: pyarrow's pool)")
        out.append(
            f"| {name} | {threads} | {r['seconds']:.1f}{read} | {r['seconds'] / size * 10:.1f} | {r['cpu_s']:.1f} | "
            f"{r['peak_mb']:,.0f} MB ({r['import_peak_mb']:,.0f} MB) | {r.get('groups', 80):,} | "
            f"{r.get('agrees', '')} | {r['others'] * 100:.0f}% |"
        )
    return out


def fairlearn_note(results: list[dict], size: float, sizes: list[float]) -> list[str]:
    r = next((r for r in results if r["peer"] == "fairlearn" and "seconds" in r), None)
    larger = sorted({s for s in [30.0, *sizes] if s > size})
    if r is None or not larger:
        return []
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20
    grow = r["peak_mb"] - r["import_peak_mb"]
    guesses = ", ".join(
        f"{s:g}M rows ~{r['seconds'] * s / size:,.0f} s and ~{grow * s / size + r['import_peak_mb']:,.0f} MB"
        for s in larger
    )
    return [
        f"fairlearn at {size:g}M rows: {r['seconds']:.0f} s, {r['peak_mb']:,.0f} MB peak; in proportion, {guesses} "
        f"(this machine: {mem:,.0f} MB, shared): {size:g}M is the largest size run."
    ]


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10,30,100", help="millions of rows, comma-separated (default 10,30,100)")
    ap.add_argument("--quick", action="store_true", help="sizes 1,3, peers at 1 and 3 (a smoke run)")
    ap.add_argument("--peers", action="store_true", help="also part 3 (the peers)")
    ap.add_argument(
        "--peer-size", type=float, default=None, help="millions of rows for all five peers (default 10; --quick 1)"
    )
    ap.add_argument(
        "--stream-peer-size",
        type=float,
        default=None,
        help="millions of rows for the engine, polars and duckdb again (default: the largest size; 0: no)",
    )
    ap.add_argument(
        "--modes",
        default=",".join(MODES),
        help="temporary (Prefect's temporary server), kept (`impactflow server start`), kept-url (the same with "
        "PREFECT_API_URL set to it), warm (kept + its warm runner, `--warm`); comma-separated (default all four)",
    )
    ap.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="S",
        help="before each measurement wait up to S s until other processes use < 25%% of the CPUs (default 0)",
    )
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA, help=f"cache of the logs (default {DEFAULT_DATA})")
    ap.add_argument("--part-rows", type=int, default=None, help="rows per file (default 5M; --quick 500k)")
    ap.add_argument("--json", type=Path, default=None, help="also write every measurement as JSON")
    ap.add_argument("--keep", action="store_true", help="keep the runs' output folders (printed)")
    ap.add_argument("--peer-child", choices=PEERS, help=argparse.SUPPRESS)
    ap.add_argument("--peer-data", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--peer-out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.peer_child:
        run_peer(args.peer_child, args.peer_data, args.peer_out)
        return 0
    sizes = [1.0, 3.0] if args.quick else [float(s) for s in args.sizes.split(",") if s.strip()]
    part_rows = args.part_rows or (500_000 if args.quick else 5 * M)
    peers = args.peers or args.quick
    peer_size = args.peer_size or (1.0 if args.quick else 10.0)
    stream_size = max(sizes) if args.stream_peer_size is None else args.stream_peer_size
    if stream_size == peer_size:
        stream_size = 0
    want = sorted(set(sizes) | ({peer_size} | ({stream_size} if stream_size else set()) if peers else set()))
    t_start = time.perf_counter()
    lines = ["### Machine", "", *machine_facts(), ""]
    print("\n".join(lines), flush=True)
    folders, data_rows = prepare_data(args.data_dir, want, part_rows)
    block = ["### Data", "", *data_table(data_rows, part_rows), ""]
    print("\n".join(block), flush=True)
    work = Path(tempfile.mkdtemp(prefix="impactflow-audit-scale-"))
    out: dict = {"sizes": sizes, "data": data_rows}
    try:
        modes = tuple(m for m in MODES if m in args.modes.split(","))
        results, server_info = bench_audits({s: folders[s] for s in sizes}, work, modes, args.wait_quiet)
        out.update(audits=results, server=server_info)
        last = next((r for r in reversed(results) if r["mode"] != "temporary"), {})
        kept = (
            f"`impactflow {server_info['command']}` once ({server_info['start_s']:.1f} s; RSS after the runs: server "
            f"{_fmt(last.get('server_rss_mb'), ',.0f', ' MB')}, warm runner {_fmt(last.get('warm_rss_mb'), ',.0f', ' MB')}"
            ", neither in the tree), `impactflow server stop` after; kept runs with `IMPACTFLOW_WARM=off` (kept-url: "
            "also `PREFECT_API_URL` set to the kept server), warm runs forked from the warm runner (their tree: the "
            "CLI + the forked run)"
            if server_info.get("start_s") and not server_info.get("error")
            else "not run"
        )
        block = [
            "### `impactflow audit` (whole process)",
            "",
            f"`{' '.join(audit_command(Path('LOG'), Path('OUT'))[1:])}`, a fresh output folder (and MLflow "
            f"store) each run; temporary: a fresh `PREFECT_HOME` (Prefect's temporary server); kept/warm: {kept}.",
            "",
            *audit_table(results),
            "",
            *fit_lines(results),
            "",
            "Processes at the tree's peak RSS:",
            "",
            *peak_lines(results),
            "",
            "### Where the time goes (seconds, from each run's Prefect database)",
            "",
            *phase_table(results),
            "",
        ]
        for r in results:
            if "error" in r:
                block.append(f"{_size_name(r['size'])} {r['mode']} FAILED: {r['error'][-600:]}")
        print("\n".join(block), flush=True)
        if peers:
            out["peers"] = []
            for size, names in ((peer_size, PEERS), (stream_size, PEERS[:3])):
                if not size:
                    continue
                peer_work = work / f"peers-{_size_name(size)}"
                peer_work.mkdir()
                found = bench_peers(folders[size], peer_work, names, args.wait_quiet)
                out["peers"].append({"size": size, "results": found})
                block = [
                    f"### Peers: the aggregation alone, {size:g}M rows (a fresh process each, imports not timed)",
                    "",
                    *peer_table(found, size),
                    "",
                    *fairlearn_note(found, size, sizes),
                ]
                print("\n".join(block), flush=True)
    finally:
        if args.keep:
            print(f"runs kept in {work}", flush=True)
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(
        f"\nbenchmark wall {time.perf_counter() - t_start:.0f} s; this process's peak RSS "
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB",
        flush=True,
    )
    if args.json:
        args.json.write_text(json.dumps(out, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
