"""Time each stage of the impactflow pipeline on the shipped UCI Adult data.

    python benchmarks/stages.py [--repeats N] [--sample N] [--json out.json]

Every in-process stage calls its Prefect task's undecorated function (``task.fn``: the same code
the task runs, without Prefect's engine) with the arguments ``flows/pipeline.py`` passes, in this
one process; the MLflow stage does the same with the logging tasks against a fresh SQLite store in
a temp dir. Start-up costs (``impactflow --help``, heavy imports, the temporary Prefect server) and
whole ``impactflow run`` processes are measured in fresh subprocesses. Nothing here asserts a
timing: it prints what it measured, with the CPU share other processes took meanwhile.

Repeats: every row shows median / min / max over its repeats: ``--repeats`` (default 3) for
start-up and the fast stages, ``--train-repeats`` (default 3) for the two preset trainings,
``--e2e-repeats`` (default 2) for the whole ``impactflow run`` (+ ``--e2e-threads-repeats``, default
1, with the other ``train.threads`` setting), ``--ratio-repeats`` (default 3) interleaved pairs for
the same-batch DP/non-DP comparison (at the pipeline's thread setting and the other one). A
"torch threads check" first times fixed blocks of MLP steps with one thread per core and with one
thread: on small shared VMs the former stalls by 10x or more under contention. Heavy libraries
are imported once before any stage is timed, so a stage's time excludes its import (imports are
reported on their own); the first repeat of a stage still pays one-time set-up (e.g. MLflow
creating its SQLite schema, GX building a context).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# The CLI's quiet defaults (flows/cli.py), so in-process stages run as `impactflow run` does.
QUIET_ENV = {
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "GX_ANALYTICS_ENABLED": "false",
    "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "CRITICAL",
    "PREFECT_LOGGING_LEVEL": "WARNING",
    "PREFECT_SERVER_LOGGING_LEVEL": "ERROR",
    "MLFLOW_LOGGING_LEVEL": "ERROR",
}
# fairlearn's __init__ is lazy (~1 ms); fairlearn.metrics is what audits/fairness.py imports.
HEAVY_IMPORTS = ["torch", "prefect", "mlflow", "great_expectations", "opacus", "fairlearn.metrics"]
# Env vars that would point a subprocess at an existing server/store instead of a fresh one.
STRIP_ENV = ("PREFECT_API_URL", "PREFECT_PROFILE", "MLFLOW_TRACKING_URI")


# --------------------------------------------------------------------------- helpers


class Results:
    """Rows of (section, stage, times, note) plus extra derived lines, printed as a table."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.derived: list[tuple[str, str]] = []
        self.meta: dict[str, Any] = {}

    def add(self, section: str, stage: str, times: list[float], note: str = "") -> list[float]:
        others = getattr(times, "others", None) or None
        self.rows.append(
            {"section": section, "stage": stage, "times_s": list(times), "note": note, "others_cpu_share": others}
        )
        print(f"  [{section}] {stage}: {', '.join(f'{t:.3f}' for t in times)} s", file=sys.stderr, flush=True)
        return times

    def line(self, label: str, value: str) -> None:
        self.derived.append((label, value))

    def median(self, stage: str) -> float:
        for r in self.rows:
            if r["stage"] == stage:
                return statistics.median(r["times_s"])
        raise KeyError(stage)


CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
NCPU = os.cpu_count() or 1


def _cpu_snapshot() -> tuple[float, float, float]:
    """(wall, machine busy CPU-seconds incl. steal, CPU-seconds of this process + waited children)."""
    try:
        with open("/proc/stat") as fh:
            vals = [int(v) for v in fh.readline().split()[1:9]]
        busy = (sum(vals) - vals[3] - vals[4]) / CLK_TCK  # all but idle and iowait
    except (OSError, ValueError, IndexError):
        busy = float("nan")
    t = os.times()
    return time.perf_counter(), busy, t.user + t.system + t.children_user + t.children_system


class Times(list):
    """Wall times, plus per repeat the share of the machine's CPUs that OTHER processes (and the
    hypervisor's steal) kept busy meanwhile: the contention this measurement ran under."""

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.others: list[float] = []


class Probe:
    """``with Probe(times): ...`` appends the wall time and the others' CPU share to ``times``."""

    def __init__(self, times: Times) -> None:
        self.times = times

    def __enter__(self) -> "Probe":
        self.start = _cpu_snapshot()
        return self

    def __exit__(self, *exc) -> None:
        end = _cpu_snapshot()
        wall = end[0] - self.start[0]
        others = ((end[1] - self.start[1]) - (end[2] - self.start[2])) / max(wall * NCPU, 1e-9)
        self.times.append(wall)
        self.times.others.append(min(max(others, 0.0), 1.0))


def timed(fn: Callable[[], Any], repeats: int) -> tuple[Times, Any]:
    times, result = Times(), None
    for _ in range(repeats):
        with Probe(times):
            result = fn()
    return times, result


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in STRIP_ENV}
    env.update(QUIET_ENV)
    env.update(extra)
    return env


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for a benchmark's own Prefect server)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def impactflow_exe() -> str:
    exe = Path(sys.executable).parent / "impactflow"
    return str(exe) if exe.exists() else (shutil.which("impactflow") or "impactflow")


def machine_info() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }
    try:
        info["nproc"] = int(subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip())
    except (OSError, ValueError):
        pass
    return info


# --------------------------------------------------------------------------- start-up


def bench_startup(res: Results, repeats: int) -> None:
    sec = "start-up (fresh subprocesses)"
    env = clean_env()
    times = Times()
    for _ in range(repeats):
        with Probe(times):
            subprocess.run([impactflow_exe(), "--help"], env=env, capture_output=True, check=True)
    res.add(sec, "impactflow --help (whole process)", times)
    times = Times()
    for _ in range(repeats):
        with Probe(times):
            subprocess.run([sys.executable, "-c", "pass"], env=env, capture_output=True, check=True)
    res.add(sec, "python -c pass (interpreter alone)", times)
    code = "import time,sys; t=time.perf_counter(); __import__(sys.argv[1]); print(time.perf_counter()-t)"
    for mod in HEAVY_IMPORTS:
        times = []
        for _ in range(repeats):
            out = (
                subprocess.run([sys.executable, "-c", code, mod], env=env, capture_output=True, text=True, check=True)
                .stdout.strip()
                .splitlines()[-1]
            )
            times.append(float(out))
        res.add(sec, f"import {mod}", times, "in-process import time")


def bench_prefect_server(res: Results, work: Path) -> None:
    """A trivial flow twice in one fresh process: the first pays the ephemeral server start."""
    sec = "start-up (fresh subprocesses)"
    script = (
        "import json,time\n"
        "t0=time.perf_counter()\n"
        "from prefect import flow, task\n"
        "t1=time.perf_counter()\n"
        "@task\n"
        "def noop():\n    return 1\n"
        "@flow\n"
        "def trivial():\n    return noop()\n"
        "trivial(); t2=time.perf_counter()\n"
        "trivial(); t3=time.perf_counter()\n"
        "print(json.dumps({'import': t1-t0, 'first': t2-t1, 'second': t3-t2}))\n"
    )
    home = work / "prefect_home_trivial"
    home.mkdir()
    out = subprocess.run(
        [sys.executable, "-c", script], env=clean_env(PREFECT_HOME=str(home)), capture_output=True, text=True, cwd=work
    )
    if out.returncode != 0:
        res.line("prefect trivial flow", f"failed (rc={out.returncode}): {out.stderr.strip()[-300:]}")
        return
    t = json.loads(out.stdout.strip().splitlines()[-1])
    res.add(
        sec,
        "prefect: 1st trivial flow run (ephemeral server start)",
        [t["first"]],
        "fresh PREFECT_HOME, 1 flow + 1 task",
    )
    res.add(sec, "prefect: 2nd trivial flow run (server warm)", [t["second"]], "same process")


# --------------------------------------------------------------------------- in-process stages


def _thread_settings(requested: int | None) -> tuple[int | None, int, int]:
    """(train.threads for the main runs, the threads that resolves to, the other setting to
    compare with): the pipeline's default (``train.threads: null``) resolves through
    ``impactflow.models.training.cpu_threads`` (1 on machines with <= 2 cores, else torch's default)."""
    try:
        from impactflow.models.training import cpu_threads
    except ImportError:  # older trees: torch's default everywhere
        import torch

        def cpu_threads(n=None):
            return n or torch.get_num_threads()

    resolved = cpu_threads(requested)
    other = NCPU if resolved == 1 else 1
    return requested, resolved, other


def _threads_label(n: int | None, resolved: int | None = None) -> str:
    if n is None:
        return f"train.threads=null (-> {resolved} here)"
    return f"train.threads={n}"


class _EpochClock:
    """A ``impactflow.tasks.progress`` reporter that timestamps every epoch the training task reports."""

    def __init__(self) -> None:
        self.marks: list[float] = []

    def stage(self, name: str) -> None:
        self.marks = [time.perf_counter()]

    def epoch(self, model: str, row: dict) -> None:
        self.marks.append(time.perf_counter())

    def epoch_times(self) -> list[float]:
        """Per-epoch wall times, without the first epoch (it also holds preprocessing/set-up)."""
        return [b - a for a, b in zip(self.marks[1:], self.marks[2:])]


def bench_stages(res: Results, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """The pipeline's stages in the flow's order and with the flow's arguments
    (flows/pipeline.py), each by calling its task's undecorated function (``task.fn``)."""
    for k, v in QUIET_ENV.items():
        os.environ.setdefault(k, v)
    for k in STRIP_ENV:
        os.environ.pop(k, None)
    for pattern in (
        "Secure RNG turned off",
        "Full backward hook",
        "Optimal order is the",
        "Hint: Inferred schema contains integer",
    ):
        warnings.filterwarnings("ignore", message=pattern)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    import logging

    for name in ("alembic", "mlflow", "great_expectations"):
        logging.getLogger(name).setLevel(logging.ERROR)

    # Import everything up front: stage times below exclude imports (reported separately).
    t0 = time.perf_counter()
    for mod in HEAVY_IMPORTS + ["sklearn", "pandas", "matplotlib"]:
        __import__(mod)
    import torch

    from impactflow.data_contracts import get_contract
    from impactflow.flows.config import load_config
    from impactflow.tasks import log as log_tasks
    from impactflow.tasks import progress
    from impactflow.tasks.audit import audit_model
    from impactflow.tasks.data import load_data, split_data, validate_data
    from impactflow.tasks.report import model_record, provenance, representation, write_report
    from impactflow.tasks.spec import RunSpec
    from impactflow.tasks.train import train_baseline, train_model

    try:
        from impactflow.tasks.registry import register_model
    except ImportError:  # older trees: no model registry step
        register_model = None

    res.meta["in_process_import_s"] = time.perf_counter() - t0
    # As the warm runner does before it forks a run (flows/warm.py): the imported objects leave
    # the garbage collector's sight, so the compute stages below pay the GC a warm run pays.
    # Without it they would be measured slower than in a warm run, and the overhead derived from
    # them (warm e2e wall - compute) would come out too small.
    import gc

    gc.collect()
    gc.freeze()
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    res.meta["torch_threads"] = torch.get_num_threads()
    if not args.skip_thread_check:
        bench_threads(res)

    cfg = load_config("tabular")
    dp_cfg = load_config("tabular-dp")
    contract = get_contract(cfg.data.contract)
    spec, seed = RunSpec.of(cfg), cfg.seed
    exclude = cfg.data.exclude_sensitive_from_features
    R, TR = args.repeats, args.train_repeats
    sec = "pipeline stages (in-process: each task's function, without Prefect)"

    times, (df, data_info) = timed(lambda: load_data.fn(spec, None, args.sample, seed), R)
    res.add(sec, "load (+ SHA-256 of the files)", times, f"{len(df):,} rows")
    res.meta["rows"] = len(df)

    docs_dirs: list[Path] = []

    def do_validate():
        docs_dirs.append(Path(tempfile.mkdtemp(dir=work, prefix="docs_")))
        return validate_data.fn(df, spec, str(docs_dirs[-1]))

    times, validation = timed(do_validate, R)
    res.add(
        sec,
        "validate (GX suite + Data Docs HTML)",
        times,
        f"{validation.total_expectations} expectations, success={validation.success}",
    )
    reuse_dir = Path(tempfile.mkdtemp(dir=work, prefix="reuse_"))

    def do_validate_reused():
        return validate_data.fn(df, spec, tempfile.mkdtemp(dir=work, prefix="docs_"), str(reuse_dir))

    do_validate_reused()  # stores the passing result
    times, reused = timed(do_validate_reused, R)
    res.add(
        sec,
        "validate, result reused (data.reuse_validation: key + Data Docs copy)",
        times,
        "reused" if "reused" in reused.statistics else "NOT reused",
    )

    times, split = timed(lambda: split_data.fn(df, spec, cfg.split.validation, cfg.split.test, seed), R)
    res.add(sec, "split", times, "train/val/test " + "/".join(f"{v:,}" for v in split.sizes().values()))

    clock = _EpochClock()
    progress.install(clock)

    threads, resolved, other_threads = _thread_settings(args.torch_threads)
    res.meta["train_threads"] = resolved

    def train(rc, params=None, privacy=None, n_threads=threads):
        train_cfg = rc.train.model_dump()
        if "threads" in train_cfg:
            train_cfg["threads"] = n_threads
        elif n_threads:  # older trees without train.threads
            torch.set_num_threads(n_threads)
        return train_model.fn(
            split,
            RunSpec.of(rc),
            dict(params if params is not None else rc.model.params),
            train_cfg,
            privacy if privacy is not None else rc.privacy.model_dump(),
            rc.seed,
        )

    def train_note(m, total: float) -> str:
        t = m.training
        rest = total - t["wall_time_s"] - t.get("preprocess_time_s", 0.0)
        note = (
            f"{t['epochs_run']} epochs, batch {m.params['batch_size']}, {t['device']}; last: loop "
            f"{t['wall_time_s']:.1f} s, prep {t.get('preprocess_time_s', 0.0):.2f} s, "
            f"{'DP set-up/' if t['dp'].get('enabled') else ''}scoring {rest:.1f} s"
        )
        if t["dp"].get("enabled"):
            note += f"; eps={t['dp']['epsilon']:.2f}"
        return note

    loops: dict[str, list[float]] = {}
    fit_times: dict[str, list[float]] = {}
    fitted = {}
    for key, rc, label in (
        ("mlp", cfg, "train MLP (preset tabular)"),
        ("mlp-dp", dp_cfg, "train MLP DP (preset tabular-dp)"),
    ):
        loops[key] = []

        def once(rc=rc, key=key):
            m = train(rc)
            loops[key].append(m.training["wall_time_s"] / max(m.training["epochs_run"], 1))
            return m

        fit_times[key], fitted[key] = timed(once, TR)
        res.add(
            sec,
            f"{label}, {_threads_label(threads, resolved)}",
            fit_times[key],
            train_note(fitted[key], fit_times[key][-1]),
        )
        per_epoch = Times(loops[key])
        per_epoch.others = fit_times[key].others
        res.add(sec, "  training loop, per epoch", per_epoch, "loop wall / epochs (incl. validation loss)")
    mlp, mlp_dp = fitted["mlp"], fitted["mlp-dp"]

    baselines = []
    for b in cfg.model.baselines:
        times, model = timed(lambda: train_baseline.fn(split, spec, b, seed), R)
        res.add(sec, f"train baseline {b}", times, "fit + scoring train/test")
        baselines.append(model)

    audits = {}
    pipeline_models = [mlp, *baselines]  # what `impactflow run -c tabular` trains
    for m in [*pipeline_models, mlp_dp]:
        gates = (dp_cfg if m is mlp_dp else cfg).gates
        times, audits[m.name] = timed(lambda: audit_model.fn(m, split, spec, gates), R)
        res.add(sec, f"audits ({m.name})", times, ", ".join(audits[m.name]))

    times, prov = timed(lambda: provenance(seed, "benchmarks/stages.py"), R)
    res.add(sec, "provenance (git + package versions)", times)

    # The report as the flow builds it (run ids are placeholders: MLflow is timed below).
    data = {
        **data_info,
        "splits": split.sizes(),
        "contract_result": validation.to_dict(),
        "representation": representation(
            df, contract.target, contract.positive_label, [*contract.sensitive, *getattr(contract, "groups", ())]
        ),
        "synthetic_groups": list(getattr(contract, "synthetic_groups", ())),
        "missing": {k: int(v) for k, v in df.isna().sum().items() if v},
        "sensitive": list(contract.sensitive),
        "excluded_features": sorted(
            {contract.weight, *contract.exclude_from_features} - {None}
            | (set(contract.sensitive) if exclude else set())
        ),
    }
    records = [model_record(m, audits[m.name], f"bench-{m.name}") for m in pipeline_models]
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    run = {
        "run_id": "bench",
        "flow_run_id": None,
        "preset": cfg.preset,
        "started_at": now,
        "finished_at": now,
        "mlflow": {"tracking_uri": "sqlite:///bench.db", "experiment": "bench", "parent_run_id": "bench"},
    }
    config = cfg.model_dump(mode="json")
    times, report = timed(
        lambda: write_report.fn(run, data, records, prov, config, tempfile.mkdtemp(dir=work, prefix="report_")), R
    )
    res.add(sec, "report (build + write json/md/html)", times, f"{len(records)} models")

    # MLflow: the logging tasks' functions in the flow's order, each repeat on a fresh SQLite store.
    sec_ml = "MLflow logging (tasks' functions, fresh SQLite store per repeat)"
    tags = {"impactflow.family": spec.family_name, "impactflow.preset": cfg.preset, "impactflow.dp": "false"}
    ml_times: dict[str, Times] = {}

    def tick(name: str, fn: Callable[[], Any]) -> Any:
        with Probe(ml_times.setdefault(name, Times())):
            return fn()

    register = register_model is not None and getattr(cfg.tracking, "register_models", False)
    for i in range(R):
        # mlflow.set_tracking_uri (called by tasks.tracking.log_model and the registry task) also
        # writes MLFLOW_TRACKING_URI into os.environ; tasks.tracking.tracking_uri prefers that
        # variable, so without this pop every later repeat would log into the first store.
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        out = Path(tempfile.mkdtemp(dir=work, prefix="mlflow_"))
        ctx = tick(
            "start tracking (DB schema, experiment, parent run)",
            lambda: log_tasks.start_tracking.fn(config, cfg.preset, cfg.experiment_name, str(out), f"bench-{i}", tags),
        )
        tick(
            "log data (dataset input, tags, metrics, Data Docs)",
            lambda: log_tasks.log_data.fn(ctx, df, data_info, validation.to_dict(), str(docs_dirs[-1])),
        )
        for m in pipeline_models:
            child = tick(
                f"log model run ({m.name}: metrics, audits, log_model)",
                lambda: log_tasks.log_model_run.fn(ctx, m, audits[m.name], split.test, tags, str(out / "models")),
            )
            if register and m is mlp:  # the flow registers the candidate, not the baselines
                tick(f"register model ({m.name})", lambda: register_model.fn(ctx, m.name, child, audits[m.name]))
        tick("log report (artifacts, end run)", lambda: log_tasks.log_report.fn(ctx, report["paths"], report["status"]))
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    for name, times in ml_times.items():
        res.add(sec_ml, name, times)
    ml_total = [sum(ts[i] for ts in ml_times.values()) for i in range(R)]
    res.add(sec_ml, "MLflow total", ml_total)

    # DP vs non-DP with the same model, batch and number of epochs (tabular-dp params, patience =
    # epochs), interleaved, per-epoch wall times from the epoch callback (each epoch includes the
    # validation loss; DP epochs also the cheap RDP epsilon read-out), at torch's default
    # thread count and at one thread.
    E = args.ratio_epochs
    params = {**dp_cfg.model.params, "epochs": E, "patience": E}
    sec_dp = (
        f"DP vs non-DP, SAME model + batch {params['batch_size']} (tabular-dp params), {E} epochs, "
        f"{args.ratio_repeats} interleaved repeats; per-epoch times (epoch 1 left out)"
    )
    same: dict[tuple[int | None, bool], Times] = {}
    last_dp = None
    for n_threads in (threads, other_threads):
        for _ in range(args.ratio_repeats):
            for private in (False, True):
                calls = Times()
                with Probe(calls):
                    m = train(
                        dp_cfg,
                        params,
                        dp_cfg.privacy.model_dump() if private else {"enabled": False},
                        n_threads=n_threads,
                    )
                row = same.setdefault((n_threads, private), Times())
                row.extend(clock.epoch_times())
                row.others.extend(calls.others)
                last_dp = m if private else last_dp
    progress.install(None)
    for (n_threads, private), times in same.items():
        th = _threads_label(n_threads, resolved)
        res.add(
            sec_dp,
            f"{'DP (ghost clipping)' if private else 'non-private'} epoch, {th}",
            times,
            f"eps={last_dp.training['dp']['epsilon']:.2f} after {E} epochs" if private else "",
        )
        if private:
            off = same[(n_threads, False)]
            res.line(
                f"DP/non-DP per-epoch time, SAME model + batch {params['batch_size']}, {th} "
                "(ratio of medians; of mins)",
                f"{statistics.median(times) / statistics.median(off):.2f}x; {min(times) / min(off):.2f}x",
            )
    eps_cost = _epsilon_cost(last_dp, dp_cfg.privacy.accountant, dp_cfg.privacy.delta)
    if eps_cost is not None:
        res.add(
            sec_dp,
            f"{dp_cfg.privacy.accountant.upper()} get_epsilon, once",
            [eps_cost],
            "paid once, after training (the per-epoch read-out uses a cached RDP curve)",
        )
    res.line(
        f"DP/non-DP per-epoch time, presets as configured (tabular-dp batch {mlp_dp.params['batch_size']} "
        f"vs tabular batch {mlp.params['batch_size']}; medians)",
        f"{statistics.median(loops['mlp-dp']) / statistics.median(loops['mlp']):.2f}x",
    )
    res.line(
        f"DP/non-DP whole training task, presets as configured ({mlp_dp.training['epochs_run']} vs "
        f"{mlp.training['epochs_run']} epochs, incl. DP set-up + scoring; medians)",
        f"{statistics.median(fit_times['mlp-dp']) / statistics.median(fit_times['mlp']):.2f}x",
    )

    # Sum of the compute stages `impactflow run -c tabular` executes (medians), for the e2e comparison.
    mlp_row = f"train MLP (preset tabular), {_threads_label(threads, resolved)}"
    compute = (
        res.median("load (+ SHA-256 of the files)")
        + res.median("validate (GX suite + Data Docs HTML)")
        + res.median("split")
        + res.median(mlp_row)
        + sum(res.median(f"train baseline {b}") for b in cfg.model.baselines)
        + sum(res.median(f"audits ({m.name})") for m in pipeline_models)
        + res.median("provenance (git + package versions)")
        + res.median("report (build + write json/md/html)")
    )
    med = res.median
    by_task = {
        "load-data": med("load (+ SHA-256 of the files)"),
        "validate-data": med("validate (GX suite + Data Docs HTML)"),
        "split-data": med("split"),
        "train-model": med(mlp_row),
        "train-baseline": sum(med(f"train baseline {b}") for b in cfg.model.baselines),
        "audit-model": sum(med(f"audits ({m.name})") for m in pipeline_models),
        "write-report": med("report (build + write json/md/html)"),
    }
    for task_name, prefix in (
        ("start-tracking", "start tracking"),
        ("log-data", "log data"),
        ("log-model-run", "log model run"),
        ("register-model", "register model"),
        ("log-report", "log report"),
    ):
        rows = [ts for name, ts in ml_times.items() if name.startswith(prefix)]
        if rows:
            by_task[task_name] = sum(statistics.median(ts) for ts in rows)
    return {
        "compute_s": compute,
        "mlflow_s": statistics.median(ml_total),
        "by_task": by_task,
        "validate_s": by_task["validate-data"],
    }


def bench_threads(res: Results, blocks: int = 8, steps: int = 100, batch: int = 1024) -> None:
    """Blocks of ``steps`` Adam steps of an MLP shaped like the tabular preset's (108 inputs,
    128-64 hidden) on random data, at torch's default thread count and at one thread: shows how
    steady CPU timings are on this machine."""
    import torch
    from torch import nn

    default = torch.get_num_threads()
    x = torch.randn(batch, 108)
    y = (torch.rand(batch) < 0.24).float()
    for n_threads in [default] + ([1] if default != 1 else []):
        torch.set_num_threads(n_threads)
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(108, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 1))
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        crit = nn.BCEWithLogitsLoss()
        times = Times()
        for _ in range(blocks):
            with Probe(times):
                for _ in range(steps):
                    opt.zero_grad(set_to_none=True)
                    crit(model(x).squeeze(-1), y).backward()
                    opt.step()
        res.add(
            "torch threads check (in-process, random data)",
            f"{steps} MLP steps, batch {batch}, {n_threads} thread{'s' if n_threads > 1 else ''}",
            times,
            "max/min far above 1 = stalls",
        )
    torch.set_num_threads(default)


def _epsilon_cost(m, accountant: str, delta: float) -> float | None:
    """Time one get_epsilon on the accountant with the run's final step history."""
    dp = m.training["dp"]
    try:
        from opacus.accountants import create_accountant

        acc = create_accountant(accountant)
        acc.history = [(dp["noise_multiplier"], dp["sample_rate"], dp["steps"])]
        t0 = time.perf_counter()
        acc.get_epsilon(delta)
        return time.perf_counter() - t0
    except Exception:  # pragma: no cover - a diagnostic only
        return None


# --------------------------------------------------------------------------- end-to-end


# the pipeline's compute tasks: everything else in a run is orchestration, tracking or validation
COMPUTE_TASKS = ("load-data", "split-data", "train-model", "train-baseline", "audit-model", "write-report")


def _prefect_db_times(home: Path) -> dict[str, Any]:
    """The latest flow run's duration, and its task-run durations summed per task name, from
    the server's SQLite DB (task run names are ``<task name>-<3 hex>``)."""
    db = home / "prefect.db"
    out: dict[str, Any] = {}
    if not db.exists():
        return out
    try:
        con = sqlite3.connect(db)
        row = con.execute(
            "SELECT id, (julianday(end_time)-julianday(start_time))*86400 FROM flow_run "
            "WHERE end_time IS NOT NULL ORDER BY start_time DESC LIMIT 1"
        ).fetchone()
        if not row:
            return out
        if row[1] is not None:
            out["flow_run_s"] = float(row[1])
        per_task: dict[str, float] = {}
        for name, secs in con.execute(
            "SELECT name, (julianday(end_time)-julianday(start_time))*86400 "
            "FROM task_run WHERE end_time IS NOT NULL AND flow_run_id = ?",
            (row[0],),
        ):
            key = name.rsplit("-", 1)[0]
            per_task[key] = per_task.get(key, 0.0) + float(secs)
        if per_task:
            out["tasks"] = per_task
            out["task_runs_s"] = sum(per_task.values())
        con.close()
    except sqlite3.Error:
        pass
    return out


def bench_e2e(res: Results, args: argparse.Namespace, work: Path, sums: dict[str, Any] | None) -> None:
    """Whole `impactflow run -c tabular` subprocesses in fresh dirs with a fresh PREFECT_HOME (so each
    starts its own temporary Prefect server and creates its own SQLite MLflow store)."""
    cmd = [impactflow_exe(), "run", "-c", "tabular"]
    if args.sample is not None:
        cmd += ["--set", f"data.sample={args.sample}"]
    threads, resolved, other_threads = _thread_settings(args.torch_threads)
    variants = [
        (_threads_label(threads, resolved), [] if threads is None else [f"train.threads={threads}"], args.e2e_repeats)
    ]
    if args.e2e_threads_repeats:
        variants.append((_threads_label(other_threads), [f"train.threads={other_threads}"], args.e2e_threads_repeats))
    first: dict[str, Any] = {}
    for v, (label, sets, repeats) in enumerate(variants):
        sec = f"end-to-end: `impactflow run -c tabular`, fresh process + PREFECT_HOME + MLflow store, {label}"
        times = Times()
        db: dict[str, list] = {}
        for i in range(repeats):
            d = work / f"e2e_{v}_{i}"
            home = d / "prefect_home"
            home.mkdir(parents=True)
            with Probe(times):
                proc = subprocess.run(
                    cmd + [a for kv in sets for a in ("--set", kv)],
                    cwd=d,
                    env=clean_env(PREFECT_HOME=str(home)),
                    capture_output=True,
                    text=True,
                )
            if proc.returncode not in (0, 3):  # 3 = completed, a gate failed: still a whole run
                msg = (proc.stderr or proc.stdout).strip().splitlines()
                res.line(f"end-to-end ({label})", f"FAILED rc={proc.returncode}: {' | '.join(msg[:3])[:300]}")
                return
            for k, val in _prefect_db_times(home).items():
                db.setdefault(k, []).append(val)
        res.add(sec, "impactflow run (whole process)", times, "exit 0, or 3 if a gate failed")
        if "flow_run_s" in db:
            res.add(sec, "  flow run (start->end, from Prefect's DB)", db["flow_run_s"])
        if "tasks" in db:
            res.add(
                sec,
                "  sum of its task runs (from Prefect's DB)",
                db["task_runs_s"],
                f"in-process: {sums['compute_s'] + sums['mlflow_s']:.1f} s" if sums else "",
            )
            names = sorted(
                {n for per in db["tasks"] for n in per},
                key=lambda n: -statistics.median([per.get(n, 0.0) for per in db["tasks"]]),
            )
            for n in names:
                inproc = (sums or {}).get("by_task", {}).get(n)
                res.add(
                    sec,
                    f"    task {n}",
                    [per.get(n, 0.0) for per in db["tasks"]],
                    f"in-process: {inproc:.2f} s" if inproc is not None else "",
                )
        if v == 0:
            first = {
                "e2e": statistics.median(times),
                **{k: statistics.median(val) for k, val in db.items() if k in ("flow_run_s", "task_runs_s")},
            }
    kept = _bench_kept_server(res, args, work, cmd) if args.kept_server_repeats else {}
    e2e = first["e2e"]
    if "flow_run_s" in first:
        res.line(
            "e2e wall - flow run (interpreter, imports, config, temporary Prefect server start; medians)",
            f"{e2e - first['flow_run_s']:.1f} s ({100 * (e2e - first['flow_run_s']) / e2e:.0f}%)",
        )
        if "task_runs_s" in first:
            res.line(
                "flow run - sum of task runs (Prefect engine between tasks; medians)",
                f"{first['flow_run_s'] - first['task_runs_s']:.1f} s",
            )
    if sums:
        compute, mlflow_s = sums["compute_s"], sums["mlflow_s"]
        res.line(
            "sum of in-process compute stages (load, validate, split, train mlp + baselines, audits, "
            "provenance, report; medians)",
            f"{compute:.1f} s",
        )
        res.line("in-process MLflow logging (median)", f"{mlflow_s:.1f} s")
        res.line(
            "e2e wall - in-process compute (orchestration + tracking + start-up + slower tasks)",
            f"{e2e - compute:.1f} s ({100 * (e2e - compute) / e2e:.0f}% of the e2e wall time)",
        )
        if "task_runs_s" in first:
            res.line(
                "  of which the same tasks ran slower inside the e2e process than in-process",
                f"{first['task_runs_s'] - compute - mlflow_s:.1f} s",
            )
        # the measure: orchestration + tracking + validation overhead = wall - compute,
        # with validation counted as overhead (not compute)
        work_s = compute - sums["validate_s"]
        res.line("compute without validation (the issue's denominator of work; medians)", f"{work_s:.1f} s")
        for mode, wall in kept.items():
            res.line(
                f"kept-server e2e wall ({mode}) - compute without validation (orchestration + tracking "
                "+ validation + start-up)",
                f"{wall - work_s:.1f} s ({100 * (wall - work_s) / wall:.0f}% of the e2e wall time)",
            )


def _bench_kept_server(res: Results, args: argparse.Namespace, work: Path, cmd: list[str]) -> dict[str, float]:
    """`impactflow run` with a kept local Prefect server (`impactflow server start --warm`): each
    run is a fresh CLI process; runs alternate between cold (``IMPACTFLOW_WARM=off``: the process
    imports everything itself), forked from the warm runner, and forked with
    ``data.reuse_validation=false`` (GX validates every run, before training), so all see the
    same machine state. Each mode re-runs in one folder, as a user re-runs in a project: its first
    run creates the MLflow SQLite store (~1 s of schema migrations) and validates the data, later
    runs reuse both (except the last mode, which validates every time); medians."""
    home = work / "kept_home"
    home.mkdir(parents=True)
    port = free_port()
    env = clean_env(PREFECT_HOME=str(home))
    sec = "end-to-end with a kept Prefect server (`impactflow server start --warm` once, then runs)"
    t0 = time.perf_counter()
    start = subprocess.run(
        [impactflow_exe(), "server", "start", "--port", str(port), "--warm"], env=env, capture_output=True, text=True
    )
    if start.returncode != 0:
        res.line("kept server", f"FAILED to start: {(start.stderr or start.stdout).strip()[:300]}")
        return {}
    res.add(
        sec,
        "impactflow server start --warm (once)",
        [time.perf_counter() - t0],
        "Prefect server + the warm runner's imports",
    )
    # "revalidate": forked, with data.reuse_validation=false (GX validates every run); the
    # other two reuse the contract result from their folder's second run on (the first validates)
    modes = ("cold", "warm", "revalidate")
    extra = {"revalidate": ["--set", "data.reuse_validation=false"]}
    times = {mode: Times() for mode in modes}
    within: dict[str, list[tuple[float, float]]] = {mode: [] for mode in modes}  # (wall - compute, wall)
    reused = {mode: 0 for mode in modes}
    try:
        for i in range(args.kept_server_repeats):
            for mode in modes:
                d = work / f"kept_{mode}"
                d.mkdir(exist_ok=True)
                run_env = {**env, "IMPACTFLOW_WARM": "off"} if mode == "cold" else env
                run_cmd = [*cmd, *extra.get(mode, [])]
                with Probe(times[mode]):
                    proc = subprocess.run(run_cmd, cwd=d, env=run_env, capture_output=True, text=True)
                if proc.returncode not in (0, 3):
                    res.line(
                        f"kept-server e2e ({mode})",
                        f"FAILED rc={proc.returncode}: {(proc.stderr or proc.stdout)[:300]}",
                    )
                    return {}
                forked = "warm runner: run process" in proc.stdout
                if forked != (mode != "cold"):
                    res.line(f"kept-server e2e ({mode})", f"FAILED: forked={forked}: {proc.stderr[-300:]}")
                    return {}
                reused[mode] += "reused the passing result" in proc.stdout
                tasks = _prefect_db_times(home).get("tasks", {})
                if tasks:  # this run's own compute tasks, timed by Prefect inside the run
                    wall = times[mode][-1]
                    within[mode].append((wall - sum(tasks.get(n, 0.0) for n in COMPUTE_TASKS), wall))
    finally:
        subprocess.run([impactflow_exe(), "server", "stop"], env=env, capture_output=True, text=True)
    n = args.kept_server_repeats
    res.add(
        sec,
        "impactflow run (whole process, kept server, cold imports)",
        times["cold"],
        f"IMPACTFLOW_WARM=off; exit 0, or 3 if a gate failed; contract result reused in {reused['cold']}/{n}",
    )
    res.add(
        sec,
        "impactflow run (whole process, kept server, forked from the warm runner)",
        times["warm"],
        "alternated with the cold runs; others = the forked run itself (not this script's child); "
        f"contract result reused in {reused['warm']}/{n}",
    )
    res.add(
        sec,
        "impactflow run (whole process, kept server, forked, validating every run)",
        times["revalidate"],
        f"--set data.reuse_validation=false; reused in {reused['revalidate']}/{n}",
    )
    for mode, label in (
        ("cold", "cold imports"),
        ("warm", "forked from the warm runner"),
        ("revalidate", "forked, validating every run"),
    ):
        if within[mode]:
            share = [over / wall for over, wall in within[mode]]
            res.add(
                sec,
                f"  wall - its own compute tasks ({label})",
                Times(over for over, _ in within[mode]),
                f"{100 * statistics.median(share):.0f}% of its wall (median); compute tasks: "
                + ", ".join(COMPUTE_TASKS),
            )
    return {mode: statistics.median(t) for mode, t in times.items()}


def render(res: Results) -> str:
    def fmt(t: float) -> str:
        return f"{t:.3f}" if t < 10 else f"{t:.2f}" if t < 100 else f"{t:.1f}"

    lines: list[str] = [
        f"others = the most, over a row's measurements, of the machine's {NCPU} CPUs that OTHER processes",
        "(and hypervisor steal) kept busy meanwhile; high = the row was measured under contention.",
    ]
    w = max(len(r["stage"]) for r in res.rows) + 2
    header = f"{'stage':<{w}}{'n':>3}{'median s':>11}{'min s':>10}{'max s':>10}{'others':>8}   note"
    section = None
    for r in res.rows:
        if r["section"] != section:
            section = r["section"]
            lines += ["", f"== {section}", header, "-" * (len(header) + 20)]
        ts = r["times_s"]
        others = r.get("others_cpu_share")
        busy = f"{100 * max(others):.0f}%" if others else ""
        lines.append(
            f"{r['stage']:<{w}}{len(ts):>3}{fmt(statistics.median(ts)):>11}{fmt(min(ts)):>10}"
            f"{fmt(max(ts)):>10}{busy:>8}   {r['note']}"
        )
    if res.derived:
        lines += ["", "== derived"]
        lw = max(len(k) for k, _ in res.derived) + 2
        lines += [f"{k:<{lw}}{v}" for k, v in res.derived]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3, help="repeats of the fast stages and start-up (default 3)")
    p.add_argument("--train-repeats", type=int, default=3, help="repeats of each torch training stage (default 3)")
    p.add_argument("--e2e-repeats", type=int, default=2, help="repeats of the end-to-end run (default 2)")
    p.add_argument(
        "--e2e-threads-repeats",
        type=int,
        default=1,
        help="extra end-to-end runs with the other train.threads setting (1 vs one per core; default 1; 0 = none)",
    )
    p.add_argument(
        "--kept-server-repeats",
        type=int,
        default=2,
        help="end-to-end runs against a kept local Prefect server (`impactflow server start`; default 2; 0 = none)",
    )
    p.add_argument(
        "--ratio-repeats", type=int, default=3, help="interleaved repeats of the same-batch DP/non-DP pair (default 3)"
    )
    p.add_argument(
        "--torch-threads",
        type=int,
        default=None,
        help="train.threads for every training (in-process and --set in the e2e runs), and "
        "torch.set_num_threads for the other in-process stages; default: the pipeline's "
        "default (train.threads: null)",
    )
    p.add_argument(
        "--ratio-epochs",
        type=int,
        default=3,
        help="fixed epochs of each run in the same-batch DP/non-DP comparison (default 3)",
    )
    p.add_argument("--sample", type=int, default=None, help="seeded sample of N rows (default: all 48,842)")
    p.add_argument("--json", type=Path, default=None, help="also write the raw times here")
    p.add_argument("--skip-startup", action="store_true", help="skip the subprocess start-up measurements")
    p.add_argument("--skip-thread-check", action="store_true", help="skip the torch threads check")
    p.add_argument("--skip-e2e", action="store_true", help="skip the end-to-end `impactflow run`")
    args = p.parse_args(argv)

    res = Results()
    res.meta.update(machine_info())
    res.meta["started_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    res.meta["loadavg_start"] = os.getloadavg()
    res.meta["command"] = " ".join(["python", "benchmarks/stages.py", *(argv if argv is not None else sys.argv[1:])])
    total0 = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="impactflow-bench-"))
    try:
        if not args.skip_startup:
            bench_startup(res, args.repeats)
            bench_prefect_server(res, work)
        sums = bench_stages(res, args, work)
        if not args.skip_e2e:
            bench_e2e(res, args, work, sums)
    finally:
        shutil.rmtree(
            work, onerror=lambda fn, path, exc: print(f"cleanup: {fn.__name__} {path}: {exc[1]}", file=sys.stderr)
        )
    res.meta["total_s"] = time.perf_counter() - total0
    res.meta["loadavg_end"] = os.getloadavg()
    m = res.meta
    print(
        f"impactflow stage benchmark · {m['started_at']} · {m['nproc']} cores ({m['cpu']}) · "
        f"training threads {m.get('train_threads')} · python {m['python']}"
    )
    print(
        f"data: UCI Adult, {m.get('rows', 0):,} rows{' (sample)' if args.sample else ''} · "
        f"repeats: fast stages {args.repeats}, training {args.train_repeats}, e2e {args.e2e_repeats}"
    )
    print()
    print(render(res))
    print()
    print(
        f"benchmark total: {m['total_s']:.0f} s · load average (1/5/15 min) at start "
        f"{'/'.join(f'{x:.2f}' for x in m['loadavg_start'])}, at end {'/'.join(f'{x:.2f}' for x in m['loadavg_end'])}"
    )
    if args.json:
        args.json.write_text(json.dumps({"meta": m, "rows": res.rows, "derived": dict(res.derived)}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
