"""Declarative contracts: how to read a file, what its columns hold, columns derived without code,
and the Great Expectations suite generated from those declarations.

A ``contract.yaml`` that declares ``read:`` (instead of a registered ``loader:``) and a mapping
under ``columns:`` is read by the generic loader (pandas/pyarrow) and validated by a suite built
here (``generate_suite``); a hand-written ``suite:`` file is optional and merged into it. The
reference of every key is docs/own-data.md. Parsing problems are ``ConfigError`` lines naming the
contract file, the key and the value (``BAD_KEY``).

Import-light (stdlib only at import time), like the rest of ``data_contracts``.
"""

from __future__ import annotations

import difflib
import functools
import html
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from impactflow.errors import ConfigError, DataError

if TYPE_CHECKING:
    import pandas as pd

    from impactflow.data_contracts import Contract

BAD_KEY = "Contract file {path}: {key}: {problem}"
TYPES = ("category", "integer", "number", "text")
FORMATS = ("csv", "tsv", "parquet")
NUMERIC_TYPES = ("int8", "int16", "int32", "int64", "float32", "float64", "int", "float")
TEXT_TYPES = ("str", "object")
READ_KEYS = ("format", "delimiter", "header", "na_values", "encoding", "skip_initial_space", "comment")
COLUMN_KEYS = ("type", "values", "min", "max", "strict_min", "strict_max", "max_missing", "description")
DERIVED_KEYS = ("from", "bins", "labels", "map", "default", "description")


class _Keep:
    """The default of a map: an unmapped value stays as it is (a stable repr: it is part of the
    validation cache key, data_contracts.validation_cache)."""

    def __repr__(self) -> str:
        return "keep"

    def __reduce__(self) -> str:
        return "_KEEP"


_KEEP = _Keep()


def did_you_mean(word: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(str(word), [str(k) for k in known], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(known)})"


@dataclass(frozen=True)
class ReadSpec:
    """``read:`` of a contract: how the generic loader reads each data file."""

    format: str = "csv"
    delimiter: str = ","
    header: bool | str = True  # True, False (names from `columns:` in order) or "auto"
    na_values: tuple[str, ...] = ("",)
    encoding: str = "utf-8"
    skip_initial_space: bool = False
    comment: str | None = None  # lines starting with this are skipped


@dataclass(frozen=True)
class ColumnSpec:
    """One declared column (``columns.<name>`` or a derived column)."""

    name: str
    type: str  # one of TYPES
    values: tuple[Any, ...] | None = None  # allowed categories (category columns)
    min: float | None = None
    max: float | None = None
    strict_min: bool = False
    strict_max: bool = False
    max_missing: float = 0.0  # share of missing values allowed (0: never missing)
    description: str = ""
    derived: bool = False


@dataclass(frozen=True)
class DerivedSpec:
    """``derived.<name>``: a column computed after loading, before validation (no code)."""

    name: str
    source: str
    bins: tuple[float, ...] = ()  # ascending edges; bin i = [edge[i-1], edge[i]) (right-open)
    labels: tuple[str, ...] = ()
    mapping: tuple[tuple[Any, Any], ...] = ()
    default: Any = _KEEP
    description: str = ""

    @property
    def values(self) -> tuple[Any, ...]:
        """The values this column can take (the domain its suite checks)."""
        if self.bins:
            return self.labels
        out = list(dict.fromkeys(str(v) for _, v in self.mapping))
        if self.default is not _KEEP and self.default is not None and str(self.default) not in out:
            out.append(str(self.default))
        return tuple(out)


# --------------------------------------------------------------------------- parsing


class _Where:
    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, key: str, problem: str) -> ConfigError:
        return ConfigError(BAD_KEY.format(path=self.path, key=key, problem=problem))


BOOL_HINT = ' (YAML reads yes/no/on/off/true/false as booleans: quote the value, e.g. "yes")'


def no_booleans(values: Any, key: str, where: _Where) -> None:
    """Refuse a YAML boolean where a label or category is meant (``values: [yes, no]``)."""
    items = values if isinstance(values, (list, tuple)) else [values]
    bad = [v for v in items if isinstance(v, bool)]
    if bad:
        raise where.fail(key, f"{bad[0]!r} is a boolean{BOOL_HINT}")


def _mapping(value: Any, key: str, where: _Where) -> dict:
    if not isinstance(value, dict):
        raise where.fail(key, f"expected a mapping, got {value!r}")
    return value


def _unknown(raw: dict, known: Sequence[str], key: str, where: _Where) -> None:
    for k in raw:
        if k not in known:
            raise where.fail(f"{key}.{k}" if key else str(k), f"unknown key{did_you_mean(k, known)}")


def _bool(value: Any, key: str, where: _Where) -> bool:
    if not isinstance(value, bool):
        raise where.fail(key, f"expected true or false, got {value!r}")
    return value


def _number(value: Any, key: str, where: _Where) -> float | int:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or (isinstance(value, float) and math.isnan(value))
    ):
        raise where.fail(key, f"expected a number, got {value!r}")
    return value


def parse_read(raw: Any, where: _Where) -> ReadSpec:
    raw = _mapping(raw, "read", where)
    _unknown(raw, READ_KEYS, "read", where)
    fmt = raw.get("format", "csv")
    if fmt not in FORMATS:
        raise where.fail("read.format", f"{fmt!r} is not a known format{did_you_mean(str(fmt), FORMATS)}")
    delimiter = raw.get("delimiter", "\t" if fmt == "tsv" else ",")
    if not isinstance(delimiter, str) or len(delimiter) != 1:
        raise where.fail("read.delimiter", f"expected one character, got {delimiter!r}")
    header = raw.get("header", True)
    if header not in (True, False, "auto"):
        raise where.fail("read.header", f"expected true, false or auto, got {header!r}")
    na = raw.get("na_values", [""])
    if isinstance(na, str):
        na = [na]
    if not isinstance(na, list) or not all(isinstance(t, (str, int, float)) and not isinstance(t, bool) for t in na):
        raise where.fail("read.na_values", f"expected a list of tokens, got {na!r}")
    encoding = raw.get("encoding", "utf-8")
    import codecs

    try:
        codecs.lookup(str(encoding))
    except LookupError:
        raise where.fail("read.encoding", f"unknown encoding {encoding!r}") from None
    comment = raw.get("comment")
    if comment is not None and (not isinstance(comment, str) or not comment):
        raise where.fail("read.comment", f"expected a line prefix such as '#', got {comment!r}")
    if fmt == "parquet":
        for k in ("delimiter", "header", "na_values", "encoding", "skip_initial_space", "comment"):
            if k in raw:
                raise where.fail(f"read.{k}", "does not apply to format parquet (its columns are named and typed)")
    return ReadSpec(
        format=fmt,
        delimiter=delimiter,
        header=header,
        na_values=tuple(str(t) for t in na),
        encoding=str(encoding),
        skip_initial_space=_bool(raw.get("skip_initial_space", False), "read.skip_initial_space", where),
        comment=comment,
    )


def parse_column(name: str, raw: Any, where: _Where) -> ColumnSpec:
    key = f"columns.{name}"
    if isinstance(raw, str):  # shorthand: `age: integer`
        raw = {"type": raw}
    raw = _mapping(raw, key, where)
    _unknown(raw, COLUMN_KEYS, key, where)
    if "type" not in raw:
        raise where.fail(f"{key}.type", f"missing (one of: {', '.join(TYPES)})")
    ctype = raw["type"]
    if ctype not in TYPES:
        raise where.fail(f"{key}.type", f"{ctype!r} is not a known type{did_you_mean(str(ctype), TYPES)}")
    values = raw.get("values")
    if values is not None:
        if ctype != "category":
            raise where.fail(f"{key}.values", f"only a category column has allowed values (type is {ctype})")
        if not isinstance(values, list):
            raise where.fail(f"{key}.values", f"expected a list of allowed values, got {values!r}")
        if not values:
            raise where.fail(f"{key}.values", "empty list: a category needs at least one allowed value")
        if any(v is None or isinstance(v, (dict, list)) for v in values):
            raise where.fail(f"{key}.values", f"expected plain values, got {values!r}")
        no_booleans(values, f"{key}.values", where)
        values = tuple(dict.fromkeys(str(v) for v in values))
    bounds = {}
    for b in ("min", "max"):
        if raw.get(b) is not None:
            if ctype not in ("integer", "number"):
                raise where.fail(f"{key}.{b}", f"only a numeric column has a range (type is {ctype})")
            bounds[b] = _number(raw[b], f"{key}.{b}", where)
    if "min" in bounds and "max" in bounds and bounds["min"] > bounds["max"]:
        raise where.fail(f"{key}.min", f"{bounds['min']!r} is greater than max {bounds['max']!r}")
    max_missing = raw.get("max_missing", 0)
    _number(max_missing, f"{key}.max_missing", where)
    if not 0 <= max_missing <= 1:
        raise where.fail(f"{key}.max_missing", f"expected a share in [0, 1], got {max_missing!r}")
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise where.fail(f"{key}.description", f"expected text, got {description!r}")
    return ColumnSpec(
        name=name,
        type=ctype,
        values=values,
        min=bounds.get("min"),
        max=bounds.get("max"),
        strict_min=_bool(raw.get("strict_min", False), f"{key}.strict_min", where),
        strict_max=_bool(raw.get("strict_max", False), f"{key}.strict_max", where),
        max_missing=float(max_missing),
        description=description,
    )


def _bin_labels(edges: Sequence[float]) -> tuple[str, ...]:
    def fmt(x: float) -> str:
        return str(int(x)) if float(x).is_integer() else str(x)

    labels = [f"<{fmt(edges[0])}"]
    labels += [f"{fmt(a)}-<{fmt(b)}" for a, b in zip(edges, edges[1:])]
    labels.append(f"{fmt(edges[-1])}+")
    return tuple(labels)


def parse_derived(name: str, raw: Any, known: Mapping[str, ColumnSpec], where: _Where) -> DerivedSpec:
    key = f"derived.{name}"
    raw = _mapping(raw, key, where)
    _unknown(raw, DERIVED_KEYS, key, where)
    source = raw.get("from")
    if source is None:
        raise where.fail(f"{key}.from", "missing: name the column it is built from")
    if str(source) not in known:
        raise where.fail(f"{key}.from", f"{source!r} is not a declared column{did_you_mean(str(source), list(known))}")
    source = str(source)
    has_bins, has_map = "bins" in raw, "map" in raw
    if has_bins == has_map:
        raise where.fail(key, "give exactly one of bins (edges) or map (value -> value)")
    description = str(raw.get("description", ""))
    if has_bins:
        if known[source].type not in ("integer", "number"):
            raise where.fail(f"{key}.bins", f"binning needs a numeric column; {source!r} is {known[source].type}")
        edges = raw["bins"]
        if not isinstance(edges, list) or not edges:
            raise where.fail(f"{key}.bins", f"expected a non-empty list of ascending edges, got {edges!r}")
        edges = [_number(e, f"{key}.bins", where) for e in edges]
        if any(b <= a for a, b in zip(edges, edges[1:])):
            raise where.fail(f"{key}.bins", f"edges must be strictly ascending, got {edges!r}")
        labels = raw.get("labels")
        if labels is None:
            labels = _bin_labels(edges)
        elif not isinstance(labels, list) or len(labels) != len(edges) + 1:
            raise where.fail(
                f"{key}.labels", f"expected {len(edges) + 1} labels for {len(edges)} edge(s), got {labels!r}"
            )
        no_booleans(labels, f"{key}.labels", where)
        labels = tuple(str(x) for x in labels)
        if len(set(labels)) != len(labels):
            raise where.fail(f"{key}.labels", f"labels must differ, got {list(labels)!r}")
        if "default" in raw:
            raise where.fail(f"{key}.default", "only a map has a default")
        return DerivedSpec(name=name, source=source, bins=tuple(edges), labels=labels, description=description)
    mapping = raw["map"]
    if not isinstance(mapping, dict) or not mapping:
        raise where.fail(f"{key}.map", f"expected a non-empty mapping of value -> value, got {mapping!r}")
    no_booleans(list(mapping), f"{key}.map", where)
    no_booleans(list(mapping.values()), f"{key}.map", where)
    if any(v is None or isinstance(v, (dict, list)) for v in mapping.values()):
        raise where.fail(f"{key}.map", "every value maps to a plain value (use max_missing elsewhere for gaps)")
    if "labels" in raw:
        raise where.fail(f"{key}.labels", "only bins have labels")
    default = raw.get("default", _KEEP)
    pairs = tuple((str(k), str(v)) for k, v in mapping.items())
    return DerivedSpec(name=name, source=source, mapping=pairs, default=default, description=description)


# --------------------------------------------------------------------------- loading


def read_files(
    read: ReadSpec, columns: tuple[str, ...], text_columns: tuple[str, ...], paths: Sequence[Path | str]
) -> "pd.DataFrame":
    """The generic loader: every file read as ``read`` says, concatenated in order."""
    from impactflow.data_contracts.files import check_input_file, concat_frames, read_delimited, read_parquet

    paths = [Path(p) for p in paths]
    if not paths:
        raise DataError("no data files given (set data.path or the contract's default_files)")
    frames = []
    for p in paths:
        check_input_file(p, None)  # a FIFO, socket or folder: one clear line, nothing read
        if read.format == "parquet":
            frames.append(read_parquet(p, text_columns))
        else:
            frames.append(
                read_delimited(
                    p,
                    columns,
                    delimiter=read.delimiter,
                    header=read.header,
                    na_values=read.na_values,
                    encoding=read.encoding,
                    skip_initial_space=read.skip_initial_space,
                    comment=read.comment,
                    text_columns=text_columns,
                )
            )
    return concat_frames(frames, paths)


def generic_loader(read: ReadSpec, columns: tuple[str, ...], text_columns: tuple[str, ...]):
    """A loader (``paths -> DataFrame``) for ``Contract.loader``."""
    return functools.partial(read_files, read, columns, text_columns)


def apply_derived(df: "pd.DataFrame", derived: Sequence[DerivedSpec]) -> "pd.DataFrame":
    """Add (or replace) the derived columns, in declaration order. A source column absent from
    the frame is left to the contract's column check (the derived column is then absent too)."""
    import numpy as np
    import pandas as pd

    if not derived:
        return df
    df = df.copy()
    for d in derived:
        if d.source not in df.columns:
            continue
        s = df[d.source]
        if d.bins:
            numeric = pd.to_numeric(s, errors="coerce")
            codes = np.searchsorted(np.asarray(d.bins, dtype=float), numeric.to_numpy(dtype=float), side="right")
            out = pd.Series(np.asarray(d.labels, dtype=object)[codes], index=df.index, dtype=object)
            out = out.where(numeric.notna(), None)  # a missing (or non-numeric) source stays missing
            text = True
        else:
            table = dict(d.mapping)

            def one(v: Any, table: dict = table, default: Any = d.default) -> Any:
                key = str(v)
                if isinstance(v, float) and v.is_integer() and key not in table:
                    key = str(int(v))  # an integer code in a column with gaps reads as 1.0
                if key in table:
                    return table[key]
                return v if default is _KEEP else default

            # each distinct value once (a category has few), then a vectorised look-up
            lookup = {v: one(v) for v in s.dropna().unique()}
            out = s.astype(object).map(lookup)
            text = all(isinstance(v, str) for v in lookup.values())
        df[d.name] = out.astype("str") if text else out
    return df


# --------------------------------------------------------------------------- the generated suite


def _meta(spec: ColumnSpec, default: str) -> dict[str, Any]:
    return {"notes": spec.description or default, "generated_from": f"contract: {spec.name}"}


def generate_suite(contract: "Contract") -> dict[str, Any]:
    """The GX 1.x suite (JSON dict) the contract's declarations imply: the exact set of
    columns, at least one row, each declared column's type, missing values (``max_missing``),
    allowed categories and numeric range; both labels present; every sensitive group present
    with at least ``min_group_size`` rows (one row-conditioned row count each, tagged
    ``meta.impactflow_check = "min_group_count"``, as ``validation.load_suite`` requires)."""
    specs = {s.name: s for s in contract.declarations}
    exps: list[dict[str, Any]] = [
        {
            "type": "expect_table_columns_to_match_set",
            "kwargs": {"column_set": list(specs), "exact_match": True},
            "meta": {"notes": "The declared columns (and the derived ones), no more, no fewer."},
        },
        {
            "type": "expect_table_row_count_to_be_between",
            "kwargs": {"min_value": 1},
            "meta": {"notes": "An empty table cannot be trained on or audited."},
        },
    ]
    for s in specs.values():
        if s.derived:
            continue
        numeric = s.type in ("integer", "number")
        exps.append(
            {
                "type": "expect_column_values_to_be_in_type_list",
                "kwargs": {"column": s.name, "type_list": list(NUMERIC_TYPES if numeric else TEXT_TYPES)},
                "description": (
                    f"{'numeric' if numeric else 'text'} values, as declared by columns.{s.name}.type: "
                    f"{s.type}" + (f" in {contract.contract_path}" if contract.contract_path else "")
                ),
                "meta": _meta(s, f"`{s.name}` is declared `type: {s.type}` in the contract."),
            }
        )
    for s in specs.values():
        if s.max_missing >= 1:
            continue
        kw: dict[str, Any] = {"column": s.name}
        if s.max_missing > 0:
            kw["mostly"] = round(1 - s.max_missing, 10)
        exps.append(
            {
                "type": "expect_column_values_to_not_be_null",
                "kwargs": kw,
                "meta": _meta(s, f"`{s.name}`: at most {s.max_missing:.0%} missing (max_missing)."),
            }
        )
    for s in specs.values():
        if s.values is not None:
            exps.append(
                {
                    "type": "expect_column_values_to_be_in_set",
                    "kwargs": {"column": s.name, "value_set": list(s.values)},
                    "meta": _meta(s, f"Allowed `{s.name}` values, as declared in the contract."),
                }
            )
    if contract.labels and contract.target in specs:
        exps.append(
            {
                "type": "expect_column_distinct_values_to_contain_set",
                "kwargs": {"column": contract.target, "value_set": list(contract.labels)},
                "meta": {
                    "notes": "Every label must be present to train a classifier and to compute error rates per group."
                },
            }
        )
    for s in specs.values():
        if s.min is None and s.max is None:
            continue
        kw = {"column": s.name}
        for bound, strict in (("min", s.strict_min), ("max", s.strict_max)):
            value = getattr(s, bound)
            if value is not None:
                kw[f"{bound}_value"] = value
                if strict:
                    kw[f"strict_{bound}"] = True
        exps.append(
            {
                "type": "expect_column_values_to_be_between",
                "kwargs": kw,
                "meta": _meta(s, f"Declared range of `{s.name}`."),
            }
        )
    for col in contract.sensitive:
        values = list(specs[col].values or ()) if col in specs else []
        exps.append(
            {
                "type": "expect_column_distinct_values_to_contain_set",
                "kwargs": {"column": col, "value_set": values},
                "meta": {
                    "notes": f"Every declared `{col}` group must be present, or the fairness audit "
                    "would silently skip it."
                },
            }
        )
        for v in values:
            exps.append(
                {
                    "type": "expect_table_row_count_to_be_between",
                    # GX renders descriptions as HTML: the column and value are data, escaped here
                    # (validation._failure unescapes them for messages)
                    "description": f"Sensitive group {html.escape(str(col))} == {html.escape(str(v))}: "
                    f"at least {contract.min_group_size} rows",
                    "kwargs": {
                        "min_value": int(contract.min_group_size),
                        "row_condition": {
                            "type": "comparison",
                            "column": {"name": col},
                            "operator": "==",
                            "parameter": v,
                        },
                    },
                    "meta": {
                        "impactflow_check": "min_group_count",
                        "group": {"column": col, "value": v},
                        "notes": f"Sensitive group {col} == {v!r} needs at least {contract.min_group_size} "
                        "rows (min_group_size) for its rates to be reported.",
                    },
                }
            )
    return {
        "name": contract.name,
        "expectations": exps,
        "meta": {"notes": f"Generated by impactflow from the declarations of contract {contract.name!r}."},
    }


def merge_suites(generated: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """The generated suite plus the hand-written expectations that are not already in it."""
    import json

    seen = {
        json.dumps({"type": e.get("type"), "kwargs": e.get("kwargs")}, sort_keys=True, default=str)
        for e in generated["expectations"]
    }
    added = [
        e
        for e in extra.get("expectations", [])
        if json.dumps({"type": e.get("type"), "kwargs": e.get("kwargs")}, sort_keys=True, default=str) not in seen
    ]
    return {**generated, "expectations": [*generated["expectations"], *added]}
