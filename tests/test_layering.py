"""The import-layering table of ARCHITECTURE.md, enforced by walking every module's imports."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OURS = {"flows", "tasks", "models", "audits", "data_contracts"}

# package -> top-level modules it must never import (directly, at any depth in the file)
FORBIDDEN = {
    "models": {"prefect", "mlflow", "great_expectations", "flows", "tasks", "audits"},
    "audits": {"torch", "opacus", "prefect", "mlflow", "great_expectations", "flows", "tasks", "models"},
    "data_contracts": {"torch", "opacus", "prefect", "mlflow", "flows", "tasks", "models", "audits"},
    "tasks": {"flows"},
    "flows": {"torch", "opacus", "mlflow", "great_expectations"},
}
# heavy libraries that may be used but only imported lazily (inside functions): a package
# (every module under it) or one module, and the libraries it must not import at module level.
# flows/cli.py stays light so `impactflow --help` is instant; flows/ as a whole imports prefect
# at module level (the @flow decorators), which is fine.
LAZY_ONLY = {
    "data_contracts": {"great_expectations"},
    "flows/cli.py": {
        "torch",
        "prefect",
        "mlflow",
        "great_expectations",
        "opacus",
        "pandas",
        "sklearn",
        "fairlearn",
        "tasks",
    },
}


def _ours(name: str) -> str:
    """``impactflow.tasks.tracking`` -> ``tasks.tracking``: the table names the project's packages
    by their folders; a third-party name is unchanged."""
    return name[len("impactflow.") :] if name.startswith("impactflow.") else name


def _imports(tree: ast.AST, top_level_only: bool = False) -> set[str]:
    nodes = tree.body if top_level_only else ast.walk(tree)
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {_ours(a.name) for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "impactflow":  # from impactflow import audits
                found |= {a.name for a in node.names}
            else:
                found.add(_ours(node.module))
    return found


def _modules(package: str):
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_respects_layering(package):
    offences = []
    for path in _modules(package):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for name in _imports(tree):
            if name.split(".")[0] in FORBIDDEN[package]:
                offences.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not offences, "\n".join(offences)


@pytest.mark.parametrize("where", sorted(LAZY_ONLY))
def test_heavy_libraries_are_imported_lazily(where):
    paths = [ROOT / where] if where.endswith(".py") else _modules(where)
    offences = []
    for path in paths:
        for name in _imports(ast.parse(path.read_text(encoding="utf-8")), top_level_only=True):
            if name.split(".")[0] in LAZY_ONLY[where]:
                offences.append(f"{path.relative_to(ROOT)} imports {name} at module level")
    assert paths and not offences, "\n".join(offences)


def test_layering_check_detects_an_offence(tmp_path):
    """The walker itself must see a nested (lazy) import, or the table above proves nothing."""
    tree = ast.parse("def f():\n    import mlflow\n")
    assert "mlflow" in _imports(tree)
    tree = ast.parse("from impactflow import tasks\nfrom impactflow.flows.cli import app\n")
    assert _imports(tree) == {"tasks", "flows.cli"}  # the project's packages under their folder names
    assert "mlflow" not in _imports(tree, top_level_only=True)


def _importers(target: str) -> set[str]:
    """The project's other modules (by path) that import ``target`` (``flows.warm``), at any
    depth, ``from impactflow.flows import warm`` included."""
    found = set()
    for package in sorted(OURS):
        for path in _modules(package):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            names = _imports(tree) | {
                f"{_ours(n.module)}.{a.name}"
                for n in ast.walk(tree)
                if isinstance(n, ast.ImportFrom) and n.module
                for a in n.names
            }
            if target in names or any(n.startswith(target + ".") for n in names):
                found.add(str(path.relative_to(ROOT)))
    found.discard(target.replace(".", "/") + ".py")  # (its own `python -m` entry point)
    return found


def test_the_warm_runner_is_optional_and_outside_the_flow():
    """flows/warm.py (the fork server) is an add-on of the CLI: only the CLI imports it, and it
    imports neither the CLI (no import cycle: the CLI hands it the app to run) nor the flow."""
    assert _importers("flows.warm") == {"flows/cli.py"}
    warm = _imports(ast.parse((ROOT / "flows" / "warm.py").read_text(encoding="utf-8")))
    assert not warm & {"flows.cli", "flows.pipeline", "flows.audit_only"}, warm
