"""Model families. One file per family + one line here (explicit, no registration magic).

Values are module paths so that listing/validating family names does not import torch;
``get_family`` imports the module on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from impactflow.errors import ConfigError
from impactflow.data_contracts.plugins import GROUPS, PluginRegistry, broken, is_plugin, reference

if TYPE_CHECKING:
    from impactflow.models.base import Family

_BUILTIN: dict[str, str] = {
    "tabular": "impactflow.models.tabular",
    "text": "impactflow.models.text",
    "image": "impactflow.models.image",
    "recommender": "impactflow.models.recommender",
    "hf": "impactflow.models.hf",
}

#: Family name -> module path (or "module:attribute" of a Family), with the ``impactflow.families``
#: entry points of installed packages added on first look-up (data_contracts.plugins).
FAMILIES: dict[str, str] = PluginRegistry(_BUILTIN, GROUPS["families"], "family", reference)

UNKNOWN_FAMILY = "model.family={name!r}: unknown model family (known: {known})"


def get_family(name: str) -> "Family":
    if name not in FAMILIES:
        raise ConfigError(UNKNOWN_FAMILY.format(name=name, known=", ".join(sorted(FAMILIES))))
    ref = FAMILIES[name]
    module, _, attr = ref.partition(":")
    ep = is_plugin(FAMILIES, name)
    if ep is None:
        return getattr(importlib.import_module(module), attr or "FAMILY")
    from impactflow.models.base import Family

    try:
        family = importlib.import_module(module)
        for part in (attr or "FAMILY").split("."):
            family = getattr(family, part)
    except Exception as exc:  # a plugin that does not import: one line naming it
        raise broken(ep, exc) from None
    if not isinstance(family, Family):
        raise broken(ep, TypeError(f"{ref} is a {type(family).__name__}, not a models.base.Family"))
    if family.name != name:
        raise broken(ep, ValueError(f"its Family is named {family.name!r}, the entry point {name!r}"))
    return family
