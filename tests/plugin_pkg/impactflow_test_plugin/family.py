"""``tiny_logit``: logistic regression in torch over the tabular family's preprocessing."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn as nn

from impactflow.models.base import Family
from impactflow.models.tabular import make_criterion, make_preprocessor


@dataclass(frozen=True)
class TinyConfig:
    lr: float = 0.05
    batch_size: int = 64
    epochs: int = 3
    patience: int = 2


def build_model(spec: dict, config: TinyConfig) -> nn.Module:
    return nn.Sequential(nn.Linear(spec["n_features"], 1), nn.Flatten(0))


FAMILY = Family(
    name="tiny_logit",
    task="binary",
    description="logistic regression (torch), from the impactflow-test-plugin package",
    config_cls=TinyConfig,
    make_preprocessor=make_preprocessor,
    build_model=build_model,
    make_criterion=make_criterion,
    model_name="tiny_logit",
    audits=("performance", "fairness", "row_count"),
)
