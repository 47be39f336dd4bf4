"""Data contracts: per dataset, the column roles, the GX expectation suite and the loader.

Import-light on purpose (stdlib only): every package may import this one. pandas, yaml and
great_expectations are imported inside the functions that need them.

Adding a dataset = a folder ``data_contracts/<name>/`` with ``contract.yaml`` +
``expectations.json`` (+ its files), one line in ``CONTRACTS`` and, when it needs a new
reader, one line in ``LOADERS``.
"""
from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from data_contracts.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Contract", "CONTRACTS", "LOADERS", "get_contract", "load_dataset", "contract_from_yaml"]

HERE = Path(__file__).resolve().parent

UNKNOWN_CONTRACT = "Unknown data contract {name!r} (known: {known})"
BAD_CONTRACT = "Contract file {path}: {problem}"

#: Loader name (``loader:`` in contract.yaml) -> "module:function", imported when used.
LOADERS: dict[str, str] = {
    "uci_adult": "data_contracts.adult:load_uci_adult",
    "sms_spam": "data_contracts.sms_spam:load_sms_spam",
    "jigsaw": "data_contracts.jigsaw:load_jigsaw",
    "mnist": "data_contracts.mnist:load_mnist",
    "colored_mnist": "data_contracts.colored_mnist:load_colored_mnist",
    "movielens": "data_contracts.movielens:load_movielens",
    "synthetic_ratings": "data_contracts.synthetic_ratings:load_synthetic_ratings",
}


@dataclass(frozen=True)
class Contract:
    """Column roles and files of one dataset (built from its contract.yaml)."""

    name: str
    target: str
    positive_label: str | None  # binary targets only
    labels: tuple[str, ...]  # class names (empty for a rating target)
    sensitive: tuple[str, ...]
    weight: str | None
    exclude_from_features: tuple[str, ...]
    categorical: tuple[str, ...]
    numeric: tuple[str, ...]
    min_group_size: int
    default_files: tuple[Path, ...]  # absolute
    suite_path: Path  # GX ExpectationSuite JSON
    source: str
    license: str
    loader: Callable[[Sequence[Path]], "pd.DataFrame"]
    columns: tuple[str, ...] = ()  # all columns in file order
    # Non-tabular datasets name their model inputs directly (e.g. [text], [image], [user_id, item_id]).
    features: tuple[str, ...] = ()
    # Declared, non-demographic groups the audits split results by (e.g. a synthetic colour);
    # ``synthetic_groups`` marks the ones the project made up, so reports can say so.
    groups: tuple[str, ...] = ()
    synthetic_groups: tuple[str, ...] = ()
    # A column holding "train"/"test" when the dataset comes with an official test set.
    split_column: str | None = None
    # "module:function" turning the loaded frame into the frame GX validates (e.g. one row of
    # summary statistics per image); None = validate the loaded frame itself.
    validation_view: Callable[["pd.DataFrame"], "pd.DataFrame"] | None = None
    roles_extra: tuple[tuple[str, Any], ...] = ()  # family-specific roles, e.g. (("text", "message"),)
    # Columns the PII scan (data_contracts.pii) may find identifying but the contract allows
    # (e.g. pseudonymous user ids a recommender needs); quasi-identifiers for k-anonymity.
    allow_identifiers: tuple[str, ...] = ()
    quasi_identifiers: tuple[str, ...] = ()

    @property
    def feature_columns(self) -> tuple[str, ...]:
        """Categorical + numeric columns minus the target, the weight and the exclusions
        (sensitive columns included: dropping them is a run-config choice)."""
        if self.features:
            return self.features
        drop = {self.target, *self.exclude_from_features}
        if self.weight:
            drop.add(self.weight)
        order = self.columns or (*self.numeric, *self.categorical)
        kinds = {*self.categorical, *self.numeric}
        return tuple(c for c in order if c in kinds and c not in drop)


_REQUIRED = (
    "name", "target", "sensitive", "min_group_size", "default_files", "loader", "suite", "source", "license",
)
_OPTIONAL = ("weight", "exclude_from_features", "columns", "positive_label", "labels", "categorical", "numeric",
             "features", "groups", "synthetic_groups", "split_column", "validation_view", "roles_extra",
             "allow_identifiers", "quasi_identifiers")


def _resolve_loader(name: str, path: Path) -> Callable[[Sequence[Path]], Any]:
    if name not in LOADERS:
        raise ConfigError(
            BAD_CONTRACT.format(path=path, problem=f"unknown loader {name!r} (known: {', '.join(sorted(LOADERS))})")
        )
    return _resolve_callable(LOADERS[name])


def _resolve_callable(ref: str) -> Callable[..., Any]:
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


def contract_from_yaml(path: Path) -> Contract:
    """Build a ``Contract`` from a contract.yaml (paths relative to its folder)."""
    import yaml

    path = Path(path).resolve()
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        from data_contracts.files import parse_reason

        raise ConfigError(BAD_CONTRACT.format(path=path, problem=parse_reason(exc))) from None
    if not isinstance(raw, dict):
        raise ConfigError(BAD_CONTRACT.format(path=path, problem="not a mapping"))
    unknown = sorted(set(raw) - set(_REQUIRED) - set(_OPTIONAL))
    missing = [k for k in _REQUIRED if k not in raw]
    if unknown or missing:
        problem = "; ".join(
            p for p in (unknown and f"unknown keys {unknown}", missing and f"missing keys {missing}") if p
        )
        raise ConfigError(BAD_CONTRACT.format(path=path, problem=problem))

    def tup(key: str) -> tuple[str, ...]:
        return tuple(str(x) for x in (raw.get(key) or ()))

    folder = path.parent
    contract = Contract(
        name=str(raw["name"]),
        target=str(raw["target"]),
        positive_label=None if raw.get("positive_label") is None else str(raw["positive_label"]),
        labels=tup("labels"),
        sensitive=tup("sensitive"),
        weight=raw.get("weight"),
        exclude_from_features=tup("exclude_from_features"),
        categorical=tup("categorical"),
        numeric=tup("numeric"),
        min_group_size=int(raw["min_group_size"]),
        default_files=tuple(folder / f for f in raw["default_files"]),
        suite_path=folder / raw["suite"],
        source=str(raw["source"]),
        license=str(raw["license"]),
        loader=_resolve_loader(str(raw["loader"]), path),
        columns=tup("columns"),
        features=tup("features"),
        groups=tup("groups"),
        synthetic_groups=tup("synthetic_groups"),
        split_column=raw.get("split_column"),
        validation_view=_resolve_callable(raw["validation_view"]) if raw.get("validation_view") else None,
        roles_extra=tuple(sorted((raw.get("roles_extra") or {}).items())),
        allow_identifiers=tup("allow_identifiers"),
        quasi_identifiers=tup("quasi_identifiers"),
    )
    problems = []
    if contract.positive_label is not None and contract.positive_label not in contract.labels:
        problems.append(f"positive_label {contract.positive_label!r} not in labels")
    if contract.categorical and not set(contract.sensitive) <= set(contract.categorical):
        problems.append("every sensitive column must be categorical")
    if contract.columns:
        listed = {contract.target, *contract.categorical, *contract.numeric}
        if set(contract.columns) != listed:
            problems.append(f"columns vs target+categorical+numeric differ: {sorted(set(contract.columns) ^ listed)}")
    if problems:
        raise ConfigError(BAD_CONTRACT.format(path=path, problem="; ".join(problems)))
    return contract


@functools.cache
def folder_contract(folder: str) -> Contract:
    """The contract in ``data_contracts/<folder>/contract.yaml`` (built once per process)."""
    return contract_from_yaml(HERE / folder / "contract.yaml")


#: Contract name -> factory (explicit; one line per dataset).
CONTRACTS: dict[str, Callable[[], Contract]] = {
    # UCI Adult (census income; sex, race)
    "adult": functools.partial(folder_contract, "adult"),
    # SMS Spam Collection v.1, de-duplicated
    "sms_spam": functools.partial(folder_contract, "sms_spam"),
    # identity-term bias sets: madlibs for training, real comments as the official test set
    "jigsaw": functools.partial(folder_contract, "jigsaw"),
    # MNIST: 5k training subset + official test set
    "mnist": functools.partial(folder_contract, "mnist"),
    # Colored MNIST: MNIST with a spurious, synthetic stroke colour
    "colored_mnist": functools.partial(folder_contract, "colored_mnist"),
    # MovieLens 100K from a user-supplied folder, never shipped
    "movielens": functools.partial(folder_contract, "movielens"),
    # seeded synthetic ratings with made-up user groups
    "synthetic_ratings": functools.partial(folder_contract, "synthetic_ratings"),
}


def get_contract(name: str) -> Contract:
    """The contract called ``name``; ``ConfigError`` listing the known names otherwise."""
    try:
        factory = CONTRACTS[name]
    except (KeyError, TypeError):
        raise ConfigError(UNKNOWN_CONTRACT.format(name=name, known=", ".join(sorted(CONTRACTS)))) from None
    return factory()


def load_dataset(contract: Contract, paths: Sequence[Path | str] | Path | str | None = None) -> pd.DataFrame:
    """Read the dataset with the contract's loader: ``paths`` (one or several files), or the
    files shipped with the contract when ``None``. Not validated: see ``validation.validate``."""
    if paths is None:
        files = list(contract.default_files)
    elif isinstance(paths, (str, Path)):
        files = [Path(paths)]
    else:
        files = [Path(p) for p in paths]
    return contract.loader(files)
