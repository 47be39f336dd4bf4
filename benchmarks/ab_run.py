"""A/B whole ``impactflow run`` processes: an earlier commit against the working tree.

    python benchmarks/ab_run.py --base 16ad893                 # default preset, 3 pairs
    python benchmarks/ab_run.py --base HEAD~5 --repeats 5 --set data.sample=6000
    python benchmarks/ab_run.py --base 16ad893 --config tabular-dp

What a change costs the run a user starts, measured as that user sees it: the base commit's tree
is exported with ``git archive`` into a temp folder (the repository and its work tree are left as
they are), and both trees run in the same virtualenv, the base one by putting its folder first
on ``PYTHONPATH`` (checked: the run prints which ``flows`` package it imported). The two run in
turn, A B A B ..., each in a fresh working folder with a fresh ``IMPACTFLOW_HOME`` and without
``PREFECT_API_URL``/``MLFLOW_TRACKING_URI`` (so each starts its own temporary Prefect server and
creates its own MLflow store and signing key, as the README's first command does). The ratio is
taken pair by pair, so it holds when the machine's speed drifts. Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STRIP_ENV = (
    "PREFECT_API_URL",
    "PREFECT_PROFILE",
    "MLFLOW_TRACKING_URI",
    "IMPACTFLOW_SIGNING_KEY",
    "IMPACTFLOW_LEDGER_URL",
    "IMPACTFLOW_WARM",
)
PROBE = "import impactflow.flows as flows, sys; print(flows.__file__, file=sys.stderr)"


def export_tree(ref: str, dest: Path) -> Path:
    """The files of ``ref`` (a commit, tag or branch) in ``dest``, via ``git archive``."""
    archive = dest / "base.tar"
    subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", "-o", str(archive), ref], check=True)
    tree = dest / "base"
    with tarfile.open(archive) as tar:
        tar.extractall(tree, filter="data")
    archive.unlink()
    return tree


def run_once(tree: Path | None, args: list[str], scratch: Path, label: str) -> dict:
    """One whole ``impactflow run`` in a fresh folder; wall and CPU seconds, exit code."""
    work = Path(tempfile.mkdtemp(prefix=f"{label}-", dir=scratch))
    env = {k: v for k, v in os.environ.items() if k not in STRIP_ENV}
    env["IMPACTFLOW_HOME"] = str(work / "home")
    env["COLUMNS"] = "100"
    if tree is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(tree), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    imported = subprocess.run([sys.executable, "-c", PROBE], env=env, cwd=work, capture_output=True, text=True)
    expected = (tree or ROOT) / "flows" / "__init__.py"
    if Path(imported.stderr.strip()).resolve() != expected.resolve():
        raise SystemExit(f"{label}: imported {imported.stderr.strip()!r}, expected {expected}")
    cmd = [sys.executable, "-c", "from impactflow.flows.cli import main; main()", "run", *args]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode not in (0, 3):
        tail = proc.stderr.strip().splitlines()[-3:]
        raise SystemExit(f"{label}: impactflow run exited {proc.returncode}: {' | '.join(tail)}")
    return {"wall": wall, "cpu": cpu, "rc": proc.returncode}


def summarize(values: list[float]) -> str:
    return f"{statistics.median(values):8.2f} {min(values):8.2f} {max(values):8.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", required=True, help="git ref of the A side (the B side is the working tree)")
    parser.add_argument("--repeats", type=int, default=3, help="A/B pairs (default 3)")
    parser.add_argument("--config", default="tabular", help="preset or YAML path (default tabular)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    opts = parser.parse_args()
    args = ["-c", opts.config, *[x for kv in opts.overrides for x in ("--set", kv)]]
    with tempfile.TemporaryDirectory(prefix="impactflow-ab-") as tmp:
        scratch = Path(tmp)
        base = export_tree(opts.base, scratch)
        run_once(None, args, scratch, "warmup")  # page cache, .pyc files: neither side pays them first
        a_runs, b_runs = [], []
        for i in range(opts.repeats):
            a_runs.append(run_once(base, args, scratch, f"A{i}"))
            b_runs.append(run_once(None, args, scratch, f"B{i}"))
            print(
                f"  pair {i + 1}: A {a_runs[-1]['wall']:.2f} s (exit {a_runs[-1]['rc']}), "
                f"B {b_runs[-1]['wall']:.2f} s (exit {b_runs[-1]['rc']})",
                file=sys.stderr,
                flush=True,
            )
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    print(
        f"impactflow run {' '.join(args)}: A = {opts.base}, B = working tree at {commit} "
        f"({'with' if subprocess.run(['git', '-C', str(ROOT), 'diff', '--quiet']).returncode else 'without'}"
        f" uncommitted changes); {opts.repeats} pairs, A B A B ..."
    )
    print(f"{'':28}{'median':>8} {'min':>8} {'max':>8}")
    for label, runs in (("A wall s", a_runs), ("B wall s", b_runs)):
        print(f"{label:28}{summarize([r['wall'] for r in runs])}")
    for label, runs in (("A cpu s (process tree)", a_runs), ("B cpu s (process tree)", b_runs)):
        print(f"{label:28}{summarize([r['cpu'] for r in runs])}")
    print(f"{'B/A wall, pair by pair':28}{summarize([b['wall'] / a['wall'] for a, b in zip(a_runs, b_runs)])}")
    print(f"{'B/A cpu, pair by pair':28}{summarize([b['cpu'] / a['cpu'] for a, b in zip(a_runs, b_runs)])}")
    print(f"exit codes: A {[r['rc'] for r in a_runs]}, B {[r['rc'] for r in b_runs]}")


if __name__ == "__main__":
    main()
