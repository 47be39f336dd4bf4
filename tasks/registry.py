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

from impactflow.tasks import progress, retry_io_only, tracking

CHAMPION = "champion"
GATES_TAG = "impactflow.gates"
PARENT_TAG = "impactflow.parent_run_id"
PROMOTION_TAG = "impactflow.promotion"  # promote | hold | first | not compared | forced (tasks/watch.py)
PROMOTION_REASON_TAG = "impactflow.promotion.reason"
OVERRIDE_REASON_TAG = "impactflow.promotion.override_reason"  # `promote --force --reason`
OVERRIDE_BY_TAG = "impactflow.promotion.override_by"
OVERRIDE_AT_TAG = "impactflow.promotion.override_at"
OVERRIDDEN_TAG = "impactflow.promotion.overridden"  # what the override set aside
RUN_STATUS_TAG = "impactflow.run_status"  # set by `impactflow reconcile` on versions of KILLED/FAILED runs


def registered_name(experiment: str, model: str) -> str:
    """Registry name per pipeline and model, e.g. ``impactflow-tabular-mlp``."""
    return f"{experiment}-{model}"


def gate_tags(audits: dict) -> dict[str, str]:
    """``impactflow.gates`` -- ``passed`` only when every gate was measured and passed,
    ``failed`` when one failed, else ``incomplete`` (``impactflow.audits.results.run_status``) -- plus one
    ``gate.<name>`` tag per gate."""
    from impactflow.audits.results import checked_gate, run_status

    gates = [checked_gate(g) for a in audits.values() for g in a.gates]
    status = run_status([g.status for g in gates])
    tags = {GATES_TAG: {"pass": "passed", "fail": "failed"}.get(status, status)}
    for g in gates:
        tags[f"gate.{tracking.mlflow_key(g.name)}"] = g.status.value
    return tags


@task(name="register-model", cache_policy=NONE, retries=2, retry_delay_seconds=2, retry_condition_fn=retry_io_only)
def register_model(
    ctx: dict, model_name: str, child_run_id: str, audits: dict, extra_tags: dict[str, str] | None = None
) -> dict[str, Any]:
    """Register the child run's model with its gate tags and ``extra_tags`` (the promotion
    decision: ``tasks.watch.promotion_tags``); the alias moves in ``alias_champions``."""
    import mlflow

    progress.stage(f"register {model_name}")
    name = registered_name(ctx["experiment"], model_name)
    tags = {**gate_tags(audits), **(extra_tags or {})}
    from impactflow.tasks.evidence import MODEL_DIGEST_TAG, run_model_digest

    # the model's digest (audits.evidence.model_digest of its files): the signed statement binds
    # this version to it, and `report verify RUN_ID` re-hashes the version's files against it
    digest = run_model_digest(ctx["uri"], child_run_id)
    if digest:
        tags[MODEL_DIGEST_TAG] = digest
    # the tags go with the new version in one write (one set_model_version_tag per gate cost
    # 0.2-0.3 s on SQLite), so no version is ever seen without its gate results
    with (
        tracking.using_tracking_uri(ctx["uri"]),
        contextlib.redirect_stdout(io.StringIO()),
        contextlib.redirect_stderr(io.StringIO()),
    ):
        # register_model prints "Successfully registered ..." lines; the CLI shows its own summary
        version = mlflow.register_model(
            f"runs:/{child_run_id}/model",
            name,
            await_registration_for=60,
            tags={**tags, PARENT_TAG: ctx["parent_run_id"]},
        )
    return {"name": name, "version": str(version.version), "gates": tags[GATES_TAG]}


def not_aliased_because(gates: str, run_status: str, promotion: dict | None = None) -> str:
    """Why a registered version does not become ``champion`` ("" when it does): its gates, the
    run's status, then the comparison with the current champion (``tasks.watch``: "hold" when a
    gated metric is significantly worse, or the champion could not be compared)."""
    if gates != "passed":
        return "incomplete" if gates == "incomplete" else f"gates {gates}"
    if run_status != "pass":
        return f"run {run_status}"
    if (promotion or {}).get("decision") == "hold":
        return "held: " + " ".join(promotion.get("reasons") or ["worse than the champion"])
    return ""


@task(name="alias-champions", cache_policy=NONE, retries=2, retry_delay_seconds=2, retry_condition_fn=retry_io_only)
def alias_champions(ctx: dict, registered: dict[str, dict], run_status: str) -> dict[str, dict]:
    """The run's last step: point ``champion`` at each registered version whose gates all passed,
    only when the whole run passed; ``{model: registry record + champion (+ why not)}``."""
    client = tracking._client(ctx["uri"])
    out = {}
    for model, reg in registered.items():
        why = not_aliased_because(reg["gates"], run_status, reg.get("promotion"))
        if not why:
            client.set_registered_model_alias(reg["name"], CHAMPION, reg["version"])
        reg = {k: v for k, v in reg.items() if k != "promotion"}
        out[model] = {**reg, "champion": not why, **({"not_aliased": why} if why else {})}
    return out


def version_runs(client, mv) -> list[tuple[str, str]]:
    """``(what, run_id)`` of the runs a registry version stands on: the child run that logged
    the model and the pipeline's parent run (tag ``impactflow.parent_run_id``)."""
    runs = [("run", mv.run_id)] if mv.run_id else []
    parent = (mv.tags or {}).get(PARENT_TAG)
    return runs + ([("parent run", parent)] if parent and parent != mv.run_id else [])


def unfinished_runs(client, mv) -> list[str]:
    """One line per run of the version that is not FINISHED (or cannot be read)."""
    from mlflow.exceptions import MlflowException

    out = []
    for what, run_id in version_runs(client, mv):
        try:
            status = client.get_run(run_id).info.status
        except MlflowException:
            status = "missing"
        if status != "FINISHED":
            out.append(f"{what} {run_id} is {status}")
    if not mv.run_id:
        out.append("no run logged this version")
    return out


def verify_run_evidence(uri: str, run_id: str, trust: dict):
    """``report verify RUN_ID``'s check of one run: its logged artifacts against the signed
    statement (``impactflow.audits.evidence.verify``) and every model it lists re-hashed from MLflow
    (``impactflow.tasks.evidence.check_models``). Returns the ``VerifyResult``; DataError when the run or
    its statement is missing."""
    import tempfile
    from pathlib import Path

    from impactflow.audits import evidence
    from impactflow.tasks.evidence import check_models, download_run_artifacts

    with tempfile.TemporaryDirectory(prefix="impactflow-promote-") as tmp:
        folder = download_run_artifacts(uri, run_id, Path(tmp) / "run")
        result = evidence.verify(folder, trust=trust)
        if result.signature == "valid":
            result.add_problems(check_models(uri, result.models))
            result.models_checked = True
    return result


def promote(
    uri: str, name: str, version: str, trust: dict | None = None, *, force: bool = False, reason: str = ""
) -> str:
    """Point ``champion`` at ``version`` by hand. Refused (ImpactflowError saying why) unless:
    the version passed its gates; its child run and its parent run are FINISHED (not RUNNING,
    KILLED or FAILED); and the parent run's signed evidence verifies as ``report verify RUN_ID``
    would exit 0 -- intact (every file and model re-hashed) *and* signed by a trusted key
    (``trust``: ``impactflow.audits.evidence.trusted_keys()``; default your own key). An intact statement
    by a signer you do not trust is refused too: promoting is an approval, and the approval
    must rest on evidence you trust (add the signer with ``impactflow keys trust``).

    A version the run held back (``impactflow.promotion`` = ``hold``: significantly worse than the
    champion, or not comparable with it) is refused too. ``force`` (with a non-empty ``reason``)
    overrides the gates and the hold -- never the FINISHED runs or the evidence -- and records the
    override on the version (``impactflow.promotion`` = ``forced``, the reason, who, when), which
    ``impactflow models`` and the next run's report show."""
    from mlflow.exceptions import MlflowException

    from impactflow.audits import evidence
    from impactflow.errors import ImpactflowError

    client = tracking._client(uri)
    try:
        mv = client.get_model_version(name, version)
    except MlflowException:
        raise ImpactflowError(f"no registered model {name!r} version {version!r} (see `impactflow models`)") from None
    refused = f"{name} version {version} is not promotable"
    if force and not reason.strip():
        raise ImpactflowError('--force needs --reason "...": an override is recorded with its reason')
    status = mv.tags.get(GATES_TAG)
    overridden = []
    if status != "passed" and force:
        overridden.append(f"gates {status or 'unknown'}")
    elif status != "passed":
        failed = sorted(k[5:] for k, v in mv.tags.items() if k.startswith("gate.") and v == "fail")
        raise ImpactflowError(f"{refused}: gates {status or 'unknown'}" + (f" ({', '.join(failed)})" if failed else ""))
    held = mv.tags.get(PROMOTION_TAG) == "hold"
    if held and force:
        overridden.append("held: " + mv.tags.get(PROMOTION_REASON_TAG, "worse than the champion"))
    elif held:
        raise ImpactflowError(
            f"{refused}: its run held it back ({mv.tags.get(PROMOTION_REASON_TAG, 'worse than the champion')}); "
            'promote it anyway with --force --reason "..."'
        )
    unfinished = unfinished_runs(client, mv)
    if unfinished:
        raise ImpactflowError(f"{refused}: {'; '.join(unfinished)} (only a version of a FINISHED run is promoted)")
    parent = mv.tags.get(PARENT_TAG)
    if not parent:
        raise ImpactflowError(f"{refused}: it names no parent run ({PARENT_TAG}), so it has no signed evidence")
    try:
        result = verify_run_evidence(uri, parent, evidence.trusted_keys() if trust is None else trust)
    except ImpactflowError as exc:
        raise ImpactflowError(f"{refused}: the evidence of run {parent} cannot be verified ({exc})") from None
    if not result.intact:
        raise ImpactflowError(
            f"{refused}: the evidence of run {parent} does not verify (`impactflow report verify "
            f"{parent}` exits 4): {'; '.join(result.problems[:3])}"
        )
    if not result.trusted:
        raise ImpactflowError(
            f"{refused}: the evidence of run {parent} is intact but signed by key {result.key_id}, "
            "which you do not trust (your own key, --trusted-keys / IMPACTFLOW_TRUSTED_KEYS)"
        )
    if force:
        import getpass
        from datetime import datetime, timezone

        record = {
            PROMOTION_TAG: "forced",
            OVERRIDE_REASON_TAG: reason.strip()[:4500],
            OVERRIDE_BY_TAG: getpass.getuser(),
            OVERRIDE_AT_TAG: datetime.now(timezone.utc).isoformat(timespec="seconds"),
            OVERRIDDEN_TAG: "; ".join(overridden) or "nothing (the version was promotable)",
        }
        for key, value in record.items():
            client.set_model_version_tag(name, version, key, value)
    client.set_registered_model_alias(name, CHAMPION, version)
    done = f"{name}@{CHAMPION} -> version {version} (run {parent} FINISHED, evidence verified, signer {result.key_id})"
    return done + (f"; override recorded: {'; '.join(overridden) or 'nothing overridden'}" if force else "")


def list_models(uri: str) -> list[dict[str, Any]]:
    """Every registered impactflow model version with its gate status, aliases and, for a
    version of a run that was KILLED or FAILED (marked by ``impactflow reconcile``), that status."""
    client = tracking._client(uri)
    rows = []
    for rm in client.search_registered_models():
        aliases: dict[str, list[str]] = {}
        for alias, version in (rm.aliases or {}).items():
            aliases.setdefault(str(version), []).append(alias)
        for mv in client.search_model_versions(f"name = '{rm.name}'"):
            failed = sorted(k[5:] for k, v in mv.tags.items() if k.startswith("gate.") and v == "fail")
            rows.append(
                {
                    "name": rm.name,
                    "version": str(mv.version),
                    "gates": mv.tags.get(GATES_TAG, "unknown"),
                    "aliases": aliases.get(str(mv.version), []),
                    "failed_gates": failed,
                    "run_id": mv.run_id,
                    "run_status": mv.tags.get(RUN_STATUS_TAG, ""),
                    "promotion": mv.tags.get(PROMOTION_TAG, ""),
                    "promotion_reason": mv.tags.get(OVERRIDE_REASON_TAG) or mv.tags.get(PROMOTION_REASON_TAG, ""),
                }
            )
    return sorted(rows, key=lambda r: (r["name"], -int(r["version"])))
