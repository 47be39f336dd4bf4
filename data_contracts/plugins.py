"""Extension without forking: registries that also take pip-installed plugins.

A package adds a family, a loader or an audit by declaring an ``importlib.metadata`` entry point
(docs/configuration.md, "Plugins"):

    [project.entry-points."impactflow.families"]
    tiny_logit = "my_pkg.family:FAMILY"        # a models.base.Family (or a module with FAMILY)
    [project.entry-points."impactflow.loaders"]
    my_format = "my_pkg.read:load"             # (paths) -> DataFrame, as data_contracts.LOADERS
    [project.entry-points."impactflow.audits"]
    my_audit = "my_pkg.audit:my_audit"         # (AuditInputs, thresholds) -> AuditResult;
                                               # its gates.<name> keys: the function's THRESHOLDS dict

The entries land in the same explicit dicts as the built-in ones (``models.FAMILIES``,
``data_contracts.LOADERS``, ``audits.AUDITS``/``AUDIT_THRESHOLDS``), read once, on the first
look-up of the dict (so ``impactflow --help`` reads no metadata). A plugin whose name is already
taken is one ``ConfigError`` line naming both, on every look-up until it is renamed or
uninstalled; a plugin that cannot be imported is one line when it is used.

Stdlib only: every package may import this module.
"""

from __future__ import annotations

import threading
from importlib import metadata
from typing import Any, Callable, Iterator

from impactflow.errors import ConfigError

GROUPS = {"families": "impactflow.families", "loaders": "impactflow.loaders", "audits": "impactflow.audits"}
CLASH = (
    "plugin {group} {name!r} (from {dist}) clashes with the {other} {kind} of the same name; "
    "rename it in that package's entry points, or uninstall it"
)
BROKEN = "plugin {group} {name!r} (from {dist}): cannot load {value!r}: {error}"


def describe(ep: metadata.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return "an unknown distribution"
    return f"{dist.metadata['Name']} {dist.version}"


def broken(ep: metadata.EntryPoint, exc: BaseException) -> ConfigError:
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return ConfigError(
        BROKEN.format(
            group=ep.group,
            name=ep.name,
            dist=describe(ep),
            value=ep.value,
            error=f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__,
        )
    )


class PluginRegistry(dict):
    """A dict of built-in entries that adds the entry points of ``group`` on its first look-up.

    ``convert(ep)`` gives the value stored for an entry point (and may raise ``ConfigError``);
    ``origin`` records, per plugin name, the distribution it came from."""

    def __init__(self, builtin: dict, group: str, kind: str, convert: Callable[[metadata.EntryPoint], Any]):
        super().__init__(builtin)
        self.group, self.kind, self._convert = group, kind, convert
        self.origin: dict[str, metadata.EntryPoint] = {}
        self.followers: list[dict] = []  # dicts that ``convert`` also fills, under the same names
        self._loaded = False
        self._lock = threading.RLock()

    def ensure_loaded(self) -> None:
        if self._loaded:
            return
        with self._lock:
            if self._loaded:
                return
            added: list[str] = []
            try:
                for ep in sorted(metadata.entry_points(group=self.group), key=lambda e: (e.name, e.value)):
                    if dict.__contains__(self, ep.name):
                        prev = self.origin.get(ep.name)
                        other = f"plugin (from {describe(prev)})" if prev is not None else "built-in"
                        raise ConfigError(
                            CLASH.format(group=self.group, name=ep.name, dist=describe(ep), other=other, kind=self.kind)
                        )
                    dict.__setitem__(self, ep.name, self._convert(ep))
                    self.origin[ep.name] = ep
                    added.append(ep.name)
            except BaseException:
                for name in added:  # nothing half-loaded: the next look-up fails the same way
                    self._drop(name)
                raise
            self._loaded = True

    def forget_plugins(self) -> None:
        """Drop the plugin entries; the next look-up reads the entry points again (tests)."""
        with self._lock:
            for name in list(self.origin):
                self._drop(name)
            self._loaded = False

    def _drop(self, name: str) -> None:
        dict.pop(self, name, None)
        self.origin.pop(name, None)
        for follower in self.followers:
            dict.pop(follower, name, None)

    # every read goes through ensure_loaded
    def __contains__(self, key: object) -> bool:
        self.ensure_loaded()
        return dict.__contains__(self, key)

    def __getitem__(self, key: Any) -> Any:
        self.ensure_loaded()
        return dict.__getitem__(self, key)

    def get(self, key: Any, default: Any = None) -> Any:
        self.ensure_loaded()
        return dict.get(self, key, default)

    def __iter__(self) -> Iterator[Any]:
        self.ensure_loaded()
        return dict.__iter__(self)

    def __len__(self) -> int:
        self.ensure_loaded()
        return dict.__len__(self)

    def keys(self):
        self.ensure_loaded()
        return dict.keys(self)

    def values(self):
        self.ensure_loaded()
        return dict.values(self)

    def items(self):
        self.ensure_loaded()
        return dict.items(self)

    def __repr__(self) -> str:
        self.ensure_loaded()
        return dict.__repr__(self)


class FollowerRegistry(PluginRegistry):
    """A dict filled by another registry's plugins (e.g. ``audits.AUDIT_THRESHOLDS`` by the audit
    plugins' ``THRESHOLDS``): its look-ups load the leader first."""

    def __init__(self, builtin: dict, leader: PluginRegistry):
        super().__init__(builtin, leader.group, leader.kind, lambda ep: None)
        self._leader = leader
        leader.followers.append(self)

    def ensure_loaded(self) -> None:
        self._leader.ensure_loaded()

    def forget_plugins(self) -> None:
        self._leader.forget_plugins()


def reference(ep: metadata.EntryPoint) -> str:
    """An entry point's ``module`` or ``module:attr`` as the registries store it (imported when used)."""
    value = ep.value.strip()
    module, _, attr = value.partition(":")
    if (
        not module
        or not all(p.isidentifier() for p in module.split("."))
        or (attr and not all(p.isidentifier() for p in attr.split(".")))
    ):
        raise ConfigError(
            BROKEN.format(
                group=ep.group,
                name=ep.name,
                dist=describe(ep),
                value=ep.value,
                error="not 'module' or 'module:attribute'",
            )
        )
    return value


def is_plugin(registry: dict, name: str) -> metadata.EntryPoint | None:
    return getattr(registry, "origin", {}).get(name)
