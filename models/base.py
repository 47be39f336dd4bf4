"""What a model family is, and the small helpers every family shares.

A family = one file in ``models/`` ending in a ``Family`` value + one line in
``models.FAMILIES`` (see ARCHITECTURE.md, "Extension points").
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field, fields
from typing import Any, Callable

import numpy as np

from impactflow.errors import ConfigError
from impactflow.task_kind import TaskKind

UNKNOWN_PARAM = "model.params.{key}: unknown hyperparameter for family '{family}' (known: {known})"
BAD_PARAM = "model.params: {error}"


@dataclass(frozen=True)
class Roles:
    """What a family needs to know about the columns (built from the data contract).

    ``features`` are the columns handed to the preprocessor; ``groups`` are the columns the
    audits split results by (sensitive attributes and user-declared, possibly synthetic,
    groups); ``labels`` are the class names (binary: the positive label is ``positive_label``).
    ``extra`` carries family-specific roles (e.g. the text column, user/item id columns).
    ``domains``: the category sets and value ranges the contract declares
    (``impactflow.data_contracts.domains.Domains``); under DP the preprocessing is built from them instead
    of from training rows. ``None`` when the roles do not come from a contract.
    """

    target: str
    task: TaskKind
    features: tuple[str, ...]
    groups: tuple[str, ...] = ()
    positive_label: Any = None
    labels: tuple[Any, ...] = ()
    categorical: tuple[str, ...] = ()
    numeric: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)
    domains: Any = None


def roles_for(contract, task: TaskKind | str, exclude_sensitive: bool):
    """Column roles from a data contract: the target and weights are never features; the
    sensitive columns are features unless ``exclude_sensitive``; audit groups = sensitive +
    declared groups; ``domains`` = what the contract's suite declares."""
    from impactflow.data_contracts.domains import declared_domains

    excluded = set(contract.exclude_from_features) | {contract.target}
    if contract.weight:
        excluded.add(contract.weight)
    if exclude_sensitive:
        excluded |= set(contract.sensitive)
    return Roles(
        target=contract.target,
        task=TaskKind.parse(task),
        features=tuple(c for c in contract.feature_columns if c not in excluded),
        groups=tuple(dict.fromkeys([*contract.sensitive, *contract.groups])),
        positive_label=contract.positive_label,
        labels=tuple(contract.labels),
        categorical=tuple(c for c in contract.categorical if c not in excluded),
        numeric=tuple(c for c in contract.numeric if c not in excluded),
        extra=dict(contract.roles_extra),
        domains=declared_domains(contract),
    )


@dataclass(frozen=True)
class Family:
    """A model family: everything the pipeline needs to train and audit one kind of model.

    - ``make_preprocessor(roles, config)`` -> an unfitted object with ``fit_transform(df)`` and
      ``transform(df)`` returning model-ready arrays, and ``spec()`` (after fitting) giving what
      ``build_model`` needs (e.g. number of features, vocabulary size, number of users).
      Under DP it is called as ``make_preprocessor(roles, config, private=True)`` and must
      return a preprocessor whose fitted state does not depend on the training rows (declared
      domains in ``roles.domains``, fixed constants, a fixed tokenizer), with ``components()``
      -> {component: how it was made} and ``summary()`` -> one phrase for the report's
      ``training.dp.covers`` sentence (``models/dp_claim.py``). A family that cannot is
      refused under DP.
    - ``privacy_unit``: what one DP "example" is for this family (one row, one message...).
    - ``build_model(spec, config)`` -> ``torch.nn.Module`` (raw outputs: one logit per row for
      binary, K logits for multiclass, the predicted rating for rating).
    - ``make_criterion(reduction)`` -> torch loss on (raw outputs, targets).
    - ``baselines``: name -> ``(roles, seed)`` -> an unfitted scikit-learn estimator over
      ``df[roles.features]``.
    - ``audits``: names in ``audits.AUDITS`` run on this family's models.
    - ``audit_extras(predictor, split, roles)`` -> dict of extra audit inputs (e.g. a scorer
      for counterfactual texts), or None.
    - ``row_features(split, roles)`` -> a DataFrame aligned with ``split.test``: what a reader
      can name about each test row (tabular: its scalar feature columns; text: identity-term and
      frequent-token presence, length; image: class and pixel statistics; recommender: user
      activity and item popularity). Slice discovery slices on it (with the audit groups) and
      proxy detection tests it as a proxy of each sensitive attribute. ``None``: the scalar
      feature columns (``scalar_row_features``).
    - Optional methods ``models/fit.py`` calls when present: the preprocessor's
      ``secret_alphabet()`` (symbols of the memorisation audit's secrets, ``models/memorisation.py``)
      and ``pretraining()`` (what a pretrained model's card states, report section 8); the
      module's ``freeze_for_dp()`` (layers kept fixed under DP, listed in ``training.dp.frozen``)
      and ``released()`` (the module to release, e.g. LoRA adapters merged; ``models/hf.py``).
    - ``preflight(config, roles)``: checks the family can run at all (e.g. a model directory,
      its tokenizer and head), raising ``ConfigError`` with one line; called when the run's
      configuration is checked, before any task. ``None``: nothing to check.
    """

    name: str
    task: TaskKind
    description: str
    config_cls: type  # stdlib dataclass of hyperparameters (with epochs, batch_size, lr, ...)
    make_preprocessor: Callable[..., Any]
    build_model: Callable[..., Any]
    make_criterion: Callable[..., Any]
    model_name: str = "model"  # run name of the torch model ("mlp", "cnn", ...)
    privacy_unit: str = "one training row"
    baselines: dict[str, Callable[..., Any]] = field(default_factory=dict)
    audits: tuple[str, ...] = ("performance", "fairness", "privacy")
    audit_extras: Callable[..., Any] | None = None
    row_features: Callable[..., Any] | None = None
    preflight: Callable[..., None] | None = None

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "task", TaskKind.parse(self.task))
        except ValueError as exc:
            raise ValueError(f"family {self.name}: {exc}") from None

    def make_config(self, params: dict[str, Any]) -> Any:
        """Build the family's hyperparameter dataclass, naming any unknown key."""
        known = [f.name for f in fields(self.config_cls)]
        for key in params:
            if key not in known:
                raise ConfigError(UNKNOWN_PARAM.format(key=key, family=self.name, known=", ".join(known)))
        try:
            return self.config_cls(**params)
        except (TypeError, ValueError) as exc:
            raise ConfigError(BAD_PARAM.format(error=exc)) from None


def targets(df, roles: Roles) -> np.ndarray:
    """Training targets: 0/1 float (binary), class index int64 (multiclass), float (rating)."""
    y = df[roles.target]
    if roles.task == TaskKind.BINARY:
        return (y == roles.positive_label).to_numpy().astype(np.float32)
    if roles.task == TaskKind.MULTICLASS:
        index = {str(label): i for i, label in enumerate(roles.labels)}
        return y.astype(str).map(index).to_numpy().astype(np.int64)
    return y.to_numpy().astype(np.float32)


def outputs_from_raw(raw: np.ndarray, task: TaskKind) -> np.ndarray:
    """Raw model outputs -> P(positive) (binary), class probabilities (multiclass), ratings."""
    raw = raw.astype(np.float64)
    if task == TaskKind.BINARY:
        return 1.0 / (1.0 + np.exp(-raw))
    if task == TaskKind.MULTICLASS:
        z = raw - raw.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)
    return raw


LOSS_EPS = 1e-7


def per_example_loss(y: np.ndarray, out: np.ndarray, task: TaskKind) -> np.ndarray:
    """Per-example loss from outputs: log loss (binary), -log p_y (multiclass), squared error."""
    if task == TaskKind.BINARY:
        p = np.clip(out, LOSS_EPS, 1 - LOSS_EPS)
        return -(y * np.log(p) + (1 - y) * np.log(1 - p))
    if task == TaskKind.MULTICLASS:
        p = np.clip(out[np.arange(len(y)), y.astype(int)], LOSS_EPS, 1.0)
        return -np.log(p)
    return (out - y) ** 2


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) for a reproducible run."""
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))


def select_device(requested: str = "auto") -> str:
    """'auto' -> 'cuda' when a GPU is visible, else 'cpu'. An explicit unavailable device is an error."""
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"train.device={requested!r}: no CUDA device is available on this machine")
    if requested not in ("cpu",) and not requested.startswith("cuda"):
        raise ConfigError(f"train.device={requested!r}: expected 'auto', 'cpu' or 'cuda[:N]'")
    return requested


def check_param(condition: bool, message: str) -> None:
    """Raise ValueError (turned into a ConfigError by ``Family.make_config``) when a check fails."""
    if not condition:
        raise ValueError(message)


def scalar_row_features(split, roles: Roles):
    """The test rows' feature columns that hold one number or string each (not arrays)."""
    test = split.test
    keep = [c for c in roles.features if c in test.columns and _scalar_column(test[c])]
    return test[keep].reset_index(drop=True)


def _scalar_column(s) -> bool:
    import pandas as pd

    if pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s):
        return True
    head = s.dropna().head(50)
    return all(isinstance(v, (str, int, float, bool, np.generic)) for v in head)


def discovery_inputs(family: Family, predictor, split, roles: Roles, exclude_sensitive: bool) -> dict[str, Any]:
    """``AuditInputs.extra`` entries of the discovery audits (``audits/slices.py``,
    ``audits/proxies.py``, ``audits/attributions.py``) for one model's test predictions:

    - ``slice_frame``: the family's ``row_features`` plus the audit groups (sensitive and
      declared columns), sensitive and non-sensitive alike;
    - ``proxy_frame``: the row features without the sensitive columns themselves (a column
      predicts itself), and ``sensitive_excluded``: whether they were left out of the features;
    - ``attribution``: the model's scalar input columns and its ``predict``, or the reason
      there is nothing to attribute per column (one text or image column)."""
    import pandas as pd

    rows = (family.row_features or scalar_row_features)(split, roles).reset_index(drop=True)
    test = split.test.reset_index(drop=True)
    groups = [g for g in roles.groups if g in test.columns and g not in rows.columns]
    sensitive = set(roles.groups)
    inputs = [c for c in roles.features if c in test.columns and _scalar_column(test[c])]
    if len(inputs) == len(roles.features) and len(inputs) >= 2:
        attribution: dict[str, Any] = {"frame": test[inputs], "predict": predictor.predict, "columns": inputs}
    else:  # one text or image per row: attributing it whole says only that it matters
        attribution = {
            "reason": f"the model reads one input per row ({', '.join(roles.features)}), not columns to attribute to "
            "(for text, the identity audit measures what swapping identity terms changes)"
        }
    return {
        "slice_frame": pd.concat([rows, test[groups]], axis=1),
        "proxy_frame": rows[[c for c in rows.columns if c not in sensitive]],
        "sensitive_excluded": bool(exclude_sensitive),
        "attribution": attribution,
    }
