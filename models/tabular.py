"""Tabular family: a torch MLP over one-hot + standardised features, with sklearn baselines.

Preprocessing is a scikit-learn ``ColumnTransformer`` fitted on training rows only and
saved with the model: numeric columns -> median imputation + standardisation;
categorical columns -> a constant "missing" category for nulls + one-hot encoding
(unknown categories at predict time encode as all zeros; the data contract is what
rejects unseen categories in the training data).

Under DP (``private=True``) nothing is fitted on training rows, since the fitted encoder and
scaler are released with the model and a category seen in one row (Adult's
``Holand-Netherlands``) or a mean would reveal that row outside the (ε, δ) claim:
``DeclaredTabularPreprocessor`` one-hot encodes each categorical column over the category set
the contract declares, plus one "other/missing" column, and clips each numeric column to its
declared range [lo, hi] and scales it with that range to [-1, 1]: linearly, or, when the
declared range is non-negative and spans more than two orders of magnitude (hi > 100·max(lo, 1):
Adult's capital-gain 0..99999, capital-loss 0..4356), as log1p(x − lo) / log1p(hi − lo), so a
heavy tail does not squeeze every typical value into a sliver next to −1 (measured on Adult at
ε = 1, seeds 0-2: accuracy 0.830 / 0.849 / 0.849 with it, 0.833 / 0.786 / 0.835 linear, 0.850 /
0.843 / 0.841 with the old fitted scaler). A missing number -> 0 (the range's centre). The rule reads the declared
range only. A feature without a declared set/range is a ``ConfigError`` before training.
"""

from __future__ import annotations

from dataclasses import dataclass
import numpy as np
import torch
import torch.nn as nn

from impactflow.models.base import Family, Roles, check_param
from impactflow.task_kind import TaskKind


@dataclass(frozen=True)
class TabularConfig:
    hidden_sizes: tuple[int, ...] = (128, 64)
    dropout: float = 0.1
    lr: float = 1e-3
    weight_decay: float = 1e-5
    batch_size: int = 256
    epochs: int = 20
    patience: int = 3

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden_sizes", tuple(int(h) for h in self.hidden_sizes))
        check_param(all(h > 0 for h in self.hidden_sizes), "hidden_sizes must be positive integers")
        check_param(0.0 <= self.dropout < 1.0, f"dropout={self.dropout} must be in [0, 1)")
        check_param(self.lr > 0, f"lr={self.lr} must be > 0")
        check_param(self.batch_size > 0, f"batch_size={self.batch_size} must be > 0")
        check_param(self.epochs > 0, f"epochs={self.epochs} must be > 0")
        check_param(self.patience > 0, f"patience={self.patience} must be > 0")


class TabularPreprocessor:
    """``ColumnTransformer`` (fitted on training rows only) -> float32 matrix."""

    def __init__(self, categorical: list[str], numeric: list[str]) -> None:
        from sklearn.compose import ColumnTransformer
        from sklearn.impute import SimpleImputer
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import OneHotEncoder, StandardScaler

        num = Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())])
        cat = Pipeline(
            [
                ("impute", SimpleImputer(strategy="constant", fill_value="missing")),
                ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False, dtype="float32")),
            ]
        )
        self.transformer = ColumnTransformer([("num", num, list(numeric)), ("cat", cat, list(categorical))])
        self.n_features: int | None = None

    def fit_transform(self, df) -> np.ndarray:
        X = np.asarray(self.transformer.fit_transform(df), dtype=np.float32)
        self.n_features = int(X.shape[1])
        return X

    def transform(self, df) -> np.ndarray:
        return np.asarray(self.transformer.transform(df), dtype=np.float32)

    def spec(self) -> dict[str, int]:
        assert self.n_features is not None, "fit the preprocessor first"
        return {"n_features": int(self.n_features)}

    def components(self) -> dict[str, str]:
        return {
            "categories": "fitted on training rows: the categories seen in them (one-hot)",
            "numeric_scaling": "fitted on training rows: their medians (imputation), means and variances",
        }

    def summary(self) -> str:
        return "one-hot categories and scaling fitted on the training rows"


#: a declared range [lo, hi] with lo >= 0 and hi > LOG_SPAN * max(lo, 1) is scaled on a log scale
LOG_SPAN = 100.0


class DeclaredTabularPreprocessor:
    """The DP preprocessing (see the module doc): one-hot over the declared category sets +
    "other/missing", numeric clipped and scaled to [-1, 1] with the declared ranges. Its state is
    the contract's declarations only, so it is identical for any two training sets; ``fit``
    reads no row."""

    def __init__(self, categorical: list[str], numeric: list[str], domains) -> None:
        from impactflow.data_contracts.domains import Domains

        domains = domains if domains is not None else Domains(contract="(none: roles without a contract)")
        self.contract = domains.contract
        self.categorical = list(categorical)
        self.numeric = list(numeric)
        # declared values as strings: the frame's categories are read as strings too
        self.categories = {c: tuple(str(v) for v in domains.category_set(c)) for c in self.categorical}
        self.ranges = {c: domains.value_range(c) for c in self.numeric}
        self.log_scaled = {c: lo >= 0 and hi > LOG_SPAN * max(lo, 1.0) for c, (lo, hi) in self.ranges.items()}
        self.n_features = len(self.numeric) + sum(len(v) + 1 for v in self.categories.values())

    def fit(self, df) -> "DeclaredTabularPreprocessor":
        return self

    def fit_transform(self, df) -> np.ndarray:
        return self.transform(df)

    def transform(self, df) -> np.ndarray:
        import pandas as pd

        blocks = []
        for c in self.numeric:
            lo, hi = self.ranges[c]
            x = np.clip(pd.to_numeric(df[c], errors="coerce").to_numpy(dtype=np.float64), lo, hi)
            unit = np.log1p(x - lo) / np.log1p(hi - lo) if self.log_scaled[c] else (x - lo) / (hi - lo)
            blocks.append(np.nan_to_num(2.0 * unit - 1.0, nan=0.0)[:, None])  # missing -> 0, the centre
        for c in self.categorical:
            values = self.categories[c]
            # a null or an undeclared value -> code -1 -> the last, other/missing column
            codes = pd.Categorical(df[c].astype("string"), categories=list(values)).codes.astype(np.int64)
            codes[codes < 0] = len(values)
            onehot = np.zeros((len(codes), len(values) + 1), dtype=np.float64)
            onehot[np.arange(len(codes)), codes] = 1.0
            blocks.append(onehot)
        if not blocks:
            return np.zeros((len(df), 0), dtype=np.float32)
        return np.hstack(blocks).astype(np.float32)

    def spec(self) -> dict[str, int]:
        return {"n_features": int(self.n_features)}

    def components(self) -> dict[str, str]:
        where = f"contract '{self.contract}'"
        return {
            "categories": (
                f"data-independent: the category sets declared in {where} "
                "(expect_column_values_to_be_in_set) + one other/missing column each; "
                f"columns: {', '.join(self.categorical) or 'none'}"
            ),
            "numeric_scaling": (
                f"data-independent: clipped to the ranges declared in {where} "
                "(expect_column_values_to_be_between) and scaled with them to [-1, 1] "
                f"(log1p where a range spans > {LOG_SPAN:g}x: "
                f"{', '.join(c for c in self.numeric if self.log_scaled[c]) or 'none'}); "
                f"missing -> 0; columns: {', '.join(self.numeric) or 'none'}"
            ),
        }

    def summary(self) -> str:
        return f"category sets and value ranges declared in contract '{self.contract}'"


def make_preprocessor(roles: Roles, config: TabularConfig | None = None, private: bool = False):
    """The fitted ``TabularPreprocessor``, or under DP the data-independent
    ``DeclaredTabularPreprocessor`` (``ConfigError`` when a feature has no declared domain)."""
    if private:
        return DeclaredTabularPreprocessor(list(roles.categorical), list(roles.numeric), roles.domains)
    return TabularPreprocessor(list(roles.categorical), list(roles.numeric))


class MLP(nn.Module):
    """Binary classifier: Linear-ReLU-Dropout blocks, one logit per row (no BatchNorm: Opacus-safe)."""

    def __init__(self, n_features: int, hidden_sizes: tuple[int, ...], dropout: float) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = n_features
        for h in hidden_sizes:
            layers += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(dropout)]
            width = h
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)


def build_model(spec: dict[str, int], config: TabularConfig) -> MLP:
    return MLP(spec["n_features"], config.hidden_sizes, config.dropout)


def make_criterion(reduction: str = "mean") -> nn.Module:
    return nn.BCEWithLogitsLoss(reduction=reduction)


def logreg_baseline(roles: Roles, seed: int):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    pre = make_preprocessor(roles).transformer
    return Pipeline([("pre", pre), ("clf", LogisticRegression(max_iter=2000, random_state=seed))])


def hist_gb_baseline(roles: Roles, seed: int):
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import Pipeline

    pre = make_preprocessor(roles).transformer
    return Pipeline([("pre", pre), ("clf", HistGradientBoostingClassifier(random_state=seed))])


FAMILY = Family(
    name="tabular",
    task=TaskKind.BINARY,
    description="MLP (torch) over one-hot/standardised columns; sklearn baselines beside it",
    config_cls=TabularConfig,
    make_preprocessor=make_preprocessor,
    build_model=build_model,
    make_criterion=make_criterion,
    model_name="mlp",
    privacy_unit="one training row, i.e. one person's record",
    baselines={"logreg": logreg_baseline, "hist_gb": hist_gb_baseline},
)
