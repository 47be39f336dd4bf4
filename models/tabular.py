"""Tabular family: a torch MLP over one-hot + standardised features, with sklearn baselines.

Preprocessing is a scikit-learn ``ColumnTransformer`` fitted on training rows only and
saved with the model: numeric columns -> median imputation + standardisation;
categorical columns -> a constant "missing" category for nulls + one-hot encoding
(unknown categories at predict time encode as all zeros; the data contract is what
rejects unseen categories in the training data).
"""
from __future__ import annotations

from dataclasses import dataclass
import numpy as np
import torch
import torch.nn as nn

from models.base import Family, Roles, check_param


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
        return {"n_features": int(self.n_features)}


def make_preprocessor(roles: Roles, config: TabularConfig | None = None) -> TabularPreprocessor:
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
    task="binary",
    description="MLP (torch) over one-hot/standardised columns; sklearn baselines beside it",
    config_cls=TabularConfig,
    make_preprocessor=make_preprocessor,
    build_model=build_model,
    make_criterion=make_criterion,
    model_name="mlp",
    baselines={"logreg": logreg_baseline, "hist_gb": hist_gb_baseline},
)
