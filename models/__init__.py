"""Model families. One file per family + one line here (explicit, no registration magic).

Values are module paths so that listing/validating family names does not import torch;
``get_family`` imports the module on first use.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from data_contracts.errors import ConfigError

if TYPE_CHECKING:
    from models.base import Family

FAMILIES: dict[str, str] = {
    "tabular": "models.tabular",
    "text": "models.text",
    "image": "models.image",
    "recommender": "models.recommender",
}

UNKNOWN_FAMILY = "model.family={name!r}: unknown model family (known: {known})"


def get_family(name: str) -> "Family":
    if name not in FAMILIES:
        raise ConfigError(UNKNOWN_FAMILY.format(name=name, known=", ".join(sorted(FAMILIES))))
    return importlib.import_module(FAMILIES[name]).FAMILY
