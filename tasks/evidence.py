"""Evidence tasks: the report's integrity cover (before rendering) and the signed manifest of the
whole run folder (after), logged to MLflow; plus the MLflow look-ups ``report verify`` and
``compare`` need (previous report in the experiment, a run's artifacts).

Two stages, because a report cannot contain the hash of a manifest that covers the report:
1. ``prepare_evidence``: hash what the report is built from (models/, data_docs/, ...) into
   ``evidence.json``; the report's cover shows its SHA-256, the signer's public key and the
   previous report's SHA-256 (a hash chain over the experiment's runs).
2. ``sign_run``: after the report files exist, hash every file of the run folder into
   ``manifest.json``, sign it (``manifest.sig``), log both to the parent run at the same
   relative paths as on disk, and tag the run with the report's and the manifest's SHA-256.
"""
from __future__ import annotations

import os
from pathlib import Path

from prefect import task
from prefect.cache_policies import NONE

from tasks import progress, tracking

REPORT_SHA_TAG = "impactflow.report_sha256"
MANIFEST_SHA_TAG = "impactflow.manifest_sha256"
SIGNER_TAG = "impactflow.signer_key_id"
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
        order_by=["attributes.start_time DESC"], max_results=5)
    for run in runs:
        if run.info.run_id != exclude_run_id and run.data.tags.get(REPORT_SHA_TAG):
            return run.data.tags[REPORT_SHA_TAG]
    return None


def integrity_cover(signer: dict, evidence_sha256: str, previous: str | None, run_id: str) -> dict:
    return {
        "signature_algorithm": signer["algorithm"],
        "signer_key_id": signer["key_id"],
        "signer_public_key": signer["public_key"],
        "evidence_manifest_sha256": evidence_sha256,
        "previous_report_sha256": previous,
        "manifest": "manifest.json + manifest.sig beside reports/ (they cover this report)",
        "verify": f"impactflow report verify {run_id} [--key PUBLIC_KEY]",
        "note": "the public key is part of the evidence: a valid signature proves integrity; it "
                "proves who signed only if the reviewer pins the key they trust (--key)",
    }


@task(name="prepare-evidence", cache_policy=NONE, retries=2, retry_delay_seconds=2)
def prepare_evidence(ctx: dict, run_dir: str) -> dict:
    """Hash the report's inputs into evidence.json; return the report's integrity cover."""
    from audits import evidence

    progress.stage("hash evidence")
    key = evidence.load_or_create_signing_key()
    signer = evidence.signer_info(key)
    previous = previous_report_sha256(ctx["uri"], ctx["experiment_id"], ctx["parent_run_id"])
    _, sha = evidence.write_evidence(Path(run_dir), run_id=ctx["parent_run_id"], signer=signer,
                                     previous_report_sha256=previous)
    return integrity_cover(signer, sha, previous, ctx["parent_run_id"])


@task(name="sign-run", cache_policy=NONE, retries=2, retry_delay_seconds=2)
def sign_run(ctx: dict, run_dir: str, integrity: dict | None = None) -> dict:
    """Sign the manifest of every file in the run folder; log it to the parent run; tag hashes."""
    from audits import evidence

    progress.stage("sign evidence")
    root = Path(run_dir)
    previous = (integrity or {}).get("previous_report_sha256")
    signed = evidence.write_signed_manifest(root, evidence.load_or_create_signing_key(),
                                            run_id=ctx["parent_run_id"], previous_report_sha256=previous)
    uri, run = ctx["uri"], ctx["parent_run_id"]
    for child in sorted(root.iterdir()):
        if child.name in LOGGED_ELSEWHERE:
            continue
        tracking.log_artifacts(uri, run, child, child.name if child.is_dir() else None)
    tags = {MANIFEST_SHA_TAG: signed["manifest_sha256"], SIGNER_TAG: signed["key_id"]}
    if signed["report_sha256"]:
        tags[REPORT_SHA_TAG] = signed["report_sha256"]
    tracking.set_tags(uri, run, tags)
    return signed


def _existing_run_client(uri: str, run_id: str):
    """An MLflow client for ``uri`` after checking the run exists (DataError naming it if not)."""
    from mlflow.exceptions import MlflowException

    from data_contracts.errors import DataError

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # stdout stays the verdict
    client = tracking._client(uri)
    try:
        client.get_run(run_id)
    except MlflowException:
        raise DataError(f"no MLflow run {run_id!r} in {tracking_uri_for_humans(uri)}") from None
    return client


def download_run_artifacts(uri: str, run_id: str, dst: Path) -> Path:
    """Every artifact of a run into ``dst`` (same layout as the run folder); DataError if the
    run does not exist in the store."""
    client = _existing_run_client(uri, run_id)
    dst.mkdir(parents=True, exist_ok=True)
    client.download_artifacts(run_id, "", str(dst))
    return dst


def tracking_uri_for_humans(uri: str) -> str:
    from audits.report import redact_uri

    return redact_uri(uri)


def download_report(uri: str, run_id: str, dst: Path) -> dict:
    """The ``impact_report.json`` logged to a run (``reports/``), parsed."""
    import json

    from mlflow.exceptions import MlflowException

    from data_contracts.errors import DataError

    client = _existing_run_client(uri, run_id)
    dst.mkdir(parents=True, exist_ok=True)
    try:
        local = client.download_artifacts(run_id, "reports/impact_report.json", str(dst))
    except (MlflowException, OSError):
        raise DataError(f"MLflow run {run_id} has no reports/impact_report.json artifact") from None
    return json.loads(Path(local).read_text(encoding="utf-8"))
