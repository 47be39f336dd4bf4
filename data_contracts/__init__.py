"""Data contracts: per dataset, the column roles, the GX expectation suite and the loader.

Import-light on purpose (stdlib only): every package may import this one. pandas, yaml and
great_expectations are imported inside the functions that need them.

A dataset is a ``contract.yaml`` anywhere on disk (docs/own-data.md): ``get_contract`` takes a
registered name (``CONTRACTS``) or the path of such a file or of its folder. A contract that
declares ``read:`` and its ``columns:`` (types, categories, ranges) is read by the generic loader
and validated by a GX suite generated from those declarations (``impactflow.data_contracts.spec``); a
registered ``loader:`` (``LOADERS``) stays for special formats (MNIST idx, MovieLens, ...), and a
hand-written ``suite:`` is optional when the columns are declared.
"""

from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from impactflow.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "Contract",
    "CONTRACTS",
    "LOADERS",
    "get_contract",
    "load_dataset",
    "contract_from_yaml",
    "is_contract_path",
    "resolve_contract_ref",
]

HERE = Path(__file__).resolve().parent

UNKNOWN_CONTRACT = (
    "Unknown data contract {name!r}: neither a registered name ({known}) nor a contract.yaml (or a folder holding one)"
)
BAD_CONTRACT = "Contract file {path}: {problem}"

#: Loader name (``loader:`` in contract.yaml) -> "module:function", imported when used; plus
#: the ``impactflow.loaders`` entry points of installed packages (data_contracts.plugins).
LOADERS: dict[str, str] = {
    "uci_adult": "impactflow.data_contracts.adult:load_uci_adult",
    "sms_spam": "impactflow.data_contracts.sms_spam:load_sms_spam",
    "jigsaw": "impactflow.data_contracts.jigsaw:load_jigsaw",
    "mnist": "impactflow.data_contracts.mnist:load_mnist",
    "colored_mnist": "impactflow.data_contracts.colored_mnist:load_colored_mnist",
    "movielens": "impactflow.data_contracts.movielens:load_movielens",
    "synthetic_ratings": "impactflow.data_contracts.synthetic_ratings:load_synthetic_ratings",
}


def _plugin_registries() -> None:
    from impactflow.data_contracts.plugins import GROUPS, PluginRegistry, reference

    global LOADERS
    LOADERS = PluginRegistry(LOADERS, GROUPS["loaders"], "loader", reference)


_plugin_registries()


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
    suite_path: Path | None  # hand-written GX ExpectationSuite JSON (optional with declared columns)
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
    # The outcome that is good for the person (e.g. a granted loan); one of ``labels``. None: not
    # declared (audits then take ``positive_label`` as the favourable one, as before).
    favourable_outcome: str | None = None
    # Declared columns (``columns:`` as a mapping; derived columns last): the GX suite is generated
    # from them (data_contracts.spec.generate_suite), merged with ``suite_path`` when given.
    declarations: tuple[Any, ...] = ()  # data_contracts.spec.ColumnSpec
    derived: tuple[Any, ...] = ()  # data_contracts.spec.DerivedSpec, applied by load_dataset
    contract_path: Path | None = None  # the contract.yaml it was read from

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


_REQUIRED = ("name", "target", "sensitive", "min_group_size")
_LEGACY_REQUIRED = ("default_files", "loader", "suite", "source", "license")
_OPTIONAL = (
    "weight",
    "exclude_from_features",
    "columns",
    "positive_label",
    "labels",
    "categorical",
    "numeric",
    "features",
    "groups",
    "synthetic_groups",
    "split_column",
    "validation_view",
    "roles_extra",
    "allow_identifiers",
    "quasi_identifiers",
    "read",
    "derived",
    "favourable_outcome",
    *_LEGACY_REQUIRED,
)
_KEYS = (*_REQUIRED, *_OPTIONAL)
NOT_STATED = "not stated in the contract"


def _resolve_loader(name: str, path: Path) -> Callable[[Sequence[Path]], Any]:
    if name not in LOADERS:
        raise ConfigError(
            BAD_CONTRACT.format(
                path=path,
                problem=f"loader: unknown loader {name!r} (known: {', '.join(sorted(LOADERS))}"
                "; or declare read: for the generic loader)",
            )
        )
    from impactflow.data_contracts.plugins import broken, is_plugin

    ep = is_plugin(LOADERS, name)
    if ep is None:
        return _resolve_callable(LOADERS[name])
    try:
        loader = _resolve_callable(LOADERS[name])
    except Exception as exc:  # a plugin that does not import: one line naming it
        raise broken(ep, exc) from None
    if not callable(loader):
        raise broken(ep, TypeError(f"{LOADERS[name]} is not a function (paths -> DataFrame)"))
    return loader


def _resolve_callable(ref: str) -> Callable[..., Any]:
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


def contract_from_yaml(path: Path) -> Contract:
    """Build a ``Contract`` from a contract.yaml (paths relative to its folder). Every problem is
    one ``ConfigError`` line naming the file, the key and the value."""
    import yaml

    from impactflow.data_contracts import spec as sp

    path = Path(path).resolve()
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        from impactflow.data_contracts.files import parse_reason

        raise ConfigError(BAD_CONTRACT.format(path=path, problem=parse_reason(exc))) from None
    if not isinstance(raw, dict):
        raise ConfigError(BAD_CONTRACT.format(path=path, problem="not a mapping of keys"))
    where = sp._Where(path)
    for k in raw:
        if k not in _KEYS:
            raise where.fail(str(k), f"unknown key{sp.did_you_mean(str(k), _KEYS)}")
    declared = isinstance(raw.get("columns"), dict)
    required = _REQUIRED if declared else (*_REQUIRED, *_LEGACY_REQUIRED)
    for k in required:
        if k not in raw:
            hint = " (or declare read: and the columns as a mapping)" if k in _LEGACY_REQUIRED else ""
            raise where.fail(k, f"missing{hint}")
    if "read" in raw and "loader" in raw:
        raise where.fail("read", "give read: (the generic loader) or loader: (a registered reader), not both")
    if declared and "read" not in raw and "loader" not in raw:
        raise where.fail("read", "missing: say how to read the files (format, delimiter, header, ...)")
    if "read" in raw and not declared:
        raise where.fail("columns", "with read:, declare every column as a mapping (name: {type: ...})")

    from impactflow.data_contracts.names import is_safe_name

    if not is_safe_name(raw["name"]):
        raise where.fail("name", f"{raw['name']!r} is not a safe name (letters, digits, '.', '_', '-')")

    def tup(key: str) -> tuple[str, ...]:
        value = raw.get(key) or ()
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise where.fail(key, f"expected a list, got {value!r}")
        return tuple(str(x) for x in value)

    folder = path.parent
    mgs = raw["min_group_size"]
    if isinstance(mgs, bool) or not isinstance(mgs, int) or mgs < 1:
        raise where.fail("min_group_size", f"expected a whole number >= 1, got {mgs!r}")
    files = raw.get("default_files") or ()
    if isinstance(files, str):
        files = [files]
    default_files = tuple(folder / str(f) for f in files)
    suite_path = folder / str(raw["suite"]) if raw.get("suite") else None
    if suite_path is not None and not suite_path.is_file():
        raise where.fail("suite", f"{raw['suite']!r}: file not found (at {suite_path})")

    declarations: tuple[Any, ...] = ()
    derived: tuple[Any, ...] = ()
    labels = tup("labels")
    categorical, numeric, columns = tup("categorical"), tup("numeric"), tup("columns") if not declared else ()
    if declared:
        for k in ("categorical", "numeric", "labels"):
            if k in raw:
                raise where.fail(
                    k, "not with declared columns: it follows from columns.<name>.type (and the target's values)"
                )
        specs = {}
        for name, col in raw["columns"].items():
            specs[str(name)] = sp.parse_column(str(name), col, where)
        if not specs:
            raise where.fail("columns", "no columns declared")
        derived_raw = raw.get("derived") or {}
        derived_raw = sp._mapping(derived_raw, "derived", where)
        known = dict(specs)
        derived_list = []
        for name, d in derived_raw.items():
            ds = sp.parse_derived(str(name), d, known, where)
            derived_list.append(ds)
            if ds.name not in known:  # a new column: a category of its labels / mapped values
                known[ds.name] = sp.ColumnSpec(
                    name=ds.name, type="category", values=ds.values, description=ds.description, derived=True
                )
        derived = tuple(derived_list)
        declarations = tuple(known.values())
        columns = tuple(known)
        target = str(raw["target"])
        # the feature kinds (the target is neither, as in the registered contracts)
        categorical = tuple(n for n, s in known.items() if s.type == "category" and n != target)
        numeric = tuple(n for n, s in known.items() if s.type in ("integer", "number") and n != target)
        if target not in known:
            raise where.fail("target", f"{target!r} is not a declared column{sp.did_you_mean(target, list(known))}")
        if known[target].type == "category":
            if not known[target].values:
                raise where.fail(f"columns.{target}.values", "missing: the target needs its labels (allowed values)")
            labels = tuple(known[target].values)
        elif known[target].type == "text":
            raise where.fail(f"columns.{target}.type", "the target must be a category (labels) or numeric (ratings)")
        for key in (
            "sensitive",
            "weight",
            "exclude_from_features",
            "allow_identifiers",
            "quasi_identifiers",
            "groups",
            "synthetic_groups",
            "split_column",
            "features",
        ):
            for col in tup(key):
                if col not in known:
                    raise where.fail(key, f"{col!r} is not a declared column{sp.did_you_mean(col, list(known))}")
        for col in tup("sensitive"):
            s = known[col]
            if s.type != "category" or not s.values:
                raise where.fail(
                    f"columns.{col}",
                    "a sensitive column must be a category with its values listed (the groups), or a derived column",
                )
            if s.max_missing > 0:
                raise where.fail(
                    f"columns.{col}.max_missing",
                    f"{s.max_missing!r}: a sensitive column may not "
                    "miss values (fairness audits need every row's group)",
                )
        if known[target].max_missing > 0:
            raise where.fail(
                f"columns.{target}.max_missing", f"{known[target].max_missing!r}: the target may not miss values"
            )
        if raw.get("weight") is not None and known[str(raw["weight"])].type not in ("integer", "number"):
            raise where.fail("weight", f"{raw['weight']!r} must be a numeric column")
        if "read" in raw:
            read = sp.parse_read(raw["read"], where)
            file_columns = tuple(n for n, s in specs.items())
            text = tuple(n for n, s in specs.items() if s.type in ("category", "text"))
            loader = sp.generic_loader(read, file_columns, text)
        else:
            loader = _resolve_loader(str(raw["loader"]), path)
    else:
        if raw.get("derived"):
            raise where.fail("derived", "needs declared columns (columns: as a mapping)")
        loader = _resolve_loader(str(raw["loader"]), path)

    for key in ("positive_label", "favourable_outcome"):
        sp.no_booleans(raw.get(key), key, where)

    def opt(key: str) -> str | None:
        return None if raw.get(key) is None else str(raw[key])

    contract = Contract(
        name=str(raw["name"]),
        target=str(raw["target"]),
        positive_label=opt("positive_label"),
        labels=labels,
        sensitive=tup("sensitive"),
        weight=opt("weight"),
        exclude_from_features=tup("exclude_from_features"),
        categorical=categorical,
        numeric=numeric,
        min_group_size=mgs,
        default_files=default_files,
        suite_path=suite_path,
        source=str(raw.get("source") or NOT_STATED),
        license=str(raw.get("license") or NOT_STATED),
        loader=loader,
        columns=columns,
        features=tup("features"),
        groups=tup("groups"),
        synthetic_groups=tup("synthetic_groups"),
        split_column=opt("split_column"),
        validation_view=_resolve_callable(raw["validation_view"]) if raw.get("validation_view") else None,
        roles_extra=tuple(sorted((raw.get("roles_extra") or {}).items())),
        allow_identifiers=tup("allow_identifiers"),
        quasi_identifiers=tup("quasi_identifiers"),
        favourable_outcome=opt("favourable_outcome"),
        declarations=declarations,
        derived=derived,
        contract_path=path,
    )
    if contract.positive_label is not None and contract.positive_label not in contract.labels:
        raise where.fail(
            "positive_label", f"{contract.positive_label!r} is not one of the labels {list(contract.labels)}"
        )
    if contract.favourable_outcome is not None:
        if not contract.labels:
            raise where.fail("favourable_outcome", f"{contract.favourable_outcome!r}: the target has no labels")
        if contract.favourable_outcome not in contract.labels:
            raise where.fail(
                "favourable_outcome",
                f"{contract.favourable_outcome!r} is not one of the labels {list(contract.labels)}",
            )
    if not declared:
        problems = []
        if contract.categorical and not set(contract.sensitive) <= set(contract.categorical):
            problems.append("every sensitive column must be categorical")
        if contract.columns:
            listed = {contract.target, *contract.categorical, *contract.numeric}
            if set(contract.columns) != listed:
                problems.append(
                    f"columns vs target+categorical+numeric differ: {sorted(set(contract.columns) ^ listed)}"
                )
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


def is_contract_path(value: str) -> bool:
    """Whether ``value`` names a file or folder rather than a registered contract."""
    return value not in CONTRACTS


def _contract_file(value: str) -> Path:
    p = Path(value).expanduser()
    if p.is_dir():
        p = p / "contract.yaml"
    return p


def resolve_contract_ref(value: str) -> str:
    """A registered name unchanged; a path made absolute (its contract.yaml, if a folder), so
    that every task -- whatever its working directory -- reads the same file. ConfigError when
    it is neither."""
    if value in CONTRACTS:
        return value
    p = _contract_file(value)
    if not p.is_file():
        if not p.exists() and "/" not in value and "\\" not in value and not value.endswith((".yaml", ".yml")):
            raise ConfigError(UNKNOWN_CONTRACT.format(name=value, known=", ".join(sorted(CONTRACTS))))
        raise ConfigError(f"Contract file {p}: not found (a registered name: {', '.join(sorted(CONTRACTS))})")
    return str(p.resolve())


@functools.lru_cache(maxsize=32)
def _file_contract(path: str, mtime_ns: int, size: int) -> Contract:
    return contract_from_yaml(Path(path))


def get_contract(name: str) -> Contract:
    """The contract registered as ``name``, or read from the contract.yaml at that path (or in
    that folder); ``ConfigError`` otherwise. A file is re-read when it changes."""
    if not isinstance(name, (str, Path)):
        raise ConfigError(UNKNOWN_CONTRACT.format(name=name, known=", ".join(sorted(CONTRACTS))))
    factory = CONTRACTS.get(str(name))
    if factory is not None:
        return factory()
    path = Path(resolve_contract_ref(str(name)))
    st = path.stat()
    return _file_contract(str(path), st.st_mtime_ns, st.st_size)


def load_dataset(contract: Contract, paths: Sequence[Path | str] | Path | str | None = None) -> pd.DataFrame:
    """Read the dataset with the contract's loader: ``paths`` (one or several files), or the
    files shipped with the contract when ``None``; then add its derived columns. Not validated:
    see ``validation.validate``."""
    if paths is None:
        files = list(contract.default_files)
    elif isinstance(paths, (str, Path)):
        files = [Path(paths)]
    else:
        files = [Path(p) for p in paths]
    df = contract.loader(files)
    if contract.derived:
        from impactflow.data_contracts.spec import apply_derived

        df = apply_derived(df, contract.derived)
    return df
