"""Where a streamed audit reads its decision log: files (one CSV or Parquet file, a glob, or a
folder of Parquet files with hive partitions ``key=value/``) or a PostgreSQL query.

Everything that can be checked before a row is aggregated is checked here, so that bad input
is one ``DataError`` line and nothing has been written (``resolve``):

- a glob or folder that matches no file;
- a Parquet file whose footer cannot be read (each file's footer is read: it is metadata only);
- files whose role columns differ (a column missing from one, or of another type);
- a role column absent from the data;
- a query the server refuses (it is prepared with ``LIMIT 0`` first).

Reading is by Arrow record batches of ``BATCH_ROWS`` rows, one file at a time
(``file_batches``) or through a server-side cursor (``query_batches``): memory is bounded by the
batch, never by the table. Partition values of a hive folder become constant columns of the
file's batches, so a partition key can be a sensitive column. Credentials in a database URL
never leave this module (``public_url``).
"""

from __future__ import annotations

import glob
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from impactflow.errors import ConfigError, DataError

BATCH_ROWS = 1 << 20
UNIT_ROWS = 2 << 20  # rows per unit of work: consecutive row groups of one Parquet file
POSTGRES = ("postgresql://", "postgres://")
_GLOB = re.compile(r"[*?\[]")


@dataclass(frozen=True)
class FileSource:
    """Files of one format (``parquet`` or ``csv``), in a fixed (sorted) order."""

    data: str  # what was given
    files: tuple[str, ...]
    format: str
    partitions: tuple[dict[str, str], ...] = ()  # per file: hive partition key -> value
    n_rows: int | None = None  # known from the Parquet footers; None for CSV
    n_bytes: int = 0
    kind: str = "files"
    # units of work: (file index, its row groups; None: the whole file), in order
    units: tuple[tuple[int, tuple[int, ...] | None], ...] = ()

    def describe(self) -> str:
        what = f"{len(self.files)} {self.format.upper()} file{'s' if len(self.files) != 1 else ''}"
        return f"{self.data} ({what}, {self.n_bytes / 1e6:,.1f} MB)"


@dataclass(frozen=True)
class QuerySource:
    """A query on a PostgreSQL server (``url`` holds the credentials: never shown or logged)."""

    url: str = field(repr=False)
    query: str
    kind: str = "postgresql"
    n_rows: int | None = None

    def describe(self) -> str:
        return f"{public_url(self.url)}: {self.query}"


def public_url(url: str) -> str:
    """The URL without its password (``postgresql://user:***@host/db``)."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def without_password(url: str) -> tuple[str, str | None]:
    """(the URL without its password, the password, URL-decoded; None when it has none). The CLI
    moves a password given in ``--data`` into ``PGPASSWORD`` (libpq reads it), so that the URL
    that reaches Prefect's flow-run parameters, MLflow and the report carries none."""
    from urllib.parse import unquote

    m = re.match(r"^([a-z0-9+]+://[^:/@]+):([^@]*)@(.*)$", url)
    if m is None:
        return url, None
    return f"{m.group(1)}@{m.group(3)}", unquote(m.group(2))


def is_query(data: str) -> bool:
    return str(data).startswith(POSTGRES)


def resolve(data: str, columns: list[str], query: str | None = None, table: str | None = None):
    """The source of ``--data`` (with ``--query``/``--table`` for a database), checked as the
    module docstring says; ``columns``: the role columns every file must have."""
    if is_query(data):
        if (query is None) == (table is None):
            raise ConfigError("--data postgresql://…: give exactly one of --query 'SELECT …' or --table NAME")
        if table is not None:
            query = f"SELECT * FROM {_table_name(table)}"
        source = QuerySource(url=str(data), query=str(query).strip().rstrip(";"))
        _check_query(source, columns)
        return source
    if query is not None or table is not None:
        raise ConfigError("--query/--table read a database: give --data postgresql://USER@HOST/DB")
    files, base = _match(str(data))
    fmt = _format(files, data)
    if fmt == "parquet":
        return _check_parquet(str(data), files, base, columns)
    return _check_csv(str(data), files, columns)


def _table_name(table: str) -> str:
    parts = table.split(".")
    if not all(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_$]*", p) for p in parts) or len(parts) > 2:
        raise ConfigError(f"--table {table!r}: expected NAME or SCHEMA.NAME (letters, digits, _)")
    return ".".join(f'"{p}"' for p in parts)


def _match(data: str) -> tuple[list[Path], Path | None]:
    """(the files, the hive base folder when ``data`` is a folder)."""
    path = Path(data)
    if _GLOB.search(data):
        files = sorted(Path(p) for p in glob.glob(data, recursive=True) if Path(p).is_file())
        if not files:
            raise DataError(f"--data {data}: no file matches")
        return files, None
    if path.is_dir():
        files = sorted(
            p
            for p in path.rglob("*")
            if p.is_file()
            and not any(part.startswith((".", "_")) for part in p.relative_to(path).parts)
            and p.suffix.lower() in (".parquet", ".pq", ".csv", ".gz")
        )
        if not files:
            raise DataError(f"--data {data}: the folder holds no Parquet or CSV file")
        return files, path
    if not path.exists():
        raise DataError(f"--data {data}: no such file")
    if not path.is_file():
        raise DataError(f"--data {data}: not a regular file")
    return [path], None


def _format(files: list[Path], data: str) -> str:
    def fmt(p: Path) -> str:
        s = [x.lower() for x in p.suffixes]
        return "parquet" if ".parquet" in s or ".pq" in s else "csv"

    kinds = {fmt(p) for p in files}
    if len(kinds) > 1:
        first = next(p for p in files if fmt(p) == "parquet")
        other = next(p for p in files if fmt(p) == "csv")
        raise DataError(f"--data {data}: mixes Parquet ({first.name}) and CSV ({other.name}) files")
    return kinds.pop()


def _partition_values(path: Path, base: Path | None) -> dict[str, str]:
    if base is None:
        return {}
    out = {}
    for part in path.relative_to(base).parts[:-1]:
        if "=" in part:
            k, v = part.split("=", 1)
            out[k] = v
    return out


def _plain_type(t) -> str:
    import pyarrow as pa

    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_large_string(t):
        t = pa.string()
    return str(t)


def _check_parquet(data: str, files: list[Path], base: Path | None, columns: list[str]) -> FileSource:
    import pyarrow.parquet as pq

    first: dict[str, str] | None = None
    first_file = None
    n_rows = n_bytes = 0
    parts: list[dict[str, str]] = []
    units: list[tuple[int, tuple[int, ...] | None]] = []
    for p in files:
        try:
            meta = pq.ParquetFile(p).metadata
            schema = meta.schema.to_arrow_schema()
        except Exception as exc:  # noqa: BLE001 - pyarrow raises ArrowInvalid/OSError for corrupt files
            raise DataError(f"{p}: not a readable Parquet file ({_reason(exc)})") from None
        keys = _partition_values(p, base)
        have = {f.name: _plain_type(f.type) for f in schema}
        missing = [c for c in columns if c not in have and c not in keys]
        if missing:
            raise DataError(f"{p}: no column {missing[0]!r}" + (f" (it has {first_file.name}'s)" if first_file else ""))
        types = {c: have.get(c, "partition") for c in columns}
        if first is None:
            first, first_file = types, p
        else:
            for c in columns:
                if types[c] != first[c]:
                    raise DataError(
                        f"{p}: column {c!r} is {types[c]}, but {first[c]} in {first_file}: the files' schemas differ"
                    )
        n_rows += meta.num_rows
        n_bytes += p.stat().st_size
        parts.append(keys)
        units.extend((len(parts) - 1, groups) for groups in _row_group_units(meta))
    return FileSource(
        data=data,
        files=tuple(str(p) for p in files),
        format="parquet",
        partitions=tuple(parts),
        n_rows=n_rows,
        n_bytes=n_bytes,
        units=tuple(units),
    )


def _row_group_units(meta) -> list[tuple[int, ...]]:
    """A file's row groups cut into runs of about ``UNIT_ROWS`` rows (at least one group each), so
    that one big file is spread over threads or Dask workers too."""
    out, run, rows = [], [], 0
    for i in range(meta.num_row_groups):
        run.append(i)
        rows += meta.row_group(i).num_rows
        if rows >= UNIT_ROWS:
            out.append(tuple(run))
            run, rows = [], 0
    if run or not out:
        out.append(tuple(run))
    return out


def _check_csv(data: str, files: list[Path], columns: list[str]) -> FileSource:
    import pyarrow as pa
    import pyarrow.csv as pv

    first = None
    for p in files:
        try:
            with pv.open_csv(p, read_options=pv.ReadOptions(block_size=1 << 16)) as reader:
                names = reader.schema.names
        except (pa.ArrowInvalid, OSError) as exc:
            raise DataError(f"{p}: cannot be read as CSV ({_reason(exc)})") from None
        missing = [c for c in columns if c not in names]
        if missing:
            raise DataError(f"{p}: no column {missing[0]!r}")
        first = first or p
    return FileSource(
        data=data,
        files=tuple(str(p) for p in files),
        format="csv",
        partitions=tuple({} for _ in files),
        n_bytes=sum(p.stat().st_size for p in files),
        units=tuple((i, None) for i in range(len(files))),
    )


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]


def file_batches(
    source: FileSource, unit: int, columns: list[str], text: list[str], batch_rows: int = BATCH_ROWS
) -> Iterator[Any]:
    """The record batches of unit ``unit`` (``source.units``: a file's row groups, or a whole
    file) holding the role ``columns`` (``text``: read as text/dictionary, e.g. the label and
    group columns), partition values added as columns. DataError naming the file when a page
    cannot be decoded."""
    import pyarrow as pa

    index, groups = source.units[unit]
    path = source.files[index]
    keys = source.partitions[index] if source.partitions else {}
    own = [c for c in columns if c not in keys]
    try:
        if source.format == "parquet":
            import pyarrow.parquet as pq

            pf = pq.ParquetFile(path, read_dictionary=[c for c in text if c in own])
            batches = pf.iter_batches(batch_size=batch_rows, row_groups=groups, columns=own, use_threads=True)
        else:
            import pyarrow.csv as pv

            reader = pv.open_csv(
                path,
                read_options=pv.ReadOptions(block_size=32 << 20),
                convert_options=pv.ConvertOptions(
                    include_columns=own, column_types={c: pa.string() for c in text if c in own}
                ),
            )
            batches = iter(reader)
        for batch in batches:
            for k, v in keys.items():
                if k in columns:
                    batch = batch.append_column(k, pa.array([v] * batch.num_rows, pa.string()).dictionary_encode())
            yield batch
    except (pa.ArrowInvalid, pa.ArrowException, OSError) as exc:
        raise DataError(f"{path}: cannot be read ({_reason(exc)})") from None


# ------------------------------------------------------------------------------ PostgreSQL


def _connect(url: str):
    try:
        import psycopg2
    except ImportError:  # pragma: no cover - psycopg2-binary is a dependency
        raise ConfigError("--data postgresql://…: needs psycopg2 (pip install psycopg2-binary)") from None
    try:
        return psycopg2.connect(url, connect_timeout=10)
    except psycopg2.Error as exc:
        raise DataError(f"--data {public_url(url)}: cannot connect ({_reason(exc)})") from None


def _check_query(source: QuerySource, columns: list[str]) -> None:
    import psycopg2

    conn = _connect(source.url)
    try:
        with conn.cursor() as cur:
            cur.execute(f"SELECT * FROM ({source.query}) AS impactflow_q LIMIT 0")
            names = [d[0] for d in cur.description]
    except psycopg2.Error as exc:
        raise DataError(f"--query: the server refused it ({_reason(exc)})") from None
    finally:
        conn.close()
    missing = [c for c in columns if c not in names]
    if missing:
        raise DataError(f"--query: the result has no column {missing[0]!r} (it has {', '.join(names[:12])})")


def query_batches(source: QuerySource, columns: list[str], batch_rows: int = 200_000) -> Iterator[Any]:
    """The query's role columns as record batches, through a server-side cursor."""
    import psycopg2
    import pyarrow as pa

    cols = ", ".join('"' + c.replace('"', '""') + '"' for c in columns)
    conn = _connect(source.url)
    try:
        with conn.cursor(name="impactflow_audit") as cur:
            cur.itersize = batch_rows
            cur.execute(f"SELECT {cols} FROM ({source.query}) AS impactflow_q")
            while True:
                rows = cur.fetchmany(batch_rows)
                if not rows:
                    break
                values = list(zip(*rows))
                yield pa.table({c: pa.array(list(v), from_pandas=True) for c, v in zip(columns, values)})
    except psycopg2.Error as exc:
        raise DataError(f"--query: failed while reading ({_reason(exc)})") from None
    finally:
        conn.close()
