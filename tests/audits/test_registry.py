import ast
import pathlib
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from impactflow import audits
from impactflow.audits import AUDITS, AuditInputs, run_audits
from impactflow.audits.results import AuditResult, Status

AUDITS_DIR = pathlib.Path(audits.__file__).parent
FORBIDDEN = {"torch", "prefect", "mlflow", "great_expectations", "opacus", "flows", "tasks", "models", "data_contracts"}
SHARED_LEAVES = {"errors", "task_kind", "data_contracts.plugins"}


def _names(node) -> list[str]:
    """Imported module names, the project's under their folder names (``impactflow.x`` -> ``x``)."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom) and node.level == 0:
        if node.module == "impactflow":
            return [a.name for a in node.names]
        names = [node.module or ""]
    else:
        return []
    return [n[len("impactflow.") :] if n.startswith("impactflow.") else n for n in names]


def test_registry_and_run_audits():
    assert list(AUDITS)[:3] == ["performance", "fairness", "privacy"]
    rng = np.random.default_rng(0)
    n = 200
    y = rng.integers(0, 2, n)
    inputs = AuditInputs(
        y, np.clip(0.5 * y + 0.5 * rng.random(n), 0, 1), pd.DataFrame({"sex": rng.choice(["F", "M"], n)})
    )
    binary = ["performance", "fairness", "privacy"]
    results = run_audits(inputs, {"performance": {"min_accuracy": 0.5}}, names=binary)
    assert list(results) == binary
    assert all(isinstance(r, AuditResult) and r.name == k for k, r in results.items())
    assert results["performance"].status is Status.PASS
    assert results["privacy"].status is Status.NOT_MEASURED
    with pytest.raises(ValueError, match="fairnes"):
        run_audits(inputs, {"fairnes": {}})


def test_audits_do_not_import_forbidden_packages():
    for path in AUDITS_DIR.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = _names(node)
            # the domain error types and the plugin registries (stdlib-only leaf modules, checked
            # below) are shared by every layer
            names = [n for n in names if n not in SHARED_LEAVES]
            assert not {n.split(".")[0] for n in names} & FORBIDDEN, (path.name, names)


def test_the_shared_leaf_modules_import_only_the_standard_library_and_each_other():
    import sys

    for module in SHARED_LEAVES:
        # the project's folders sit beside impactflow/; ``errors`` is impactflow/errors.py
        base = AUDITS_DIR.parent / "impactflow" if "." not in module else AUDITS_DIR.parent
        path = base / (module.replace(".", "/") + ".py")
        for node in ast.walk(ast.parse(path.read_text())):
            for name in _names(node):
                assert name in SHARED_LEAVES or name.split(".")[0] in sys.stdlib_module_names, (module, name)


@pytest.mark.e2e  # starts a process
def test_import_is_light():
    code = (
        "import sys, impactflow.audits; heavy = {'sklearn', 'fairlearn', 'scipy', 'torch'}; "
        "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
