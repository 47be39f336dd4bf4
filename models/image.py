"""Image family: a small CNN (torch) over uint8 image arrays, with a scikit-learn baseline.

Frame: one row per image, the feature column (``roles.features[0]``, e.g. ``image``) holding a
uint8 array of shape (H, W) (grey) or (H, W, C) (e.g. RGB). Preprocessing, fitted on training
rows only: pixels / 255, then standardised per channel with the training rows' mean and std
-> float32 tensors (N, C, H, W). Under DP (``private=True``) those statistics would be released
with the model outside the (ε, δ) claim, so fixed constants replace them: (pixels / 255 − 0.5) /
0.5 per channel, i.e. [0, 255] -> [−1, 1] (torchvision's ``Normalize(0.5, 0.5)`` convention).
The image shape is the one every row must have (checked on every row), not a statistic.

Model: two convolution blocks (3x3 conv -> GroupNorm -> activation -> 2x2 max-pool) and a fully
connected head. GroupNorm (Wu & He 2018) instead of BatchNorm: BatchNorm mixes examples in a
batch, which per-example DP clipping cannot allow (Opacus refuses it). ``activation: tanh``
follows Papernot et al. 2021 ("Tempered Sigmoid Activations for Deep Learning with
Differential Privacy", AAAI): bounded activations keep gradients small, so less is clipped.
Under DP, Opacus's fast gradient clipping (ghost) covers the Linear layers; the convolutions
and GroupNorm fall back to per-example gradients (see benchmarks/image.py for the cost).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

from impactflow.errors import DataError
from impactflow.models.base import Family, Roles, check_param
from impactflow.task_kind import TaskKind

BAD_IMAGE = "column {column!r}: row {row} is {what}; every image must be a numeric array of shape {shape}"


@dataclass(frozen=True)
class ImageConfig:
    channels: tuple[int, ...] = (32, 64)  # output channels of the two convolution blocks
    hidden: int = 128
    groups: int = 8  # GroupNorm groups (must divide every entry of ``channels``)
    activation: str = "relu"  # "relu" | "tanh"
    dropout: float = 0.25
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 64
    epochs: int = 15
    patience: int = 3

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        check_param(
            len(self.channels) == 2 and all(c > 0 for c in self.channels),
            f"channels={list(self.channels)} must be two positive integers",
        )
        check_param(
            self.groups > 0 and all(c % self.groups == 0 for c in self.channels),
            f"groups={self.groups} must divide every entry of channels={list(self.channels)}",
        )
        check_param(self.hidden > 0, f"hidden={self.hidden} must be > 0")
        check_param(self.activation in ("relu", "tanh"), f"activation={self.activation!r} must be 'relu' or 'tanh'")
        check_param(0.0 <= self.dropout < 1.0, f"dropout={self.dropout} must be in [0, 1)")
        check_param(self.lr > 0, f"lr={self.lr} must be > 0")
        check_param(self.weight_decay >= 0, f"weight_decay={self.weight_decay} must be >= 0")
        check_param(self.batch_size > 0, f"batch_size={self.batch_size} must be > 0")
        check_param(self.epochs > 0, f"epochs={self.epochs} must be > 0")
        check_param(self.patience > 0, f"patience={self.patience} must be > 0")


def _as_array(cell):
    """A cell as JSON delivers an image (MLflow's model server, its input-example check): nested
    lists. A rectangular, numeric one is taken as its array; anything else is left as it is,
    for ``stack_images`` to refuse."""
    if not isinstance(cell, list):
        return cell
    try:
        arr = np.asarray(cell)
    except ValueError:  # ragged rows
        return cell
    return arr if np.issubdtype(arr.dtype, np.number) else cell


def stack_images(series, column: str = "image", shape: tuple[int, ...] | None = None) -> np.ndarray:
    """A column of image arrays -> float32 (N, C, H, W) in [0, 1] (uint8 / 255).

    ``shape``: the (H, W) or (H, W, C) every image must have (from the fitted preprocessor);
    ``None`` takes the first image's. A cell may also be the nested lists of such an array (what
    a JSON request to a served model holds). A cell that is neither is a ``DataError``."""
    values = [_as_array(v) for v in series]
    if not values:
        c, h, w = (1, *shape[:2]) if shape and len(shape) == 2 else (shape[2], *shape[:2]) if shape else (1, 0, 0)
        return np.zeros((0, c, h, w), dtype=np.float32)
    expect = tuple(shape) if shape is not None else getattr(values[0], "shape", None)
    for i, img in enumerate(values):
        if not isinstance(img, np.ndarray) or not np.issubdtype(img.dtype, np.number):
            raise DataError(BAD_IMAGE.format(column=column, row=i, what=type(img).__name__, shape=expect))
        if img.shape != expect or len(expect) not in (2, 3):
            raise DataError(BAD_IMAGE.format(column=column, row=i, what=f"of shape {img.shape}", shape=expect))
    x = np.stack(values).astype(np.float32)
    if np.isnan(x).any():
        row = int(np.isnan(x.reshape(len(x), -1)).any(axis=1).argmax())
        raise DataError(BAD_IMAGE.format(column=column, row=row, what="holding NaN pixels", shape=expect))
    x /= 255.0
    if x.ndim == 3:
        x = x[:, None, :, :]
    else:
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    return x


class ImagePreprocessor:
    """uint8 arrays -> standardised float32 (N, C, H, W); mean/std per channel from training rows.
    ``spec()`` also carries ``n_classes`` (the model builder needs it)."""

    #: under DP: the fixed per-channel constants (pixels / 255 -> [-1, 1])
    FIXED_MEAN, FIXED_STD = 0.5, 0.5

    def __init__(self, column: str, n_classes: int, fixed: bool = False) -> None:
        self.column = column
        self.n_classes = n_classes
        self.fixed = bool(fixed)
        self.shape: tuple[int, ...] | None = None
        self.mean: np.ndarray | None = None
        self.std: np.ndarray | None = None

    def fit_transform(self, df) -> np.ndarray:
        x = stack_images(df[self.column], self.column)
        self.shape = tuple(df[self.column].iloc[0].shape)
        if self.fixed:  # DP: constants, not the training rows' statistics
            self.mean = np.full(x.shape[1], self.FIXED_MEAN, dtype=np.float32)
            self.std = np.full(x.shape[1], self.FIXED_STD, dtype=np.float32)
        else:
            self.mean = x.mean(axis=(0, 2, 3)).astype(np.float32)
            self.std = np.maximum(x.std(axis=(0, 2, 3)), 1e-3).astype(np.float32)
        return self._standardise(x)

    def transform(self, df) -> np.ndarray:
        return self._standardise(stack_images(df[self.column], self.column, self.shape))

    def _standardise(self, x: np.ndarray) -> np.ndarray:
        assert self.mean is not None and self.std is not None, "fit the preprocessor first"
        return (x - self.mean[None, :, None, None]) / self.std[None, :, None, None]

    def spec(self) -> dict[str, int]:
        assert self.shape is not None, "fit the preprocessor first"
        h, w = self.shape[:2]
        return {
            "in_channels": 1 if len(self.shape) == 2 else int(self.shape[2]),
            "height": int(h),
            "width": int(w),
            "n_classes": int(self.n_classes),
        }

    def components(self) -> dict[str, str]:
        shape = "data-independent: the one shape every image must have (a schema fact checked on every row)"
        if self.fixed:
            return {
                "normalisation": (
                    f"data-independent: pixels / 255, then (x - {self.FIXED_MEAN}) / "
                    f"{self.FIXED_STD} per channel (fixed constants)"
                ),
                "image_shape": shape,
                "classes": "data-independent: the labels declared in the contract",
            }
        return {"normalisation": "fitted on training rows: per-channel mean and std", "image_shape": shape}

    def summary(self) -> str:
        if self.fixed:
            return "pixels scaled to [-1, 1] with fixed constants"
        return "per-channel mean and std of the training rows"


def make_preprocessor(roles: Roles, config: ImageConfig | None = None, private: bool = False) -> ImagePreprocessor:
    """Standardisation with the training rows' statistics, or under DP with fixed constants."""
    if len(roles.features) != 1:
        raise DataError(f"the image family needs exactly one image column, got features {list(roles.features)}")
    return ImagePreprocessor(roles.features[0], len(roles.labels), fixed=private)


class CNN(nn.Module):
    """Two strided conv blocks + MLP head; K logits per image. No BatchNorm (Opacus-safe).

    The layout of the CNN in Opacus's MNIST example (after Papernot et al. 2021): an 8x8 conv
    with stride 2, a 4x4 conv with stride 2, each followed by a 2x2 max-pool with stride 1;
    here with GroupNorm after each convolution. Cheap on CPU (28x28 -> 14x14 -> 5x5 maps)."""

    def __init__(self, in_channels: int, height: int, width: int, n_classes: int, config: ImageConfig) -> None:
        super().__init__()
        act = nn.Tanh if config.activation == "tanh" else nn.ReLU
        c1, c2 = config.channels
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, kernel_size=8, stride=2, padding=3),
            nn.GroupNorm(config.groups, c1),
            act(),
            nn.MaxPool2d(2, 1),
            nn.Conv2d(c1, c2, kernel_size=4, stride=2),
            nn.GroupNorm(config.groups, c2),
            act(),
            nn.MaxPool2d(2, 1),
            nn.Flatten(),
        )
        with torch.no_grad():
            flat = int(self.features(torch.zeros(1, in_channels, height, width)).shape[1])
        self.head = nn.Sequential(
            nn.Dropout(config.dropout),
            nn.Linear(flat, config.hidden),
            act(),
            nn.Dropout(config.dropout),
            nn.Linear(config.hidden, n_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def build_model(spec: dict[str, int], config: ImageConfig) -> CNN:
    return CNN(spec["in_channels"], spec["height"], spec["width"], spec["n_classes"], config)


def make_criterion(reduction: str = "mean") -> nn.Module:
    return nn.CrossEntropyLoss(reduction=reduction)


def flat_pixels(X, column: str = "image") -> np.ndarray:
    """Image column -> (N, H*W*C) float32 pixels in [0, 1] (the baseline's input)."""
    x = stack_images(X[column], column)
    return x.reshape(len(x), -1)


def logreg_baseline(roles: Roles, seed: int):
    """Multinomial logistic regression on the raw pixels (scaled to [0, 1])."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    pixels = FunctionTransformer(flat_pixels, kw_args={"column": roles.features[0]})
    return Pipeline([("pixels", pixels), ("clf", LogisticRegression(max_iter=300, C=0.1, random_state=seed))])


def row_features(split, roles: Roles):
    """Per test image: its true ``class``, its mean brightness and its ink share (pixels above
    half the maximum), both over all channels in [0, 1]."""
    import pandas as pd

    column = roles.features[0]
    x = stack_images(split.test[column], column).reshape(len(split.test), -1)
    return pd.DataFrame(
        {
            "class": split.test[roles.target].astype(str).to_numpy(),
            "brightness": x.mean(axis=1) if x.size else np.zeros(0),
            "ink share": (x > 0.5).mean(axis=1) if x.size else np.zeros(0),
        }
    )


FAMILY = Family(
    name="image",
    task=TaskKind.MULTICLASS,
    description="small CNN (2 conv blocks with GroupNorm + MLP head, torch) over image arrays; "
    "pixel logistic regression beside it",
    config_cls=ImageConfig,
    make_preprocessor=make_preprocessor,
    build_model=build_model,
    make_criterion=make_criterion,
    model_name="cnn",
    privacy_unit="one training image",
    baselines={"logreg": logreg_baseline},
    audits=("performance_multiclass", "group_robustness", "privacy"),
    row_features=row_features,
)
