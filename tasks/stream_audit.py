"""Tasks of the streamed audit-only path: a decision log too large for memory (a big file, a glob
or folder of Parquet files, a PostgreSQL query) aggregated in bounded chunks, then audited from
the aggregates (``impactflow.audits.aggregates``).

    source (checked: data_contracts.sources) -> per file: batches -> Aggregates + seeded sample
      -> merged in a fixed tree (local threads, or Dask tasks: the same numbers)
      -> GX suite on the sample + full-data checks (rows, nulls, label values) -> audits

The pass over the data writes nothing: it runs before the MLflow run is opened, so a killed or
refused audit leaves no run, no report and no half-written file, and a rerun starts from the
beginning (a 100M-row pass takes about a minute; see docs/audit-at-scale.md).
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
from prefect import task
from prefect.cache_policies import NONE

from impactflow.tasks import progress

ENGINES = ("auto", "memory", "stream", "dask")
SAMPLE_ROWS = 100_000
SAMPLE_SEED = 0


@dataclass(frozen=True)
class StreamSettings:
    """What every unit of work needs (pickled to Dask workers)."""

    label: str
    sensitive: tuple[str, ...]
    positive: str
    score: str | None
    prediction: str | None
    threshold: float
    score_kind: str
    max_levels: int
    max_cells: int
    sample_rows: int
    seed: int

    @property
    def columns(self) -> list[str]:
        return list(dict.fromkeys([self.label, *(c for c in (self.score, self.prediction) if c), *self.sensitive]))

    @property
    def text(self) -> list[str]:
        """Columns read as text (dictionary-encoded): the label, a hard prediction, the groups."""
        return list(dict.fromkeys([self.label, *([self.prediction] if self.prediction else []), *self.sensitive]))

    def aggregates(self):
        from impactflow.audits.aggregates import Aggregates

        return Aggregates(
            label=self.label,
            sensitive=list(self.sensitive),
            positive=self.positive,
            score=self.score,
            prediction=self.prediction,
            threshold=self.threshold,
            score_kind=self.score_kind,
            max_levels=self.max_levels,
            max_cells=self.max_cells,
        )


class Reservoir:
    """A uniform sample of at most ``k`` rows: every row draws a key from a generator seeded with
    (seed, unit), the ``k`` smallest keys are kept; merging keeps the ``k`` smallest of both, so
    the sample does not depend on how the units were scheduled."""

    def __init__(self, k: int, seed: int, unit: int) -> None:
        self.k = int(k)
        self.rng = np.random.default_rng([int(seed), int(unit)])
        self.keys = np.zeros(0)
        self.table = None

    def add(self, batch) -> None:
        import pyarrow as pa

        keys = self.rng.random(batch.num_rows)
        if self.k == 0:
            return
        if self.keys.size >= self.k:
            mask = keys < self.keys.max()
            if not mask.any():
                return
            batch, keys = batch.filter(pa.array(mask)), keys[mask]
        self._keep(keys, _decoded(pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch) else batch))

    def _keep(self, keys: np.ndarray, table) -> None:
        import pyarrow as pa

        if self.table is not None:
            table = pa.concat_tables([self.table, table.select(self.table.column_names).cast(self.table.schema)])
            keys = np.concatenate([self.keys, keys])
        if keys.size > self.k:
            idx = np.sort(np.argpartition(keys, self.k - 1)[: self.k])
            table, keys = table.take(pa.array(idx)), keys[idx]
        self.table, self.keys = table.combine_chunks(), keys

    def merge(self, other: Reservoir) -> Reservoir:
        if other.table is not None:
            self._keep(other.keys, other.table)
        return self

    def to_pandas(self):
        import pandas as pd

        if self.table is None:
            return pd.DataFrame()
        order = np.argsort(self.keys, kind="stable")
        return self.table.take(order).to_pandas()

    def __getstate__(self) -> dict:
        return {**self.__dict__, "rng": None}


def _decoded(table):
    """Dictionary columns as their values (samples of different files concatenate)."""
    import pyarrow as pa

    cols = []
    for col in table.columns:
        if pa.types.is_dictionary(col.type):
            col = col.cast(col.type.value_type)
        if pa.types.is_large_string(col.type):
            col = col.cast(pa.string())
        cols.append(col)
    return pa.table(cols, names=table.column_names)


def aggregate_unit(source, unit: int, settings: StreamSettings, on_rows: Callable[[int], None] | None = None):
    """(Aggregates, Reservoir) of one unit of work: ``source.units[unit]`` of a file source (a
    file's row groups, or a whole CSV file), or the whole query. The same function runs in a
    local thread and on a Dask worker."""
    from impactflow.data_contracts.sources import file_batches, query_batches

    agg = settings.aggregates()
    sample = Reservoir(settings.sample_rows, settings.seed, unit)
    if source.kind == "postgresql":
        batches, where = query_batches(source, settings.columns), "query result"
    else:
        batches = file_batches(source, unit, settings.columns, settings.text)
        where = source.files[source.units[unit][0]]
    for batch in batches:
        agg.add(batch, where)
        sample.add(batch)
        if on_rows is not None:
            on_rows(batch.num_rows)
    return agg, sample


def _merge_pair(a, b):
    return a[0].merge(b[0]), a[1].merge(b[1])


def fold(items, merge: Callable[[Any, Any], Any]):
    """Merge ``items`` (in order) along a fixed binary tree: a stack of (level, item) merged like a
    binary counter, then right to left. The tree depends on the count only, so floating-point sums
    come out identical whatever engine ran the leaves. Accepts an iterator (bounded memory)."""
    stack: list[tuple[int, Any]] = []
    for item in items:
        level = 0
        while stack and stack[-1][0] == level:
            _, left = stack.pop()
            item = merge(left, item)
            level += 1
        stack.append((level, item))
    if not stack:
        raise ValueError("nothing to merge")
    _, out = stack.pop()
    while stack:
        _, left = stack.pop()
        out = merge(left, out)
    return out


def _units(source) -> int:
    return 1 if source.kind == "postgresql" else len(source.units)


def run_local(source, settings: StreamSettings, on_rows=None, threads: int | None = None):
    """Every unit on a pool of threads (pyarrow and numpy release the GIL), at most ``threads`` in
    flight, results folded in unit order as they arrive."""
    n = _units(source)
    threads = max(1, min(threads or (os.cpu_count() or 1), n))
    lock = threading.Lock()

    def count(rows: int) -> None:
        if on_rows is not None:
            with lock:
                on_rows(rows)

    if threads == 1:
        return fold((aggregate_unit(source, i, settings, count) for i in range(n)), _merge_pair)
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="impactflow-stream") as pool:

        def ordered():
            pending = [pool.submit(aggregate_unit, source, i, settings, count) for i in range(min(threads, n))]
            nxt = len(pending)
            while pending:
                result = pending.pop(0).result()
                if nxt < n:
                    pending.append(pool.submit(aggregate_unit, source, nxt, settings, count))
                    nxt += 1
                yield result

        return fold(ordered(), _merge_pair)


def run_dask(source, settings: StreamSettings, address: str | None):
    """The same units as Dask tasks (one per file), merged along the same tree on the cluster;
    ``address``: a scheduler (``tcp://host:8786``), or None for Dask's local threads."""
    if source.kind == "postgresql":
        from impactflow.errors import ConfigError

        raise ConfigError("--engine dask reads files (Parquet or CSV); a database query runs with --engine stream")
    import dask

    leaves = [dask.delayed(aggregate_unit)(source, i, settings) for i in range(_units(source))]
    tree = fold(leaves, lambda a, b: dask.delayed(_merge_pair)(a, b))
    if address:
        from distributed import Client

        try:
            client = Client(address, timeout=20)
        except OSError as exc:
            from impactflow.errors import ConfigError

            raise ConfigError(f"--dask-address {address}: cannot connect ({exc})") from None
        with client:
            return client.compute(tree).result()
    return tree.compute(scheduler="threads")


@task(name="stream-aggregate", cache_policy=NONE)
def stream_aggregate(source, settings: StreamSettings, engine: str, dask_address: str | None) -> dict:
    """One pass over the source; returns the aggregates, the sample (pandas) and the timing."""
    progress.stage(f"aggregate {source.describe()} ({engine} engine)")
    started = time.perf_counter()
    if engine == "dask":
        agg, sample = run_dask(source, settings, dask_address)
    else:
        counter = progress.rows_callback("rows", source.n_rows)
        agg, sample = run_local(source, settings, counter)
        if counter is not None:
            counter(0, final=True)
    seconds = time.perf_counter() - started
    return {"aggregates": agg, "sample": sample.to_pandas(), "seconds": seconds}


def full_data_checks(agg, settings: StreamSettings, label_set: list) -> list:
    """The contract's checks counted over every row of the stream (the suite ran on the sample):
    non-null label and score/prediction, label (and prediction) values in the label's set, at
    least one row. ``FailedExpectation``s in the contract's form."""
    from impactflow.errors import FailedExpectation

    out = []
    if agg.rows == 0:
        out.append(FailedExpectation("expect_table_row_count_to_be_between", None, "at least 1 row (full data)", 0, 0))
    decision = settings.score or settings.prediction
    for col in (settings.label, decision):
        if agg.nulls.get(col):
            out.append(
                FailedExpectation(
                    "expect_column_values_to_not_be_null",
                    col,
                    "no missing values (full data)",
                    agg.nulls[col],
                    agg.rows,
                )
            )
    allowed = {str(v).strip() for v in label_set}
    for col, seen in ((settings.label, agg.label_values), (settings.prediction, agg.prediction_values)):
        if col is None:
            continue
        bad = {k: v for k, v in seen.items() if k not in allowed}
        if bad:
            out.append(
                FailedExpectation(
                    "expect_column_values_to_be_in_set",
                    col,
                    f"values in {sorted(allowed)} (full data)",
                    int(sum(bad.values())),
                    agg.rows,
                    tuple(sorted(bad, key=lambda k: -bad[k])[:5]),
                )
            )
    return out


def full_data_statistics(agg, sample_rows: int, seed: int, seconds: float, engine: str) -> dict:
    return {
        "checked_on": "a seeded uniform sample (GX suite) + full-data counts (rows, nulls, label values)",
        "sample": {"rows": int(sample_rows), "of": int(agg.rows), "seed": int(seed), "method": "uniform (reservoir)"},
        "full_data": {
            "rows": int(agg.rows),
            "nulls": {k: int(v) for k, v in agg.nulls.items()},
            "label_values": {str(k): int(v) for k, v in agg.label_values.items()},
            "groups": {c: len(levels) for c, levels in zip(agg.sensitive, agg.levels)},
            "cells": agg.n_cells,
            "score_range": [float(x) for x in agg.score_range] if np.isfinite(agg.score_range).all() else None,
            "engine": engine,
            "seconds": round(seconds, 3),
        },
    }


def stream_inputs(agg, sensitive: list[str], threshold: float, extra: dict):
    """``AuditInputs`` that carry the aggregates (no row arrays): the audits read them."""
    import pandas as pd

    from impactflow.audits import AuditInputs

    return AuditInputs(
        y_true=np.zeros(0, dtype=int),
        y_score=np.zeros(0),
        sensitive=pd.DataFrame({c: pd.Series([], dtype=object) for c in sensitive}),
        decision_threshold=0.5 if agg.hard else float(threshold),
        extra={**extra, "hard_predictions": agg.hard, "aggregates": agg},
    )


STREAM_SKIPPED = (
    "streamed audit: only the role columns are read, so there are no other columns to search; "
    "the by-group tables cover every group and intersection"
)


@task(name="audit-aggregates", cache_policy=NONE)
def audit_aggregates(
    agg,
    sensitive: list[str],
    threshold: float,
    thresholds: dict,
    extra: dict,
    settings: dict | None = None,
) -> dict:
    """Fairness (with its bootstrap CIs, from the confusion counts), performance and calibration by
    group from the aggregates, gated as ``audit_only.audit_predictions`` gates them; slices and
    proxies are skipped (``STREAM_SKIPPED``): a gate configured on them is not measured."""
    from impactflow.audits import AUDIT_ONLY_THRESHOLDS as known
    from impactflow.tasks.audit_only import audit_set, decisions_gate_counts

    progress.stage("audit the aggregates")
    inputs = stream_inputs(agg, sensitive, threshold, extra)
    conf = agg.overall()["conf"]
    gate = decisions_gate_counts(int(conf[:, 0].sum()), int(conf[:, 1].sum()), agg.hard)
    others = {
        name: (lambda name: lambda section: skipped(name, section, known[name]))(name) for name in ("slices", "proxies")
    }
    return audit_set(inputs, gate, not agg.hard, thresholds, settings, others)


def skipped(name: str, thresholds: dict | None, known: dict):
    """SKIPPED with ``STREAM_SKIPPED``, or, when gates were configured on it, not measured (fail
    closed: a gate asked for and not measured makes the run incomplete)."""
    from impactflow.audits.gating import not_run
    from impactflow.audits.results import AuditResult, Status

    if thresholds:
        return not_run(name, thresholds, known, STREAM_SKIPPED)
    return AuditResult(name=name, status=Status.SKIPPED, notes=[STREAM_SKIPPED])


def source_info(source, agg=None) -> dict:
    """The report's data info of a streamed source: each file's SHA-256 (the dataset digest is the
    file's, or, for several, the SHA-256 of their digests in order); a query has no file, so its
    digest covers the query (without credentials), the rows read and the audited aggregates."""
    import hashlib
    import json
    import re

    from impactflow.data_contracts.files import file_sha256
    from impactflow.data_contracts.sources import public_url

    base = {
        "license": "unknown (table supplied by the user)",
        "shipped": False,
        "source": source.describe(),
    }
    if source.kind == "files":
        files = [{"path": p, "sha256": file_sha256(Path(p))} for p in source.files]
        digest = (
            files[0]["sha256"]
            if len(files) == 1
            else hashlib.sha256("".join(f["sha256"] for f in files).encode()).hexdigest()
        )
        name = re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(source.data.rstrip("/")).name).strip("-.") or "data"
        return {**base, "contract": f"audit-only:{name}", "files": files, "dataset_sha256": digest}
    h = hashlib.sha256(json.dumps({"url": public_url(source.url), "query": source.query}).encode())
    if agg is not None:
        h.update(str(agg.rows).encode())
        for name in agg._arrays():
            h.update(np.ascontiguousarray(getattr(agg, name)[: agg.n_cells]).tobytes())
    return {
        **base,
        "contract": "audit-only:postgresql-query",
        "files": [],
        "dataset_sha256": h.hexdigest(),
        "digest_of": "the query (without credentials), the rows read and the audited aggregates: a query has no file",
    }


def streamed_label_values(agg, label: str, positive_label: str | None) -> tuple[list, Any]:
    """``predictions.label_values`` over every row's label values (the aggregates' counts)."""
    from impactflow.errors import DataError

    if positive_label is None:
        return [0, 1, "0", "1"], 1
    pos = str(positive_label).strip()
    if pos not in agg.label_values:
        shown = ", ".join(repr(k) for k in list(agg.label_values)[:6])
        raise DataError(f"column {label!r}: positive label {positive_label!r} does not occur (values: {shown})")
    others = sorted((k for k in agg.label_values if k != pos and k is not None), key=lambda k: -agg.label_values[k])
    return [pos, *others[:1]], pos


def check_streamed(streamed: dict, label, score, prediction, sensitive, positive_label, run_dir: str):
    """The predictions suite (GX) on the seeded sample, plus the full-data checks counted in the
    stream (``full_data_checks``); the result says which was done (statistics ``checked_on``,
    ``sample``, ``full_data``). Returns (validation, the positive label)."""
    from dataclasses import replace

    from impactflow.audits.aggregates import expit
    from impactflow.data_contracts.predictions import sensitive_as_text
    from impactflow.tasks.audit_only import check_predictions

    agg, settings = streamed["aggregates"], streamed["settings"]
    label_set, positive = streamed_label_values(agg, label, positive_label)
    sample = streamed["sample"]
    if score and settings.score_kind == "logit":  # the suite checks the probabilities the audit reads
        sample = sample.assign(**{score: expit(sample[score].to_numpy(dtype=float))})
    name = streamed["info"]["contract"].split(":", 1)[1]
    validation, _ = check_predictions(
        sensitive_as_text(sample, sensitive), name, label, score, prediction, sensitive, positive_label, 1, run_dir
    )
    extra = full_data_checks(agg, settings, label_set)
    n_checks = 4 + (prediction is not None)  # rows, two not-null, label values (+ prediction values)
    stats = {
        **validation.statistics,
        **full_data_statistics(agg, len(sample), settings.seed, streamed["seconds"], streamed["engine"]),
    }
    validation = replace(
        validation,
        success=validation.success and not extra,
        failures=[*validation.failures, *extra],
        total_expectations=validation.total_expectations + n_checks,
        statistics=stats,
    )
    return validation, positive


def stream_pass(
    data, query, table, label, score, prediction, sensitive, positive_label, threshold,
    score_kind, max_levels, max_cells, sample_rows, engine, dask_address,
) -> dict:  # fmt: skip
    """Check the source, then one pass over it (``stream_aggregate``); returns the aggregates, the
    seeded sample and the data info (file digests, or the query's). Writes nothing."""
    from impactflow.data_contracts.sources import resolve

    columns = list(dict.fromkeys([label, *(c for c in (score, prediction) if c), *sensitive]))
    source = resolve(str(data), columns, query, table)
    settings = StreamSettings(
        label=label,
        sensitive=tuple(sensitive),
        positive=str(positive_label).strip() if positive_label is not None else "1",
        score=score,
        prediction=prediction,
        threshold=float(threshold),
        score_kind=score_kind,
        max_levels=int(max_levels),
        max_cells=int(max_cells),
        sample_rows=int(sample_rows),
        seed=SAMPLE_SEED,
    )
    with ThreadPoolExecutor(max_workers=1) as pool:  # the files' SHA-256 beside the pass
        digests = pool.submit(source_info, source) if source.kind == "files" else None
        result = stream_aggregate(source, settings, engine, dask_address)
        info = digests.result() if digests is not None else source_info(source, result["aggregates"])
    info["n_rows"] = int(result["aggregates"].rows)
    if not info["n_rows"]:
        from impactflow.errors import DataError

        raise DataError(f"--data {source.describe()}: no rows")
    return {**result, "info": info, "settings": settings, "engine": engine, "source": source}
