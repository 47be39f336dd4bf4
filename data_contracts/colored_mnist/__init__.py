"""Colored MNIST: the MNIST images with a *spurious* colour (a synthetic group).

A spurious-correlation benchmark in the spirit of Colored MNIST (Arjovsky et al. 2019,
"Invariant Risk Minimization", arXiv:1907.02893) and of the Waterbirds groups of Sagawa et al.
2020 ("Distributionally Robust Neural Networks", ICLR): each digit's strokes are tinted with
one of 10 colours.

- Training rows (``split == "train"``): the colour is the label's own colour
  (``PALETTE[label]``) with probability ``TRAIN_CORRELATION``, else one of the other nine,
  uniformly. Colour then predicts the label in training almost perfectly.
- Test rows (the official test set): the colour is drawn uniformly from the 10, independent of
  the label. A model that learned the colour instead of the shape fails on the ~90 % of test
  images whose colour belongs to another digit.

The colouring is deterministic: a fixed seed (``COLOR_SEED``) and the row order of the
loaded files; the same files always give the same colours. The ``color`` column is a
*synthetic* group (``contract.synthetic_groups``): the project made it up, it describes no
person or real-world attribute. ``color_aligned`` says whether an image's colour is its label's
training colour (a derived, equally synthetic group).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from impactflow.data_contracts.mnist import load_mnist

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["PALETTE", "COLOR_SEED", "TRAIN_CORRELATION", "colorize", "load_colored_mnist"]

#: Colour name -> RGB, index = the digit it goes with in training.
PALETTE: tuple[tuple[str, tuple[int, int, int]], ...] = (
    ("red", (255, 0, 0)),
    ("green", (0, 255, 0)),
    ("blue", (0, 0, 255)),
    ("yellow", (255, 255, 0)),
    ("magenta", (255, 0, 255)),
    ("cyan", (0, 255, 255)),
    ("orange", (255, 128, 0)),
    ("purple", (128, 0, 255)),
    ("white", (255, 255, 255)),
    ("pink", (255, 128, 192)),
)
COLOR_NAMES = tuple(name for name, _ in PALETTE)
COLOR_SEED = 20190705  # fixed: the colours are part of the dataset, not of a run
TRAIN_CORRELATION = 0.99  # P(colour = the label's colour) on training rows; test rows: 0.1


def colorize(
    df: pd.DataFrame,
    *,
    seed: int = COLOR_SEED,
    train_correlation: float = TRAIN_CORRELATION,
    split_column: str = "split",
) -> pd.DataFrame:
    """A copy of ``df`` with RGB images (28, 28, 3) uint8 and ``color``/``color_aligned`` columns.

    Pixel p of colour (r, g, b) becomes (p·r, p·g, p·b) / 255 (integer division). Images that
    are not 2-D uint8 arrays (malformed input) are left as they are, for the contract to report.
    """
    rng = np.random.default_rng(seed)
    n = len(df)
    k = len(PALETTE)
    labels = df["label"].to_numpy()
    valid = np.array([isinstance(v, (int, np.integer)) and 0 <= v < k for v in labels], dtype=bool)
    home = np.where(valid, labels, 0).astype(np.int64)
    is_train = (df[split_column] == "train").to_numpy() if split_column in df.columns else np.ones(n, bool)
    u = rng.random(n)
    other = (home + rng.integers(1, k, size=n)) % k  # uniform over the nine other colours
    uniform = rng.integers(0, k, size=n)
    color = np.where(is_train, np.where(u < train_correlation, home, other), uniform)
    color = np.where(valid | ~is_train, color, uniform)
    rgb = np.asarray([c for _, c in PALETTE], dtype=np.uint16)
    images = []
    for img, c in zip(df["image"].to_numpy(), color):
        if isinstance(img, np.ndarray) and img.ndim == 2 and img.dtype == np.uint8:
            img = (img[..., None].astype(np.uint16) * rgb[c] // 255).astype(np.uint8)
        images.append(img)
    out = df.copy()
    import pandas as pd

    out["image"] = pd.Series(images, index=df.index, dtype=object)
    out["color"] = np.asarray(COLOR_NAMES, dtype=object)[color]
    out["color_aligned"] = np.where(valid & (color == home), "aligned", "conflicting").astype(object)
    return out


def load_colored_mnist(paths: Sequence[Path | str]) -> pd.DataFrame:
    """The MNIST files (see ``impactflow.data_contracts.mnist``), coloured by ``colorize``."""
    return colorize(load_mnist(paths))
