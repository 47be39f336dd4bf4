"""Report task: assemble the impact report document and write JSON/Markdown/HTML atomically."""
from __future__ import annotations

import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NONE

from impactflow.tasks import progress

PACKAGES = ["impactflow", "torch", "scikit-learn", "fairlearn", "opacus", "mlflow", "prefect",
            "great-expectations", "pandas", "numpy", "pydantic"]


def provenance(seed: int, command: str | None) -> dict[str, Any]:
    """Git commit of the project source, interpreter, platform, package versions, seeds."""
    root = Path(__file__).resolve().parent.parent
    commit, dirty = None, None
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                                text=True, timeout=5).stdout.strip() or None
        if commit:
            status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                                    capture_output=True, text=True, timeout=5).stdout
            dirty = bool(status.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "git_commit": commit,
        "git_dirty": dirty,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": versions,
        "seeds": {"run": seed, "split": seed, "torch": seed, "baselines": seed},
        "command": command,
    }


def representation(df, target: str, positive_label, groups: list[str]) -> list[dict[str, Any]]:
    """Group sizes and shares over the whole dataset, and the base rate of the positive label
    when the target is binary."""
    rows = []
    y = (df[target] == positive_label) if positive_label is not None else None
    for attr in groups:
        for group, idx in df.groupby(attr, dropna=False).groups.items():
            n = len(idx)
            row = {"attribute": attr, "group": str(group), "n": int(n), "share": n / len(df)}
            if y is not None:
                row["positive_rate"] = float(y.loc[idx].mean())
            rows.append(row)
    return rows


def model_record(fitted, audits: dict, mlflow_run_id: str) -> dict[str, Any]:
    return {
        "name": fitted.name,
        "role": "baseline" if fitted.kind == "sklearn" else "candidate",
        "family": fitted.family,
        "description": fitted.description,
        "params": {k: v if v is None or isinstance(v, (str, int, float, bool)) else str(list(v) if isinstance(v, tuple) else v)
                   for k, v in fitted.params.items()},
        "training": fitted.training,
        "audits": {k: v.to_dict() for k, v in audits.items()},
        "mlflow_run_id": mlflow_run_id,
    }


@task(name="write-report", cache_policy=NONE)
def write_report(run: dict, data: dict, models: list[dict], prov: dict, config: dict, out_dir: str,
                 integrity: dict | None = None) -> dict:
    """Build the report document and write impact_report.{json,md,html} atomically."""
    from impactflow.audits.render import write_report as write
    from impactflow.audits.report import build_report

    progress.stage("write report")
    from impactflow.audits.disclosure import DEFAULT_MIN_CELL_SIZE, suppress_small_cells
    from impactflow.data_contracts.errors import OutputError

    report = build_report(run=run, data=data, models=models, provenance=prov, config=config,
                          integrity=integrity)
    # aggregates only: no table or plot cell of fewer than min_cell_size people (issue 9)
    k = (config.get("disclosure") or {}).get("min_cell_size", DEFAULT_MIN_CELL_SIZE)
    report = suppress_small_cells(report, k)
    try:
        paths = write(report, Path(out_dir))
    except OSError as exc:  # read-only folder, disk full: the writer left no partial file
        raise OutputError(f"cannot write the report into {out_dir}: {exc.strerror or exc}") from None
    return {"paths": {k: str(v) for k, v in paths.items()}, "status": report["summary"]["status"],
            "gates": report["summary"]["gates"], "incomplete": report["summary"]["incomplete"]}
