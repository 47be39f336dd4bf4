"""Run configuration: pydantic models (extra keys forbidden), loaded from a YAML preset
plus dotted ``--set key=value`` overrides. ``load_config`` is the only way to get one:
a typo or a missing file fails here, naming the key or path, before any task runs.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal, Mapping

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from impactflow.errors import ConfigError
from impactflow.data_contracts.names import is_safe_name, safe_name
from impactflow.task_kind import TaskKind

PRESETS_DIR = Path(__file__).parent / "presets"
UNKNOWN_PRESET = "--config {value!r}: no such preset or file (presets: {known})"
BAD_OVERRIDE = "--set {item!r}: expected key=value with a dotted key, e.g. model.params.epochs=1"
MISSING_FILE = "{key}: file not found: {path}"
YAML_ERROR = "{source}: not valid YAML: {error}"
MAX_CONFIG_BYTES = 1_000_000
MAX_CONFIG_NODES = 100_000


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataConfig(_Strict):
    contract: str = "adult"
    # None -> the files shipped with the contract. A file (or list of files) of the same shape,
    # or a folder for datasets made of several files (e.g. MovieLens: u.data, u.user, u.item).
    path: list[Path] | None = None
    sample: int | None = Field(default=None, gt=0, description="use a seeded random sample of N rows")
    exclude_sensitive_from_features: bool = False
    # Reuse an identical frame's earlier *passing* contract result (same values, suite, contract
    # and validation code) from <output_dir>/cache/validation instead of validating it again;
    # the report says when it was validated. See data_contracts/validation_cache.py.
    reuse_validation: bool = True

    @field_validator("contract", mode="after")
    @classmethod
    def _contract_path_absolute(cls, v: str) -> str:
        """A contract given as a path is made absolute (tasks read it whatever their working
        directory); a registered name stays as it is. Checked in ``check_references``."""
        from impactflow.data_contracts import CONTRACTS

        if v in CONTRACTS:
            return v
        p = Path(v).expanduser()
        if p.is_dir():
            p = p / "contract.yaml"
        return str(p.resolve()) if p.is_file() else v

    @field_validator("path", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        if isinstance(v, (str, Path)):
            return [v]
        return v


class SplitConfig(_Strict):
    validation: float = Field(default=0.15, gt=0, lt=0.5)
    test: float = Field(default=0.15, gt=0, lt=0.5)


class CostConfig(_Strict):
    """The cost of each error of a binary decision (relative units; models/threshold.py)."""

    false_positive: float = Field(gt=0, description="cost of predicting the positive label for a negative row")
    false_negative: float = Field(gt=0, description="cost of predicting the negative label for a positive row")


class ModelConfig(_Strict):
    family: str = "tabular"
    params: dict[str, Any] = Field(default_factory=dict)
    baselines: list[str] = Field(default_factory=lambda: ["logreg"])
    # binary tasks: predicted positive iff P(positive) >= threshold (null: 0.5, or chosen from costs)
    threshold: float | None = Field(default=None, gt=0, lt=1)
    # binary tasks: choose the threshold minimising false_positive x FP + false_negative x FN on the
    # validation split (under DP: the Bayes threshold of the costs); excludes model.threshold
    costs: CostConfig | None = None

    @model_validator(mode="after")
    def _one_decision_rule(self) -> "ModelConfig":
        if self.threshold is not None and self.costs is not None:
            raise ValueError("model.threshold and model.costs: give one (a fixed threshold, or costs to choose it)")
        return self


class TrainConfig(_Strict):
    device: str = "auto"
    amp: bool = True
    # torch CPU threads; null = 1 on machines with <= 2 cores (torch's default was measured
    # erratic and much slower there), else torch's default. See models.training.cpu_threads.
    threads: int | None = Field(default=None, ge=1)


class PrivacyConfig(_Strict):
    enabled: bool = False
    target_epsilon: float | None = Field(default=None, gt=0)
    noise_multiplier: float | None = Field(default=None, gt=0)
    delta: float = Field(default=1e-5, gt=0, lt=1)
    max_grad_norm: float = Field(default=1.0, gt=0)
    accountant: Literal["prv", "rdp"] = "prv"
    grad_sample_mode: Literal["ghost", "hooks", "functorch", "ew"] = "ghost"
    # With grad_sample_mode "ghost": how the clipped gradient is computed. "bookkeeping" =
    # ghost clipping in one backward pass (models/dp_bookkeeping.py) for models made of Linear,
    # Embedding and LayerNorm layers -- others (e.g. the CNN) use Opacus's, and the run's DP
    # metadata says which ran; "opacus" = always Opacus's two-backward ghost clipping.
    clipping: Literal["bookkeeping", "opacus"] = "bookkeeping"
    # Privacy-budget ledger (tasks/ledger.py): total epsilon/delta per dataset (SHA-256) over all
    # runs, basic composition; None = unlimited but still recorded. Ledger: $IMPACTFLOW_LEDGER_URL or
    # <tracking.output_dir>/privacy_ledger.db. min_k: k-anonymity threshold reported for the
    # contract's quasi_identifiers.
    budget_epsilon: float | None = Field(default=None, gt=0)
    budget_delta: float | None = Field(default=None, gt=0, lt=1)
    min_k: int = Field(default=5, ge=1)

    @model_validator(mode="after")
    def _noise_given(self) -> "PrivacyConfig":
        if self.enabled and self.target_epsilon is None and self.noise_multiplier is None:
            raise ValueError("privacy.enabled needs privacy.target_epsilon or privacy.noise_multiplier")
        if self.target_epsilon is not None and self.noise_multiplier is not None:
            raise ValueError("set only one of privacy.target_epsilon and privacy.noise_multiplier")
        return self


class SecretsConfig(_Strict):
    # Memorisation audit (models/memorisation.py, audits/memorisation.py): random secrets in a
    # fixed format planted in the training data (only there), `per_repeat` per label repeated
    # each number of times in `repeats`, ranked after training among `candidates` never-trained
    # strings (exposure, Carlini et al. 2019). enabled: null = on for the families that run the
    # memorisation audit (hf); true also works for the text family; binary text tasks only.
    enabled: bool | None = None  # null: on for the hf family, off for the others
    repeats: list[int] = Field(default_factory=lambda: [1, 4, 16], min_length=1)  # each 1..1000, distinct
    per_repeat: int = Field(default=4, ge=1, le=100)  # secrets per number of repeats and label
    candidates: int = Field(default=1000, ge=10, le=1_000_000)  # never-trained strings each secret is ranked among
    length: int = Field(default=6, ge=2, le=32)  # symbols per secret

    @field_validator("repeats")
    @classmethod
    def _repeats(cls, value: list[int]) -> list[int]:
        if any(not 1 <= r <= 1000 for r in value) or len(set(value)) != len(value):
            raise ValueError(f"expected distinct numbers of repeats between 1 and 1000, got {value}")
        return value


class PrivacyAuditConfig(_Strict):
    # Stronger membership inference and empirical epsilon lower bounds (audits/lira.py,
    # models/privacy_attack.py). reference_models: K LiRA reference models (each one extra
    # training run of the model; 0 = LiRA off). canaries: m canaries of the one-run audit (one
    # extra training run); null = 500 for DP runs (epsilon_LB next to the accountant's epsilon)
    # and 0 otherwise. audit_members: audited members (and as many non-members) for LiRA.
    reference_models: int = Field(default=0, ge=0, le=64)
    audit_members: int = Field(default=500, ge=10)
    canaries: int | None = Field(default=None, ge=0)
    canary_guess_fraction: float = Field(default=0.2, gt=0, le=0.5)
    secrets: SecretsConfig = SecretsConfig()


class OrchestrationConfig(_Strict):
    # "sequential": tasks run one after another in the flow's process (default);
    # "dask": the model and its baselines train concurrently on a Dask cluster through
    # prefect-dask — a local cluster of ``dask_workers`` processes, or ``dask_address``.
    task_runner: Literal["sequential", "dask"] = "sequential"
    dask_workers: int = Field(default=2, ge=1)
    dask_address: str | None = None  # e.g. tcp://scheduler:8786 (an existing cluster)


class TrackingConfig(_Strict):
    experiment: str | None = None  # default: "impactflow-<preset>"
    output_dir: Path = Path("impactflow_runs")
    # Register every model version in the MLflow registry (gate results as tags); only a
    # version whose gates all passed gets the "champion" alias.
    register_models: bool = True


class PromotionConfig(_Strict):
    """Champion versus challenger (tasks/watch.py, audits/champion.py): before the ``champion``
    alias moves, the current champion is re-scored on this run's test rows and the new model is
    promoted only if its gates pass and no gated metric is significantly worse than the
    champion's by more than ``max_regression`` (in the metric's own units; a mapping gives one
    tolerance per gate name or its last segment, ``default`` for the rest)."""

    compare_with_champion: bool = True  # false: no comparison, the decision reads "not compared"
    max_regression: float | dict[str, float] = (
        0.0  # tolerance in the metric's units (0: any significant regression holds)
    )
    alpha: float = Field(default=0.05, gt=0, lt=0.5)  # one-sided level of "significantly worse"
    bootstrap: int = Field(default=1000, ge=100)  # paired bootstrap resamples
    seed: int = 0  # of the bootstrap resamples

    @field_validator("max_regression")
    @classmethod
    def _non_negative(cls, value: float | dict[str, float]) -> float | dict[str, float]:
        values = value.values() if isinstance(value, dict) else [value]
        bad = [v for v in values if not math.isfinite(v) or v < 0]
        if bad:
            raise ValueError(f"a tolerance is a finite number >= 0, got {bad[0]!r}")
        return value


class UseConfig(_Strict):
    """Intended use and employment/oversight statements for report sections 3 and 9 (free text
    written by the run owner; what is left empty renders as "not stated by the run owner")."""

    purpose: str = ""
    intended_users: list[str] = Field(default_factory=list)
    out_of_scope_uses: list[str] = Field(default_factory=list)
    affected_groups: list[str] = Field(default_factory=list)
    decision_type: str = ""  # e.g. "advisory score reviewed by a person", "fully automated"
    human_review: str = ""
    affected_jobs: list[str] = Field(default_factory=list)
    training_needs: list[str] = Field(default_factory=list)


class ResourcesConfig(_Strict):
    """Assumptions of the energy/CO2e estimate in report section 8 (audits/resources.py)."""

    watts_per_core: float = Field(default=12.0, gt=0)  # Green Algorithms default per-core TDP share
    pue: float = Field(default=1.0, ge=1.0)  # power usage effectiveness of the machine's room
    grid_gco2_per_kwh: float = Field(default=480.0, ge=0)  # world average 2023 (Ember 2024)
    grid_source: str = ""  # where the local grid intensity comes from, when set


class DisclosureConfig(_Strict):
    # Reports, plots and logged audit tables show no cell (group row, confusion cell, bin) of
    # fewer than this many people: such rows are removed, such counts blanked (audits/disclosure.py).
    min_cell_size: int = Field(default=10, ge=1)


class RunConfig(_Strict):
    preset: str = "custom"
    extends: str | None = None  # name of the preset this one was layered on (informational)
    description: str = ""
    seed: int = 0
    data: DataConfig = DataConfig()
    split: SplitConfig = SplitConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    privacy: PrivacyConfig = PrivacyConfig()
    privacy_audit: PrivacyAuditConfig = PrivacyAuditConfig()
    # gates.<audit>.<threshold>: keys are checked against audits.AUDIT_THRESHOLDS (check_references);
    # gates.<audit>.skip.<threshold>: "<reason>" skips a gate on purpose (reported as skipped)
    gates: dict[str, dict[str, Any]] = Field(default_factory=dict)
    tracking: TrackingConfig = TrackingConfig()
    promotion: PromotionConfig = PromotionConfig()
    orchestration: OrchestrationConfig = OrchestrationConfig()
    use: UseConfig = UseConfig()
    resources: ResourcesConfig = ResourcesConfig()
    disclosure: DisclosureConfig = DisclosureConfig()

    @property
    def experiment_name(self) -> str:
        return self.tracking.experiment or f"impactflow-{self.preset}"


def list_presets() -> list[str]:
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


def _read_yaml(path: Path) -> dict[str, Any]:
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: config file is larger than {MAX_CONFIG_BYTES} bytes")
    try:
        # SafeLoader: no arbitrary objects. PyYAML shares aliased objects instead of copying
        # them, so a "billion laughs" document loads cheaply; _expanded_nodes refuses it.
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(YAML_ERROR.format(source=path, error=str(exc).splitlines()[0])) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys, got {type(data).__name__}")
    if _expanded_nodes(data, {}) > MAX_CONFIG_NODES:
        raise ConfigError(f"{path}: config expands to more than {MAX_CONFIG_NODES} values (YAML aliases?)")
    return data


def _expanded_nodes(obj: Any, memo: dict[int, int]) -> int:
    """Number of values the document has once aliases are expanded (memoised per object,
    so a "billion laughs" alias chain is counted in linear time without expanding it)."""
    key = id(obj)
    if key in memo:
        return memo[key]
    if isinstance(obj, dict):
        n = 1 + sum(_expanded_nodes(v, memo) for v in obj.values())
    elif isinstance(obj, list):
        n = 1 + sum(_expanded_nodes(v, memo) for v in obj)
    else:
        n = 1
    memo[key] = n
    return n


def resolve_source(value: str | None) -> tuple[str, Path]:
    """A preset name (``tabular``) or a path to a YAML file -> (preset name, path)."""
    value = value or "tabular"
    candidate = Path(value)
    if candidate.suffix in (".yaml", ".yml") or candidate.exists():
        if not candidate.is_file():
            raise ConfigError(MISSING_FILE.format(key="--config", path=candidate))
        return candidate.stem, candidate
    preset = PRESETS_DIR / f"{value}.yaml"
    if not is_safe_name(value) or not preset.is_file():  # a name, never a path out of PRESETS_DIR
        raise ConfigError(UNKNOWN_PRESET.format(value=value, known=", ".join(list_presets())))
    return value, preset


def _parse_value(raw: str) -> Any:
    """``--set`` values are YAML scalars/flow collections: 1, 0.5, true, null, [a, b]."""
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for item in overrides:
        if "=" not in item:
            raise ConfigError(BAD_OVERRIDE.format(item=item))
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        if not all(parts):
            raise ConfigError(BAD_OVERRIDE.format(item=item))
        node = data
        for i, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {item!r}: {'.'.join(parts[: i + 1])} is not a section")
            node = child
        node[parts[-1]] = _reason(raw) if parts[0] == "gates" and parts[-2:-1] == ["skip"] else _parse_value(raw)
    return data


def _reason(raw: str) -> str | None:
    """A skip reason (``gates.<audit>.skip.<key>=<reason>``) is text as written, never YAML: a
    reason like ``pilot: reviewed by hand`` must not turn into a mapping. Outer quotes are
    dropped; ``null`` / ``~`` is no reason (refused by check_gates)."""
    text = raw.strip()
    if text in ("null", "Null", "NULL", "~"):
        return None
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        text = text[1:-1].strip()
    return text


def deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in top.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _with_base(data: dict[str, Any], seen: list[str]) -> dict[str, Any]:
    """``extends: <preset>`` layers a YAML file on top of a preset (recursively)."""
    base_name = data.get("extends")
    if base_name is None:
        return data
    if not isinstance(base_name, str):
        raise ConfigError(f"extends: expected a preset name, got {base_name!r}")
    _, base_path = resolve_source(base_name)
    if str(base_path) in seen:
        raise ConfigError(f"extends: preset cycle {' -> '.join(seen + [str(base_path)])}")
    base = _with_base(_read_yaml(base_path), seen + [str(base_path)])
    base.pop("preset", None)
    return deep_merge(base, data)


def _known_keys(loc: tuple) -> list[str]:
    """The keys allowed at ``loc``'s last level (``("data", "contrct")`` -> DataConfig's fields)."""
    model: Any = RunConfig
    for part in loc[:-1]:
        field = model.model_fields.get(str(part)) if isinstance(model, type) and issubclass(model, BaseModel) else None
        if field is None:
            return []
        model = field.annotation
    if isinstance(model, type) and issubclass(model, BaseModel):
        return list(model.model_fields)
    return []


def did_you_mean(word: str, known: list[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest known key (difflib), else ``""``."""
    import difflib

    close = difflib.get_close_matches(word, known, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _hyperparameters(data: dict[str, Any]) -> list[str]:
    """The hyperparameter names of the configured family (for a misplaced ``train.epochs``)."""
    import dataclasses

    try:
        from impactflow.models import get_family

        model = data.get("model") if isinstance(data.get("model"), dict) else {}
        return [f.name for f in dataclasses.fields(get_family(str(model.get("family", "tabular"))).config_cls)]
    except Exception:  # an unknown family is reported by its own check
        return []


#: keys earlier versions accepted: a config that still sets one is told what happened to it
REMOVED_KEYS = {
    "data.validate_while_training": "removed: the contract is always validated before training starts",
}


def _format_validation_error(exc: ValidationError, data: dict[str, Any] | None = None) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(config)"
        if err["type"] == "extra_forbidden" and key in REMOVED_KEYS:
            lines.append(f"{key}: {REMOVED_KEYS[key]}; delete this key")
        elif err["type"] == "extra_forbidden":
            leaf = str(err["loc"][-1])
            hint = did_you_mean(leaf, _known_keys(err["loc"]))
            if not hint and data is not None and leaf in _hyperparameters(data):
                hint = f" (did you mean 'model.params.{leaf}'?)"
            lines.append(f"{key}: unknown key{hint}")
        else:
            lines.append(f"{key}: {err['msg']} (got {err.get('input')!r})")
    return "invalid configuration:\n  " + "\n  ".join(lines)


def load_config(source: str | None = None, overrides: list[str] | None = None, *, check: bool = True) -> RunConfig:
    """Load a preset or YAML file, apply ``key=value`` overrides, validate everything
    (``check=False``: the schema only, not the references to contracts, families and files)."""
    preset, path = resolve_source(source)
    data = _with_base(_read_yaml(path), seen=[str(path)])
    data.setdefault("preset", preset)
    data = apply_overrides(data, list(overrides or []))
    try:
        cfg = RunConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc, data)) from None
    if check:
        check_references(cfg)
    return cfg


def missing_data(cfg: RunConfig) -> str | None:
    """Why the run has no data to read (a contract that ships no files and no ``data.path``),
    or None. Checked before any task runs, and shown by ``impactflow presets``."""
    from impactflow.data_contracts import get_contract

    if cfg.data.path:
        return None
    contract = get_contract(cfg.data.contract)
    if contract.default_files:
        return None
    return (
        f"data.path: required: the contract {contract.name!r} ships no data (licence: {contract.license}); "
        f"supply your copy with --set data.path=PATH"
    )


def check_references(cfg: RunConfig) -> None:
    """Checks that need the registries: known contract/family/baselines, params, files exist."""
    from impactflow.data_contracts import CONTRACTS
    from impactflow.models import FAMILIES

    if cfg.tracking.experiment is not None:  # names the registered models (<experiment>-<model>)
        safe_name(cfg.tracking.experiment, "tracking.experiment")
    if cfg.data.contract not in CONTRACTS:
        from impactflow.data_contracts import get_contract

        if not Path(cfg.data.contract).is_file():
            raise ConfigError(
                f"data.contract={cfg.data.contract!r}: unknown contract (neither a registered name: "
                f"{', '.join(sorted(CONTRACTS))}; nor a contract.yaml or a folder holding one)"
            )
        get_contract(cfg.data.contract)  # every contract problem: one line, before any task
    missing = missing_data(cfg)
    if missing:
        raise ConfigError(missing)

    from impactflow.data_contracts import get_contract

    contract = get_contract(cfg.data.contract)
    from impactflow.audits.groups import CLASS

    audited = [*contract.sensitive, *contract.groups]  # the columns the audits split by
    for audit, values in cfg.gates.items():
        combos = values.get("intersections") if isinstance(values, dict) else None
        if not isinstance(combos, list):
            continue  # the type is checked by check_gates
        # group_robustness also splits by the true label (audits.groups.CLASS)
        allowed = [*audited, CLASS] if audit == "group_robustness" else audited
        for combo in combos:
            for col in combo if isinstance(combo, list) else []:
                if col not in allowed:
                    raise ConfigError(
                        f"gates.{audit}.intersections: {col!r} is not a sensitive column of contract "
                        f"{contract.name!r} (sensitive: {', '.join(audited) or 'none'}); list combinations of "
                        f"those, or set it to null for all of them combined"
                    )
    if cfg.model.family not in FAMILIES:
        raise ConfigError(
            f"model.family={cfg.model.family!r}: unknown model family (known: {', '.join(sorted(FAMILIES))})"
        )
    from impactflow.errors import DataError
    from impactflow.data_contracts.files import check_input_file

    for i, p in enumerate(cfg.data.path or []):
        key = f"data.path[{i}]" if len(cfg.data.path) > 1 else "data.path"
        if not Path(p).exists():  # a file, or a folder for datasets made of several files
            raise ConfigError(MISSING_FILE.format(key=key, path=p))
        if not Path(p).is_dir():
            try:
                check_input_file(p, None)  # a FIFO, socket or device: "not a regular file", before any task
            except DataError as exc:
                raise ConfigError(f"{key}: {exc}") from None
    from impactflow.models import get_family

    family = get_family(cfg.model.family)
    check_family_fits(family, contract)
    check_params(family, cfg.model.params)
    config = family.make_config(cfg.model.params)
    if family.preflight is not None:  # e.g. the hf family's model directory, tokenizer, head, LoRA targets
        from impactflow.models.base import roles_for

        family.preflight(config, roles_for(contract, family.task, cfg.data.exclude_sensitive_from_features))
    from impactflow.models.memorisation import check_plantable, settings_for

    secrets = settings_for(cfg.privacy_audit.secrets.model_dump(), family)
    if secrets is not None:
        check_plantable(family, contract, secrets)
    if cfg.privacy.enabled:  # the DP preprocessing needs a declared domain for every input: say so now
        from impactflow.models.base import roles_for
        from impactflow.models.fit import _make_preprocessor

        _make_preprocessor(
            family, roles_for(contract, family.task, cfg.data.exclude_sensitive_from_features), config, True
        )
    check_gates(cfg.gates)
    check_output_dir(cfg.tracking.output_dir)
    for name in cfg.model.baselines:
        if name not in family.baselines:
            raise ConfigError(
                f"model.baselines: unknown baseline {name!r} for family '{family.name}' "
                f"(known: {', '.join(sorted(family.baselines))})"
            )


def check_family_fits(family: Any, contract: Any) -> None:
    """The family's task against the contract's target: a rating family needs a numeric target,
    a binary one exactly two labels, a multiclass one at least two (one line, before any task)."""
    labels = list(contract.labels)
    where = f"model.family={family.name!r}"
    if family.task == TaskKind.RATING and labels:
        raise ConfigError(
            f"{where}: predicts a numeric rating, but the target {contract.target!r} of contract "
            f"{contract.name!r} is a category (labels: {', '.join(map(str, labels))})"
        )
    if family.task.classifies and not labels:
        raise ConfigError(
            f"{where}: a {family.task} classifier, but the target {contract.target!r} of contract "
            f"{contract.name!r} has no labels (a numeric target: a rating family such as 'recommender')"
        )
    if family.task == TaskKind.BINARY and len(labels) != 2:
        raise ConfigError(
            f"{where}: a binary classifier, but the target {contract.target!r} of contract "
            f"{contract.name!r} has {len(labels)} labels ({', '.join(map(str, labels))})"
        )


BAD_PARAM_TYPE = "model.params.{key}: {value!r} is not {expected} (family {family!r}, default {default!r})"


def _param_kind(annotation: Any) -> tuple[str, str] | None:
    """(kind, words) for a hyperparameter's annotation: int, float, bool, str or a tuple of ints."""
    text = str(annotation).replace("typing.", "")
    for kind, words in (
        ("tuple[int", "a list of whole numbers, e.g. [128, 64]"),
        ("bool", "true or false"),
        ("int", "a whole number"),
        ("float", "a number"),
        ("str", "text"),
    ):
        if text == kind or text.startswith(kind) or text.startswith(f"<class '{kind}"):
            return kind, words
    return None


def _param_fits(kind: str, value: Any) -> bool:
    if value is None:
        return False
    if kind == "bool":
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if kind == "int":
        return isinstance(value, int)
    if kind == "float":
        return isinstance(value, (int, float))
    if kind == "str":
        return isinstance(value, str)
    return isinstance(value, (list, tuple)) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)


def check_params(family: Any, params: dict[str, Any]) -> None:
    """``model.params``: every key one of the family's hyperparameters (with a "did you mean")
    and every value of its type, one line naming the key, the value and the expected type, so
    that ``epochs=abc`` never reaches the family's own range checks."""
    import dataclasses
    import typing

    fields = {f.name: f for f in dataclasses.fields(family.config_cls)}
    try:
        hints = typing.get_type_hints(family.config_cls)
    except Exception:  # an annotation that cannot be resolved: the family checks its own values
        hints = {}
    for key, value in params.items():
        if key not in fields:
            raise ConfigError(
                f"model.params.{key}: unknown hyperparameter for family {family.name!r}"
                f"{did_you_mean(str(key), list(fields))} (known: {', '.join(fields)})"
            )
        kind = _param_kind(hints.get(key, fields[key].type))
        if value is None and fields[key].default is None:  # an optional value left unset: the family says what it needs
            continue
        if kind is not None and not _param_fits(kind[0], value):
            f = fields[key]
            default = f.default if f.default is not dataclasses.MISSING else None
            if isinstance(default, tuple):
                default = list(default)
            raise ConfigError(
                BAD_PARAM_TYPE.format(key=key, value=value, expected=kind[1], family=family.name, default=default)
            )


OUTSIDE_TREE = (
    "tracking.output_dir={path}: a relative path must stay inside the working directory "
    "{cwd} (it resolves to {resolved}); give an absolute path to write elsewhere"
)


def check_output_dir(path: Path) -> None:
    """A relative ``tracking.output_dir`` may not climb out of the working directory with
    ``..`` or a symlink (a preset shared with others cannot write into ``../../elsewhere``).
    Absolute paths are an explicit choice of the user and are allowed."""
    if Path(path).is_absolute():
        return
    cwd = Path.cwd().resolve()
    resolved = (cwd / path).resolve()
    if resolved != cwd and cwd not in resolved.parents:
        raise ConfigError(OUTSIDE_TREE.format(path=path, cwd=cwd, resolved=resolved))


def check_gates(
    gates: dict[str, dict[str, Any]], known_thresholds: Mapping[str, Mapping[str, Any]] | None = None
) -> None:
    """Every ``gates.<audit>.<key>`` must be a threshold that audit knows, of the right kind.

    A gate is skipped on purpose with ``gates.<audit>.skip.<key>: "<reason>"`` (the reason is
    printed in the report); ``null`` is refused for a key with a default (it would drop a
    default gate without a reason), and removing such a key keeps its default gate.
    ``known_thresholds``: the audits and keys allowed (default ``audits.AUDIT_THRESHOLDS``)."""
    from impactflow.audits import AUDIT_THRESHOLDS, SKIP
    from impactflow.audits.gating import section_problems

    known_thresholds = AUDIT_THRESHOLDS if known_thresholds is None else known_thresholds
    for audit, values in gates.items():
        if audit not in known_thresholds:
            raise ConfigError(f"gates.{audit}: unknown audit (known: {', '.join(sorted(known_thresholds))})")
        if not isinstance(values, dict):
            raise ConfigError(f"gates.{audit}: expected a mapping of thresholds, got {values!r}")
        known = known_thresholds[audit]
        problems = section_problems(audit, values, known)
        if problems:
            raise ConfigError(problems[0])
        for key, value in values.items():
            where = f"gates.{audit}.{key}"
            if key == SKIP:
                continue
            if key not in known:
                raise ConfigError(f"{where}: unknown threshold (known: {', '.join(sorted(known))})")
            problem = known[key].problem(value)  # the kind the audit declared (audits/thresholds.py)
            if problem:
                raise ConfigError(f"{where}: {problem}")
