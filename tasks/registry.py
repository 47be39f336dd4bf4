"""Model registry gates: every model version is registered with its gate results as tags;
only a version whose gates all passed gets the ``champion`` alias (never a failed or an
incomplete one), and only at the very end of a passing run (``alias_champions``: after the
report is written, the manifest signed and the parent run finished)."""
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
    """``impactflow.gates`` -- ``passed`` only when every gate was measured and passed,
    ``failed`` when one failed, else ``incomplete`` (``audits.results.run_status``) -- plus one
    ``gate.<name>`` tag per gate."""
    from audits.results import checked_gate, run_status

    gates = [checked_gate(g) for a in audits.values() for g in a.gates]
    status = run_status([g.status for g in gates])
    tags = {GATES_TAG: {"pass": "passed", "fail": "failed"}.get(status, status)}
    for g in gates:
        tags[f"gate.{tag_safe(g.name)}"] = g.status.value
    return tags


def tag_safe(name: str) -> str:
    """A gate name as an MLflow tag key: characters MLflow refuses in keys (anything but word
    characters, ``/ . - `` and space; a group value from the user's data can hold any) become ``_``."""
    import re

    return re.sub(r"[^\w/.\- ]", "_", name)


@task(name="register-model", cache_policy=NONE, retries=2, retry_delay_seconds=2,
      retry_condition_fn=retry_io_only)
def register_model(ctx: dict, model_name: str, child_run_id: str, audits: dict) -> dict[str, Any]:
    """Register the child run's model with its gate tags (the alias moves in ``alias_champions``)."""
    import mlflow

    progress.stage(f"register {model_name}")
    name = registered_name(ctx["experiment"], model_name)
    client = tracking._client(ctx["uri"])
    tags = gate_tags(audits)
    from tasks.evidence import MODEL_DIGEST_TAG, run_model_digest

    # the model's digest (audits.evidence.model_digest of its files): the signed statement binds
    # this version to it, and `report verify RUN_ID` re-hashes the version's files against it
    digest = run_model_digest(ctx["uri"], child_run_id)
    if digest:
        tags[MODEL_DIGEST_TAG] = digest
    # the tags go with the new version in one write (one set_model_version_tag per gate cost
    # 0.2-0.3 s on SQLite), so no version is ever seen without its gate results
    with tracking.using_tracking_uri(ctx["uri"]), \
            contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        # register_model prints "Successfully registered ..." lines; the CLI shows its own summary
        version = mlflow.register_model(f"runs:/{child_run_id}/model", name, await_registration_for=60,
                                        tags={**tags, "impactflow.parent_run_id": ctx["parent_run_id"]})
    return {"name": name, "version": str(version.version), "gates": tags[GATES_TAG]}


def not_aliased_because(gates: str, run_status: str) -> str:
    """Why a registered version does not become ``champion`` ("" when it does)."""
    if gates != "passed":
        return "incomplete" if gates == "incomplete" else f"gates {gates}"
    return "" if run_status == "pass" else f"run {run_status}"


@task(name="alias-champions", cache_policy=NONE, retries=2, retry_delay_seconds=2,
      retry_condition_fn=retry_io_only)
def alias_champions(ctx: dict, registered: dict[str, dict], run_status: str) -> dict[str, dict]:
    """The run's last step: point ``champion`` at each registered version whose gates all passed,
    only when the whole run passed; ``{model: registry record + champion (+ why not)}``."""
    client = tracking._client(ctx["uri"])
    out = {}
    for model, reg in registered.items():
        why = not_aliased_because(reg["gates"], run_status)
        if not why:
            client.set_registered_model_alias(reg["name"], CHAMPION, reg["version"])
        out[model] = {**reg, "champion": not why, **({"not_aliased": why} if why else {})}
    return out


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
