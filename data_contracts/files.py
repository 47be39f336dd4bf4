"""Reading UCI-style comma-separated files (plain or gzip) and hashing data files.

Generic helpers shared by the dataset loaders (e.g. ``impactflow.data_contracts.adult``). Every problem a
user can cause (missing, empty, truncated, undecodable, ragged file) raises ``DataError`` with a
short message naming the file. Values are parsed exactly as pandas infers them: a stray text value
in a numeric column leaves that column as text, for the contract to report.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import re
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

from impactflow.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

GZIP_MAGIC = b"\x1f\x8b"
MISSING_FILE = "{path}: file not found"
NOT_REGULAR = (
    "{path}: not a regular file ({kind}); give a file on disk (the table is read, then hashed "
    "for the evidence: a stream cannot be read twice)"
)
TOO_LARGE = (
    "{path}: {size:,} bytes is more than the input limit of {limit:,} bytes; raise it with {option} "
    "if the machine has the memory (reading takes several times the file's size)"
)
NO_ROWS = "{path}: no data rows"
BAD_GZIP = "{path}: truncated or corrupt gzip file ({reason})"
NOT_TEXT = "{path}: not UTF-8 text (undecodable byte 0x{byte:02x} at offset {offset})"
WRONG_FIELDS = "{path}: expected {expected} fields, line {line} has {got}"
UNPARSABLE = "{path}: cannot be parsed as CSV ({reason})"
COLUMNS_DIFFER = "{path}: its {got} column(s) differ from the first file's {expected} (first difference: column {at})"
_CHUNK = 1 << 20


def _file_kind(mode: int) -> str:
    import stat

    for test, kind in (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if test(mode):
            return kind
    return "not a regular file"


_QUOTED = re.compile(r"'[^'\n]*'|\"[^\"\n]*\"")
_MAX_REASON = 160
_TOKEN = re.compile(r"^['\"](?:<[a-z ]+>|[^\w\s]{1,3})['\"]$")  # PyYAML's '<document start>', ':'


def _elide(match: "re.Match[str]") -> str:
    return match.group(0) if _TOKEN.match(match.group(0)) else "'…'"


def parse_reason(exc: BaseException) -> str:
    """Why a file could not be parsed, without quoting the file (issue 28): a file given by
    mistake (a symlink to a credentials file, say) must not reach errors, MLflow tags or the
    Prefect database through a parser's message. YAML errors give their problem and position
    (``line 2, column 1``), never the snippet PyYAML prints; other messages keep their first
    line with anything in quotes replaced by ``'…'`` (pandas and the csv module name counts and
    line numbers, e.g. ``Expected 15 fields in line 3, saw 16``); too long: the type only."""
    mark = getattr(exc, "problem_mark", None)
    if mark is not None:  # yaml.MarkedYAMLError
        problem = _QUOTED.sub(_elide, str(getattr(exc, "problem", None) or type(exc).__name__))
        return f"{problem} at line {mark.line + 1}, column {mark.column + 1}"
    first = (str(exc).strip().splitlines() or [""])[0]
    first = _QUOTED.sub(_elide, first)
    if not first or len(first) > _MAX_REASON:
        return type(exc).__name__
    return first


def _check_file(path: Path) -> int:
    """The size of ``path``, a regular file (a symlink to one counts); DataError otherwise:
    "file not found" only when nothing is there, "not a regular file (a FIFO ...)" otherwise."""
    import stat

    try:
        st = path.stat()
    except FileNotFoundError:
        raise DataError(MISSING_FILE.format(path=path)) from None
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if not stat.S_ISREG(st.st_mode):
        raise DataError(NOT_REGULAR.format(path=path, kind=_file_kind(st.st_mode)))
    return st.st_size


def check_input_file(path: Path | str, max_bytes: int | None, option: str = "--max-input-bytes") -> int:
    """Refuse, before reading a byte, an input that is not a regular file or is larger than
    ``max_bytes`` (None or 0: no limit); returns its size. Loading a table takes several times
    its size in memory (a 2 GB CSV peaked at 15 GB), so a cap refuses what would exhaust it."""
    path = Path(path)
    size = _check_file(path)
    if max_bytes and size > max_bytes:
        raise DataError(TOO_LARGE.format(path=path, size=size, limit=int(max_bytes), option=option))
    return size


def _is_gzip(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(2) == GZIP_MAGIC


def read_bytes(path: Path) -> bytes:
    """The file's uncompressed bytes (gzip detected by its magic bytes, not the suffix)."""
    path = Path(path)
    _check_file(path)
    raw = path.read_bytes()
    if raw[:2] != GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as exc:
        raise DataError(BAD_GZIP.format(path=path, reason=exc)) from None


def _iter_chunks(path: Path) -> Iterable[bytes]:
    path = Path(path)
    _check_file(path)
    opener = gzip.open if _is_gzip(path) else open
    try:
        with opener(path, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                yield chunk
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise DataError(BAD_GZIP.format(path=path, reason=exc)) from None


def file_sha256(path: Path | str) -> str:
    """Hex SHA-256 of one file's *uncompressed* bytes (so ``x.gz`` hashes like ``x``)."""
    h = hashlib.sha256()
    for chunk in _iter_chunks(Path(path)):
        h.update(chunk)
    return h.hexdigest()


def sha256_files(paths: Sequence[Path | str]) -> str:
    """Hex SHA-256 of the dataset: one digest over the uncompressed bytes of ``paths``,
    concatenated in the given order (not a hash of per-file hashes). The order matters;
    gzip or plain storage does not."""
    h = hashlib.sha256()
    for p in paths:
        for chunk in _iter_chunks(Path(p)):
            h.update(chunk)
    return h.hexdigest()


def sha256_per_file(paths: Sequence[Path | str]) -> dict[str, str]:
    """``{str(path): file_sha256(path)}`` for each file, in order."""
    return {str(p): file_sha256(p) for p in paths}


def _decode(path: Path, raw: bytes, encoding: str = "utf-8") -> str:
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as exc:
        if encoding.replace("-", "").replace("_", "").lower() == "utf8":
            raise DataError(NOT_TEXT.format(path=path, byte=raw[exc.start], offset=exc.start)) from None
        raise DataError(
            f"{path}: not {encoding} text (undecodable byte 0x{raw[exc.start]:02x} at offset {exc.start})"
        ) from None


def read_uci_csv(path: Path | str, columns: Sequence[str], label: str | None = None) -> pd.DataFrame:
    """Read one UCI-format file into a frame with ``columns`` (in file order).

    UCI format: comma-separated, no header, a space after each comma, ``?`` for missing
    values; a first line starting with ``|`` (adult.test) and blank lines are skipped. A file
    whose first row looks like a header (first field ``columns[0]``, or at least half of its
    fields are column names) is read as a CSV *with* a header row instead (e.g. an export of a
    loaded frame); its columns are kept as they are, in its order, for the contract to check.
    Empty fields and ``?`` become NaN. The trailing ``.`` of ``label`` values is removed.
    """
    df = read_delimited(
        path,
        columns,
        delimiter=",",
        header="auto",
        na_values=("?", ""),
        skip_initial_space=True,
        comment="|",
        comment_first_line_only=True,
    )
    if label is not None and label in df.columns:
        df[label] = (
            df[label].map(lambda v: v[:-1] if isinstance(v, str) and v.endswith(".") else v).astype(df[label].dtype)
        )
    return df


def read_delimited(
    path: Path | str,
    columns: Sequence[str],
    *,
    delimiter: str = ",",
    header: bool | str = True,
    na_values: Sequence[str] = ("",),
    encoding: str = "utf-8",
    skip_initial_space: bool = False,
    comment: str | None = None,
    comment_first_line_only: bool = False,
    text_columns: Sequence[str] = (),
) -> pd.DataFrame:
    """Read one delimited text file (plain or gzip) with pandas.

    ``header``: True = the first row names the columns (kept as they are, for the contract to
    check); False = no header row, ``columns`` are the names in file order; ``"auto"`` = a header
    row when the first row looks like one (its first field is ``columns[0]`` or at least half of
    its fields are column names). Lines starting with ``comment`` (only line 1 with
    ``comment_first_line_only``) and blank lines are skipped. ``na_values`` are the only tokens read
    as missing (``NA`` or ``null`` stay values unless listed). ``text_columns`` are read as text
    (declared categories: ``1`` stays ``"1"``); other columns are inferred by pandas, so a stray text
    value in a numeric column leaves it as text, for the contract to report. Every problem
    (missing, empty, undecodable, ragged file) is a ``DataError`` naming the file."""
    import pandas as pd

    path = Path(path)
    text = _decode(path, read_bytes(path), encoding)
    lines = text.splitlines()
    numbered = [
        (i, line)
        for i, line in enumerate(lines, start=1)
        if line.strip() and not (comment and line.startswith(comment) and (i == 1 or not comment_first_line_only))
    ]
    if not numbered:
        raise DataError(NO_ROWS.format(path=path))
    rows = csv.reader((line for _, line in numbered), delimiter=delimiter, skipinitialspace=skip_initial_space)
    try:
        first = next(rows)
        names = [f.strip() for f in first]
        if header == "auto":
            headered = (
                bool(names)
                and bool(columns)
                and (names[0] == columns[0] or 2 * len(set(names) & set(columns)) >= len(names))
            )
        else:
            headered = bool(header)
        expected = len(first) if headered else len(columns)
        if not headered and len(first) != expected:
            raise DataError(WRONG_FIELDS.format(path=path, expected=expected, line=numbered[0][0], got=len(first)))
        for (lineno, _), row in zip(numbered[1:], rows):
            if len(row) != expected:
                raise DataError(WRONG_FIELDS.format(path=path, expected=expected, line=lineno, got=len(row)))
    except csv.Error as exc:
        raise DataError(UNPARSABLE.format(path=path, reason=parse_reason(exc))) from None
    if headered and len(numbered) == 1:
        raise DataError(NO_ROWS.format(path=path))

    present = names if headered else list(columns)
    body = io.StringIO("\n".join(line for _, line in numbered))
    try:
        df = pd.read_csv(
            body,
            sep=delimiter,
            header=0 if headered else None,
            names=None if headered else list(columns),
            skipinitialspace=skip_initial_space,
            na_values=list(na_values),
            keep_default_na=False,  # only the declared tokens mean missing ("NA" could be a value)
            low_memory=False,  # one dtype inference over the whole file, no mixed chunks
            dtype={c: "str" for c in text_columns if c in present} or None,
        )
    except (ValueError, pd.errors.ParserError) as exc:
        raise DataError(UNPARSABLE.format(path=path, reason=parse_reason(exc))) from None
    return df


def read_parquet(path: Path | str, text_columns: Sequence[str] = ()) -> pd.DataFrame:
    """Read one Parquet file with pyarrow; ``text_columns`` as text (missing stays missing)."""
    import pandas as pd

    path = Path(path)
    _check_file(path)
    try:
        df = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises many types for files that are not Parquet
        raise DataError(f"{path}: cannot be read as Parquet ({type(exc).__name__}: {parse_reason(exc)})") from None
    if df.empty:
        raise DataError(NO_ROWS.format(path=path))
    df.columns = [str(c) for c in df.columns]
    for c in text_columns:
        if c in df.columns and not isinstance(df[c].dtype, pd.StringDtype):
            s = df[c]
            df[c] = s.astype(object).where(s.isna(), s.map(str)).astype("str")
    return df


def concat_frames(frames: Sequence[pd.DataFrame], paths: Sequence[Path]) -> pd.DataFrame:
    """Concatenate per-file frames (same columns required); a fresh 0..n-1 index."""
    import pandas as pd

    expected = list(frames[0].columns)
    for df, path in zip(frames[1:], paths[1:]):
        if list(df.columns) != expected:
            at = next(
                (i for i, (a, b) in enumerate(zip(df.columns, expected), start=1) if a != b),
                min(len(df.columns), len(expected)) + 1,
            )  # positions, not names: see parse_reason
            raise DataError(COLUMNS_DIFFER.format(path=path, got=len(df.columns), expected=len(expected), at=at))
    if len(frames) == 1:
        return frames[0].reset_index(drop=True)
    return pd.concat(frames, ignore_index=True)
