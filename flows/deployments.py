"""Deployment entry point and the helpers behind ``impactflow deploy/serve/trigger``.

A deployed run is addressed by preset + overrides (what a schedule or a user triggers), and
ends in a Prefect state that carries the outcome: Completed when every gate passed, Failed
with a message starting ``GATES_FAILED`` when a gate failed or ``GATES_INCOMPLETE`` when a gate
was not measured (the report is still logged), Failed otherwise. ``impactflow trigger`` turns
these into the CLI's exit codes 0 / 3 / 1.
No ``from __future__ import annotations`` here: Prefect reads the annotations.
"""

import os
from pathlib import Path
from typing import Any, List, Optional

from prefect import flow
from prefect.states import Completed, Failed

PROJECT_DIR = Path(__file__).resolve().parent.parent
# A source checkout has prefect.yaml beside flows/; an installed image points at its copy.
PREFECT_YAML = Path(os.environ.get("IMPACTFLOW_PREFECT_YAML", PROJECT_DIR / "prefect.yaml"))
WORK_POOL = "impactflow-process"
GATES_FAILED = "GATES_FAILED"
GATES_INCOMPLETE = "GATES_INCOMPLETE"


def outcome_message(summary: dict) -> str:
    head = {"fail": GATES_FAILED, "incomplete": GATES_INCOMPLETE}.get(summary["status"], "GATES_PASSED")
    failed = [f"{g['model']}:{g['name']}" for g in summary["gates"] if g["status"] == "fail" and not g.get("baseline")]
    parts = [head, f"mlflow_run={summary['parent_run_id']}", f"report={summary['report']['html']}"]
    if failed:
        parts.append("failed=" + ",".join(failed[:10]) + (" ..." if len(failed) > 10 else ""))
    registry = {m: r["registry"] for m, r in (summary.get("models") or {}).items() if r.get("registry")}
    for key, pick in (
        ("champion", lambda r: r.get("champion")),
        ("held", lambda r: str(r.get("not_aliased", "")).startswith("held")),
    ):
        names = [f"{m}(v{r['version']})" for m, r in registry.items() if pick(r)]
        if names:  # the registry's decision: promoted, or held back by the champion comparison
            parts.append(f"{key}=" + ",".join(names))
    return "; ".join(parts)


@flow(name="impactflow-preset", validate_parameters=False)
def run_preset(preset: str = "tabular", overrides: Optional[List[str]] = None):
    """Run a preset (plus ``key=value`` overrides) through the pipeline; the final state says
    whether every gate passed."""
    from impactflow.flows.config import load_config
    from impactflow.flows.pipeline import with_task_runner

    cfg = load_config(preset, list(overrides or []))
    summary = with_task_runner(cfg)(cfg.model_dump(mode="json"), command=f"deployment {preset}")
    message = outcome_message(summary)
    if summary["status"] != "pass":  # failed or incomplete: never Completed
        return Failed(message=message)
    return Completed(message=message)


def read_deployments(path: Path = PREFECT_YAML) -> list[dict[str, Any]]:
    """The ``deployments`` section of prefect.yaml (the single place schedules are edited)."""
    import yaml

    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return list(data.get("deployments") or [])


def deploy_all(names: Optional[List[str]] = None) -> list[str]:
    """Create the process work pool if needed and register prefect.yaml's deployments from
    this checkout (the worker runs them in ``PROJECT_DIR``). Returns the deployment ids."""
    from prefect import Flow
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound
    from prefect.schedules import Cron

    # The worker runs the code from this folder (a checkout; in the images /opt/impactflow).
    source = os.environ.setdefault("IMPACTFLOW_PROJECT_DIR", str(PROJECT_DIR))
    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(WORK_POOL)
        except ObjectNotFound:
            client.create_work_pool(WorkPoolCreate(name=WORK_POOL, type="process"))
    ids = []
    for spec in read_deployments():
        if names and spec["name"] not in names:
            continue
        flow_obj = Flow.from_source(source=source, entrypoint=spec["entrypoint"])
        schedules = [
            Cron(s["cron"], timezone=s.get("timezone", "UTC"), active=s.get("active", True))
            for s in spec.get("schedules") or []
        ]
        ids.append(
            str(
                flow_obj.deploy(
                    name=spec["name"],
                    work_pool_name=spec["work_pool"]["name"],
                    parameters=spec.get("parameters") or {},
                    description=spec.get("description"),
                    schedules=schedules,
                    print_next_steps=False,
                    ignore_warnings=True,
                )
            )
        )
    return ids


def serve_all() -> None:
    """Run prefect.yaml's schedules in this process (``flow.serve`` style, no worker, no pool)."""
    from prefect import serve
    from prefect.schedules import Cron

    deployments = []
    for spec in read_deployments():
        schedules = [
            Cron(s["cron"], timezone=s.get("timezone", "UTC"), active=s.get("active", True))
            for s in spec.get("schedules") or []
        ]
        deployments.append(
            run_preset.to_deployment(
                name=spec["name"],
                parameters=spec.get("parameters") or {},
                schedules=schedules,
                description=spec.get("description"),
            )
        )
    serve(*deployments)
