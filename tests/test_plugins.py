"""Extension without forking (issue 21, item 3): a pip-installed package adds a family, a loader and
an audit through importlib.metadata entry points, and they land in models.FAMILIES,
data_contracts.LOADERS and audits.AUDITS/AUDIT_THRESHOLDS.

"Installed" here = the in-repo package tests/plugin_pkg (its own pyproject.toml) on sys.path with a
``*.dist-info`` folder holding its METADATA and the entry_points.txt its pyproject declares --
what pip writes into site-packages, found by importlib.metadata's public path finder; no network,
no build. ``plugin_site`` makes one in a temp folder and puts it on sys.path (and PYTHONPATH, for
the CLI's processes) for one test."""

from __future__ import annotations

import importlib
import json
import shutil
import sys
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from impactflow.errors import ConfigError

PLUGIN = Path(__file__).resolve().parent / "plugin_pkg"


def _registries():
    from impactflow import audits
    from impactflow import data_contracts
    from impactflow import models

    return models.FAMILIES, data_contracts.LOADERS, audits.AUDITS


def _forget():
    for r in _registries():
        r.forget_plugins()
    for name in [m for m in sys.modules if m.startswith(("impactflow_test_plugin", "broken_plugin"))]:
        del sys.modules[name]
    importlib.invalidate_caches()


def make_site(
    folder: Path, entry_points: dict[str, dict[str, str]], name: str = "impactflow-test-plugin", version: str = "0.1"
) -> Path:
    """A site folder holding the plugin package and a dist-info declaring ``entry_points``."""
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "impactflow_test_plugin").exists():
        shutil.copytree(PLUGIN / "impactflow_test_plugin", folder / "impactflow_test_plugin")
    info = folder / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    lines = []
    for group, eps in entry_points.items():
        lines.append(f"[{group}]")
        lines += [f"{k} = {v}" for k, v in eps.items()]
        lines.append("")
    (info / "entry_points.txt").write_text("\n".join(lines))
    return folder


def declared_entry_points() -> dict[str, dict[str, str]]:
    """The entry points tests/plugin_pkg/pyproject.toml declares (what pip would install)."""
    project = tomllib.loads((PLUGIN / "pyproject.toml").read_text())["project"]
    return dict(project["entry-points"])


@pytest.fixture
def on_path(monkeypatch):
    """Put site folders on sys.path (and PYTHONPATH) for one test; registries re-read after it."""
    import os

    def add(site: Path) -> Path:
        monkeypatch.syspath_prepend(str(site))
        monkeypatch.setenv(
            "PYTHONPATH", os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        )
        _forget()
        return site

    yield add
    monkeypatch.undo()
    _forget()


@pytest.fixture
def plugin_site(tmp_path, on_path):
    return on_path(make_site(tmp_path / "site", declared_entry_points()))


def _frame(n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    g = rng.choice(["a", "b"], size=n)
    y = np.where(x + 0.3 * rng.normal(size=n) > 0, "yes", "no")
    return pd.DataFrame({"x": x, "g": g, "y": y})


def test_without_plugins_the_registries_hold_the_built_ins():
    families, loaders, audits = _registries()
    _forget()
    assert sorted(families) == ["hf", "image", "recommender", "tabular", "text"]
    assert "tiny_logit" not in families and "pipe_table" not in loaders and "row_count" not in audits


def test_the_plugin_lands_in_the_same_dicts(plugin_site):
    import impactflow.audits as au
    from impactflow.models import FAMILIES, get_family

    assert FAMILIES["tiny_logit"] == "impactflow_test_plugin.family:FAMILY"
    assert "impactflow_test_plugin" not in sys.modules  # listed, not imported, until used
    family = get_family("tiny_logit")
    assert family.name == "tiny_logit" and family.task == "binary"
    from impactflow.audits.thresholds import defaults

    assert defaults(au.AUDIT_THRESHOLDS["row_count"]) == {"min_count": None}
    assert "row_count" in au.AUDITS and sorted(FAMILIES) == [
        "hf",
        "image",
        "recommender",
        "tabular",
        "text",
        "tiny_logit",
    ]


def test_the_plugin_family_is_selected_by_config_and_trains(plugin_site, tmp_path):
    """Config validation accepts the family, its hyperparameters and its audit's gate; the family
    trains and its model beats chance on held-out rows; the plugin audit runs and gates."""
    from impactflow.audits import AuditInputs, run_audits
    from impactflow.data_contracts import get_contract
    from impactflow.flows.config import load_config
    from impactflow.models import get_family
    from impactflow.models.base import roles_for
    from impactflow.models.data import Split
    from impactflow.models.fit import fit_family_model

    df = _frame()
    data = tmp_path / "d.csv"
    df.to_csv(data, index=False)
    (tmp_path / "contract.yaml").write_text(
        "name: toy\nread: {format: csv}\ncolumns:\n  x: {type: number}\n  g: {type: category, values: [a, b]}\n"
        "  y: {type: category, values: ['no', 'yes']}\ntarget: y\npositive_label: 'yes'\nsensitive: [g]\n"
        "min_group_size: 10\n"
    )
    cfg = load_config(
        "tabular",
        [
            f"data.contract={tmp_path / 'contract.yaml'}",
            f"data.path={data}",
            "model.family=tiny_logit",
            "model.params={epochs: 8, lr: 0.1}",
            "model.baselines=[]",
            "gates.row_count.min_count=50",
            "gates.fairness.intersections=null",
        ],
    )
    assert cfg.model.family == "tiny_logit" and cfg.gates["row_count"] == {"min_count": 50}
    with pytest.raises(ConfigError, match=r"model.params.lr: 'fast' is not a number \(family 'tiny_logit'"):
        load_config(
            "tabular",
            [
                f"data.contract={tmp_path / 'contract.yaml'}",
                f"data.path={data}",
                "model.family=tiny_logit",
                "model.params={lr: fast}",
                "model.baselines=[]",
                "gates.fairness.intersections=null",
            ],
        )

    family = get_family("tiny_logit")
    roles = roles_for(get_contract(str(tmp_path / "contract.yaml")), family.task, exclude_sensitive=True)
    split = Split(train=df.iloc[:240], validation=df.iloc[240:320], test=df.iloc[320:])
    fitted = fit_family_model(family, {"epochs": 8, "lr": 0.1}, split, roles, seed=0, device="cpu")
    y = (split.test["y"] == "yes").to_numpy().astype(int)
    assert fitted.name == "tiny_logit" and fitted.family == "tiny_logit" and fitted.kind == "torch"
    assert list(fitted.y_test) == list(y)
    acc = float(np.mean((fitted.test_output >= 0.5).astype(int) == y))
    assert acc > 0.75  # x alone separates the classes (noise 0.3): far above the 0.5 of chance

    inputs = AuditInputs(y_true=y, y_score=np.full(len(y), 0.5), sensitive=split.test[["g"]])
    out = run_audits(inputs, {"row_count": {"min_count": 50}}, names=["row_count"])
    assert out["row_count"].metrics["row_count/n_rows"] == 80
    assert [g.status.value for g in out["row_count"].gates] == ["pass"]
    out = run_audits(inputs, {"row_count": {"min_count": 81}}, names=["row_count"])
    assert [g.status.value for g in out["row_count"].gates] == ["fail"]


def test_a_plugin_loader_reads_a_contract_s_files(plugin_site, tmp_path):
    from impactflow.data_contracts import LOADERS, get_contract, load_dataset

    assert "pipe_table" in LOADERS
    (tmp_path / "t.txt").write_text("a|g|y\n1|u|p\n2|v|q\n")
    (tmp_path / "contract.yaml").write_text(
        "name: piped\nloader: pipe_table\ncolumns:\n  a: integer\n  g: {type: category, values: [u, v]}\n"
        "  y: {type: category, values: [p, q]}\ntarget: y\nsensitive: [g]\nmin_group_size: 1\n"
    )
    df = load_dataset(get_contract(str(tmp_path / "contract.yaml")), tmp_path / "t.txt")
    assert df.to_dict("list") == {"a": ["1", "2"], "g": ["u", "v"], "y": ["p", "q"]}


def test_a_name_clash_is_one_line_on_every_look_up(tmp_path, on_path):
    on_path(
        make_site(
            tmp_path / "site",
            {"impactflow.families": {"tabular": "impactflow_test_plugin.family:FAMILY"}},
            name="clashing-plugin",
            version="2.0",
        )
    )
    from impactflow.models import FAMILIES

    for _ in range(2):  # fails the same way again: nothing half-loaded
        with pytest.raises(ConfigError) as exc:
            "tabular" in FAMILIES
        assert str(exc.value) == (
            "plugin impactflow.families 'tabular' (from clashing-plugin 2.0) clashes with the "
            "built-in family of the same name; rename it in that package's entry points, or "
            "uninstall it"
        )


def test_two_plugins_with_one_name_clash(tmp_path, on_path):
    on_path(
        make_site(
            tmp_path / "s1",
            {"impactflow.audits": {"row_count": "impactflow_test_plugin.audit:row_count_audit"}},
            name="first-plugin",
        )
    )
    on_path(
        make_site(
            tmp_path / "s2",
            {"impactflow.audits": {"row_count": "impactflow_test_plugin.audit:row_count_audit"}},
            name="second-plugin",
        )
    )
    from impactflow import audits

    with pytest.raises(
        ConfigError,
        match=r"'row_count' \(from (first|second)-plugin 0.1\) clashes with the plugin "
        r"\(from (first|second)-plugin 0.1\) audit",
    ):
        audits.AUDIT_THRESHOLDS.get("row_count")
    assert "row_count" not in dict.keys(audits.AUDIT_THRESHOLDS)  # rolled back


@pytest.mark.parametrize(
    "group, name, value, use, message",
    [
        (
            "impactflow.families",
            "ghost",
            "no_such_module.family:FAMILY",
            "family",
            "plugin impactflow.families 'ghost' (from broken-plugin 0.1): cannot load 'no_such_module.family:FAMILY': "
            "ModuleNotFoundError: No module named 'no_such_module'",
        ),
        (
            "impactflow.families",
            "wrong_type",
            "impactflow_test_plugin.loader:load_pipe_table",
            "family",
            "plugin impactflow.families 'wrong_type' (from broken-plugin 0.1): cannot load "
            "'impactflow_test_plugin.loader:load_pipe_table': TypeError: impactflow_test_plugin.loader:load_pipe_table is "
            "a function, not a models.base.Family",
        ),
        (
            "impactflow.families",
            "renamed",
            "impactflow_test_plugin.family:FAMILY",
            "family",
            "ValueError: its Family is named 'tiny_logit', the entry point 'renamed'",
        ),
        (
            "impactflow.audits",
            "ghost_audit",
            "impactflow_test_plugin.audit:nothing_here",
            "audit",
            "plugin impactflow.audits 'ghost_audit' (from broken-plugin 0.1): cannot load "
            "'impactflow_test_plugin.audit:nothing_here': AttributeError",
        ),
        (
            "impactflow.loaders",
            "bad ref",
            "not a reference!",
            "loader",
            "plugin impactflow.loaders 'bad ref' (from broken-plugin 0.1): cannot load 'not a reference!': "
            "not 'module' or 'module:attribute'",
        ),
    ],
)
def test_a_broken_plugin_is_one_line(tmp_path, on_path, group, name, value, use, message):
    on_path(make_site(tmp_path / "site", {group: {name: value}}, name="broken-plugin"))
    from impactflow import audits
    from impactflow.models import get_family

    with pytest.raises(ConfigError) as exc:
        if use == "family":
            get_family(name)
        elif use == "audit":
            audits.AUDITS.get(name)
        else:
            from impactflow import data_contracts

            data_contracts.LOADERS.get(name)
    assert message in str(exc.value) and "\n" not in str(exc.value)


@pytest.mark.e2e
def test_impactflow_run_with_the_plugin_family(cli, plugin_site, tmp_path):
    """The CLI in its own process finds the plugin (PYTHONPATH) and runs a tiny audited training."""
    r = cli(
        "run",
        "--set",
        "model.family=tiny_logit",
        "--set",
        "model.params={epochs: 2}",
        "--set",
        "model.baselines=[]",
        "--set",
        "data.sample=8000",
        "--set",
        "gates.row_count.min_count=100",
        "--set",
        "train.device=cpu",
        "--set",
        f"tracking.output_dir={tmp_path / 'runs'}",
        uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        cwd=tmp_path,
    )
    out = r.stdout + r.stderr
    assert r.returncode in (0, 3), out
    assert "Traceback" not in out and "tiny_logit" in out
    (path,) = (tmp_path / "runs").glob("runs/*/reports/impact_report.json")
    assert '"row_count/n_rows"' in json.dumps(json.loads(path.read_text()))
