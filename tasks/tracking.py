"""Everything that talks to MLflow (the only package that does).

Runs are addressed by id through ``MlflowClient`` rather than MLflow's thread-local
"active run", so Prefect may run tasks in any thread. Layout per pipeline run:
one experiment per pipeline (``impactflow-<preset>``), a parent run per flow run, a
child run per model (tag ``mlflow.parentRunId``).
"""

from __future__ import annotations

import contextlib
import math
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

TELEMETRY_OFF = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true", "GX_ANALYTICS_ENABLED": "false"}
MAX_PARAM_CHARS = 6000

# What loading a logged impactflow model needs (explicit: MLflow's inference costs 7-12 s).
PIP_REQUIREMENTS = [
    "impactflow",
    "torch>=2.6,<2.14",
    "scikit-learn>=1.5",
    "pandas>=2.2",
    "numpy>=1.26",
    "cloudpickle>=3",
]


def tracking_uri(output_dir: Path) -> str:
    """MLFLOW_TRACKING_URI from the environment, else a SQLite file under ``output_dir``."""
    for key, value in TELEMETRY_OFF.items():
        os.environ.setdefault(key, value)
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    output_dir.mkdir(parents=True, exist_ok=True)
    from impactflow.audits.file_modes import create_private

    create_private(output_dir / "mlflow.db")  # 0600 before SQLite creates it 0644 (params, tags, URIs)
    return f"sqlite:///{(output_dir / 'mlflow.db').resolve()}"


def _client(uri: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a.b": value}`` of a nested dict (``audits.sections.flatten``)."""
    from impactflow.audits.sections import flatten as flat

    return flat(d, prefix)


def _file_path(artifact_uri: str | None) -> Path | None:
    """The local path of a ``file:`` artifact URI (None for any other scheme)."""
    from urllib.parse import unquote, urlparse

    if not artifact_uri or not artifact_uri.startswith("file:"):
        return None
    return Path(unquote(urlparse(artifact_uri).path))


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///path`` tracking URI (None for other stores or an
    in-memory database)."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri[len("sqlite:///") :].split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def moved_store(artifact_location: str | None, output_dir: Path, database: Path | None = None) -> str | None:
    """Why an embedded store's experiment must not be written to from ``output_dir``: MLflow
    records each experiment's artifact location (and each run's artifact URI) as an absolute
    path, so a runs folder that was moved or copied keeps writing artifacts into the original
    folder, and breaks once that folder is gone. None when the location is this folder's.

    ``database``: the SQLite file of the store. When it lies outside ``output_dir`` (the user
    points ``MLFLOW_TRACKING_URI`` at one store and sends runs to several folders), the
    experiment's artifact folder is simply elsewhere, which is fine while it exists."""
    recorded = _file_path(artifact_location)
    here = (Path(output_dir) / "mlartifacts").resolve()
    if recorded is None or recorded == here:
        return None
    if database is not None and not Path(database).resolve().is_relative_to(Path(output_dir).resolve()):
        if recorded.exists() or not recorded.parent.exists():
            # elsewhere but present, or never created yet (MLflow makes it on the first artifact)
            return None
        return (
            f"the experiment's artifact folder {recorded} no longer exists (MLflow records absolute paths): "
            "was it moved? Move it back, or use another experiment (--set tracking.experiment=...)"
        )
    return (
        f"the runs folder {Path(output_dir).resolve()} was moved or copied: its MLflow store keeps artifacts "
        f"in {recorded} (MLflow records absolute paths), so this run would write there. Move the folder "
        "back, or start new runs in a fresh folder (--set tracking.output_dir=...) and keep this one for "
        "reading (`impactflow report verify --local-only` checks its run folders)"
    )


def missing_artifacts(artifact_uri: str | None) -> str | None:
    """A clear reason when a run's local artifact folder is gone (its runs folder was moved)."""
    path = _file_path(artifact_uri)
    if path is None or path.exists():
        return None
    return (
        f"its artifacts were recorded at {path}, which no longer exists: was the runs folder moved? "
        "MLflow records absolute artifact paths; move the folder back to read them"
    )


def ensure_experiment(uri: str, name: str, output_dir: Path) -> str:
    client = _client(uri)
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if uri.startswith("sqlite:"):
            problem = moved_store(exp.artifact_location, output_dir, sqlite_path(uri))
            if problem:
                from impactflow.errors import ConfigError

                raise ConfigError(problem)
        return exp.experiment_id
    location = None
    if uri.startswith("sqlite:"):  # embedded mode: artifacts beside the database
        location = (output_dir / "mlartifacts").resolve().as_uri()
    return client.create_experiment(name, artifact_location=location, tags=dict([TRAINING_KIND]))


#: MLflow 3's experiment-kind tag: the UI opens a "custom model development" experiment on its
#: training-runs view (untagged experiments may open on the GenAI traces view)
TRAINING_KIND = ("mlflow.experimentKind", "custom_model_development")


def mark_training_experiments(uri: str) -> int:
    """Tag every experiment of the store that has no kind yet as a training experiment (what
    `impactflow ui` does before it starts, for stores made by older versions). Returns how many
    were tagged."""
    from mlflow.entities import ViewType

    client = _client(uri)
    n = 0
    for exp in client.search_experiments(view_type=ViewType.ACTIVE_ONLY):
        if TRAINING_KIND[0] not in (exp.tags or {}):
            client.set_experiment_tag(exp.experiment_id, *TRAINING_KIND)
            n += 1
    return n


def start_run(
    uri: str, experiment_id: str, run_name: str, tags: dict[str, str], parent_run_id: str | None = None
) -> str:
    from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

    tags = {**tags, MLFLOW_RUN_NAME: run_name}
    if parent_run_id:
        tags[MLFLOW_PARENT_RUN_ID] = parent_run_id
    run = _client(uri).create_run(experiment_id, tags=tags, run_name=run_name)
    return run.info.run_id


def mlflow_key(name: Any) -> str:
    """``name`` as a metric, param or tag key MLflow accepts. Names carry the user's group values
    and column names (any characters); MLflow refuses keys outside word characters, ``/ . -``,
    space (and ``:`` off Windows) and keys that are not their own normalised path (``a//b``,
    ``../x``), with an exception that ended the run in a traceback. Each refused character
    becomes ``_``, and an empty, ``.`` or ``..`` segment becomes ``_``; the report keeps the
    original names."""
    text = re.sub(r"[^\w/.\- ]", "_", str(name))
    return "/".join("_" if part in ("", ".", "..") else part for part in text.split("/"))


def log_params(uri: str, run_id: str, params: dict[str, Any]) -> None:
    from mlflow.entities import Param

    flat = flatten(params)
    items = [Param(mlflow_key(k), str(v)[:MAX_PARAM_CHARS]) for k, v in sorted(flat.items())]
    client = _client(uri)
    for start in range(0, len(items), 100):  # MLflow's batch limit for params
        client.log_batch(run_id, params=items[start : start + 100])


def log_metrics(
    uri: str, run_id: str, metrics: dict[str, Any], step: int = 0, model_id: str | None = None
) -> list[str]:
    """Batch-log finite numeric metrics; returns the names skipped (None/NaN/inf). With
    ``model_id`` (MLflow 3's LoggedModel) each metric is also linked to that model, in the same
    write."""
    items, skipped = _metric_items(metrics, step, model_id)
    _log_metric_items(uri, run_id, items)
    return skipped


def _metric_items(
    metrics: dict[str, Any], step: int, model_id: str | None = None, ts: int | None = None
) -> tuple[list[Any], list[str]]:
    import time

    from mlflow.entities import Metric

    ts = int(time.time() * 1000) if ts is None else ts
    items, skipped = [], []
    for k, v in sorted(metrics.items()):
        if isinstance(v, (bool, np.bool_)):
            v = float(v)
        if v is None or not isinstance(v, (int, float, np.integer, np.floating)) or not math.isfinite(float(v)):
            skipped.append(k)
            continue
        items.append(Metric(mlflow_key(k), float(v), ts, step, model_id=model_id))
    return items, skipped


def _log_metric_items(uri: str, run_id: str, items: list[Any]) -> None:
    client = _client(uri)
    for start in range(0, len(items), 1000):  # MLflow's batch limit for metrics
        client.log_batch(run_id, metrics=items[start : start + 1000])


def log_history(uri: str, run_id: str, history: list[dict[str, float]]) -> None:
    """Per-epoch metrics as ``train/<name>`` at step = epoch: every epoch in one batched write
    (one transaction instead of one per epoch; the same metric history)."""
    import time

    ts = int(time.time() * 1000)
    items = [
        m
        for row in history
        for m in _metric_items(
            {f"train/{k}": v for k, v in row.items() if k != "epoch"}, int(row.get("epoch", 0)), ts=ts
        )[0]
    ]
    _log_metric_items(uri, run_id, items)


def set_tags(uri: str, run_id: str, tags: dict[str, Any]) -> None:
    """Set ``tags`` on the run in one batched write."""
    from mlflow.entities import RunTag

    if tags:
        _client(uri).log_batch(run_id, tags=[RunTag(mlflow_key(k), str(v)) for k, v in tags.items()])


def log_artifacts(uri: str, run_id: str, local: Path, artifact_path: str | None = None) -> None:
    client = _client(uri)
    if local.is_dir():
        client.log_artifacts(run_id, str(local), artifact_path)
    else:
        client.log_artifact(run_id, str(local), artifact_path)


def log_dataset(uri: str, run_id: str, df, *, name: str, source: str, sha256: str, context: str) -> None:
    """Record the dataset as a run input. The digest is our SHA-256 of the files, not
    MLflow's 8-hex MD5 of the first rows (which is no evidence)."""
    import mlflow
    from mlflow.entities import DatasetInput, InputTag

    ds = mlflow.data.from_pandas(df, source=local_dataset_source(source), name=name, digest=sha256[:36])
    ds.schema = dataset_schema(df)  # cached_property: set before MLflow infers it value by value
    _client(uri).log_inputs(
        run_id,
        datasets=[DatasetInput(ds._to_mlflow_entity(), tags=[InputTag("mlflow.data.context", context)])],
    )


_LOCAL_SOURCE_CLASS = None


def local_dataset_source(path: str):
    """The dataset's file as an MLflow dataset source of type ``local`` with ``{"uri": path}``:
    exactly what MLflow records for a local path, but built here instead of resolved from the
    string. MLflow (3.x) registers its local source class twice (for the ``""`` and ``file``
    schemes), so resolving any local path warns "The specified dataset source can be
    interpreted in multiple ways: LocalArtifactDatasetSource, LocalArtifactDatasetSource" — a
    UserWarning on the user's stderr on every run (issue 26). A source object is used as given
    (``mlflow.data.from_pandas``); ``DatasetSource`` is MLflow's public base for custom sources."""
    global _LOCAL_SOURCE_CLASS
    if _LOCAL_SOURCE_CLASS is None:
        from mlflow.data.dataset_source import DatasetSource

        class LocalFileSource(DatasetSource):
            """A local file; source type ``local`` (read back by MLflow as its own local source)."""

            def __init__(self, uri: str):
                self.uri = str(uri)

            @staticmethod
            def _get_source_type() -> str:
                return "local"

            def load(self, dst_path=None) -> str:
                return self.uri

            @staticmethod
            def _can_resolve(raw_source) -> bool:
                return False  # never registered: only built explicitly

            @classmethod
            def _resolve(cls, raw_source):
                return cls(str(raw_source))

            def to_dict(self) -> dict:
                return {"uri": self.uri}

            @classmethod
            def from_dict(cls, source_dict: dict):
                return cls(source_dict["uri"])

        _LOCAL_SOURCE_CLASS = LocalFileSource
    return _LOCAL_SOURCE_CLASS(path)


def dataset_schema(df):
    """The MLflow schema of ``df``, equal to ``mlflow.types.utils._infer_schema(df)`` (tested on
    every shipped dataset) but vectorised for text columns: MLflow infers a text column's type by
    checking each value in Python (2.2 s of the 2.3 s ``log_dataset`` took on Adult's 48,842 rows
    on 2 cores). A pandas ``string`` column holds only strings and missing values, so its type is
    ``string`` and it is required when nothing is missing; other columns go through MLflow's own
    per-column inference (fast for numeric dtypes). None where MLflow cannot infer a column
    (e.g. MNIST's pixel arrays), as ``PandasDataset.schema`` then gives."""
    import pandas as pd
    from mlflow.exceptions import MlflowException
    from mlflow.types import ColSpec, DataType, Schema
    from mlflow.types.utils import _infer_pandas_column, _infer_required

    specs = []
    for name in df.columns:
        col = df[name]
        try:
            if isinstance(col.dtype, pd.StringDtype):
                spec = ColSpec(DataType.string, name, required=not bool(col.isna().any()))
            elif col.dtype.kind in "biufcmM":  # numpy numbers/dates: missing = NaN/NaT, as MLflow checks
                spec = ColSpec(_infer_pandas_column(col), name, required=not bool(col.isna().any()))
            else:
                spec = ColSpec(_infer_pandas_column(col), name, required=_infer_required(col))
        except MlflowException:
            return None
        specs.append(spec)
    return Schema(specs)


def log_model(uri: str, run_id: str, predictor, input_example) -> str:
    """Log the predictor (preprocessing + model) as an MLflow pyfunc with signature + example;
    returns the LoggedModel's id.

    Log it before the run's metrics, then log those with ``model_id``: ``log_model`` links every
    step-0 metric already on the run to the new LoggedModel by reading each metric's history
    back and re-logging it to the run (one query per metric, then a batch that collides with the
    rows already there: 0.3-0.6 s per model on Adult's few hundred audit metrics). Logged in this
    order, the run and the LoggedModel end up with the same metrics in one write."""
    import mlflow
    from mlflow.models import infer_signature

    from impactflow.tasks.pyfunc import ImpactflowPyfunc

    model = ImpactflowPyfunc(predictor)
    output = model.predict(None, input_example)
    signature = infer_signature(input_example, output)
    with using_tracking_uri(uri):
        with mlflow.start_run(run_id=run_id):
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=model,
                signature=signature,
                input_example=input_example,
                pip_requirements=PIP_REQUIREMENTS,
            )
        # start_run(...) as a context manager ends the run as FINISHED; the pipeline sets the
        # final status explicitly in end_run.
    return info.model_id


def warm_requirements_map() -> None:
    """Build the module -> package map MLflow checks a logged model's ``pip_requirements``
    against (``importlib_metadata.packages_distributions``, 0.3-0.9 s; once per process, kept
    in a module global). The warm runner calls this before it forks runs, so they inherit it."""
    from mlflow.utils import requirements_utils

    requirements_utils._init_modules_to_packages_map()


@contextlib.contextmanager
def using_tracking_uri(uri: str):
    """Point MLflow's fluent API (log_model, register_model) at ``uri`` for a block, then
    restore exactly what was there. ``mlflow.set_tracking_uri`` also writes the
    MLFLOW_TRACKING_URI environment variable, which ``tracking_uri`` reads first: left behind,
    it would send every later run of the process to this store whatever its output_dir."""
    import mlflow
    from mlflow.tracking._tracking_service import utils as tracking_utils

    previous, env = tracking_utils._tracking_uri, os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)  # None unsets it again
        if env is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = env


def end_run(uri: str, run_id: str, status: str) -> None:
    _client(uri).set_terminated(run_id, status=status)


def ui_url(uri: str, experiment_id: str, run_id: str, host: str = "http://127.0.0.1:5000") -> str:
    """The run's page in the MLflow UI: on the tracking server itself (without any user:password
    of its URI: the link is printed and logged) or on ``impactflow ui``'s default address."""
    from urllib.parse import urlsplit, urlunsplit

    if uri.startswith("http"):
        parts = urlsplit(uri.rstrip("/"))
        base = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
    else:
        base = host
    return f"{base}/#/experiments/{experiment_id}/runs/{run_id}"


PREFLIGHT_TIMEOUT_S = 5.0
UNREACHABLE = (
    "MLflow tracking server {uri} is unreachable ({reason}); nothing was trained. Start it or fix MLFLOW_TRACKING_URI"
)


def public_uri(uri: str) -> str:
    """``uri`` without credentials (``http://***@host``), for anything shown or logged."""
    from impactflow.audits.report import redact_uri

    return redact_uri(uri)


def preflight(uri: str, timeout: float = PREFLIGHT_TIMEOUT_S) -> None:
    """Fail fast, before any training, when the tracking store cannot be reached.

    Choice (issue 9): a preflight check rather than buffered logging. MLflow's own HTTP client
    retries with exponential backoff (MLFLOW_HTTP_REQUEST_MAX_RETRIES, default 7: minutes of
    waiting) and buffering would hide a lost server until after training. An http(s) server is
    asked for ``/health`` (MLflow's liveness endpoint) with a short timeout; a database URI gets
    one cheap query. Raises ``TrackingError`` naming the URI without its credentials."""
    from impactflow.errors import TrackingError

    if uri.startswith(("http://", "https://")):
        import requests

        try:
            r = requests.get(f"{uri.rstrip('/')}/health", timeout=timeout)
        except requests.RequestException as exc:
            reason = type(exc).__name__
            raise TrackingError(UNREACHABLE.format(uri=public_uri(uri), reason=reason)) from None
        if r.status_code >= 500:
            raise TrackingError(UNREACHABLE.format(uri=public_uri(uri), reason=f"HTTP {r.status_code}"))
        return
    if uri.startswith(("sqlite:", "file:")) or "://" not in uri:
        return  # local store: created on first use
    try:
        # one connection attempt first: MLflow's own engine retries a dead database for ~100 s
        import sqlalchemy

        engine = sqlalchemy.create_engine(uri, pool_pre_ping=False)
        try:
            with engine.connect():
                pass
        finally:
            engine.dispose()
        _client(uri).search_experiments(max_results=1)
    except Exception as exc:  # SQLAlchemy OperationalError etc.: the server is down or refuses us
        reason = type(exc).__name__
        raise TrackingError(UNREACHABLE.format(uri=public_uri(uri), reason=reason)) from None
