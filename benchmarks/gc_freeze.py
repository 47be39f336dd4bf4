"""The garbage collector's share of a default run forked from a warm runner, with and without
``gc.freeze()`` of the preloaded heap (what ``flows/warm.py`` does before it forks a run).

    python benchmarks/gc_freeze.py [--repeats N] [--sample N]

One process imports what the warm runner imports (``impactflow.flows.warm.preload``), then forks one child
per run, alternating (ABBA): a child of the unfrozen heap, and a child after ``gc.collect(); gc.freeze()``
in the parent (``gc.unfreeze()`` again before the next unfrozen child). Each child runs
``impactflow run`` (the default ``tabular`` preset, in its own folder) through the CLI's own
entry point, as a forked warm run does, against a kept local Prefect server started for the
benchmark, and reports its wall time and the time spent inside the collector
(``gc.callbacks``: from each collection's "start" to its "stop"), per generation. Nothing here
asserts a timing: it prints what it measured.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from stages import clean_env, free_port, impactflow_exe  # noqa: E402  (the same environment as stages.py)


def _child(folder: Path, sample: int | None, out_fd: int) -> None:
    """In the forked child: run the CLI with the collector timed, write the figures, exit."""
    spent = {"total": 0.0, "by_gen": [0.0, 0.0, 0.0], "count": [0, 0, 0]}
    started: list[float] = []

    def timer(phase: str, info: dict) -> None:
        if phase == "start":
            started.append(time.perf_counter())
        elif started:
            d = time.perf_counter() - started.pop()
            spent["total"] += d
            spent["by_gen"][info["generation"]] += d
            spent["count"][info["generation"]] += 1

    gc.callbacks.append(timer)
    os.chdir(folder)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    from impactflow.flows.cli import app
    from impactflow.flows.warm import _run_cli

    argv = ["impactflow", "run"] + (["--set", f"data.sample={sample}"] if sample else [])
    t0 = time.perf_counter()
    status = _run_cli(argv, app)
    spent["wall"] = time.perf_counter() - t0
    spent["status"] = status
    spent["frozen"] = gc.get_freeze_count()
    os.write(out_fd, json.dumps(spent).encode())
    os._exit(0)


def run_forked(folder: Path, sample: int | None) -> dict:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            _child(folder, sample, w)
        finally:
            os._exit(1)
    os.close(w)
    data = b""
    while chunk := os.read(r, 65536):
        data += chunk
    os.close(r)
    os.waitpid(pid, 0)
    if not data:
        raise SystemExit(f"the forked run in {folder} wrote no figures")
    return json.loads(data)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=2, help="runs of each mode, alternated (default 2)")
    p.add_argument("--sample", type=int, default=None, help="seeded sample of N Adult rows (default: all)")
    args = p.parse_args()

    work = Path(tempfile.mkdtemp(prefix="impactflow_gc_"))
    home = work / "prefect_home"
    home.mkdir()
    env = clean_env(PREFECT_HOME=str(home))
    start = subprocess.run(
        [impactflow_exe(), "server", "start", "--port", str(free_port())], env=env, capture_output=True, text=True
    )
    if start.returncode != 0:
        raise SystemExit(f"could not start a Prefect server: {(start.stderr or start.stdout)[-500:]}")
    os.environ.clear()
    os.environ.update(env)
    os.environ["IMPACTFLOW_WARM"] = "off"  # the forked child is the run: it must not delegate
    from impactflow.flows.cli import _quiet_environment
    from impactflow.flows.warm import preload

    _quiet_environment(False)
    results: dict[str, list[dict]] = {"not frozen": [], "frozen": []}
    try:
        t0 = time.perf_counter()
        preload()
        print(
            f"preloaded in {time.perf_counter() - t0:.1f} s; {len(gc.get_objects()):,} objects tracked", file=sys.stderr
        )
        for i in range(args.repeats):
            # ABBA: each mode goes first as often as second (a run can slow the next one down
            # while the Prefect server digests its events)
            for mode in ("not frozen", "frozen") if i % 2 == 0 else ("frozen", "not frozen"):
                if mode == "frozen":
                    gc.collect()
                    gc.freeze()
                folder = work / f"{mode.replace(' ', '_')}_{i}"
                folder.mkdir()
                res = run_forked(folder, args.sample)
                if mode == "frozen":
                    gc.unfreeze()
                if res["status"] not in (0, 3):  # 3: the run completed and a gate failed
                    raise SystemExit(f"run failed (exit {res['status']}) in {folder}")
                results[mode].append(res)
                print(f"  {mode}: wall {res['wall']:.2f} s, GC {res['total']:.3f} s", file=sys.stderr)
    finally:
        subprocess.run([impactflow_exe(), "server", "stop"], env=env, capture_output=True, text=True)

    print(
        f"impactflow run (tabular preset{f', {args.sample:,} rows' if args.sample else ''}), forked "
        f"after the warm runner's imports; medians of {args.repeats}"
    )
    print(
        f"{'heap':<12}{'frozen objects':>16}{'run wall s':>12}{'GC s':>8}{'gen0 / gen1 / gen2 s':>24}"
        f"{'collections 0/1/2':>20}"
    )
    for mode, rows in results.items():
        med = statistics.median
        gens = " / ".join(f"{med(r['by_gen'][g] for r in rows):.2f}" for g in range(3))
        counts = "/".join(str(int(med(r["count"][g] for r in rows))) for g in range(3))
        print(
            f"{mode:<12}{rows[0]['frozen']:>16,}{med(r['wall'] for r in rows):>12.2f}"
            f"{med(r['total'] for r in rows):>8.2f}{gens:>24}{counts:>20}"
        )


if __name__ == "__main__":
    main()
