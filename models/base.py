"""What a model family is, and the small helpers every family shares.

A family = one file in ``models/`` ending in a ``Family`` value + one line in
``models.FAMILIES`` (see ARCHITECTURE.md, "Extension points").
"""
from __future__ import annotations

import os
import random
from dataclasses import dataclass, fields
from typing import Any, Callable

import numpy as np

from data_contracts.errors import ConfigError

UNKNOWN_PARAM = "model.params.{key}: unknown hyperparameter for family '{family}' (known: {known})"
BAD_PARAM = "model.params: {error}"


@dataclass(frozen=True)
class Family:
    """A model family: everything the pipeline needs to train and audit one kind of model."""

    name: str
    task: str  # "binary" | "multiclass" | "rating-ranking"
    description: str
    config_cls: type  # stdlib dataclass of hyperparameters
    make_preprocessor: Callable[..., Any]  # (contract) -> unfitted sklearn transformer
    build_model: Callable[..., Any]  # (n_features, config) -> torch.nn.Module
    make_criterion: Callable[..., Any]  # (reduction) -> torch loss module
    baselines: dict[str, Callable[..., Any]]  # name -> (contract, seed) -> unfitted sklearn estimator

    def make_config(self, params: dict[str, Any]) -> Any:
        """Build the family's hyperparameter dataclass, naming any unknown key."""
        known = [f.name for f in fields(self.config_cls)]
        for key in params:
            if key not in known:
                raise ConfigError(
                    UNKNOWN_PARAM.format(key=key, family=self.name, known=", ".join(known))
                )
        try:
            return self.config_cls(**params)
        except (TypeError, ValueError) as exc:
            raise ConfigError(BAD_PARAM.format(error=exc)) from None


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
