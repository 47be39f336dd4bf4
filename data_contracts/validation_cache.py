"""Reuse a passing contract result for an identical frame (``data.reuse_validation``).

A GX validation is a pure function of the frame, the contract (suite + column roles) and the
code that runs it. Re-running the pipeline on unchanged data -- another model, other
hyperparameters, a DP variant: the runs users compare in MLflow -- re-validated the same frame
every time (1-4 s of the default run on 2 cores). As TFX's pipeline cache does for its
ExampleValidator, a run reuses the result when all of these are identical to an earlier passing
validation (``frame_key``):

- the frame: every value (pandas' row hashes), the column names and dtypes, and the Python type
  of every value in ``object`` columns (pandas hashes ``1`` and ``"1"`` alike there);
- the contract: its GX suite (as generated from its declarations and merged with its suite file) and every field of ``Contract`` (the source of
  its loader and validation view included);
- the code: the source of ``data_contracts`` and the versions of Python, GX, pandas and numpy.

Only passing results are kept: a failing frame is validated afresh every time, so its errors
and examples always come from this run and no bad values are copied into the cache. A frame
that cannot be hashed (MNIST's pixel arrays) is always validated. Reused results say so in
``statistics["reused"]`` (when and in how long the original validation ran, and the key), which
the impact report shows beside the contract result; ``impactflow validate`` never reuses.

Layout: ``<cache_dir>/<key>/report.json`` and ``<cache_dir>/<key>/data_docs/`` (the Data Docs
pages without GX's 4 MB of static assets, which are copied from the installed GX as its own
site builder does). An entry is written into a temporary folder and renamed into place, so a
reader sees a whole entry or none; one that cannot be read is ignored and validated afresh.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from impactflow.data_contracts import Contract
    from impactflow.data_contracts.validation import ValidationReport

_SOURCE = Path(__file__).resolve().parent
_STATIC = "static"


def _field_text(value: Any) -> str:
    if callable(value):  # a loader or validation view: its name and its source
        import inspect

        try:
            source = hashlib.sha256(inspect.getsource(value).encode()).hexdigest()
        except (OSError, TypeError):
            source = "?"
        return f"{getattr(value, '__module__', '?')}.{getattr(value, '__qualname__', '?')}:{source}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_field_text(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k!r}:{_field_text(v)}" for k, v in sorted(value.items(), key=str)) + "}"
    return repr(str(value) if isinstance(value, Path) else value)


def _code_digest() -> str:
    from importlib import metadata

    h = hashlib.sha256(sys.version.encode())
    for name in ("great-expectations", "pandas", "numpy"):
        h.update(f"{name}=={metadata.version(name)}\n".encode())
    for path in sorted(_SOURCE.glob("*.py")):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def frame_key(df: "pd.DataFrame", contract: "Contract") -> str | None:
    """The cache key of validating ``df`` against ``contract``; None when a column's values
    cannot be hashed (then the frame is always validated)."""
    import numpy as np
    import pandas as pd

    h = hashlib.sha256(_code_digest().encode())
    for f in dataclasses.fields(contract):
        h.update(f"{f.name}={_field_text(getattr(contract, f.name))}\n".encode())
    from impactflow.data_contracts.validation import load_suite

    h.update(json.dumps(load_suite(contract), sort_keys=True, default=str).encode())  # generated + hand-written
    h.update(json.dumps([[str(c), str(t)] for c, t in df.dtypes.items()]).encode())
    h.update(str(len(df)).encode())
    try:
        rows = pd.util.hash_pandas_object(df, index=True)
        h.update(np.ascontiguousarray(rows.to_numpy(dtype="uint64")).tobytes())
        for name in df.columns:
            if df[name].dtype == object:  # "1" and 1 hash alike: tell the types apart
                kinds = df[name].map(lambda v: type(v).__qualname__).astype(str)
                h.update(pd.util.hash_array(kinds.to_numpy(dtype=object)).tobytes())
    except TypeError:  # unhashable cells (arrays, lists)
        return None
    return h.hexdigest()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def lookup(cache_dir: Path, key: str, docs_dir: Path) -> "ValidationReport | None":
    """The cached passing report for ``key`` with its Data Docs copied into ``docs_dir``, or
    None (no entry, or one that cannot be read)."""
    from great_expectations.render import view

    from impactflow.data_contracts.validation import ValidationReport

    start = time.perf_counter()
    entry = Path(cache_dir) / key
    docs_dir = Path(docs_dir)
    existed = docs_dir.exists()
    try:
        saved = json.loads((entry / "report.json").read_text())
        if not saved["success"] or saved["failures"] or not (entry / "data_docs" / "index.html").is_file():
            return None
        shutil.copytree(entry / "data_docs", docs_dir, dirs_exist_ok=True)
        static = Path(view.__file__).resolve().parent / _STATIC
        shutil.copytree(static, docs_dir / _STATIC, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".DS_Store"))
    except (OSError, ValueError, KeyError, TypeError):
        if not existed:  # no half-copied pages left for the fresh validation to write beside
            shutil.rmtree(docs_dir, ignore_errors=True)
        return None
    stats = dict(saved["statistics"])
    stats["reused"] = {
        "validated_at": saved.get("validated_at"),
        "validation_seconds": stats.get("seconds"),
        "key": key,
    }
    stats["seconds"] = round(time.perf_counter() - start, 3)
    return ValidationReport(
        success=True,
        contract=saved["contract"],
        total_expectations=saved["total_expectations"],
        failures=[],
        statistics=stats,
        data_docs=str(docs_dir / "index.html"),
    )


def store(cache_dir: Path, key: str, report: "ValidationReport", docs_dir: Path) -> bool:
    """Keep a passing ``report`` and its Data Docs pages under ``key``; returns whether it did
    (failing reports and reports without Data Docs are not kept)."""
    if not report.success or report.failures or report.data_docs is None:
        return False
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    if (cache_dir / key).exists():
        return False
    # staging folder named after its writer (audits.atomic naming): reconcile removes it if killed
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}.{os.getpid()}.", suffix=".tmp", dir=cache_dir))
    try:
        shutil.copytree(Path(docs_dir), tmp / "data_docs", ignore=shutil.ignore_patterns(_STATIC))
        (tmp / "report.json").write_text(json.dumps({**report.to_dict(), "validated_at": _now()}))
        os.rename(tmp, cache_dir / key)
    except OSError:  # another run stored it first, or the disk is full: nothing half-written
        shutil.rmtree(tmp, ignore_errors=True)
        return False
    return True
