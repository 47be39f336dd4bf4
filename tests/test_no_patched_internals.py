"""No patched library internals (issue 22, item 3; ../shared/ARCHITECTURE.md): no module of the
source folders assigns to an attribute of prefect, great_expectations or opacus (a private name,
or a method of one of their classes) outside a ``compat`` module.

Static, with ``ast``: names bound to one of those libraries (``import great_expectations as gx``,
``from opacus.optimizers import DPOptimizer``, and local aliases of them such as
``E = gx_expectation.Expectation``) must not be the target of an assignment (``E.configuration
= ...``, ``gx.x._y = ...``, ``del E.z``) or of ``setattr``/``delattr``; an assignment to a private
name (``obj._name = ...``) of any object other than ``self``/``cls`` is refused in a module that
imports one of those libraries, since the object may well be theirs, and so is an object's
``__class__`` swap.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCE_FOLDERS = ("flows", "tasks", "models", "audits", "data_contracts")
LIBRARIES = ("prefect", "great_expectations", "opacus")


def _is_lib(module: str | None) -> bool:
    return bool(module) and module.split(".")[0] in LIBRARIES


def _root(node: ast.AST) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Call)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def _private(attr: str) -> bool:
    return attr.startswith("_") and not (attr.startswith("__") and attr.endswith("__"))


def patches(source: str, filename: str = "<src>") -> list[str]:
    """``file:line: code`` of every assignment to a library's attribute in ``source``."""
    tree = ast.parse(source, filename)
    bound: set[str] = set()
    imports_lib = False
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if _is_lib(a.name):
                    imports_lib = True
                    bound.add(a.asname or a.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and _is_lib(node.module):
            imports_lib = True
            bound.update(a.asname or a.name for a in node.names)
    changed = True
    while changed:  # aliases X = lib.thing (not a call's result, e.g. an object a library built)
        changed = False
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Assign)
                and isinstance(node.value, (ast.Name, ast.Attribute))
                and _root(node.value) in bound
            ):
                for t in node.targets:
                    if isinstance(t, ast.Name) and t.id not in bound:
                        bound.add(t.id)
                        changed = True

    found = []

    def flag(node: ast.AST) -> None:
        found.append(f"{filename}:{node.lineno}: {ast.unparse(node).splitlines()[0]}")

    for node in ast.walk(tree):
        targets: list[ast.AST] = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = [node.target]
        elif isinstance(node, ast.Delete):
            targets = node.targets
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("setattr", "delattr")
            and node.args
        ):
            obj = node.args[0]
            name = node.args[1] if len(node.args) > 1 else None
            literal = name.value if isinstance(name, ast.Constant) and isinstance(name.value, str) else None
            if _root(obj) in bound or (
                imports_lib and literal is not None and _private(literal) and _root(obj) not in ("self", "cls")
            ):
                flag(node)
            continue
        for t in targets:
            for sub in ast.walk(t):
                if not isinstance(sub, ast.Attribute):
                    continue
                if _root(sub) in bound:
                    flag(node)
                    break
                if (
                    imports_lib
                    and (_private(sub.attr) or sub.attr == "__class__")
                    and _root(sub) not in ("self", "cls")
                ):
                    flag(node)
                    break
    return found


def _source_files():
    for folder in SOURCE_FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            if "compat" in path.relative_to(ROOT).with_suffix("").parts:
                continue
            yield path


def test_no_source_module_patches_prefect_gx_or_opacus():
    files = list(_source_files())
    assert len(files) > 50
    found = [hit for p in files for hit in patches(p.read_text(encoding="utf-8"), str(p.relative_to(ROOT)))]
    assert found == [], (
        "assignments to prefect/great_expectations/opacus attributes outside a compat "
        "module (use a public API, or move the patch to compat with a version guard):\n" + "\n".join(found)
    )


@pytest.mark.parametrize(
    "code",
    [
        # the removed GX patches (data_contracts/validation.py before issue 22 item 3)
        "from great_expectations.render.view.view import DefaultJinjaView\nDefaultJinjaView.__init__ = f",
        "from great_expectations.expectations.expectation import Expectation\nExpectation.configuration = property(f)",
        "from great_expectations.expectations.expectation import Expectation\n"
        "for n in names:\n    setattr(Expectation, n, wrap(getattr(Expectation, n)))",
        "import great_expectations.expectations.expectation as e\nE = e.Expectation\nE._get_success_kwargs = f",
        # the removed Opacus/Prefect ones (commit 92e9445)
        "import opacus\nopacus.grad_sample.GradSampleModule.GRAD_SAMPLERS[nn.Embedding] = f",
        "from opacus.optimizers import DPOptimizer\ndef f(opt):\n    opt._step_hook = None",
        "import prefect\ndef f(o):\n    setattr(o, '_heartbeat', None)",
        "from opacus.optimizers import DPOptimizer\ndef f(opt):\n    opt.__class__ = Mine",  # a class swap
        "import prefect.flow_engine as fe\ndel fe._join",
        "import prefect\nprefect.settings._x += 1",
    ],
)
def test_the_check_catches_patches(code):
    assert patches(code), code


@pytest.mark.parametrize(
    "code",
    [
        "import great_expectations as gx\nctx = gx.get_context()\nctx.variables.progress_bars = cfg",  # public
        "import opacus\nclass A:\n    def f(self):\n        self._engine = 1",
        "import pandas as pd\npd.options.display.width = 3\nobj._private = 1",  # not one of the three
        "from opacus.optimizers import DPOptimizer\nclass Mine(DPOptimizer):\n    pass\nx = Mine()",
    ],
)
def test_the_check_allows_public_use(code):
    assert patches(code) == []
