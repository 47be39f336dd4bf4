"""Evidence tasks: the report's integrity cover (before rendering) and the signed in-toto
statement of the whole run folder and its logged models (after), logged to MLflow; plus the
MLflow look-ups ``report verify`` and ``compare`` need (previous report in the experiment, a
run's artifacts, re-hashing the logged and registered models).

Two stages, because a report cannot contain the hash of a statement that covers the report:
1. ``prepare_evidence``: hash what the report is built from (models/, data_docs/, ...) into
   ``evidence.json``; the report's cover shows its SHA-256, the signer's key id, public key and
   owner label, and the previous report's SHA-256 (a hash chain over the experiment's runs).
2. ``sign_run``: after the report files exist, hash every file of the run folder and every
   file of each model the report lists (its MLflow LoggedModel, downloaded from the store)
   into an in-toto statement, sign it (``manifest.intoto.jsonl``, a DSSE envelope), log it to
   the parent run at the same relative path as on disk, and tag the run with the report's and
   the statement's SHA-256 and the signer's key id.

``register_model`` tags each registry version with its model's digest (``MODEL_DIGEST_TAG``),
the same ``impactflow.audits.evidence.model_digest`` the statement binds to ``models:/<name>/<version>``;
``check_models`` re-hashes the child runs' models and the registered versions when a run is
verified by its MLflow run id.
"""

from __future__ import annotations

import os
from pathlib import Path

from prefect import task
from prefect.cache_policies import NONE

from impactflow.errors import ImpactflowError
from impactflow.tasks import progress, tracking

REPORT_SHA_TAG = "impactflow.report_sha256"
MANIFEST_SHA_TAG = "impactflow.manifest_sha256"
SIGNER_TAG = "impactflow.signer_key_id"
MODEL_DIGEST_TAG = "impactflow.model_sha256"  # on registry versions: audits.evidence.model_digest
# Folders of the run dir that another task already logs whole to the parent run at the same
# path (log_data: data_docs/); sign_run logs everything else, reports/ included (log_report
# logs only the three report files: anything else a branch writes there must travel too, or
# `report verify RUN_ID` would find it missing).
LOGGED_ELSEWHERE = ("data_docs",)


def previous_report_sha256(uri: str, experiment_id: str, exclude_run_id: str | None = None) -> str | None:
    """SHA-256 of the report of the latest finished run of the experiment that has one."""
    client = tracking._client(uri)
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"attributes.status = 'FINISHED' AND tags.`{REPORT_SHA_TAG}` LIKE '%'",
        order_by=["attributes.start_time DESC"],
        max_results=5,
    )
    for run in runs:
        if run.info.run_id != exclude_run_id and run.data.tags.get(REPORT_SHA_TAG):
            return run.data.tags[REPORT_SHA_TAG]
    return None


def integrity_cover(signer: dict, evidence_sha256: str, previous: str | None, run_id: str) -> dict:
    return {
        "signature_algorithm": signer["algorithm"],
        "signer_key_id": signer["key_id"],
        "signer_public_key": signer["public_key"],
        "signer_owner": signer.get("owner"),
        "evidence_manifest_sha256": evidence_sha256,
        "previous_report_sha256": previous,
        "manifest": "manifest.intoto.jsonl beside reports/: an in-toto statement in a DSSE envelope "
        "(covers this report, every file of the run, the models and the data)",
        "verify": f"impactflow report verify {run_id} --trusted-keys TRUSTED_KEYS.json",
        "note": "verified only if the content is intact and the signer's key is in the reviewer's "
        "trust list (impactflow keys export / keys trust); the key named here is the "
        "signer's claim, not a trust anchor",
    }


def _signing_key():
    """The signing key with its owner label; creates it on first use and says so."""
    from impactflow.audits import evidence

    key, created = evidence.ensure_signing_key()
    info = evidence.key_info()
    if created:
        progress.stage(
            f"created signing key {info['key_id']} at {info['path']} (owner: {info['owner']}); "
            "publish its public key with: impactflow keys export"
        )
    return key, info.get("owner")


@task(name="prepare-evidence", cache_policy=NONE, retries=2, retry_delay_seconds=2)
def prepare_evidence(ctx: dict, run_dir: str) -> dict:
    """Hash the report's inputs into evidence.json; return the report's integrity cover."""
    from impactflow.audits import evidence

    progress.stage("hash evidence")
    key, owner = _signing_key()
    signer = evidence.signer_info(key, owner)
    previous = previous_report_sha256(ctx["uri"], ctx["experiment_id"], ctx["parent_run_id"])
    _, sha = evidence.write_evidence(
        Path(run_dir), run_id=ctx["parent_run_id"], signer=signer, previous_report_sha256=previous
    )
    return integrity_cover(signer, sha, previous, ctx["parent_run_id"])


def model_files(uri: str, artifact_uri: str) -> dict | None:
    """``{path: {sha256, size}}`` of the files stored at a model's artifact location (downloaded
    to a temporary folder), or None when nothing can be read there."""
    import tempfile

    import mlflow
    from mlflow.exceptions import MlflowException

    from impactflow.audits import evidence

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    with tempfile.TemporaryDirectory(prefix="impactflow-model-") as tmp:
        try:
            local = mlflow.artifacts.download_artifacts(artifact_uri=artifact_uri, dst_path=tmp, tracking_uri=uri)
        except (MlflowException, OSError):
            return None
        files = evidence.hash_tree(Path(local), exclude=())
    return files or None


def _run_model_ids(client, run_id: str) -> list[str]:
    run = client.get_run(run_id)
    return [o.model_id for o in ((run.outputs.model_outputs or []) if run.outputs else [])]


def run_model_digest(uri: str, run_id: str) -> str | None:
    """``model_digest`` of the (last) model logged by a run; None if it logged none."""
    from impactflow.audits import evidence

    client = tracking._client(uri)
    ids = _run_model_ids(client, run_id)
    files = model_files(uri, client.get_logged_model(ids[-1]).artifact_location) if ids else None
    return evidence.model_digest(files) if files else None


def logged_models(uri: str, records: list[dict]) -> list[dict]:
    """The statement's model entries: every MLflow LoggedModel of each report model's run, with
    its files' hashes and the registry version it was registered as."""
    client = tracking._client(uri)
    out = []
    for rec in records:
        run_id = rec.get("mlflow_run_id")
        ids = _run_model_ids(client, run_id) if run_id else []
        for mid in ids:  # none for a model the audit-only flow did not train
            files = model_files(uri, client.get_logged_model(mid).artifact_location)
            if not files:
                from impactflow.errors import DataError

                raise DataError(f"model {rec.get('name')}: the files of MLflow model {mid} cannot be read to sign them")
            reg = rec.get("registry") or None
            out.append(
                {
                    "name": str(rec.get("name")) + ("" if len(ids) == 1 else f"-{mid}"),
                    "role": rec.get("role"),
                    "mlflow_run_id": run_id,
                    "model_id": mid,
                    "files": files,
                    "registry": {"name": reg["name"], "version": str(reg["version"])} if reg else None,
                }
            )
    return out


@task(name="sign-run", cache_policy=NONE, retries=2, retry_delay_seconds=2)
def sign_run(ctx: dict, run_dir: str, integrity: dict | None = None) -> dict:
    """Sign an in-toto statement of every file in the run folder and of every logged model; log
    it to the parent run; tag hashes."""
    import json

    from impactflow.audits import evidence

    progress.stage("sign evidence")
    root = Path(run_dir)
    previous = (integrity or {}).get("previous_report_sha256")
    uri, run = ctx["uri"], ctx["parent_run_id"]
    report = root / evidence.REPORT_JSON
    records = json.loads(report.read_text(encoding="utf-8")).get("models") or [] if report.is_file() else []
    key, owner = _signing_key()
    signed = evidence.write_signed_manifest(
        root, key, run_id=run, previous_report_sha256=previous, owner=owner, models=logged_models(uri, records)
    )
    for child in sorted(root.iterdir()):
        if child.name in LOGGED_ELSEWHERE:
            continue
        tracking.log_artifacts(uri, run, child, child.name if child.is_dir() else None)
    tags = {MANIFEST_SHA_TAG: signed["manifest_sha256"], SIGNER_TAG: signed["key_id"]}
    if signed["report_sha256"]:
        tags[REPORT_SHA_TAG] = signed["report_sha256"]
    tracking.set_tags(uri, run, tags)
    return signed


def check_models(uri: str, models: list[dict]) -> list[str]:
    """Re-hash every model a verified statement lists, from its child run's LoggedModel and from
    its registry version (whose digest tag must also be the signed digest); one problem line
    per difference (empty: every model is as signed)."""
    from mlflow.exceptions import MlflowException

    from impactflow.audits import evidence

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    client = tracking._client(uri)
    problems: list[str] = []
    for m in models:
        name, run_id, mid = m.get("name"), m.get("mlflow_run_id"), m.get("model_id")
        try:
            ids = _run_model_ids(client, run_id)
        except MlflowException:
            ids = None
        if ids is None or mid not in ids:
            problems.append(f"model {name}: MLflow run {run_id} no longer logs model {mid}")
        else:
            location = client.get_logged_model(mid).artifact_location
            moved = tracking.missing_artifacts(location)
            problems += (
                [f"model {name}: logged model {mid}: {moved}"]
                if moved
                else evidence.model_problems(m, model_files(uri, location), f"run {run_id}")
            )
        reg = m.get("registry")
        if not reg:
            continue
        where = f"models:/{reg['name']}/{reg['version']}"
        try:
            mv = client.get_model_version(reg["name"], str(reg["version"]))
            location = client.get_model_version_download_uri(reg["name"], str(reg["version"]))
        except MlflowException:
            problems.append(f"model {name}: registry version {where} not found")
            continue
        if (mv.tags or {}).get(MODEL_DIGEST_TAG) != m.get("digest"):
            problems.append(
                f"model {name}: {where} is tagged {MODEL_DIGEST_TAG}="
                f"{str((mv.tags or {}).get(MODEL_DIGEST_TAG))[:12]}…, not the signed digest "
                f"{str(m.get('digest'))[:12]}…"
            )
        moved = tracking.missing_artifacts(location)
        problems += (
            [f"model {name}: {where}: {moved}"]
            if moved
            else evidence.model_problems(m, model_files(uri, location), where)
        )
    return problems


def _existing_run_client(uri: str, run_id: str):
    """An MLflow client for ``uri`` after checking the run exists (DataError naming it if not)."""
    from mlflow.exceptions import MlflowException

    from impactflow.errors import DataError

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # stdout stays the verdict
    client = tracking._client(uri)
    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise DataError(f"no MLflow run {run_id!r} in {tracking_uri_for_humans(uri)}") from None
    moved = tracking.missing_artifacts(run.info.artifact_uri)
    if moved:
        raise DataError(f"MLflow run {run_id}: {moved}")
    return client


def download_run_artifacts(uri: str, run_id: str, dst: Path) -> Path:
    """Every artifact of a run into ``dst`` (same layout as the run folder); DataError if the
    run does not exist in the store."""
    client = _existing_run_client(uri, run_id)
    dst.mkdir(parents=True, exist_ok=True)
    client.download_artifacts(run_id, "", str(dst))
    return dst


def tracking_uri_for_humans(uri: str) -> str:
    from impactflow.audits.report import redact_uri

    return redact_uri(uri)


def download_report(uri: str, run_id: str, dst: Path) -> dict:
    """The ``impact_report.json`` logged to a run (``reports/``), parsed."""
    import json

    from mlflow.exceptions import MlflowException

    from impactflow.errors import DataError

    client = _existing_run_client(uri, run_id)
    dst.mkdir(parents=True, exist_ok=True)
    try:
        local = client.download_artifacts(run_id, "reports/impact_report.json", str(dst))
    except (MlflowException, OSError):
        raise DataError(f"MLflow run {run_id} has no reports/impact_report.json artifact") from None
    return json.loads(Path(local).read_text(encoding="utf-8"))


def logged_copy_problems(
    uri: str, run_id: str, local_manifest_sha256: str | None, dst: Path, verify_folder
) -> tuple[list[str], str]:
    """Compare a local run folder with what its MLflow run logged: the run must have FINISHED and
    its logged statement must be the local one and verify (``verify_folder(path)`` ->
    VerifyResult). Returns (problems, note); a store without the run is a note, not a problem (a
    folder copied from another store)."""
    from mlflow.exceptions import MlflowException

    client = tracking._client(uri)
    try:
        run = client.get_run(run_id)
    except MlflowException:
        return [], f"not checked: run {run_id} is not in {tracking_uri_for_humans(uri)}"
    problems = []
    moved = tracking.missing_artifacts(run.info.artifact_uri)
    if moved:
        return [f"MLflow run {run_id}: {moved}"], "differs"
    if run.info.status != "FINISHED":
        problems.append(
            f"MLflow run {run_id}: status {run.info.status}, not FINISHED (killed or failed while "
            "logging: the logged evidence may be incomplete)"
        )
    dst.mkdir(parents=True, exist_ok=True)
    try:
        client.download_artifacts(run_id, "", str(dst))
        logged = verify_folder(dst)
    except (MlflowException, OSError, ImpactflowError) as exc:
        problems.append(f"MLflow copy: no readable signed statement logged ({str(exc).splitlines()[0][:200]})")
        return problems, "differs"
    if logged.manifest_sha256 != local_manifest_sha256:
        problems.append(f"MLflow copy: its signed statement (sha256 {logged.manifest_sha256}) is not this folder's")
    problems += [f"MLflow copy: {p}" for p in logged.problems]
    return problems, "verified" if not problems else "differs"
