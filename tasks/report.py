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

PACKAGES = [
    "impactflow",
    "torch",
    "scikit-learn",
    "fairlearn",
    "opacus",
    "mlflow",
    "prefect",
    "great-expectations",
    "pandas",
    "numpy",
    "pydantic",
]


def provenance(seed: int, command: str | None) -> dict[str, Any]:
    """Git commit of the project source, interpreter, platform, package versions, seeds."""
    root = Path(__file__).resolve().parent.parent
    commit, dirty = None, None
    try:
        commit = (
            subprocess.run(
                ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5
            ).stdout.strip()
            or None
        )
        if commit:
            status = subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"],
                cwd=root,
                capture_output=True,
                text=True,
                timeout=5,
            ).stdout
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
            # a missing value is its own group, named as the audits name it (fairness.MISSING_LABEL)
            name = "(missing)" if group is None or group != group else str(group)
            row = {"attribute": attr, "group": name, "n": int(n), "share": n / len(df)}
            if y is not None:
                row["positive_rate"] = float(y.loc[idx].mean())
            rows.append(row)
    return rows


def data_sheet(df, spec, data_info: dict, split, validation, privacy_budget: dict, anonymity: dict) -> dict[str, Any]:
    """The report's ``data`` section: what was read (``load_data``), its splits, its contract
    result, group representation and base rates, missing values, the features left out, the
    privacy budget and the k-anonymity check. ``spec``: the run's ``tasks.spec.RunSpec``."""
    contract = spec.contract
    return {
        **data_info,
        "splits": split.sizes(),
        "contract_result": validation.to_dict(),
        "representation": representation(
            df, contract.target, contract.positive_label, [*contract.sensitive, *contract.groups]
        ),
        "synthetic_groups": list(contract.synthetic_groups),
        "missing": {k: int(v) for k, v in df.isna().sum().items() if v},
        "sensitive": list(contract.sensitive),
        "excluded_features": sorted(
            {contract.weight, *contract.exclude_from_features} - {None}
            | (set(contract.sensitive) if spec.exclude_sensitive else set())
        ),
        "privacy_budget": privacy_budget,
        "anonymity": anonymity,
    }


def run_header(ctx: dict, preset: str, started_at: str, finished_at: str) -> dict[str, Any]:
    """The report's ``run`` section: the MLflow parent run, the Prefect flow run (when there is
    one), the preset and when the run started and finished."""
    from prefect import runtime

    return {
        "run_id": ctx["parent_run_id"],
        "flow_run_id": str(runtime.flow_run.id or "") or None,
        "preset": preset,
        "started_at": started_at,
        "finished_at": finished_at,
        "mlflow": {"tracking_uri": ctx["uri"], "experiment": ctx["experiment"], "parent_run_id": ctx["parent_run_id"]},
    }


def run_summary(
    ctx: dict, preset: str, children: list[str], report: dict, records: list[dict], registry: dict
) -> dict[str, Any]:
    """What the flow returns (and the CLI prints and the Prefect artifact shows): the verdict,
    where the runs and the report are, and each model's metrics, DP claim and registry version.
    The tracking URI and UI link never carry credentials."""
    from impactflow.tasks.tracking import public_uri, ui_url

    return {
        "status": report["status"],
        "preset": preset,
        "experiment": ctx["experiment"],
        "experiment_id": ctx["experiment_id"],
        "parent_run_id": ctx["parent_run_id"],
        "child_run_ids": children,
        "tracking_uri": public_uri(ctx["uri"]),
        "mlflow_url": public_uri(ui_url(ctx["uri"], ctx["experiment_id"], ctx["parent_run_id"])),
        "report": report["paths"],
        "gates": report["gates"],
        "incomplete": report["incomplete"],
        "models": {
            r["name"]: {
                "mlflow_run_id": r["mlflow_run_id"],
                "metrics": {k: v for a in r["audits"].values() for k, v in a["metrics"].items()},
                "headline": _headline(r),
                "dp": r["training"]["dp"],
                "registry": registry.get(r["name"]),
            }
            for r in records
        },
    }


def _headline(record: dict) -> dict[str, Any]:
    """The metric a model's summary line leads with: its task kind's (accuracy for a
    classifier, RMSE for a rating model), with its value from the model's audits (None when no
    audit measured it)."""
    from impactflow.models import get_family

    metric = get_family(record["family"]).task.headline
    value = next((a["metrics"][metric.key] for a in record["audits"].values() if metric.key in a["metrics"]), None)
    return {"label": metric.label, "key": metric.key, "value": value}


def model_record(fitted, audits: dict, mlflow_run_id: str) -> dict[str, Any]:
    return {
        "name": fitted.name,
        "role": "baseline" if fitted.kind == "sklearn" else "candidate",
        "family": fitted.family,
        "description": fitted.description,
        "params": {
            k: v if v is None or isinstance(v, (str, int, float, bool)) else str(list(v) if isinstance(v, tuple) else v)
            for k, v in fitted.params.items()
        },
        "training": fitted.training,
        "audits": {k: v.to_dict() for k, v in audits.items()},
        "mlflow_run_id": mlflow_run_id,
    }


@task(name="write-report", cache_policy=NONE)
def write_report(
    run: dict, data: dict, models: list[dict], prov: dict, config: dict, out_dir: str, integrity: dict | None = None
) -> dict:
    """Build the report document and write impact_report.{json,md,html} atomically."""
    from impactflow.audits.render import write_report as write
    from impactflow.audits.report import build_report

    progress.stage("write report")
    from impactflow.audits.disclosure import DEFAULT_MIN_CELL_SIZE, suppress_small_cells
    from impactflow.errors import OutputError

    report = build_report(run=run, data=data, models=models, provenance=prov, config=config, integrity=integrity)
    # aggregates only: no table or plot cell of fewer than min_cell_size people (issue 9)
    k = (config.get("disclosure") or {}).get("min_cell_size", DEFAULT_MIN_CELL_SIZE)
    report = suppress_small_cells(report, k)
    try:
        paths = write(report, Path(out_dir))
    except OSError as exc:  # read-only folder, disk full: the writer left no partial file
        raise OutputError(f"cannot write the report into {out_dir}: {exc.strerror or exc}") from None
    return {
        "paths": {k: str(v) for k, v in paths.items()},
        "status": report["summary"]["status"],
        "gates": report["summary"]["gates"],
        "incomplete": report["summary"]["incomplete"],
    }
