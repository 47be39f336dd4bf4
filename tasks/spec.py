"""What one run is about, resolved once: its data contract, model family and column roles.

The flow builds one ``RunSpec`` from the run config and hands it to every task, instead of each
task looking the contract and the family up by name and building the roles again. Pickled (the
Dask task runner ships it to its workers), it keeps only the three names: a worker resolves them
once in its own process, through the same registries (plugins included).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from functools import cached_property
from typing import Any

from impactflow.models.base import Roles, roles_for


@dataclass(frozen=True)
class RunSpec:
    """``contract_ref``: a registered contract name or a ``contract.yaml`` path; ``family_name``:
    a name in ``models.FAMILIES``; ``exclude_sensitive``: the run config's
    ``data.exclude_sensitive_from_features``."""

    contract_ref: str
    family_name: str
    exclude_sensitive: bool = False

    @classmethod
    def of(cls, cfg: Any) -> RunSpec:
        """The spec of a ``flows.config.RunConfig``."""
        return cls(str(cfg.data.contract), cfg.model.family, bool(cfg.data.exclude_sensitive_from_features))

    @cached_property
    def contract(self) -> Any:
        from impactflow.data_contracts import get_contract

        return get_contract(self.contract_ref)

    @cached_property
    def family(self) -> Any:
        from impactflow.models import get_family

        return get_family(self.family_name)

    @cached_property
    def roles(self) -> Roles:
        """The roles the models train with (sensitive columns left out of the features when the
        run excludes them)."""
        return roles_for(self.contract, self.family.task, self.exclude_sensitive)

    @cached_property
    def audit_roles(self) -> Roles:
        """The roles the audits read: every sensitive column is a group, whatever the features."""
        return roles_for(self.contract, self.family.task, False)

    def __getstate__(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}
