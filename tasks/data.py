"""Data tasks: load (with SHA-256), validate against the contract (GX), split."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NONE

from impactflow.tasks import progress, retry_io_only
from impactflow.tasks.spec import RunSpec


def contract_file(contract) -> dict | None:
    """``{"path", "sha256"}`` of the contract.yaml the data was read and validated by (None for a
    contract built in code): the report names the exact contract a reviewer can re-check."""
    from impactflow.data_contracts.files import file_sha256

    path = getattr(contract, "contract_path", None)
    if path is None or not Path(path).is_file():
        return None
    return {"path": str(path), "sha256": file_sha256(Path(path))}


@task(name="load-data", cache_policy=NONE, retries=1, retry_delay_seconds=1, retry_condition_fn=retry_io_only)
def load_data(spec: RunSpec, paths: list[str] | None, sample: int | None, seed: int) -> tuple[Any, dict]:
    """Read the dataset's files through its contract's loader and hash them."""
    from impactflow.data_contracts import load_dataset
    from impactflow.data_contracts.files import file_sha256, sha256_files

    progress.stage("load data")
    contract = spec.contract
    files = [Path(p) for p in paths] if paths else list(contract.default_files)
    df = load_dataset(contract, files)
    # a folder (multi-file datasets) is hashed as the sorted files directly inside it
    files = [f for p in files for f in (sorted(x for x in p.iterdir() if x.is_file()) if p.is_dir() else [p])]
    if sample is not None and sample < len(df):
        df = df.sample(n=sample, random_state=seed).reset_index(drop=True)
    info = {
        "contract": contract.name,
        "contract_file": contract_file(contract),
        "files": [{"path": str(p), "sha256": file_sha256(p)} for p in files],
        "dataset_sha256": sha256_files(files),
        "n_rows": int(len(df)),
        "sampled": sample,
        "source": contract.source,
        "license": contract.license,
        "shipped": paths is None,
    }
    return df, info


@task(name="validate-data", cache_policy=NONE)
def validate_data(df, spec: RunSpec, docs_dir: str, reuse_dir: str | None = None) -> Any:
    """Validate the frame against the contract's GX suite and build its Data Docs HTML; the flow
    runs this before anything is trained and ends the run on a failure. With ``reuse_dir``, an
    identical frame's earlier passing result is reused from there, and a new passing result is
    kept there (``impactflow.data_contracts.validation_cache``)."""
    from impactflow.data_contracts import validation_cache as cache
    from impactflow.data_contracts.validation import validate

    contract = spec.contract
    key = cache.frame_key(df, contract) if reuse_dir else None
    if key is not None:
        reused = cache.lookup(Path(reuse_dir), key, Path(docs_dir))
        if reused is not None:
            progress.stage("validate (Great Expectations): reused the passing result of an identical frame")
            return reused
    progress.stage("validate (Great Expectations)")
    report = validate(df, contract, Path(docs_dir))
    if key is not None:
        cache.store(Path(reuse_dir), key, report, Path(docs_dir))
    return report


@task(name="split-data", cache_policy=NONE)
def split_data(df, spec: RunSpec, validation: float, test: float, seed: int) -> Any:
    """Seeded train/validation/test split stratified by label x groups (or the official test set)."""
    from impactflow.models.data import split_frame

    contract = spec.contract
    classes = spec.family.task.classifies
    return split_frame(
        df,
        target=contract.target,
        stratify_on=[*contract.sensitive, *contract.groups] if classes else [],
        validation=validation,
        test=test,
        seed=seed,
        predefined=contract.split_column,
        stratify=classes,
    )
