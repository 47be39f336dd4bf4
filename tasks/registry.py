"""Model registry gates: every model version is registered with its gate results as tags;
only a version whose gates all passed gets the ``champion`` alias (never a failed one)."""
from __future__ import annotations

import contextlib
import io
from typing import Any

from prefect import task
from prefect.cache_policies import NONE

from tasks import progress, retry_io_only, tracking

CHAMPION = "champion"
GATES_TAG = "impactflow.gates"


def registered_name(experiment: str, model: str) -> str:
    """Registry name per pipeline and model, e.g. ``impactflow-tabular-mlp``."""
    return f"{experiment}-{model}"


def gate_tags(audits: dict) -> dict[str, str]:
    """``impactflow.gates`` (passed/failed/not-measured) plus one ``gate.<name>`` tag per gate."""
    from audits import overall_status

    gates = [g for a in audits.values() for g in a.gates]
    status = overall_status(gates).value
    tags = {GATES_TAG: {"pass": "passed", "fail": "failed"}.get(status, status)}
    for g in gates:
        tags[f"gate.{g.name}"] = g.status.value
    return tags


@task(name="register-model", cache_policy=NONE, retries=2, retry_delay_seconds=2,
      retry_condition_fn=retry_io_only)
def register_model(ctx: dict, model_name: str, child_run_id: str, audits: dict) -> dict[str, Any]:
    """Register the child run's model; alias it ``champion`` only if every gate passed."""
    import mlflow

    progress.stage(f"register {model_name}")
    name = registered_name(ctx["experiment"], model_name)
    client = tracking._client(ctx["uri"])
    tags = gate_tags(audits)
    # the tags go with the new version in one write (one set_model_version_tag per gate cost
    # 0.2-0.3 s on SQLite), so no version is ever seen without its gate results
    with tracking.using_tracking_uri(ctx["uri"]), \
            contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        # register_model prints "Successfully registered ..." lines; the CLI shows its own summary
        version = mlflow.register_model(f"runs:/{child_run_id}/model", name, await_registration_for=60,
                                        tags={**tags, "impactflow.parent_run_id": ctx["parent_run_id"]})
    champion = tags[GATES_TAG] == "passed"
    if champion:
        client.set_registered_model_alias(name, CHAMPION, version.version)
    return {"name": name, "version": str(version.version), "champion": champion, "gates": tags[GATES_TAG]}


def promote(uri: str, name: str, version: str) -> str:
    """Point ``champion`` at ``version`` by hand; refused unless that version passed its gates."""
    from data_contracts.errors import ImpactflowError

    client = tracking._client(uri)
    mv = client.get_model_version(name, version)
    status = mv.tags.get(GATES_TAG)
    if status != "passed":
        failed = sorted(k[5:] for k, v in mv.tags.items() if k.startswith("gate.") and v == "fail")
        raise ImpactflowError(
            f"{name} version {version} is not promotable: gates {status or 'unknown'}"
            + (f" ({', '.join(failed)})" if failed else "")
        )
    client.set_registered_model_alias(name, CHAMPION, version)
    return f"{name}@{CHAMPION} -> version {version}"


def list_models(uri: str) -> list[dict[str, Any]]:
    """Every registered impactflow model version with its gate status and aliases."""
    client = tracking._client(uri)
    rows = []
    for rm in client.search_registered_models():
        aliases: dict[str, list[str]] = {}
        for alias, version in (rm.aliases or {}).items():
            aliases.setdefault(str(version), []).append(alias)
        for mv in client.search_model_versions(f"name = '{rm.name}'"):
            failed = sorted(k[5:] for k, v in mv.tags.items() if k.startswith("gate.") and v == "fail")
            rows.append({"name": rm.name, "version": str(mv.version), "gates": mv.tags.get(GATES_TAG, "unknown"),
                         "aliases": aliases.get(str(mv.version), []), "failed_gates": failed,
                         "run_id": mv.run_id})
    return sorted(rows, key=lambda r: (r["name"], -int(r["version"])))
