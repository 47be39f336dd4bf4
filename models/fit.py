"""Fit one model (a family's torch model or a scikit-learn baseline) on a split and score it.

Pure functions: the Prefect tasks in ``tasks/train.py`` are thin wrappers around these.
Everything downstream (evaluation, audits, tracking) only sees a ``FittedModel``: a
predictor (preprocessing + model: raw rows in, outputs out) and the held-out outputs and
per-example losses the audits need. Works for every task kind (binary, multiclass, rating).
"""

from __future__ import annotations

import abc
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pandas as pd

from impactflow.errors import ConfigError
from impactflow.models.base import (
    Family,
    Roles,
    outputs_from_raw,
    per_example_loss,
    seed_everything,
    select_device,
    targets,
)
from impactflow.models.data import Split
from impactflow.models.dp_claim import NO_DP_PREPROCESSING, SameRows, dp_record
from impactflow.models.memorisation import SecretSettings
from impactflow.models.training import PrivacySettings, TrainSettings, train_torch
from impactflow.task_kind import TaskKind


class _Predictor(abc.ABC):
    """Shared output formatting: ``predict(df)`` -> outputs array, ``predict_frame(df)`` -> the
    MLflow pyfunc's output table."""

    roles: Roles
    threshold: float = 0.5

    @property
    def features(self) -> list[str]:
        """The raw columns the predictor reads (the contract's feature columns)."""
        return list(self.roles.features)

    @abc.abstractmethod
    def predict(self, df: pd.DataFrame) -> np.ndarray:
        """Outputs for raw rows: P(positive) | class probabilities | predicted ratings."""

    def predict_frame(self, df: pd.DataFrame) -> pd.DataFrame:
        out = self.predict(df)
        task = self.roles.task
        if task == TaskKind.BINARY:
            return pd.DataFrame({"score": out, "label": (out >= self.threshold).astype(int)})
        if task == TaskKind.MULTICLASS:
            labels = [str(c) for c in self.roles.labels]
            frame = pd.DataFrame(out, columns=[f"prob_{c}" for c in labels])
            frame.insert(0, "label", np.asarray(labels, dtype=object)[out.argmax(axis=1)])
            return frame
        return pd.DataFrame({"rating": out})


class TorchPredictor(_Predictor):
    """Fitted preprocessor + torch module: raw DataFrame rows -> outputs."""

    def __init__(self, preprocessor, module, roles: Roles) -> None:
        self.preprocessor = preprocessor
        self.module = module
        self.roles = roles

    def predict_raw(self, df: pd.DataFrame) -> np.ndarray:
        """The module's raw outputs (a logit per row for binary tasks)."""
        from impactflow.models.training import predict_logits

        return predict_logits(self.module, self.preprocessor.transform(df[self.features]), "cpu")

    def predict(self, df: pd.DataFrame) -> np.ndarray:
        return outputs_from_raw(self.predict_raw(df), self.roles.task)


class SklearnPredictor(_Predictor):
    """A fitted scikit-learn estimator over ``df[roles.features]``."""

    def __init__(self, estimator, roles: Roles) -> None:
        self.estimator = estimator
        self.roles = roles

    def predict(self, df: pd.DataFrame) -> np.ndarray:
        X = df[self.features]
        if self.roles.task == TaskKind.BINARY:
            return self.estimator.predict_proba(X)[:, 1].astype(np.float64)
        if self.roles.task == TaskKind.MULTICLASS:
            return self.estimator.predict_proba(X).astype(np.float64)
        return self.estimator.predict(X).astype(np.float64)


@dataclass
class FittedModel:
    name: str  # "mlp", "mlp-dp", "logreg", ...
    family: str
    task: TaskKind
    kind: str  # "torch" | "sklearn"
    description: str
    predictor: Any
    params: dict[str, Any]
    training: dict[str, Any]
    y_test: np.ndarray  # 0/1 (binary), class index (multiclass), rating (rating)
    test_output: np.ndarray  # P(positive) | class probabilities (N, K) | predicted rating
    member_loss: np.ndarray  # per-example loss on training rows (membership-inference members)
    nonmember_loss: np.ndarray  # per-example loss on test rows (non-members)
    history: list[dict[str, float]] = field(default_factory=list)


def _score(
    name, family: Family, kind, description, predictor, params, training, split: Split, roles: Roles, history=()
) -> FittedModel:
    """Held-out outputs plus the per-example losses membership inference compares.

    Non-members are the test rows when the test set is a random draw from the same data as the
    training rows; when it is an official test set (possibly another distribution, e.g. real
    comments vs templates) they are the validation rows, never trained on, so the attack
    compares members with non-members and not one domain with another."""
    y_train = targets(split.train, roles)
    y_test = targets(split.test, roles)
    test_out = predictor.predict(split.test)
    train_out = predictor.predict(split.train)
    if split.predefined_test:
        nonmember = per_example_loss(targets(split.validation, roles), predictor.predict(split.validation), family.task)
        training = {**training, "mia_nonmembers": "validation split (the test set is an official, separate set)"}
    else:
        nonmember = per_example_loss(y_test, test_out, family.task)
        training = {**training, "mia_nonmembers": "test split"}
    return FittedModel(
        name=name,
        family=family.name,
        task=family.task,
        kind=kind,
        description=description,
        predictor=predictor,
        params=params,
        training=training,
        y_test=y_test.astype(int) if family.task.classifies else y_test,
        test_output=test_out,
        member_loss=per_example_loss(y_train, train_out, family.task),
        nonmember_loss=nonmember,
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
    threads: int | None = None,
    privacy: PrivacySettings = PrivacySettings(),
    on_epoch: Callable[[dict[str, float]], None] | None = None,
    same_rows: SameRows = SameRows(),
    secrets: SecretSettings | None = None,
) -> FittedModel:
    """Fit the preprocessor on training rows only, train the family's torch model, score it.

    ``secrets``: plant random secrets in the training rows (only there) and measure their
    exposure after training (``models/memorisation.py``; kept in ``training["secrets"]``).

    Under DP the preprocessor is the family's data-independent one (``private=True``: declared
    domains, fixed constants, a hashing tokenizer), and ``training["dp"]`` says what the
    (ε, δ) covers (``models/dp_claim.py``; ``same_rows``: the run's other trainings on these
    rows, named in that sentence)."""
    config = family.make_config(params)
    pre = _make_preprocessor(family, roles, config, privacy.enabled)
    train = split.train
    planted = None
    if secrets is not None:
        from impactflow.models.memorisation import DIGITS, plant

        alphabet = pre.secret_alphabet() if hasattr(pre, "secret_alphabet") else DIGITS
        planted = plant(secrets, roles, seed + 3000, alphabet)
        train = pd.concat([split.train, planted.rows], ignore_index=True)
    t0 = time.perf_counter()
    X_train = pre.fit_transform(train[list(roles.features)])
    X_val = pre.transform(split.validation[list(roles.features)])
    prep_s = time.perf_counter() - t0
    settings = TrainSettings(
        epochs=config.epochs,
        batch_size=config.batch_size,
        lr=config.lr,
        weight_decay=getattr(config, "weight_decay", 0.0),
        patience=config.patience,
        device=select_device(device),
        amp=amp,
        threads=threads,
        seed=seed,
    )
    seed_everything(seed)  # weight initialisation is part of the seeded run
    module = family.build_model(pre.spec(), config)
    # under DP, layers per-example clipping cannot split stay at their pretrained values (hf)
    frozen = module.freeze_for_dp() if privacy.enabled and hasattr(module, "freeze_for_dp") else []
    result = train_torch(
        module,
        X_train,
        targets(train, roles),
        X_val,
        targets(split.validation, roles),
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
        "n_train": int(len(X_train)),
        "input_spec": pre.spec(),
        "dp": dp_record(result.dp, family=family, pre=pre, same_rows=same_rows, threshold=_Predictor.threshold),
    }
    if frozen:
        training["dp"]["frozen"] = frozen
    if hasattr(pre, "pretraining"):  # a pretrained model: what its card states about pretraining (hf)
        training["pretraining"] = pre.pretraining()
    # what is released: e.g. LoRA adapters merged into the weights (models/hf.py)
    model = result.model.released() if hasattr(result.model, "released") else result.model
    predictor = TorchPredictor(pre, model, roles)
    if planted is not None:
        from impactflow.models.memorisation import measure

        dp = training["dp"]
        training["secrets"] = measure(predictor, roles, planted, dp.get("epsilon") if dp.get("enabled") else None)
        training["n_secret_rows"] = int(len(planted.rows))
    name = f"{family.model_name}-dp" if privacy.enabled else family.model_name
    return _score(
        name,
        family,
        "torch",
        family.description,
        predictor,
        {**vars(config), "seed": seed},
        training,
        split,
        roles,
        result.history,
    )


def _make_preprocessor(family: Family, roles: Roles, config, private: bool):
    """The family's preprocessor; under DP its data-independent variant, checked before any
    training (a missing declared domain or a family without one is a ``ConfigError``)."""
    if not private:
        return family.make_preprocessor(roles, config)
    try:
        pre = family.make_preprocessor(roles, config, private=True)
    except TypeError as exc:
        raise ConfigError(NO_DP_PREPROCESSING.format(family=family.name, error=exc)) from None
    if not (callable(getattr(pre, "components", None)) and callable(getattr(pre, "summary", None))):
        raise ConfigError(NO_DP_PREPROCESSING.format(family=family.name, error="no components()/summary()"))
    return pre


def _drop_training_terms(estimator) -> None:
    """Forget the terms a fitted vectorizer *discarded*: scikit-learn keeps every term cut by
    min_df in ``stop_words_`` (one-off words of single messages: names, numbers), only for
    introspection, and it would be pickled with the logged model. Its docs say it can be set
    to None before pickling; predictions do not use it."""
    parts = [estimator]
    while parts:
        obj = parts.pop()
        if getattr(obj, "stop_words_", None) is not None:
            obj.stop_words_ = None
        parts += [step for _, step in getattr(obj, "steps", [])]
        parts += [t for _, t, *_ in getattr(obj, "transformers_", [])]


def fit_baseline(family: Family, name: str, split: Split, roles: Roles, *, seed: int) -> FittedModel:
    """Fit a scikit-learn baseline of the family and score it."""
    estimator = family.baselines[name](roles, seed)
    t0 = time.perf_counter()
    y = targets(split.train, roles)
    estimator.fit(split.train[list(roles.features)], y.astype(int) if family.task.classifies else y)
    wall = time.perf_counter() - t0
    _drop_training_terms(estimator)
    clf = estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator
    training = {
        "device": "cpu",
        "amp": False,
        "epochs_run": None,
        "best_epoch": None,
        "wall_time_s": wall,
        "n_parameters": _sklearn_n_params(clf),
        "n_train": int(len(split.train)),
        "dp": {"enabled": False},
    }
    params = {k: v for k, v in clf.get_params().items() if isinstance(v, (int, float, str, bool)) or v is None}
    return _score(
        name,
        family,
        "sklearn",
        f"scikit-learn baseline: {type(clf).__name__}",
        SklearnPredictor(estimator, roles),
        {**params, "seed": seed},
        training,
        split,
        roles,
    )


def _sklearn_n_params(clf) -> int | None:
    coef = getattr(clf, "coef_", None)
    if coef is not None:
        return int(np.size(coef) + np.size(getattr(clf, "intercept_", 0)))
    return None
