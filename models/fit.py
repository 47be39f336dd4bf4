"""Fit one model (a family's torch model or a sklearn baseline) on a split and score it.

Pure functions: the Prefect tasks in ``tasks/train.py`` are thin wrappers around these.
Everything downstream (evaluation, audits, tracking) only sees a ``FittedModel``: a
predictor (preprocessing + model, one object that maps raw rows to P(positive)) and the
held-out scores/losses the audits need.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pandas as pd

from models.base import Family, seed_everything, select_device
from models.data import Split
from models.training import PrivacySettings, TrainSettings, train_torch

LOSS_EPS = 1e-7


@dataclass(frozen=True)
class Roles:
    """What the model needs to know about the columns (from the data contract)."""

    target: str
    positive_label: Any
    categorical: tuple[str, ...]
    numeric: tuple[str, ...]
    sensitive: tuple[str, ...]

    @property
    def features(self) -> list[str]:
        return list(self.numeric) + list(self.categorical)


class TorchPredictor:
    """Fitted preprocessor + torch module: raw DataFrame rows -> P(positive class)."""

    def __init__(self, preprocessor, module, features: list[str]) -> None:
        self.preprocessor = preprocessor
        self.module = module
        self.features = list(features)

    def transform(self, df: pd.DataFrame) -> np.ndarray:
        return np.asarray(self.preprocessor.transform(df[self.features]), dtype=np.float32)

    def predict_proba(self, df: pd.DataFrame) -> np.ndarray:
        from models.training import predict_logits

        logits = predict_logits(self.module, self.transform(df), "cpu")
        return 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))


class SklearnPredictor:
    """A fitted sklearn pipeline (preprocessor + estimator): raw rows -> P(positive class)."""

    def __init__(self, pipeline, features: list[str]) -> None:
        self.pipeline = pipeline
        self.features = list(features)

    def predict_proba(self, df: pd.DataFrame) -> np.ndarray:
        return self.pipeline.predict_proba(df[self.features])[:, 1].astype(np.float64)


@dataclass
class FittedModel:
    name: str  # "mlp", "logreg", ...
    family: str
    kind: str  # "torch" | "sklearn"
    description: str
    predictor: Any
    params: dict[str, Any]
    training: dict[str, Any]
    y_test: np.ndarray
    test_score: np.ndarray
    member_loss: np.ndarray  # per-example log loss on training rows (MIA members)
    nonmember_loss: np.ndarray  # per-example log loss on test rows (MIA non-members)
    history: list[dict[str, float]] = field(default_factory=list)


def binary_labels(df: pd.DataFrame, roles: Roles) -> np.ndarray:
    return (df[roles.target] == roles.positive_label).to_numpy().astype(np.float32)


def log_loss_per_example(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    p = np.clip(p, LOSS_EPS, 1 - LOSS_EPS)
    return -(y * np.log(p) + (1 - y) * np.log(1 - p))


def _score(name, family, kind, description, predictor, params, training, split, roles, history=()):
    y_train = binary_labels(split.train, roles)
    y_test = binary_labels(split.test, roles)
    test_score = predictor.predict_proba(split.test)
    train_score = predictor.predict_proba(split.train)
    return FittedModel(
        name=name,
        family=family,
        kind=kind,
        description=description,
        predictor=predictor,
        params=params,
        training=training,
        y_test=y_test.astype(int),
        test_score=test_score,
        member_loss=log_loss_per_example(y_train, train_score),
        nonmember_loss=log_loss_per_example(y_test, test_score),
        history=list(history),
    )


def fit_family_model(
    family: Family,
    params: dict[str, Any],
    split: Split,
    roles: Roles,
    *,
    seed: int,
    device: str = "auto",
    amp: bool = True,
    privacy: PrivacySettings = PrivacySettings(),
    on_epoch: Callable[[dict[str, float]], None] | None = None,
) -> FittedModel:
    """Fit the preprocessor on training rows only, train the family's torch model, score it."""
    config = family.make_config(params)
    pre = family.make_preprocessor(list(roles.categorical), list(roles.numeric))
    t0 = time.perf_counter()
    X_train = np.asarray(pre.fit_transform(split.train[roles.features]), dtype=np.float32)
    X_val = np.asarray(pre.transform(split.validation[roles.features]), dtype=np.float32)
    prep_s = time.perf_counter() - t0
    settings = TrainSettings(
        epochs=config.epochs,
        batch_size=config.batch_size,
        lr=config.lr,
        weight_decay=config.weight_decay,
        patience=config.patience,
        device=select_device(device),
        amp=amp,
        seed=seed,
    )
    seed_everything(seed)  # weight initialisation is part of the seeded run
    module = family.build_model(X_train.shape[1], config)
    result = train_torch(
        module,
        X_train,
        binary_labels(split.train, roles),
        X_val,
        binary_labels(split.validation, roles),
        make_criterion=family.make_criterion,
        settings=settings,
        privacy=privacy,
        on_epoch=on_epoch,
    )
    training = {
        "device": result.device,
        "amp": result.amp,
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "wall_time_s": result.wall_time_s,
        "preprocess_time_s": prep_s,
        "n_parameters": result.n_parameters,
        "n_features": int(X_train.shape[1]),
        "dp": result.dp,
    }
    predictor = TorchPredictor(pre, result.model, roles.features)
    name = "mlp-dp" if privacy.enabled else "mlp"
    return _score(
        name, family.name, "torch", family.description, predictor,
        {**vars(config), "seed": seed}, training, split, roles, result.history,
    )


def fit_baseline(family: Family, name: str, split: Split, roles: Roles, *, seed: int) -> FittedModel:
    """Fit a sklearn baseline of the family (its own copy of the preprocessor) and score it."""
    pre = family.make_preprocessor(list(roles.categorical), list(roles.numeric))
    pipeline = family.baselines[name](pre, seed)
    t0 = time.perf_counter()
    pipeline.fit(split.train[roles.features], binary_labels(split.train, roles).astype(int))
    wall = time.perf_counter() - t0
    clf = pipeline.steps[-1][1]
    training = {
        "device": "cpu",
        "amp": False,
        "epochs_run": None,
        "best_epoch": None,
        "wall_time_s": wall,
        "n_parameters": _sklearn_n_params(clf),
        "dp": {"enabled": False},
    }
    params = {k: v for k, v in clf.get_params().items() if isinstance(v, (int, float, str, bool)) or v is None}
    return _score(
        name, family.name, "sklearn", f"scikit-learn baseline: {type(clf).__name__}",
        SklearnPredictor(pipeline, roles.features), {**params, "seed": seed}, training, split, roles,
    )


def _sklearn_n_params(clf) -> int | None:
    coef = getattr(clf, "coef_", None)
    if coef is not None:
        return int(np.size(coef) + np.size(getattr(clf, "intercept_", 0)))
    return None
